/** The real partition-table (src/disk), NTFS (src/fs/ntfs) and ext2/3/4 (src/fs/ext4) providers of a decode context. */
import { readPartitionTable } from '../disk/index.ts';
import { hasExt4Magic, parseExt4Superblock, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_SIZE } from '../fs/ext4/index.ts';
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
  async detectFs(volume) {
    // Signatures first: NTFS's OEM id "NTFS    " at byte 3 of the boot sector (src/fs/ntfs/boot.ts),
    // then the ext2/3/4 magic 0xEF53 at byte 1024 + 0x38. NTFS wins when both are present, so a
    // Windows driver tracking NTFS reads the serial it always did.
    const head = Buffer.alloc(EXT4_SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK_SIZE);
    const n = await volume.read(head.subarray(0, Math.min(head.length, volume.size)), 0);
    if (n >= 512 && head.toString('latin1', 3, 11) === 'NTFS    ') return { fs: 'ntfs' };
    if (n >= head.length && hasExt4Magic(head)) {
      const sb = parseExt4Superblock(head.subarray(EXT4_SUPERBLOCK_OFFSET), volume.name, volume.size);
      return { fs: 'ext4', serial: sb.serial, name: sb.kind };
    }
    return { fs: 'none' };
  },
};
