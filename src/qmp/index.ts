export { QmpClient, type QmpTarget, type QmpEvent, type QmpGreeting, type QmpConnectOptions, type QmpCallOptions, type WaitForEventOptions } from './client.ts';
export { QmpError, type QmpErrorKind } from './errors.ts';
export { LineSplitter, LineTooLongError } from './line-splitter.ts';
