/**
 * Read-only cursor over a persistent-data array (drivers/md/persistent-data/dm-array.c; userspace
 * view in thin-provisioning-tools persistent-data/data-structures/array.h and array_block.h).
 *
 * An array of N fixed-size values is a fully populated B-tree whose key i maps to the block
 * number (le64) of array block i; array block i holds entries [i × max, (i + 1) × max), every
 * block full except the last. An array block:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | csum: `dm_bm_checksum` of bytes [4, 4096) with salt `CSUM_XOR` (595846735) |
 * | 4 | 4 | max_entries = ⌊(4096 − 24) / value_size⌋ (`calc_max_entries`) |
 * | 8 | 4 | nr_entries |
 * | 12 | 4 | value_size |
 * | 16 | 8 | blocknr: the block it lives in |
 * | 24 | value_size × max_entries | values, little-endian |
 */
import { MetadataCorruptError } from './errors.ts';
import { blockChecksum, SALT } from './checksum.ts';
import { METADATA_BLOCK_SIZE, type MetadataBlockReader } from './block-reader.ts';
import { btreeLeaves, type BtreeNode } from './btree.ts';

export const ARRAY_BLOCK_HEADER_SIZE = 24;

/** Values an array block holds (`calc_max_entries` in dm-array.c). */
export function arrayMaxEntries(valueSize: number): number {
  return Math.floor((METADATA_BLOCK_SIZE - ARRAY_BLOCK_HEADER_SIZE) / valueSize);
}

/** One validated array block. */
export interface ArrayBlock {
  /** Array block index (its B-tree key). */
  index: number;
  /** Index of its first entry in the whole array. */
  first: number;
  /** Entries it holds. */
  count: number;
  /** Metadata block number. */
  location: number;
  /** The whole 4 KiB block; entry j of this block is at byte `ARRAY_BLOCK_HEADER_SIZE + j × valueSize`. */
  view: DataView;
}

export interface ArrayCursorOptions {
  /** Shown in errors ("era array", "writeset for era 7"). */
  structure: string;
  /** Bytes per value: 4 for the era array, 8 for bitset words. */
  valueSize: number;
  /** Entries the owner says the array holds; the array must hold exactly these. */
  nrEntries: number;
  /**
   * Array blocks fetched per batch (memory: 4 KiB each).
   * @default 64
   */
  batchBlocks?: number;
}

/** Yields an array's blocks in index order, each validated, reading a few at a time. */
export class ArrayCursor {
  readonly #reader: MetadataBlockReader;
  readonly #opts: ArrayCursorOptions;
  readonly #maxEntries: number;
  readonly #expectedBlocks: number;
  readonly #batch: number;
  readonly #leaves: AsyncGenerator<BtreeNode>;
  #leaf: BtreeNode | null = null;
  #leafPos = 0;
  #queue: ArrayBlock[] = [];
  #queuePos = 0;
  #nextIndex = 0;
  #done = false;
  /** One batch of array blocks, reused: a block returned by `next()` is valid until the next call. */
  #buffer: Uint8Array | null = null;

  constructor(reader: MetadataBlockReader, root: number, opts: ArrayCursorOptions) {
    this.#reader = reader;
    this.#opts = opts;
    this.#maxEntries = arrayMaxEntries(opts.valueSize);
    this.#expectedBlocks = Math.ceil(opts.nrEntries / this.#maxEntries);
    this.#batch = Math.max(1, opts.batchBlocks ?? 64);
    this.#leaves = btreeLeaves(reader, root, { structure: opts.structure, valueSize: 8, maxKey: 0xffff_ffff });
  }

  /** Values per full block. */
  get maxEntries(): number {
    return this.#maxEntries;
  }

  /**
   * The next block, or null after the last one (having checked the array ended where it should).
   * The block's bytes are only valid until the following call.
   */
  async next(): Promise<ArrayBlock | null> {
    while (this.#queuePos >= this.#queue.length) {
      if (this.#done) {
        // Ended: let the batch buffer go (a caller may keep many finished cursors).
        this.#buffer = null;
        this.#queue = [];
        return null;
      }
      await this.#fillQueue();
    }
    return this.#queue[this.#queuePos++];
  }

  async #fillQueue(): Promise<void> {
    this.#queue = [];
    this.#queuePos = 0;
    while (!this.#leaf || this.#leafPos >= this.#leaf.nrEntries) {
      const r = await this.#leaves.next();
      if (r.done) {
        this.#done = true;
        if (this.#nextIndex !== this.#expectedBlocks) {
          throw new MetadataCorruptError(
            { structure: this.#opts.structure },
            `array ends after ${this.#nextIndex} blocks, but its ${this.#opts.nrEntries} entries need ${this.#expectedBlocks}`,
          );
        }
        return;
      }
      this.#leaf = r.value;
      this.#leafPos = 0;
    }
    const leaf = this.#leaf;
    const end = Math.min(leaf.nrEntries, this.#leafPos + this.#batch);
    const indexes: number[] = [];
    const locations: number[] = [];
    for (let i = this.#leafPos; i < end; i++) {
      const key = leaf.key(i);
      const site = { structure: this.#opts.structure, block: leaf.location };
      if (key !== this.#nextIndex) throw new MetadataCorruptError(site, `array block index ${key} where ${this.#nextIndex} was due (array is not fully populated)`);
      if (key >= this.#expectedBlocks) {
        throw new MetadataCorruptError(site, `array block index ${key} beyond the ${this.#expectedBlocks} blocks its ${this.#opts.nrEntries} entries need`);
      }
      this.#nextIndex++;
      indexes.push(key);
      locations.push(leaf.view.getUint32(leaf.valueOffset(i) + 4, true) * 0x1_0000_0000 + leaf.view.getUint32(leaf.valueOffset(i), true));
    }
    this.#leafPos = end;
    this.#buffer ??= new Uint8Array(this.#batch * METADATA_BLOCK_SIZE);
    const blocks = await this.#reader.readMany(locations, { structure: this.#opts.structure, block: leaf.location }, this.#buffer);
    for (let k = 0; k < blocks.length; k++) this.#queue.push(this.#validate(blocks[k], locations[k], indexes[k]));
  }

  #validate(bytes: Uint8Array, location: number, index: number): ArrayBlock {
    const s = { structure: this.#opts.structure, block: location };
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const blocknr = v.getUint32(16, true) + v.getUint32(20, true) * 0x1_0000_0000;
    if (blocknr !== location) throw new MetadataCorruptError(s, `array block records block number ${blocknr} (misdirected or stale write)`);
    const stored = v.getUint32(0, true);
    const computed = blockChecksum(bytes, SALT.arrayBlock);
    if (stored !== computed) throw new MetadataCorruptError(s, `array block checksum mismatch (stored 0x${stored.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')})`);
    const maxEntries = v.getUint32(4, true);
    const nrEntries = v.getUint32(8, true);
    const valueSize = v.getUint32(12, true);
    if (valueSize !== this.#opts.valueSize) throw new MetadataCorruptError(s, `array block value size ${valueSize}, expected ${this.#opts.valueSize}`);
    if (maxEntries !== this.#maxEntries) throw new MetadataCorruptError(s, `array block max_entries ${maxEntries}, expected ${this.#maxEntries}`);
    const want = index < this.#expectedBlocks - 1 ? this.#maxEntries : this.#opts.nrEntries - index * this.#maxEntries;
    if (nrEntries !== want) throw new MetadataCorruptError(s, `array block ${index} holds ${nrEntries} entries, expected ${want}`);
    return { index, first: index * this.#maxEntries, count: nrEntries, location, view: v };
  }
}
