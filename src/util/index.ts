export { createLogger, debugEnabled, type Logger, type LogFields } from './log.ts';
export { mulberry32 } from './prng.ts';
export { processAlive } from './process.ts';
export { MinHeap } from './heap.ts';
export { HarnessError, InfrastructureHarnessError, isHarnessError, type HarnessErrorCategory } from './errors.ts';
