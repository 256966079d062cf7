export { readPartitionTable, findVolume } from './partition-table.ts';
export { PartitionTableError } from './errors.ts';
export { guidString } from './gpt.ts';
export type { PartitionTable, PartitionScheme, ReadPartitionTableOptions, Volume } from './types.ts';
