export { judge, acceptable, truthGranularityFor, excludedTruthRuns, VerifyInputError, VERDICTS, type Verdict, type VerifyResult, type Truth } from './verdict.ts';
export { normalize, subtract, clamp, coarsen, totalOf } from './runs.ts';
