/**
 * Fixed-size metadata blocks read from a `BlockSource` (the dm-era metadata device). Every block
 * number read from disk is checked against the device before it is read, so a corrupt pointer is a
 * `MetadataCorruptError` naming the structure, never a read past the end or a huge allocation.
 */
import type { BlockSource } from '../../qcow2/index.ts';
import { MetadataCorruptError, MetadataIoError, type CorruptionSite } from './errors.ts';

/** persistent-data metadata block size used by dm-era (`DM_ERA_METADATA_BLOCK_SIZE`). */
export const METADATA_BLOCK_SIZE = 4096;

/** Largest number of neighbouring blocks fetched with one `read()` call. */
const MAX_COALESCED_BLOCKS = 64;

export class MetadataBlockReader {
  readonly src: BlockSource;
  /** Whole 4 KiB blocks the device holds. */
  readonly deviceBlocks: number;
  /** Blocks a pointer may name: the device, narrowed by the space map's size once known. */
  #limit: number;
  #limitWhy = '';
  readonly #signal: AbortSignal | undefined;
  /** Blocks read so far (for benchmarks and reports). */
  blocksRead = 0;

  constructor(src: BlockSource, signal?: AbortSignal) {
    this.src = src;
    this.deviceBlocks = Math.floor(src.size / METADATA_BLOCK_SIZE);
    this.#limit = this.deviceBlocks;
    this.#signal = signal;
  }

  get limit(): number {
    return this.#limit;
  }

  /** Refuse pointers at or past `blocks` (e.g. the space map's `nr_blocks`), explaining with `why`. */
  narrowLimit(blocks: number, why: string): void {
    if (blocks < this.#limit) {
      this.#limit = blocks;
      this.#limitWhy = why;
    }
  }

  /** Throws `MetadataCorruptError` unless `block` is a block number a pointer may hold. */
  check(block: number, site: CorruptionSite): void {
    if (!Number.isSafeInteger(block) || block < 0) throw new MetadataCorruptError(site, `invalid block pointer ${block}`);
    if (block >= this.deviceBlocks) {
      throw new MetadataCorruptError(site, `points at block ${block} but the metadata device holds only ${this.deviceBlocks} blocks of ${METADATA_BLOCK_SIZE} bytes (truncated?)`);
    }
    if (block >= this.#limit) throw new MetadataCorruptError(site, `points at block ${block}, beyond the ${this.#limit} blocks of ${this.#limitWhy}`);
  }

  /** One block, in its own 4 KiB buffer (so 32- and 64-bit views of it are aligned). */
  async read(block: number, site: CorruptionSite): Promise<Uint8Array> {
    this.check(block, site);
    const buf = new Uint8Array(METADATA_BLOCK_SIZE);
    await this.#fill(buf, block);
    return buf;
  }

  /**
   * Several blocks, returned in the order asked. Neighbouring block numbers are fetched with one
   * read (persistent-data allocates array blocks mostly in order), independent runs in parallel.
   * With `into` (at least `blocks.length` × 4 KiB), the blocks are views into it, so a caller that
   * reads batch after batch reuses one buffer instead of making garbage.
   */
  async readMany(blocks: readonly number[], site: CorruptionSite, into?: Uint8Array): Promise<Uint8Array[]> {
    for (const b of blocks) this.check(b, site);
    const dest = into ?? new Uint8Array(blocks.length * METADATA_BLOCK_SIZE);
    if (dest.length < blocks.length * METADATA_BLOCK_SIZE) throw new RangeError(`readMany: buffer of ${dest.length} bytes for ${blocks.length} blocks`);
    // Slots in block-number order: a run of consecutive block numbers lands in consecutive slots.
    const order = blocks.map((b, i) => [b, i] as const).sort((x, y) => x[0] - y[0]);
    const out = new Array<Uint8Array>(blocks.length);
    const jobs: Array<Promise<void>> = [];
    let slot = 0;
    let i = 0;
    while (i < order.length) {
      const first = order[i][0];
      const firstSlot = slot;
      let j = i;
      let distinct = 0;
      // Take entries while they continue first, first + 1, … (repeats share a slot).
      while (j < order.length) {
        const b = order[j][0];
        if (j === i || b !== order[j - 1][0]) {
          if (b !== first + distinct || distinct === MAX_COALESCED_BLOCKS) break;
          distinct++;
        }
        const at = (firstSlot + b - first) * METADATA_BLOCK_SIZE;
        out[order[j][1]] = dest.subarray(at, at + METADATA_BLOCK_SIZE);
        j++;
      }
      slot += distinct;
      jobs.push(this.#fill(dest.subarray(firstSlot * METADATA_BLOCK_SIZE, slot * METADATA_BLOCK_SIZE), first, distinct));
      i = j;
    }
    await Promise.all(jobs);
    return out;
  }

  async #fill(buf: Uint8Array, block: number, count = 1): Promise<void> {
    this.#signal?.throwIfAborted();
    const position = block * METADATA_BLOCK_SIZE;
    let n: number;
    try {
      n = await this.src.read(buf, position);
    } catch (error) {
      throw new MetadataIoError(this.src.name, position, buf.length, error);
    }
    if (n !== buf.length) throw new MetadataIoError(this.src.name, position, buf.length, new Error(`short read: ${n} bytes`));
    this.blocksRead += count;
  }
}
