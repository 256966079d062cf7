/**
 * The partition-table and NTFS providers the CLI gives decoders.
 * Partition tables and NTFS lookup are being built (src/disk, src/fs/ntfs); until they land,
 * decoders must be given regions as offset:length, and asking for a partition or NTFS says so.
 */
import { DecoderOptionError, type DiskProviders } from '../cbt/index.ts';

export const defaultProviders: DiskProviders = {
  readVolumes: async () => {
    throw new DecoderOptionError('partition numbers are not supported yet: give the region as <offset>:<length>');
  },
  openNtfs: async () => {
    throw new DecoderOptionError('NTFS lookup is not supported yet');
  },
};
