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
   */
  async readMany(blocks: readonly number[], site: CorruptionSite): Promise<Uint8Array[]> {
    for (const b of blocks) this.check(b, site);
    const order = blocks.map((b, i) => [b, i] as const).sort((x, y) => x[0] - y[0]);
    const out = new Array<Uint8Array>(blocks.length);
    const jobs: Array<Promise<void>> = [];
    let i = 0;
    while (i < order.length) {
      // A run of distinct consecutive block numbers; duplicates share the first copy.
      let j = i + 1;
      let distinct = 1;
      while (j < order.length && distinct < MAX_COALESCED_BLOCKS) {
        const step = order[j][0] - order[j - 1][0];
        if (step > 1) break;
        if (step === 1) distinct++;
        j++;
      }
      const first = order[i][0];
      const run = order.slice(i, j);
      const buf = new Uint8Array(distinct * METADATA_BLOCK_SIZE);
      jobs.push(
        this.#fill(buf, first, distinct).then(() => {
          for (const [b, idx] of run) out[idx] = buf.subarray((b - first) * METADATA_BLOCK_SIZE, (b - first + 1) * METADATA_BLOCK_SIZE);
        }),
      );
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
