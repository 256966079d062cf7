/**
 * Streams that OR one dm-era structure into a chunk bitmap: a writeset (a bitset of blocks written
 * in one era) or the era array (the last era each block was written in, for digested eras). The
 * decoder walks the volume in chunks and asks every claiming source to fill each chunk in turn, so
 * memory is a chunk bitmap plus one batch of array blocks per source, whatever the volume size.
 */
import { ARRAY_BLOCK_HEADER_SIZE, ArrayCursor, bitsetCursor, bitsetWords, MetadataCorruptError, type ArrayBlock, type MetadataBlockReader } from '../persistent-data/index.ts';

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** `count` little-endian u32s at `offset` of a block: a view on little-endian hosts, else a copy. */
function u32s(view: DataView, offset: number, count: number): Uint32Array {
  if (LITTLE_ENDIAN && (view.byteOffset + offset) % 4 === 0) return new Uint32Array(view.buffer, view.byteOffset + offset, count);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getUint32(offset + 4 * i, true);
  return out;
}

export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** Keep only the bits of the 64-bit word starting at block `base` that lie below `limit`. */
function maskWord(base: number, limit: number, lo: number, hi: number): [number, number] {
  const n = limit - base;
  if (n >= 64) return [lo, hi];
  if (n <= 0) return [0, 0];
  if (n <= 32) return [n === 32 ? lo : lo & ((1 << n) - 1), 0];
  return [lo, hi & ((1 << (n - 32)) - 1)];
}

/** A writeset's facts for reports. */
export interface WritesetSummary {
  era: number;
  nrBits: number;
  /** Bitset root block. */
  root: number;
  /** Bits set among its `nrBits`. */
  setBits: number;
  /** Whether its blocks are in the claim (era ≥ since). */
  claimed: boolean;
}

export class WritesetSource {
  readonly summary: WritesetSummary;
  readonly #cursor: ArrayCursor;
  readonly #nrWords: number;
  /** Bits at or past this index are not claimed: past the bitset or past the volume. */
  readonly #claimLimit: number;
  readonly #structure: string;
  #block: ArrayBlock | null = null;
  #words: Uint32Array | null = null;
  /** Next word to consume. */
  #word = 0;

  constructor(reader: MetadataBlockReader, ws: { era: number; nrBits: number; root: number }, structure: string, claimed: boolean, nrBlocks: number, batchBlocks: number) {
    this.summary = { era: ws.era, nrBits: ws.nrBits, root: ws.root, setBits: 0, claimed };
    this.#nrWords = bitsetWords(ws.nrBits);
    // dm-era digests min(nr_bits, nr_blocks) bits of a writeset (metadata_digest_lookup_writeset):
    // bits past the volume (left by a shrink) name no block.
    this.#claimLimit = Math.min(ws.nrBits, nrBlocks);
    this.#structure = structure;
    this.#cursor = bitsetCursor(reader, ws.root, ws.nrBits, structure, batchBlocks);
  }

  /** Consume the words covering blocks [chunkStart, chunkEnd) (chunkStart a multiple of 64), OR-ing claimed bits into `bitmap`. */
  async fill(bitmap: Uint32Array | null, chunkStart: number, chunkEnd: number): Promise<void> {
    const firstWord = chunkStart / 64;
    const endWord = Math.min(Math.ceil(chunkEnd / 64), this.#nrWords);
    const nrBits = this.summary.nrBits;
    const claim = bitmap !== null && this.summary.claimed;
    let setBits = 0;
    while (this.#word < endWord) {
      let block = this.#block;
      if (!block || this.#word >= block.first + block.count) {
        block = await this.#cursor.next();
        if (!block) throw new MetadataCorruptError({ structure: this.#structure }, `bitset ended before word ${this.#word}`);
        this.#block = block;
        this.#words = u32s(block.view, ARRAY_BLOCK_HEADER_SIZE, block.count * 2);
      }
      const words = this.#words as Uint32Array;
      const upto = Math.min(endWord, block.first + block.count);
      for (let w = this.#word; w < upto; w++) {
        const j = (w - block.first) * 2;
        let lo = words[j];
        let hi = words[j + 1];
        if (lo === 0 && hi === 0) continue;
        const base = w * 64;
        if (base + 64 > nrBits) [lo, hi] = maskWord(base, nrBits, lo, hi);
        setBits += popcount32(lo) + popcount32(hi);
        if (claim) {
          if (base + 64 > this.#claimLimit) [lo, hi] = maskWord(base, this.#claimLimit, lo, hi);
          const k = (w - firstWord) * 2;
          (bitmap as Uint32Array)[k] |= lo;
          (bitmap as Uint32Array)[k + 1] |= hi;
        }
      }
      this.#word = upto;
    }
    this.summary.setBits += setBits;
  }

  /** Read (and so validate and count) the rest of the bitset, and check it ends where it should. */
  async finish(): Promise<void> {
    await this.fill(null, this.#word * 64, this.#nrWords * 64);
    this.#block = null;
    this.#words = null;
    if ((await this.#cursor.next()) !== null) throw new MetadataCorruptError({ structure: this.#structure }, `bitset holds more than ${this.#nrWords} words`);
  }
}

/** The era array's facts for reports. */
export interface EraArraySummary {
  root: number;
  /** Entries: one per data block. */
  entries: number;
  /** Entries holding a non-zero era. */
  nonZero: number;
  maxEra: number;
  /** Entries with era ≥ since. */
  claimed: number;
}

export class EraArraySource {
  readonly summary: EraArraySummary;
  readonly #cursor: ArrayCursor;
  readonly #since: number;
  readonly #currentEra: number;
  readonly #structure: string;
  #block: ArrayBlock | null = null;
  #eras: Uint32Array | null = null;
  /** Next entry to consume. */
  #pos = 0;

  constructor(reader: MetadataBlockReader, root: number, nrBlocks: number, since: number, currentEra: number, batchBlocks: number, structure = 'era array') {
    this.summary = { root, entries: nrBlocks, nonZero: 0, maxEra: 0, claimed: 0 };
    this.#since = since;
    this.#currentEra = currentEra;
    this.#structure = structure;
    this.#cursor = new ArrayCursor(reader, root, { structure, valueSize: 4, nrEntries: nrBlocks, batchBlocks });
  }

  /** Consume entries [chunkStart, chunkEnd), setting the bits of blocks whose era is ≥ since. */
  async fill(bitmap: Uint32Array, chunkStart: number, chunkEnd: number): Promise<void> {
    const since = this.#since;
    const current = this.#currentEra;
    let { nonZero, maxEra, claimed } = this.summary;
    while (this.#pos < chunkEnd) {
      let block = this.#block;
      if (!block || this.#pos >= block.first + block.count) {
        block = await this.#cursor.next();
        if (!block) throw new MetadataCorruptError({ structure: this.#structure }, `ended before entry ${this.#pos}`);
        this.#block = block;
        this.#eras = u32s(block.view, ARRAY_BLOCK_HEADER_SIZE, block.count);
      }
      const eras = this.#eras as Uint32Array;
      const upto = Math.min(chunkEnd, block.first + block.count);
      for (let i = this.#pos; i < upto; i++) {
        const era = eras[i - block.first];
        if (era === 0) {
          if (since === 0) {
            const rel = i - chunkStart;
            bitmap[rel >>> 5] |= 1 << (rel & 31);
            claimed++;
          }
          continue;
        }
        nonZero++;
        if (era > maxEra) {
          if (era > current) {
            // thin-provisioning-tools era_check reports this as "era too great" damage.
            throw new MetadataCorruptError({ structure: this.#structure, block: block.location }, `entry for data block ${i} holds era ${era}, after the current era ${current}`);
          }
          maxEra = era;
        }
        if (era >= since) {
          const rel = i - chunkStart;
          bitmap[rel >>> 5] |= 1 << (rel & 31);
          claimed++;
        }
      }
      this.#pos = upto;
    }
    Object.assign(this.summary, { nonZero, maxEra, claimed });
  }

  /** Check the array ends after its last entry. */
  async finish(): Promise<void> {
    this.#block = null;
    this.#eras = null;
    if ((await this.#cursor.next()) !== null) throw new MetadataCorruptError({ structure: this.#structure }, `holds more than ${this.summary.entries} entries`);
  }
}
