/**
 * Changed and written blocks between two points in time of a disk.
 *
 * - `changed`: blocks whose guest-visible content differs between base and top.
 * - `written`: blocks the top allocated above the base (data, zero or compressed clusters in
 *   the layers between them; for an internal snapshot, clusters whose mapping changed).
 *
 * Only bytes that allocation says can differ are read: when the base is a backing file of the
 * top, the layers above it; for a snapshot, clusters whose L2 entries differ; for unrelated
 * images, everything either chain maps to data. Memory is bounded by two chunks and the runs.
 */
import { readChain, RunCursor, type OpenedImage, type Qcow2Layer } from '../qcow2/index.ts';
import { BlockRunBuilder, type BlockRun } from './block-runs.ts';
import { HarnessError } from '../util/index.ts';

export interface DiffOptions {
  /** Block size in bytes; block i covers [rangeOffset + i*g, rangeOffset + (i+1)*g). */
  granularity: number;
  /** Byte range of the disk to compare. @default the whole top disk */
  range?: { offset: number; length: number } | undefined;
  /** Bytes read per side per step. @default 4 MiB */
  chunkBytes?: number | undefined;
}

export type BaseRelation = { kind: 'same' } | { kind: 'backing'; depth: number } | { kind: 'snapshot' } | { kind: 'unrelated' };

export interface DiffResult {
  granularity: number;
  range: { offset: number; length: number };
  relation: BaseRelation['kind'];
  changed: BlockRun[];
  written: BlockRun[];
  changedBlocks: number;
  writtenBlocks: number;
  /** Bytes read from each side (for benchmarks and the "read only what can differ" tests). */
  bytesCompared: number;
}

/** Thrown for option values a caller got wrong (granularity, range). */
export class DiffOptionError extends HarnessError {
  override name = 'DiffOptionError';
}

interface Segment {
  start: number;
  end: number;
  compare: boolean;
  written: boolean;
}

/** How `base` relates to `top`: the same view, a backing file in its chain, a snapshot, or neither. */
export function relate(base: OpenedImage, top: OpenedImage): BaseRelation {
  const b = base.top;
  if (b.identity === top.top.identity) return { kind: 'same' };
  for (let d = 1; d < top.layers.length; d++) {
    if (top.layers[d].identity === b.identity) return { kind: 'backing', depth: d };
  }
  if (b.format === 'qcow2' && top.top.format === 'qcow2') {
    const bq = b as Qcow2Layer;
    const tq = top.top as Qcow2Layer;
    if (bq.image.src.identity === tq.image.src.identity && bq.backing?.identity === tq.backing?.identity) return { kind: 'snapshot' };
  }
  return { kind: 'unrelated' };
}

/** Candidates when the base is layer `depth` of the top's chain. */
async function* backingSegments(top: OpenedImage, depth: number, start: number, end: number): AsyncGenerator<Segment> {
  const cursors = top.layers.slice(0, depth).map((l) => new RunCursor(l));
  try {
    let pos = start;
    while (pos < end) {
      let segEnd = end;
      let seg: Segment | null = null;
      for (let k = 0; ; k++) {
        const run = await cursors[k].at(pos);
        segEnd = Math.min(segEnd, run.end);
        if (run.kind !== 'unallocated') {
          seg = { start: pos, end: segEnd, compare: true, written: true };
          break;
        }
        const next = k + 1;
        if (next === depth) break; // the base answers: identical
        const nb = top.layers[next];
        if (pos >= nb.virtualSize) {
          // A layer between them is shorter than the base: the top reads zeros here.
          seg = { start: pos, end: segEnd, compare: true, written: false };
          break;
        }
        segEnd = Math.min(segEnd, nb.virtualSize);
      }
      if (seg) yield seg;
      pos = segEnd;
    }
  } finally {
    for (const c of cursors) await c.close();
  }
}

/** Candidates when the base is an internal snapshot of the top's image: L2 entries that differ. */
async function* snapshotSegments(base: Qcow2Layer, top: Qcow2Layer, start: number, end: number): AsyncGenerator<Segment> {
  const img = top.image;
  const cs = img.header.clusterSize;
  const perL2 = img.l2Entries * cs;
  const eb = img.l2EntryBytes;
  const [bl1, tl1] = await Promise.all([base.l1(), top.l1()]);
  const l1Word = (l1: Buffer, size: number, i: number): [number, number] => (i < size ? [l1.readUInt32BE(i * 8) & 0x7fffffff, l1.readUInt32BE(i * 8 + 4)] : [0, 0]);
  const snapEnd = Math.min(end, base.virtualSize);
  let pos = start;
  while (pos < snapEnd) {
    const l1i = Math.floor(pos / perL2);
    const tableEnd = Math.min(snapEnd, (l1i + 1) * perL2);
    const [bh, bl] = l1Word(bl1, base.l1Size, l1i);
    const [th, tl] = l1Word(tl1, top.l1Size, l1i);
    if (bh === th && bl === tl) {
      pos = tableEnd; // the same L2 table: the same mapping
      continue;
    }
    const [b2, t2] = await Promise.all([base.l2At(bl1, l1i), top.l2At(tl1, l1i)]);
    while (pos < tableEnd) {
      const cluster = Math.floor(pos / cs);
      const at = (cluster - l1i * img.l2Entries) * eb;
      const cEnd = Math.min(tableEnd, (cluster + 1) * cs);
      let same = true;
      // Bit 63 (COPIED) is only accurate in the active table: ignore it.
      for (let w = 0; w < eb; w += 4) {
        const mask = w === 0 ? 0x7fffffff : 0xffffffff;
        const bv = b2 ? b2.readUInt32BE(at + w) & mask : 0;
        const tv = t2 ? t2.readUInt32BE(at + w) & mask : 0;
        if (bv !== tv) {
          same = false;
          break;
        }
      }
      if (!same) yield { start: pos, end: cEnd, compare: true, written: true };
      pos = cEnd;
    }
  }
  // Past the snapshot's size the base reads zeros; the top may hold anything.
  if (snapEnd < end) yield { start: Math.max(start, snapEnd), end, compare: true, written: false };
}

interface ChainClass {
  end: number;
  /** Some layer maps these bytes to stored data (else they read as zero). */
  data: boolean;
  /** Some layer allocated these bytes (data, zero or compressed). */
  allocated: boolean;
}

/** What a whole chain holds at `pos`: stored data or certain zeros, and whether allocated. */
async function classify(cursors: RunCursor[], pos: number, end: number): Promise<ChainClass> {
  let segEnd = end;
  for (let k = 0; k < cursors.length; k++) {
    const layer = cursors[k].layer;
    if (pos >= layer.virtualSize) return { end: segEnd, data: false, allocated: false };
    const run = await cursors[k].at(pos);
    segEnd = Math.min(segEnd, run.end);
    if (run.kind === 'zero') return { end: segEnd, data: false, allocated: true };
    if (run.kind !== 'unallocated') return { end: segEnd, data: true, allocated: true };
    const b = layer.backing;
    if (b && pos < b.virtualSize) segEnd = Math.min(segEnd, b.virtualSize);
  }
  return { end: segEnd, data: false, allocated: false };
}

/** Candidates for unrelated images: wherever either chain maps data. */
async function* unrelatedSegments(base: OpenedImage, top: OpenedImage, start: number, end: number): AsyncGenerator<Segment> {
  const bc = base.layers.map((l) => new RunCursor(l));
  const tc = top.layers.map((l) => new RunCursor(l));
  try {
    let pos = start;
    while (pos < end) {
      const t = await classify(tc, pos, end);
      const b = pos < base.top.virtualSize ? await classify(bc, pos, Math.min(end, base.top.virtualSize)) : { end, data: false, allocated: false };
      const segEnd = Math.min(t.end, b.end);
      if (t.data || b.data || t.allocated) yield { start: pos, end: segEnd, compare: t.data || b.data, written: t.allocated };
      pos = segEnd;
    }
  } finally {
    for (const c of [...bc, ...tc]) await c.close();
  }
}

export async function diffImages(base: OpenedImage, top: OpenedImage, options: DiffOptions): Promise<DiffResult> {
  const g = options.granularity;
  if (!Number.isSafeInteger(g) || g <= 0) throw new DiffOptionError(`Expected \`granularity\` to be a positive integer, got \`${g}\``);
  const size = top.top.virtualSize;
  const range = options.range ?? { offset: 0, length: size };
  if (!Number.isSafeInteger(range.offset) || range.offset < 0 || !Number.isSafeInteger(range.length) || range.length < 0) {
    throw new DiffOptionError(`Expected \`range\` to be non-negative integers, got ${range.offset}:${range.length}`);
  }
  if (range.offset + range.length > size) {
    throw new DiffOptionError(`range ${range.offset}:${range.length} runs past the end of the top disk (${size} bytes)`);
  }
  const chunk = Math.max(g, options.chunkBytes ?? 4 * 1024 * 1024);
  const rs = range.offset;
  const re = range.offset + range.length;
  const relation = relate(base, top);
  let segments: AsyncGenerator<Segment>;
  switch (relation.kind) {
    case 'same':
      segments = (async function* () {})();
      break;
    case 'backing':
      segments = backingSegments(top, relation.depth, rs, re);
      break;
    case 'snapshot':
      segments = snapshotSegments(base.top as Qcow2Layer, top.top as Qcow2Layer, rs, re);
      break;
    case 'unrelated':
      segments = unrelatedSegments(base, top, rs, re);
      break;
  }
  const changed = new BlockRunBuilder();
  const written = new BlockRunBuilder();
  const tbuf = Buffer.alloc(chunk);
  const bbuf = Buffer.alloc(chunk);
  let bytesCompared = 0;
  const blockOf = (x: number) => Math.floor((x - rs) / g);
  for await (const seg of segments) {
    if (seg.written) written.add(blockOf(seg.start), blockOf(seg.end - 1) - blockOf(seg.start) + 1);
    if (!seg.compare) continue;
    for (let a = seg.start; a < seg.end; ) {
      const b = Math.min(seg.end, a + chunk);
      const n = b - a;
      const t = tbuf.subarray(0, n);
      const s = bbuf.subarray(0, n);
      await Promise.all([readChain(top.top, a, t), readChain(base.top, a, s)]);
      bytesCompared += n;
      if (!t.equals(s)) {
        for (let j = blockOf(a); j <= blockOf(b - 1); j++) {
          const from = Math.max(a, rs + j * g) - a;
          const to = Math.min(b, rs + (j + 1) * g) - a;
          if (t.compare(s, from, to, from, to) !== 0) changed.add(j, 1);
        }
      }
      a = b;
    }
  }
  return {
    granularity: g,
    range,
    relation: relation.kind,
    changed: changed.runs,
    written: written.runs,
    changedBlocks: changed.total,
    writtenBlocks: written.total,
    bytesCompared,
  };
}
