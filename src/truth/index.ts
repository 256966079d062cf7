export { diffImages, relate, DiffOptionError, type DiffOptions, type DiffResult, type BaseRelation } from './diff.ts';
export { BlockRunBuilder, type BlockRun } from './block-runs.ts';
