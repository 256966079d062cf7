/** Persistent dirty bitmaps (qcow2.txt "Bitmaps"): the directory and the bitmap tables. */
import type { BlockSource } from './block-source.ts';
import { offsetBits9to55 } from './entries.ts';
import { Qcow2FormatError } from './errors.ts';
import { LIMITS, type Qcow2Header } from './header.ts';

export interface BitmapInfo {
  name: string;
  granularityBits: number;
  granularity: number;
  /** Raw flag word: bit 0 in_use, bit 1 auto, bit 2 extra_data_compatible. */
  flags: number;
  inUse: boolean;
  auto: boolean;
  type: number;
  tableOffset: number;
  tableSize: number;
  /** Byte offset of the directory entry in the file. */
  entryOffset: number;
}

const dec = new TextDecoder();
const BME_MIN_GRANULARITY_BITS = 9;
const BME_MAX_GRANULARITY_BITS = 31;
const BME_MAX_PHYS_SIZE = 0x20000000;

export async function readBitmapDirectory(src: BlockSource, h: Qcow2Header): Promise<BitmapInfo[]> {
  const ext = h.bitmaps;
  if (!ext) return [];
  const image = src.name;
  if (ext.directoryOffset + ext.directorySize > src.size) {
    throw new Qcow2FormatError('truncated: the bitmap directory lies past the end of the file', { image, offset: ext.directoryOffset });
  }
  if (ext.directoryOffset < h.clusterSize) {
    throw new Qcow2FormatError('the bitmap directory overlaps the header cluster', { image, offset: ext.directoryOffset });
  }
  const dir = Buffer.alloc(ext.directorySize);
  await src.read(dir, ext.directoryOffset);
  const out: BitmapInfo[] = [];
  let p = 0;
  const names = new Set<string>();
  for (let i = 0; i < ext.nbBitmaps; i++) {
    const at = ext.directoryOffset + p;
    if (p + 24 > dir.length) throw new Qcow2FormatError(`bitmap directory ends inside entry ${i}`, { image, offset: at });
    const tableOffsetBig = dir.readBigUInt64BE(p);
    const tableSize = dir.readUInt32BE(p + 8);
    const flags = dir.readUInt32BE(p + 12);
    const type = dir[p + 16];
    const granularityBits = dir[p + 17];
    const nameSize = dir.readUInt16BE(p + 18);
    const extraSize = dir.readUInt32BE(p + 20);
    const entryLen = Math.ceil((24 + extraSize + nameSize) / 8) * 8;
    if (extraSize > dir.length || p + 24 + extraSize + nameSize > dir.length) {
      throw new Qcow2FormatError(`bitmap directory entry ${i} runs past the directory`, { image, offset: at });
    }
    if (nameSize === 0 || nameSize > LIMITS.maxBitmapNameBytes) throw new Qcow2FormatError(`bitmap entry ${i} name size ${nameSize} is invalid`, { image, offset: at + 18 });
    if (type !== 1) throw new Qcow2FormatError(`bitmap entry ${i} has type ${type}, not 1 (dirty tracking)`, { image, offset: at + 16 });
    if (granularityBits < BME_MIN_GRANULARITY_BITS || granularityBits > BME_MAX_GRANULARITY_BITS) {
      throw new Qcow2FormatError(`bitmap entry ${i} granularity bits ${granularityBits} outside ${BME_MIN_GRANULARITY_BITS}..${BME_MAX_GRANULARITY_BITS}`, { image, offset: at + 17 });
    }
    if (flags & ~0x7) throw new Qcow2FormatError(`bitmap entry ${i} has reserved flags 0x${flags.toString(16)}`, { image, offset: at + 12 });
    if (tableSize * h.clusterSize > BME_MAX_PHYS_SIZE || tableSize > LIMITS.maxBitmapTableEntries) {
      throw new Qcow2FormatError(`bitmap entry ${i} table of ${tableSize} entries is too large`, { image, offset: at + 8 });
    }
    if (tableOffsetBig > BigInt(Number.MAX_SAFE_INTEGER) || Number(tableOffsetBig) % h.clusterSize !== 0) {
      throw new Qcow2FormatError(`bitmap entry ${i} table offset ${tableOffsetBig} is not cluster aligned`, { image, offset: at });
    }
    const granularity = 2 ** granularityBits;
    const bits = Math.ceil(h.virtualSize / granularity);
    const expected = Math.ceil(Math.ceil(bits / 8) / h.clusterSize);
    if (tableSize !== expected) {
      throw new Qcow2FormatError(`bitmap entry ${i} table has ${tableSize} entries, the disk size needs ${expected}`, { image, offset: at + 8 });
    }
    const name = dec.decode(dir.subarray(p + 24 + extraSize, p + 24 + extraSize + nameSize));
    if (names.has(name)) throw new Qcow2FormatError(`bitmap name ${JSON.stringify(name)} appears twice`, { image, offset: at });
    names.add(name);
    out.push({
      name,
      granularityBits,
      granularity,
      flags,
      inUse: (flags & 1) !== 0,
      auto: (flags & 2) !== 0,
      type,
      tableOffset: Number(tableOffsetBig),
      tableSize,
      entryOffset: at,
    });
    p += entryLen;
  }
  return out;
}

/**
 * Set bits of a bitmap as runs `[firstBit, count]`, read one bitmap cluster at a time
 * (memory bounded by one cluster plus the runs).
 */
export async function readBitmapRuns(src: BlockSource, h: Qcow2Header, bm: BitmapInfo): Promise<Array<[number, number]>> {
  const image = src.name;
  const totalBits = Math.ceil(h.virtualSize / bm.granularity);
  const tableBytes = bm.tableSize * 8;
  if (bm.tableOffset + tableBytes > src.size) {
    throw new Qcow2FormatError(`truncated: table of bitmap ${JSON.stringify(bm.name)} lies past the end of the file`, { image, offset: bm.tableOffset });
  }
  if (bm.tableSize > 0 && bm.tableOffset < h.clusterSize) {
    throw new Qcow2FormatError(`table of bitmap ${JSON.stringify(bm.name)} overlaps the header cluster`, { image, offset: bm.tableOffset });
  }
  const table = Buffer.alloc(tableBytes);
  await src.read(table, bm.tableOffset);
  const runs: Array<[number, number]> = [];
  let runStart = -1;
  const bitsPerCluster = h.clusterSize * 8;
  const cluster = Buffer.alloc(h.clusterSize);
  const flush = (end: number) => {
    if (runStart >= 0) {
      runs.push([runStart, end - runStart]);
      runStart = -1;
    }
  };
  for (let i = 0; i < bm.tableSize; i++) {
    const at = bm.tableOffset + i * 8;
    const hi = table.readUInt32BE(i * 8);
    const lo = table.readUInt32BE(i * 8 + 4);
    if ((hi & 0xff000000) !== 0 || (lo & 0x1fe) !== 0) {
      throw new Qcow2FormatError(`bitmap ${JSON.stringify(bm.name)} table entry ${i} has reserved bits set`, { image, offset: at });
    }
    const offset = offsetBits9to55(hi, lo);
    const firstBit = i * bitsPerCluster;
    const lastBit = Math.min(totalBits, firstBit + bitsPerCluster);
    if (offset === 0) {
      if (lo & 1) {
        if (runStart < 0) runStart = firstBit;
      } else {
        flush(firstBit);
      }
      continue;
    }
    if (lo & 1) throw new Qcow2FormatError(`bitmap ${JSON.stringify(bm.name)} table entry ${i} is allocated and "all ones"`, { image, offset: at });
    if (offset % h.clusterSize !== 0) throw new Qcow2FormatError(`bitmap ${JSON.stringify(bm.name)} data offset ${offset} is not cluster aligned`, { image, offset: at });
    if (offset < h.clusterSize) throw new Qcow2FormatError(`bitmap ${JSON.stringify(bm.name)} data points into the header`, { image, offset: at });
    const need = Math.ceil((lastBit - firstBit) / 8);
    if (offset + need > src.size) throw new Qcow2FormatError(`truncated: data of bitmap ${JSON.stringify(bm.name)} lies past the end of the file`, { image, offset: at });
    cluster.fill(0);
    await src.read(cluster.subarray(0, need), offset);
    for (let byte = 0; byte < need; byte++) {
      const v = cluster[byte];
      const base = firstBit + byte * 8;
      if (v === 0) {
        flush(base);
        continue;
      }
      if (v === 0xff && base + 8 <= lastBit) {
        if (runStart < 0) runStart = base;
        continue;
      }
      for (let b = 0; b < 8 && base + b < lastBit; b++) {
        if (v & (1 << b)) {
          if (runStart < 0) runStart = base + b;
        } else {
          flush(base + b);
        }
      }
    }
  }
  // An all-ones unallocated entry may cover bits past the disk end: clamp the last run.
  if (runStart >= 0) flush(totalBits);
  return runs.filter(([s, c]) => c > 0 && s < totalBits).map(([s, c]) => [s, Math.min(c, totalBits - s)] as [number, number]);
}
