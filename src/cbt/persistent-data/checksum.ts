/**
 * Block checksums of the Linux persistent-data library: `dm_bm_checksum(data, len, xor)` returns
 * `crc32c(~0, data, len) ^ xor` (drivers/md/persistent-data/dm-block-manager.c), where the kernel's
 * `crc32c()` is the raw Castagnoli register: initial value ~0 and no final inversion. Every block
 * type checksums bytes [4, block size) (all but the csum field itself) and mixes in its own salt.
 *
 * The CRC-32C itself is the project's slicing-by-8 one (src/cbt/crc32c.ts): the maintained
 * pure-JS npm CRC-32C (`@aws-crypto/crc32c`) runs byte at a time, ~10x slower, and a 2 TiB volume's
 * metadata is some 55 000 blocks to checksum per decode; the native ones need install scripts.
 */
import { crc32c } from '../crc32c.ts';

/** Salts (`*_CSUM_XOR`) of the block types dm-era reads. */
export const SALT = {
  /** drivers/md/dm-era-target.c `SUPERBLOCK_CSUM_XOR`. */
  eraSuperblock: 146538381,
  /** drivers/md/persistent-data/dm-btree-spine.c `BTREE_CSUM_XOR`. */
  btreeNode: 121107,
  /** drivers/md/persistent-data/dm-array.c `CSUM_XOR`. */
  arrayBlock: 595846735,
} as const;

/** The raw CRC-32C register after `bytes` from ~0 (the kernel's `crc32c(~0, …)`): no final inversion. */
export function crc32cRaw(bytes: Uint8Array): number {
  return ~crc32c(bytes) >>> 0;
}

/** `dm_bm_checksum` over bytes [4, end) of a metadata block, as stored in its first 4 bytes. */
export function blockChecksum(block: Uint8Array, salt: number): number {
  return (crc32cRaw(block.subarray(4)) ^ salt) >>> 0;
}

/** Recompute and store a block's checksum (test fixtures and fuzzers build blocks with it). */
export function sealBlock(block: Uint8Array, salt: number): void {
  new DataView(block.buffer, block.byteOffset, block.byteLength).setUint32(0, blockChecksum(block, salt), true);
}
