/** The real partition-table (src/disk) and NTFS (src/fs/ntfs) providers of a decode context. */
import { readPartitionTable } from '../disk/index.ts';
import { openNtfs } from '../fs/ntfs/index.ts';
import type { DiskProviders } from './context.ts';
import { DecoderOptionError } from './decoder.ts';

export const defaultProviders: DiskProviders = {
  async readVolumes(disk) {
    const table = await readPartitionTable(disk);
    return table.volumes.map((v) => ({ number: v.number, offset: v.offset, length: v.length, type: v.type, name: v.name, guid: v.guid }));
  },
  async openNtfs(volume) {
    const ntfs = await openNtfs(volume);
    return {
      serial: ntfs.serial,
      async lookup(path: string) {
        const f = await ntfs.lookup(path);
        if (f.directory) throw new DecoderOptionError(`${path} is a directory on ${volume.name}, not a file`);
        return { size: f.size, extents: f.extents.map((e) => ({ offset: e.offset, length: e.length, fileOffset: e.fileOffset })) };
      },
    };
  },
};

