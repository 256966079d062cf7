/**
 * Just enough of the ext2/ext3/ext4 superblock to identify a volume: magic, UUID (and the serial
 * the CBTF format derives from it), block size, block count, volume name, state and the feature
 * flags that tell ext2, ext3 and ext4 apart. Read-only and pure over a BlockSource.
 *
 * Hand-written: no maintained TypeScript/JavaScript package reads ext4 metadata offline. The
 * layout follows the Linux kernel's documentation of the on-disk format
 * (Documentation/filesystems/ext4/super.rst, "The Super Block") and `struct ext4_super_block` in
 * fs/ext4/ext4.h; the ext2/ext3/ext4 naming follows the feature sets libblkid (util-linux
 * libblkid/src/superblocks/ext.c) uses. All fields are little-endian:
 *
 * | superblock offset | size | field |
 * |---|---|---|
 * | 0x04 | 4 | s_blocks_count_lo |
 * | 0x14 | 4 | s_first_data_block |
 * | 0x18 | 4 | s_log_block_size (block size = 2^(10 + n)) |
 * | 0x38 | 2 | s_magic = 0xEF53 |
 * | 0x3A | 2 | s_state (1 cleanly unmounted, 2 errors detected, 4 orphans being recovered) |
 * | 0x4C | 4 | s_rev_level |
 * | 0x5C / 0x60 / 0x64 | 4 each | s_feature_compat / s_feature_incompat / s_feature_ro_compat |
 * | 0x68 | 16 | s_uuid |
 * | 0x78 | 16 | s_volume_name (NUL-padded) |
 * | 0x150 | 4 | s_blocks_count_hi (only with INCOMPAT_64BIT) |
 * | 0x175 | 1 | s_checksum_type (1 = crc32c) |
 * | 0x3FC | 4 | s_checksum: crc32c (seed ~0, no final inversion) of bytes 0..0x3FB, with RO_COMPAT_METADATA_CSUM |
 *
 * The superblock sits at byte 1024 of the volume whatever the block size.
 */
import type { BlockSource } from '../../qcow2/index.ts';
import { Ext4FormatError } from './errors.ts';

export const EXT4_SUPERBLOCK_OFFSET = 1024;
export const EXT4_SUPERBLOCK_SIZE = 1024;
export const EXT4_MAGIC = 0xef53;

/** Which member of the family, by its feature flags (as blkid names them). */
export type Ext4Kind = 'ext2' | 'ext3' | 'ext4';

export interface Ext4Superblock {
  kind: Ext4Kind;
  /** s_uuid as e2fsprogs prints it: 8-4-4-4-12 lowercase hex, bytes in on-disk order. */
  uuid: string;
  /** The first 8 bytes of s_uuid read as a little-endian u64 (the CBTF "volume serial" of an ext volume). */
  serial: bigint;
  blockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  /** s_volume_name up to its first NUL ('' when unset). */
  volumeName: string;
  /** s_state as stored. */
  state: number;
  /** s_state bit 0: cleanly unmounted. */
  clean: boolean;
  /** s_state bit 1: errors detected. */
  errors: boolean;
  revLevel: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  /** Names (e2fsprogs spelling) of the feature flags set; unknown bits as `FEATURE_C12` / `FEATURE_I31` / `FEATURE_R9`, as e2fsprogs prints them. */
  features: string[];
  /** RO_COMPAT_METADATA_CSUM is set and s_checksum matched. */
  checksummed: boolean;
}

const COMPAT: Record<number, string> = {
  0x1: 'dir_prealloc',
  0x2: 'imagic_inodes',
  0x4: 'has_journal',
  0x8: 'ext_attr',
  0x10: 'resize_inode',
  0x20: 'dir_index',
  0x40: 'lazy_bg',
  0x100: 'snapshot_bitmap',
  0x200: 'sparse_super2',
  0x400: 'fast_commit',
  0x800: 'stable_inodes',
  0x1000: 'orphan_file',
};
const INCOMPAT: Record<number, string> = {
  0x1: 'compression',
  0x2: 'filetype',
  0x4: 'needs_recovery',
  0x8: 'journal_dev',
  0x10: 'meta_bg',
  0x40: 'extent',
  0x80: '64bit',
  0x100: 'mmp',
  0x200: 'flex_bg',
  0x400: 'ea_inode',
  0x1000: 'dirdata',
  0x2000: 'metadata_csum_seed',
  0x4000: 'large_dir',
  0x8000: 'inline_data',
  0x10000: 'encrypt',
  0x20000: 'casefold',
};
const RO_COMPAT: Record<number, string> = {
  0x1: 'sparse_super',
  0x2: 'large_file',
  0x8: 'huge_file',
  0x10: 'uninit_bg',
  0x20: 'dir_nlink',
  0x40: 'extra_isize',
  0x100: 'quota',
  0x200: 'bigalloc',
  0x400: 'metadata_csum',
  0x800: 'replica',
  0x1000: 'read-only',
  0x2000: 'project',
  0x4000: 'shared_blocks',
  0x8000: 'verity',
  0x10000: 'orphan_present',
};

const COMPAT_HAS_JOURNAL = 0x4;
const INCOMPAT_64BIT = 0x80;
const RO_COMPAT_METADATA_CSUM = 0x400;
/** What ext2 and ext3 drivers understand (libblkid EXT2/EXT3_FEATURE_*_SUPP); anything else is ext4. */
const EXT2_INCOMPAT_SUPP = 0x2 | 0x10; // filetype, meta_bg
const EXT3_INCOMPAT_SUPP = 0x2 | 0x4 | 0x10; // filetype, needs_recovery, meta_bg
const EXT23_RO_COMPAT_SUPP = 0x1 | 0x2 | 0x4; // sparse_super, large_file, btree_dir

/** Largest block size: 2^(10 + 6) = 64 KiB (EXT4_MAX_BLOCK_LOG_SIZE 16). */
const MAX_LOG_BLOCK_SIZE = 6;

function featureNames(mask: number, names: Record<number, string>, letter: string): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    const f = 2 ** bit;
    if (Math.floor(mask / f) % 2 === 1) out.push(names[f] ?? `FEATURE_${letter}${bit}`);
  }
  return out;
}

function hex(b: Buffer, from: number, to: number): string {
  return b.toString('hex', from, to);
}

/**
 * CRC-32C without the final inversion, as ext4 computes its metadata checksums (the kernel's
 * crc32c_le(~0, …)). Bitwise: it runs over one 1020-byte superblock. The table-driven CRC of
 * src/cbt/crc32c.ts is out of reach (cbt/ imports fs/ext4/, not the other way round).
 */
function ext4Crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return crc >>> 0;
}

/** `head` holds the volume's first bytes: true when the ext2/3/4 magic is where the superblock puts it. */
export function hasExt4Magic(head: Uint8Array): boolean {
  const at = EXT4_SUPERBLOCK_OFFSET + 0x38;
  return head.length >= at + 2 && (head[at] | (head[at + 1] << 8)) === EXT4_MAGIC;
}

/**
 * Parse the 1024-byte superblock `sb` (read from volume offset 1024) of a volume of `volumeSize`
 * bytes named `volume`. Throws Ext4FormatError when it is not a well-formed ext2/3/4 superblock.
 */
export function parseExt4Superblock(sb: Buffer, volume: string, volumeSize: number): Ext4Superblock {
  const bad = (what: string, field = 0): never => {
    throw new Ext4FormatError(`superblock: ${what}`, { volume, offset: EXT4_SUPERBLOCK_OFFSET + field });
  };
  if (sb.length < EXT4_SUPERBLOCK_SIZE) bad(`volume too small for a superblock (${volumeSize} bytes)`);
  const magic = sb.readUInt16LE(0x38);
  if (magic !== EXT4_MAGIC) bad(`magic 0x${magic.toString(16)} is not 0xef53`, 0x38);
  const featureCompat = sb.readUInt32LE(0x5c);
  const featureIncompat = sb.readUInt32LE(0x60);
  const featureRoCompat = sb.readUInt32LE(0x64);
  let checksummed = false;
  if (featureRoCompat & RO_COMPAT_METADATA_CSUM) {
    if (sb[0x175] !== 1) bad(`metadata_csum with checksum type ${sb[0x175]} (only 1, crc32c, exists)`, 0x175);
    const stored = sb.readUInt32LE(0x3fc);
    const computed = ext4Crc32c(sb.subarray(0, 0x3fc));
    if (stored !== computed) bad(`checksum 0x${stored.toString(16)} does not match the superblock (0x${computed.toString(16)})`, 0x3fc);
    checksummed = true;
  }
  const logBlockSize = sb.readUInt32LE(0x18);
  if (logBlockSize > MAX_LOG_BLOCK_SIZE) bad(`s_log_block_size ${logBlockSize} gives a block size above 64 KiB`, 0x18);
  const blockSize = 1024 * 2 ** logBlockSize;
  const hi = featureIncompat & INCOMPAT_64BIT ? sb.readUInt32LE(0x150) : 0;
  const blocksCount = hi * 2 ** 32 + sb.readUInt32LE(0x04);
  if (blocksCount === 0) bad('block count is 0', 0x04);
  if (blocksCount > Number.MAX_SAFE_INTEGER / blockSize || blocksCount * blockSize > volumeSize) {
    bad(`${blocksCount} blocks of ${blockSize} bytes do not fit the ${volumeSize}-byte volume`, 0x04);
  }
  const firstDataBlock = sb.readUInt32LE(0x14);
  if (firstDataBlock >= blocksCount) bad(`first data block ${firstDataBlock} is past the last block ${blocksCount - 1}`, 0x14);
  const state = sb.readUInt16LE(0x3a);
  const nameBytes = sb.subarray(0x78, 0x88);
  const nul = nameBytes.indexOf(0);
  const volumeName = nameBytes.subarray(0, nul < 0 ? nameBytes.length : nul).toString('utf8');
  const ext23Ro = (featureRoCompat & ~EXT23_RO_COMPAT_SUPP) === 0;
  let kind: Ext4Kind = 'ext4';
  if (featureCompat & COMPAT_HAS_JOURNAL) {
    if (ext23Ro && (featureIncompat & ~EXT3_INCOMPAT_SUPP) === 0) kind = 'ext3';
  } else if (ext23Ro && (featureIncompat & ~EXT2_INCOMPAT_SUPP) === 0) {
    kind = 'ext2';
  }
  return {
    kind,
    uuid: `${hex(sb, 0x68, 0x6c)}-${hex(sb, 0x6c, 0x6e)}-${hex(sb, 0x6e, 0x70)}-${hex(sb, 0x70, 0x72)}-${hex(sb, 0x72, 0x78)}`,
    serial: sb.readBigUInt64LE(0x68),
    blockSize,
    blocksCount,
    firstDataBlock,
    volumeName,
    state,
    clean: (state & 1) !== 0,
    errors: (state & 2) !== 0,
    revLevel: sb.readUInt32LE(0x4c),
    featureCompat,
    featureIncompat,
    featureRoCompat,
    features: [...featureNames(featureCompat, COMPAT, 'C'), ...featureNames(featureIncompat, INCOMPAT, 'I'), ...featureNames(featureRoCompat, RO_COMPAT, 'R')],
    checksummed,
  };
}

/** Read and parse the superblock of the ext2/3/4 volume `volume` (Ext4FormatError when there is none). */
export async function readExt4Superblock(volume: BlockSource): Promise<Ext4Superblock> {
  const sb = Buffer.alloc(EXT4_SUPERBLOCK_SIZE);
  const n = volume.size > EXT4_SUPERBLOCK_OFFSET ? await volume.read(sb, EXT4_SUPERBLOCK_OFFSET) : 0;
  return parseExt4Superblock(sb.subarray(0, n), volume.name, volume.size);
}
