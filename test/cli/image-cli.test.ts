/** `image info|map|export` through the real CLI process, against qemu-img on the same images. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { makeImage } from '../helpers/images.ts';
import { normalizeMap, qemuImg, qemuMap, runCli, syncFile, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
let top: string;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-cli-'));
  await makeImage(dir, { name: 'base.qcow2', size: 32 * 1024 * 1024, seed: 3, ops: 40 });
  // Plain writes only: a top without holes stays far from QEMU's metadata-preallocation threshold,
  // where its answer follows the host file's allocated size (crosscheck covers that zone).
  top = await makeImage(dir, { name: 'top.qcow2', size: 48 * 1024 * 1024, backing: 'base.qcow2', seed: 4, ops: 40, kinds: ['write'] });
  await qemuImg(['snapshot', '-c', 'snap-1', top]);
  await qemuImg(['bitmap', '--add', '-g', '65536', top, 'cbt-0']);
  await syncFile(top);
});
test.after.always(async () => {
  await cleanup?.();
});

test('image info --json: exactly the contract fields, agreeing with qemu-img info', async (t) => {
  const r = await runCli(['image', 'info', top, '--json']);
  t.is(r.exitCode, 0, r.stderr);
  const ours = JSON.parse(r.stdout);
  t.deepEqual(Object.keys(ours).sort(), ['backingChain', 'bitmaps', 'clusterSize', 'compressionType', 'corrupt', 'dirty', 'extendedL2', 'format', 'snapshots', 'version', 'virtualSize']);
  const q = JSON.parse(await qemuImg(['info', '--output=json', top]));
  t.is(ours.format, q.format);
  t.is(ours.virtualSize, q['virtual-size']);
  t.is(ours.clusterSize, q['cluster-size']);
  t.deepEqual(ours.backingChain, [q['full-backing-filename']]);
  t.deepEqual(ours.snapshots, q.snapshots.map((s: { id: string; name: string }) => ({ id: s.id, name: s.name, virtualSize: 48 * 1024 * 1024 })));
  t.deepEqual(ours.bitmaps, [{ name: 'cbt-0', granularity: 65536, inUse: false, auto: true }]);
  t.is(ours.compressionType, q['format-specific'].data['compression-type']);
  t.is(ours.extendedL2, q['format-specific'].data['extended-l2']);
  t.is(ours.dirty, q['dirty-flag']);
  t.is(ours.version, 3);
});

test('image map --json equals qemu-img map on data/zero/depth, with adjacent extents merged', async (t) => {
  const r = await runCli(['image', 'map', top, '--json']);
  t.is(r.exitCode, 0, r.stderr);
  const ours = JSON.parse(r.stdout) as Array<{ start: number; length: number; data: boolean; zero: boolean; depth: number }>;
  t.deepEqual(Object.keys(ours[0]).sort(), ['data', 'depth', 'length', 'start', 'zero']);
  t.deepEqual(normalizeMap(ours), ours.map((e) => [e.start, e.length, e.data, e.zero, e.depth]), 'already merged');
  t.deepEqual(normalizeMap(ours), normalizeMap(await qemuMap(top)));
  t.false(JSON.stringify(ours).includes('"data":true,"zero":true'), 'not a metadata-preallocated image');
  const snap = await runCli(['image', 'map', top, '--snapshot', 'snap-1', '--json']);
  t.is(snap.exitCode, 0);
});

test('image export is byte-identical to qemu-img convert -O raw (also for a snapshot)', async (t) => {
  const ours = join(dir, 'ours.raw');
  const r = await runCli(['image', 'export', top, ours]);
  t.is(r.exitCode, 0, r.stderr);
  const theirs = join(dir, 'theirs.raw');
  await qemuImg(['convert', '-O', 'raw', top, theirs]);
  t.true((await readFile(ours)).equals(await readFile(theirs)));
  const s1 = join(dir, 'ours-s.raw');
  t.is((await runCli(['image', 'export', top, s1, '--snapshot', 'snap-1'])).exitCode, 0);
  const s2 = join(dir, 'theirs-s.raw');
  await qemuImg(['convert', '-l', 'snapshot.name=snap-1', '-O', 'raw', top, s2]);
  t.true((await readFile(s1)).equals(await readFile(s2)));
  const refuse = await runCli(['image', 'export', top, join(dir, 'base.qcow2')]);
  t.is(refuse.exitCode, 2);
  t.regex(refuse.stderr, /refusing to export over an image/);
});

test('--help and --version exit 0; unknown commands exit 2', async (t) => {
  t.is((await runCli(['--help'])).exitCode, 0);
  t.is((await runCli(['--version'])).exitCode, 0);
  t.is((await runCli(['image', 'frobnicate'])).exitCode, 2);
  t.is((await runCli(['nope'])).exitCode, 2);
});

test('demo runs end to end', async (t) => {
  const r = await runCli(['demo', '--json']);
  t.is(r.exitCode, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  t.deepEqual(doc.diff.changed, [[1024, 1], [2048, 32]]);
  t.deepEqual(doc.diff.written, [[0, 16], [1024, 16], [2048, 32]]);
});
