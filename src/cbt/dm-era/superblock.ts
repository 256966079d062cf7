/**
 * The dm-era superblock (`struct superblock_disk` in drivers/md/dm-era-target.c; userspace view in
 * thin-provisioning-tools era/superblock.cc). Block 0 of the metadata device, little-endian:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | csum: `dm_bm_checksum` of bytes [4, 4096) with salt `SUPERBLOCK_CSUM_XOR` (146538381) |
 * | 4 | 4 | flags (the kernel writes 0) |
 * | 8 | 8 | blocknr: the block it lives in (0; a metadata snapshot's copy holds its own) |
 * | 16 | 16 | uuid (the kernel blanks it) |
 * | 32 | 8 | magic 2126579579 |
 * | 40 | 4 | version (1) |
 * | 44 | 128 | metadata space map root (`struct disk_sm_root`, 32 bytes used) |
 * | 172 | 4 | data_block_size in 512-byte sectors |
 * | 176 | 4 | metadata_block_size in sectors (8 = 4 KiB) |
 * | 180 | 4 | nr_blocks: data blocks tracked |
 * | 184 | 4 | current_era |
 * | 188 | 4 | current writeset nr_bits |
 * | 192 | 8 | current writeset bitset root (0 = none, `INVALID_WRITESET_ROOT`) |
 * | 200 | 8 | writeset tree root |
 * | 208 | 8 | era array root |
 * | 216 | 8 | metadata_snap: block of the superblock copy held for userspace (0 = none) |
 */
import { MetadataCorruptError, blockChecksum, parseSpaceMapRoot, readU64, SALT, type SpaceMapRoot } from '../persistent-data/index.ts';

export const ERA_SUPERBLOCK_MAGIC = 2126579579;
export const ERA_MIN_VERSION = 1;
export const ERA_MAX_VERSION = 1;
/** Sectors per metadata block dm-era writes (`DM_ERA_METADATA_BLOCK_SIZE >> SECTOR_SHIFT`). */
export const ERA_METADATA_BLOCK_SECTORS = 8;
/** dm-era refuses data block sizes that are not a positive multiple of this (`MIN_BLOCK_SIZE`). */
export const ERA_MIN_BLOCK_SECTORS = 8;
/** `valid_nr_blocks`: dm-era keeps nr_blocks below 2^31. */
export const ERA_MAX_NR_BLOCKS = 2 ** 31 - 1;

/** A writeset as dm-era stores it: a bitset of `nrBits` bits rooted at block `root`. */
export interface WritesetRef {
  nrBits: number;
  root: number;
}

export interface EraSuperblock {
  /** Block this superblock was read from (0, or the metadata snapshot's block). */
  location: number;
  csum: number;
  flags: number;
  /** The 16 uuid bytes as hex (all zeros as the kernel writes them). */
  uuid: string;
  version: number;
  spaceMap: SpaceMapRoot;
  dataBlockSectors: number;
  metadataBlockSectors: number;
  nrBlocks: number;
  currentEra: number;
  /** The committed writeset of `currentEra`, or null when none is open (root 0). */
  currentWriteset: WritesetRef | null;
  writesetTreeRoot: number;
  eraArrayRoot: number;
  /** Block of the metadata snapshot's superblock copy, or null (0 on disk). */
  metadataSnap: number | null;
}

/** True when the block is all zeroes: dm-era formats such a device instead of opening it. */
export function isAllZero(bytes: Uint8Array): boolean {
  if (bytes.byteOffset % 4 !== 0 || bytes.byteLength % 4 !== 0) return bytes.every((x) => x === 0);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/**
 * Parse and validate a superblock read from block `location`: the kernel's `sb_check` (magic,
 * block number, checksum, version; magic first, so a device that is not dm-era metadata says so),
 * then the fields the decoder relies on.
 * `structure` names it in errors ("superblock", "metadata snapshot superblock").
 */
export function parseEraSuperblock(bytes: Uint8Array, location: number, structure = 'superblock'): EraSuperblock {
  const site = { structure, block: location };
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blocknr = v.getUint32(8, true) + v.getUint32(12, true) * 0x1_0000_0000;
  const magicLo = v.getUint32(32, true);
  const magicHi = v.getUint32(36, true);
  if (magicLo !== ERA_SUPERBLOCK_MAGIC || magicHi !== 0) {
    throw new MetadataCorruptError(site, `bad magic 0x${magicHi.toString(16)}${magicLo.toString(16).padStart(8, '0')} (dm-era's is ${ERA_SUPERBLOCK_MAGIC}): not dm-era metadata`);
  }
  if (blocknr !== location) throw new MetadataCorruptError(site, `records block number ${blocknr} (misdirected or stale write)`);
  const csum = v.getUint32(0, true);
  const computed = blockChecksum(bytes, SALT.eraSuperblock);
  if (csum !== computed) throw new MetadataCorruptError(site, `checksum mismatch (stored 0x${csum.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')})`);
  const version = v.getUint32(40, true);
  if (version < ERA_MIN_VERSION || version > ERA_MAX_VERSION) {
    throw new MetadataCorruptError(site, `unsupported metadata version ${version} (this decoder reads ${ERA_MIN_VERSION}..${ERA_MAX_VERSION})`);
  }
  const flags = v.getUint32(4, true);
  // dm-era defines no flag and always writes 0; an unknown flag may change the meaning of the rest.
  if (flags !== 0) throw new MetadataCorruptError(site, `unsupported superblock flags 0x${flags.toString(16)}`);
  const metadataBlockSectors = v.getUint32(176, true);
  if (metadataBlockSectors !== ERA_METADATA_BLOCK_SECTORS) {
    throw new MetadataCorruptError(site, `unsupported metadata block size of ${metadataBlockSectors} sectors (dm-era uses ${ERA_METADATA_BLOCK_SECTORS})`);
  }
  const dataBlockSectors = v.getUint32(172, true);
  if (dataBlockSectors === 0 || dataBlockSectors % ERA_MIN_BLOCK_SECTORS !== 0) {
    throw new MetadataCorruptError(site, `data block size of ${dataBlockSectors} sectors is not a positive multiple of ${ERA_MIN_BLOCK_SECTORS}`);
  }
  const nrBlocks = v.getUint32(180, true);
  if (nrBlocks > ERA_MAX_NR_BLOCKS) throw new MetadataCorruptError(site, `nr_blocks ${nrBlocks} exceeds dm-era's limit of ${ERA_MAX_NR_BLOCKS}`);
  const max = Number.MAX_SAFE_INTEGER;
  const currentRoot = readU64(v, 192, max, site, 'current writeset root');
  const snap = readU64(v, 216, max, site, 'metadata_snap');
  const uuid = Buffer.from(bytes.subarray(16, 32)).toString('hex');
  return {
    location,
    csum,
    flags,
    uuid,
    version,
    spaceMap: parseSpaceMapRoot(v, 44, site),
    dataBlockSectors,
    metadataBlockSectors,
    nrBlocks,
    currentEra: v.getUint32(184, true),
    currentWriteset: currentRoot === 0 ? null : { nrBits: v.getUint32(188, true), root: currentRoot },
    writesetTreeRoot: readU64(v, 200, max, site, 'writeset tree root'),
    eraArrayRoot: readU64(v, 208, max, site, 'era array root'),
    metadataSnap: snap === 0 ? null : snap,
  };
}
