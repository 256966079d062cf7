export * from './run-record.ts';
export { RUN_RECORD_SCHEMA } from './run-record-schema.ts';
export { ReportInputError, RunConfigError, HistoryIndexError, ReporterOptionError } from './errors.ts';
export { readRunRecord, parseRunRecord, validateRunRecord, runRecordErrors, recordPath, MAX_RECORD_BYTES } from './read-record.ts';
export { blockMap, encodeCells, decodeCells, type BlockMapInput } from './block-map.ts';
export { RunRecorder, epochRecord, computeTotals, hostInfo, deriveStatus, clip, MAX_TEXT, type EpochInput, type JobEnd, type RunRecorderOptions } from './recorder.ts';
export { silentLogger, type Reporter, type ReportLogger, type LogFields } from './reporter.ts';
export { Multiplexer, type ReporterFailure } from './multiplexer.ts';
