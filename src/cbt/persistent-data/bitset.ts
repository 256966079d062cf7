/**
 * A persistent-data bitset (drivers/md/persistent-data/dm-bitset.c): an array of le64 words,
 * bit i of the set is bit (i mod 64) of word ⌊i / 64⌋ (`set_bit`/`test_bit` on the little-endian
 * word). A bitset of n bits holds ⌈n / 64⌉ words; bits past n in the last word carry no meaning.
 */
import type { MetadataBlockReader } from './block-reader.ts';
import { ArrayCursor } from './array.ts';

export const BITS_PER_WORD = 64;

/** Words a bitset of `nrBits` bits holds. */
export function bitsetWords(nrBits: number): number {
  return Math.ceil(nrBits / BITS_PER_WORD);
}

/** Cursor over a bitset's word blocks (entry j of a block is a le64 word at byte 24 + 8j). */
export function bitsetCursor(reader: MetadataBlockReader, root: number, nrBits: number, structure: string, batchBlocks?: number): ArrayCursor {
  return new ArrayCursor(reader, root, { structure, valueSize: 8, nrEntries: bitsetWords(nrBits), batchBlocks });
}
