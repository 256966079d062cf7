/**
 * Mutation fuzzer for the qcow2 reader. Starts from real images made by qemu-img/qemu-io,
 * mutates bytes where the structures live (header, extensions, L1, L2, refcount, snapshot and
 * bitmap tables) and requires every case to end in a result or an ImageError: never another
 * exception, never a hang.
 *
 *   node fuzz/qcow2-fuzz.ts --cases 200000 [--seed N]      (npm run fuzz)
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { ImageError, MemoryBlockSource, Qcow2Image, mapChain, openImage, readChain, type BlockSource } from '../src/qcow2/index.ts';
import { mulberry32 as prng } from '../src/util/index.ts';

export interface PoolImage {
  name: string;
  bytes: Buffer;
  /** Byte ranges worth mutating: [start, end). */
  hot: Array<[number, number]>;
}

export interface FuzzFailure {
  seed: number;
  image: string;
  mutation: string;
  error: string;
}

export interface FuzzStats {
  cases: number;
  rejected: number;
  accepted: number;
  failures: FuzzFailure[];
  slowestMs: number;
}

/** Loads image files and finds their metadata ranges (with the reader itself, before mutation). */
export async function loadPool(paths: string[]): Promise<PoolImage[]> {
  const pool: PoolImage[] = [];
  for (const p of paths) {
    const bytes = await readFile(p);
    const hot: Array<[number, number]> = [[0, Math.min(bytes.length, 4096)]];
    try {
      const img = await Qcow2Image.open(new MemoryBlockSource(p, bytes), async () => new MemoryBlockSource('data', Buffer.alloc(0)));
      const h = img.header;
      hot.push([h.l1TableOffset, h.l1TableOffset + h.l1Size * 8]);
      hot.push([h.refcountTableOffset, h.refcountTableOffset + h.refcountTableClusters * h.clusterSize]);
      if (h.nbSnapshots) hot.push([h.snapshotsOffset, h.snapshotsOffset + 256 * h.nbSnapshots]);
      if (h.bitmaps) hot.push([h.bitmaps.directoryOffset, h.bitmaps.directoryOffset + h.bitmaps.directorySize]);
      for (const b of img.bitmaps) hot.push([b.tableOffset, b.tableOffset + b.tableSize * 8]);
      const layer = img.layer(null);
      const l1 = await layer.l1();
      for (let i = 0; i < layer.l1Size; i++) {
        const hi = l1.readUInt32BE(i * 8) & 0x00ffffff;
        const lo = l1.readUInt32BE(i * 8 + 4) & 0xfffffe00;
        const off = hi * 2 ** 32 + (lo >>> 0);
        if (off) hot.push([off, off + h.clusterSize]);
      }
      await img.close();
    } catch {
      // A pool image the reader refuses as is (e.g. needs a data file) still gets header mutations.
    }
    pool.push({ name: basename(p), bytes, hot: hot.filter(([s, e]) => e > s && s < bytes.length).map(([s, e]) => [s, Math.min(e, bytes.length)]) });
  }
  return pool;
}


const INTERESTING64 = [0n, 1n, 0x1ffn, 0x200n, 0x10000n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, 0xffffffffffffffffn, 0x8000000000000000n, 0x00fffffffffffe00n];

/** Apply one random mutation; returns the mutated copy and a description. */
export function mutate(img: PoolImage, r: () => number): { bytes: Buffer; what: string } {
  const b = Buffer.from(img.bytes);
  const [s, e] = img.hot[Math.floor(r() * img.hot.length)];
  const at = s + Math.floor(r() * Math.max(1, e - s));
  const kind = Math.floor(r() * 6);
  switch (kind) {
    case 0: {
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n && at + i < b.length; i++) b[at + i] ^= 1 << Math.floor(r() * 8);
      return { bytes: b, what: `flip ${n} bit(s) at ${at}` };
    }
    case 1: {
      const v = Math.floor(r() * 256);
      b[at] = v;
      return { bytes: b, what: `byte ${at} = ${v}` };
    }
    case 2: {
      const aligned = at - (at % 8);
      if (aligned + 8 > b.length) return { bytes: b, what: 'noop' };
      const v = INTERESTING64[Math.floor(r() * INTERESTING64.length)];
      b.writeBigUInt64BE(v, aligned);
      return { bytes: b, what: `u64 ${aligned} = 0x${v.toString(16)}` };
    }
    case 3: {
      const aligned = at - (at % 4);
      if (aligned + 4 > b.length) return { bytes: b, what: 'noop' };
      const v = [0, 1, 0x7fffffff, 0xffffffff, 0x10000, 72, 104, 21, 8][Math.floor(r() * 9)];
      b.writeUInt32BE(v, aligned);
      return { bytes: b, what: `u32 ${aligned} = ${v}` };
    }
    case 4: {
      const len = Math.floor(r() * b.length);
      return { bytes: b.subarray(0, len), what: `truncate to ${len}` };
    }
    default: {
      const n = 1 + Math.floor(r() * 64);
      for (let i = 0; i < n && at + i < b.length; i++) b[at + i] = Math.floor(r() * 256);
      return { bytes: b, what: `randomize ${n} bytes at ${at}` };
    }
  }
}

/** Exercise everything a user can ask of an image, bounded in work. */
async function exercise(bytes: Buffer, name: string, pool: PoolImage[]): Promise<void> {
  const byName = new Map(pool.map((p) => [p.name, p.bytes]));
  const openSource = async (path: string): Promise<BlockSource> => {
    if (path === name) return new MemoryBlockSource(name, bytes);
    const other = byName.get(basename(path));
    if (!other) throw new ImageError('no such fuzz image', { image: path });
    return new MemoryBlockSource(basename(path), other);
  };
  const img = await openImage(name, { openSource, maxDepth: 8 });
  try {
    const buf = Buffer.alloc(1 << 16);
    let extents = 0;
    let readBudget = 32 << 20;
    for await (const e of mapChain(img.top)) {
      if (++extents > 20000) break;
      if (e.data && readBudget > 0) {
        const n = Math.min(buf.length, e.length, readBudget);
        await readChain(img.top, e.start, buf.subarray(0, n));
        readBudget -= n;
      }
    }
    const q = img.qcow2[0];
    if (q) {
      for (const bm of q.bitmaps.slice(0, 4)) await q.bitmapRuns(bm);
      for (const s of q.snapshots.slice(0, 2)) {
        const view = q.layer(null, s.id);
        let n = 0;
        for await (const _ of view.runs(0, view.virtualSize)) if (++n > 20000) break;
      }
    }
  } finally {
    await img.close();
  }
}

export async function runFuzz(pool: PoolImage[], opts: { cases: number; seed: number; onProgress?: (done: number) => void }): Promise<FuzzStats> {
  const stats: FuzzStats = { cases: 0, rejected: 0, accepted: 0, failures: [], slowestMs: 0 };
  for (let i = 0; i < opts.cases; i++) {
    const seed = (opts.seed + i) >>> 0;
    const r = prng(seed);
    const img = pool[Math.floor(r() * pool.length)];
    const m = mutate(img, r);
    const t0 = performance.now();
    try {
      await exercise(m.bytes, img.name, pool);
      stats.accepted++;
    } catch (error) {
      if (error instanceof ImageError) stats.rejected++;
      else stats.failures.push({ seed, image: img.name, mutation: m.what, error: (error as Error)?.stack ?? String(error) });
    }
    stats.slowestMs = Math.max(stats.slowestMs, performance.now() - t0);
    stats.cases++;
    if (opts.onProgress && i % 1000 === 999) opts.onProgress(i + 1);
  }
  return stats;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({ options: { cases: { type: 'string', default: '100000' }, seed: { type: 'string', default: String(Date.now() % 1e9) }, keep: { type: 'boolean' } } });
  const { buildFuzzPool } = await import('./qcow2-pool.ts');
  const { paths, cleanup } = await buildFuzzPool();
  try {
    const pool = await loadPool(paths);
    const seed = Number(values.seed);
    process.stderr.write(`fuzzing ${values.cases} cases from seed ${seed} over ${pool.length} images\n`);
    const stats = await runFuzz(pool, { cases: Number(values.cases), seed, onProgress: (n) => process.stderr.write(`\r${n} cases`) });
    process.stderr.write(`\n${JSON.stringify({ ...stats, failures: stats.failures.length }, null, 1)}\n`);
    for (const f of stats.failures.slice(0, 20)) process.stderr.write(`FAIL seed=${f.seed} ${f.image}: ${f.mutation}\n${f.error}\n`);
    process.exitCode = stats.failures.length ? 1 : 0;
  } finally {
    if (!values.keep) await cleanup();
  }
}
