/**
 * Changed/written maps against an independent oracle: the raw exports made by
 * `qemu-img convert` (changed = bytes differ) and `qemu-img map` (written = allocated above the
 * base), on random chains, snapshots and unrelated images, at several granularities and ranges.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { openImage } from '../../src/qcow2/index.ts';
import { BlockRunBuilder, diffImages, type BlockRun } from '../../src/truth/index.ts';
import { makeImage, randomOps } from '../helpers/images.ts';
import { qemuImg, qemuIo, qemuMap, rng, randInt, runCli, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-diff-'));
});
test.after.always(async () => {
  await cleanup?.();
});

async function raw(path: string, extra: string[] = []): Promise<Buffer> {
  const out = `${path}.${Math.random().toString(36).slice(2)}.raw`;
  await qemuImg(['convert', ...extra, '-O', 'raw', path, out]);
  return readFile(out);
}

function blocksWhere(len: number, rangeOff: number, g: number, pred: (a: number, b: number) => boolean): BlockRun[] {
  const b = new BlockRunBuilder();
  for (let i = 0; rangeOff + i * g < rangeOff + len; i++) {
    const a = rangeOff + i * g;
    const e = Math.min(rangeOff + len, a + g);
    if (pred(a, e)) b.add(i, 1);
  }
  return b.runs;
}

function changedOracle(base: Buffer, top: Buffer, off: number, len: number, g: number): BlockRun[] {
  const zero = (buf: Buffer, a: number, e: number) => (a >= buf.length ? Buffer.alloc(e - a) : Buffer.concat([buf.subarray(a, Math.min(e, buf.length)), Buffer.alloc(Math.max(0, e - buf.length))]));
  return blocksWhere(len, off, g, (a, e) => !zero(base, a, e).equals(zero(top, a, e)));
}

async function writtenOracle(top: string, depth: number, off: number, len: number, g: number): Promise<BlockRun[]> {
  const map = await qemuMap(top);
  const marks = map.filter((e) => e.present && e.depth < depth);
  return blocksWhere(len, off, g, (a, e) => marks.some((m) => m.start < e && a < m.start + m.length));
}

async function diff(base: string, top: string, g: number, range?: { offset: number; length: number }, opts: { baseSnapshot?: string } = {}) {
  const b = await openImage(base, { snapshot: opts.baseSnapshot });
  const t = await openImage(top);
  try {
    return await diffImages(b, t, { granularity: g, range });
  } finally {
    await b.close();
    await t.close();
  }
}

for (const seed of [1, 2, 3, 4]) {
  test(`random chain (seed ${seed}): base is a backing file, at several granularities and ranges`, async (t) => {
    const r = rng(seed * 101);
    const size = 16 * 1024 * 1024;
    const cs = [4096, 65536, 16384, 1048576][seed - 1];
    const sub = join(dir, `chain-${seed}`);
    await (await import('node:fs/promises')).mkdir(sub);
    await makeImage(sub, { name: 'base.qcow2', size, clusterSize: cs, seed: seed * 7, ops: 50 });
    await makeImage(sub, { name: 'mid.qcow2', size: seed === 2 ? size / 2 : size, clusterSize: cs, backing: 'base.qcow2', seed: seed * 7 + 1, ops: 40, extendedL2: seed === 3 });
    const top = await makeImage(sub, { name: 'top.qcow2', size, backing: 'mid.qcow2', seed: seed * 7 + 2, ops: 40, kinds: ['write', 'write', 'zero', 'zero-unmap', 'discard', 'compressed'] });
    const base = join(sub, 'base.qcow2');
    const [braw, traw] = [await raw(base), await raw(top)];
    for (const g of [512, 4096, 65536, 1536]) {
      const off = g === 1536 ? randInt(r, 0, size / 2) : 0;
      const len = g === 1536 ? randInt(r, 1, size - off) : size;
      const range = g === 1536 ? { offset: off, length: len } : undefined;
      const d = await diff(base, top, g, range);
      t.is(d.relation, 'backing');
      t.deepEqual(d.changed, changedOracle(braw, traw, off, len, g), `changed g=${g}`);
      t.deepEqual(d.written, await writtenOracle(top, 2, off, len, g), `written g=${g}`);
      t.is(d.changedBlocks, d.changed.reduce((s, [, c]) => s + c, 0));
      // Only bytes allocated above the base (or zeroed by a shorter layer) are read.
      const map = await qemuMap(top);
      const candidates = map.filter((e) => e.depth < 2 && (e.present || e.zero)).reduce((s, e) => s + e.length, 0);
      t.true(d.bytesCompared <= candidates, `read ${d.bytesCompared} > ${candidates}`);
    }
    // Depth-1 base (mid) and the overlay against itself.
    const mid = join(sub, 'mid.qcow2');
    const d1 = await diff(mid, top, 4096);
    t.deepEqual(d1.changed, changedOracle(await raw(mid), traw, 0, size, 4096));
    t.deepEqual(d1.written, await writtenOracle(top, 1, 0, size, 4096));
    const same = await diff(top, top, 4096);
    t.deepEqual([same.changed, same.written], [[], []]);
  });
}

test('identical rewrites are written but not changed', async (t) => {
  const base = join(dir, 'same-base.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '8M']);
  await qemuIo(base, ['write -P 0x5a 0 4M']);
  const top = join(dir, 'same-top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'same-base.qcow2', '-F', 'qcow2', top, '8M'], { cwd: dir });
  await qemuIo(top, ['write -P 0x5a 64k 1M', 'write -P 0x5b 2M 4k']);
  const d = await diff(base, top, 4096);
  t.deepEqual(d.changed, [[512, 1]]);
  t.deepEqual(d.written, [[16, 256], [512, 16]]);
  t.is(d.writtenBlocks, 272);
});

test('internal snapshot as the base', async (t) => {
  const p = await makeImage(dir, { name: 'snapdiff.qcow2', size: 8 * 1024 * 1024, clusterSize: 4096, seed: 77, ops: 40 });
  await qemuImg(['snapshot', '-c', 'epoch1', p]);
  const ops = randomOps(78, 8 * 1024 * 1024, 4096, 40, ['write', 'write', 'zero', 'discard']);
  await qemuIo(p, ops);
  const d = await diff(p, p, 4096, undefined, { baseSnapshot: 'epoch1' });
  t.is(d.relation, 'snapshot');
  t.deepEqual(d.changed, changedOracle(await raw(p, ['-l', 'snapshot.name=epoch1']), await raw(p), 0, 8 * 1024 * 1024, 4096));
  // Written covers every changed block and only clusters the operations touched.
  const touched = new Set<number>();
  for (const op of ops) {
    const m = /(\d+) (\d+)$/.exec(op);
    if (!m) continue;
    for (let c = Math.floor(Number(m[1]) / 4096); c * 4096 < Number(m[1]) + Number(m[2]); c++) touched.add(c);
  }
  const written = new Set(d.written.flatMap(([f, c]) => Array.from({ length: c }, (_, i) => f + i)));
  for (const [f, c] of d.changed) for (let i = f; i < f + c; i++) t.true(written.has(i), `changed block ${i} not written`);
  for (const w of written) t.true(touched.has(w), `block ${w} reported written but untouched`);
  // Through the CLI.
  const cli = await runCli(['image', 'diff', p, p, '--base-snapshot', 'epoch1', '--granularity', '4096', '--json']);
  t.is(cli.exitCode, 0);
  t.deepEqual(JSON.parse(cli.stdout).changed, d.changed);
});

test('unrelated images and a raw base', async (t) => {
  const a = await makeImage(dir, { name: 'u-a.qcow2', size: 8 * 1024 * 1024, seed: 91, ops: 40 });
  const b = await makeImage(dir, { name: 'u-b.raw', format: 'raw', size: 6 * 1024 * 1024, seed: 92, ops: 40, kinds: ['write', 'zero'] });
  const d = await diff(b, a, 4096);
  t.is(d.relation, 'unrelated');
  t.deepEqual(d.changed, changedOracle(await readFile(b), await raw(a), 0, 8 * 1024 * 1024, 4096));
  const d2 = await diff(a, b, 65536);
  t.deepEqual(d2.changed, changedOracle(await raw(a), await readFile(b), 0, 6 * 1024 * 1024, 65536));
});

test('CLI diff output is exactly the contract', async (t) => {
  const base = join(dir, 'cli-base.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
  const top = join(dir, 'cli-top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'cli-base.qcow2', '-F', 'qcow2', top, '4M'], { cwd: dir });
  await qemuIo(top, ['write -P 1 1M 8k']);
  const r = await runCli(['image', 'diff', base, top, '--granularity', '4096', '--range', '1M:2M', '--json']);
  t.is(r.exitCode, 0);
  t.deepEqual(JSON.parse(r.stdout), { granularity: 4096, changed: [[0, 2]], written: [[0, 16]], changedBlocks: 2, writtenBlocks: 16 });
});

test('BlockRunBuilder merges neighbours and overlaps and refuses disorder', (t) => {
  const b = new BlockRunBuilder();
  b.add(1, 2);
  b.add(3, 1);
  b.add(3, 5);
  b.add(10, 1);
  b.add(10, 0);
  t.deepEqual(b.runs, [[1, 7], [10, 1]]);
  t.is(b.total, 8);
  t.throws(() => b.add(2, 1), { instanceOf: RangeError });
});
