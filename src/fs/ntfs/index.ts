export { openNtfs, NtfsVolume, type NtfsFile, type NtfsExtent, type NtfsReadOptions, type OpenNtfsOptions, type LookupOptions } from './volume.ts';
export { NtfsError, NtfsFormatError, NtfsNotFoundError, NtfsUnsupportedError, NtfsLimitError } from './errors.ts';
export type { NtfsBoot } from './boot.ts';
export type { Run } from './runlist.ts';
