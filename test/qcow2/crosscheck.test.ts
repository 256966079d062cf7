/**
 * The reader against QEMU on images QEMU made: `image map` = `qemu-img map` (data, zero, depth for
 * every byte), export = `qemu-img convert -O raw` byte for byte, info = `qemu-img info`.
 */
import { readFile, symlink, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { mapChain, openImage, readChain } from '../../src/qcow2/index.ts';
import { exportImage } from '../../src/cli/image-export.ts';
import { imageInfo } from '../../src/cli/image-commands.ts';
import { makeImage, randomOps, type RandomImageSpec } from '../helpers/images.ts';
import { normalizeMap, qemuImg, qemuIo, qemuMap, qemuMapsAround, randInt, rng, syncFile, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-xcheck-'));
});
test.after.always(async () => {
  await cleanup?.();
});

async function ourMap(path: string, snapshot?: string) {
  const img = await openImage(path, { snapshot });
  try {
    const out = [];
    for await (const e of mapChain(img.top)) out.push(e);
    return normalizeMap(out);
  } finally {
    await img.close();
  }
}

async function checkAgainstQemu(t: ExecutionContext, path: string) {
  await syncFile(path);
  const maps = await qemuMapsAround(path, () => ourMap(path));
  t.true(maps.qemu.some((q) => JSON.stringify(q) === JSON.stringify(maps.ours)), `map of ${path} differs from qemu-img map`);
  if (maps.qemu.length === 1) t.deepEqual(maps.ours, maps.qemu[0], `map of ${path}`);
  const ours = `${path}.ours.raw`;
  const theirs = `${path}.qemu.raw`;
  const img = await openImage(path);
  try {
    await exportImage(img, ours, img.layers.map((l) => l.name));
  } finally {
    await img.close();
  }
  await qemuImg(['convert', '-O', 'raw', path, theirs], { cwd: dirname(path) });
  const [a, b] = await Promise.all([readFile(ours), readFile(theirs)]);
  t.is(a.length, b.length, `export length of ${path}`);
  t.true(a.equals(b), `export bytes of ${path}`);
}

const clusterSizes = [512, 1024, 4096, 16384, 65536, 262144, 1048576, 2097152];
for (const compat of ['0.10', '1.1'] as const) {
  for (const cs of clusterSizes) {
    test(`compat=${compat} cluster_size=${cs}: map and export match qemu`, async (t) => {
      const size = Math.max(8 * 1024 * 1024, cs * 24);
      const spec: RandomImageSpec = { name: `v${compat}-${cs}.qcow2`, size, clusterSize: cs, compat, seed: cs + (compat === '1.1' ? 1 : 0), ops: 60 };
      const p = await makeImage(dir, spec);
      await checkAgainstQemu(t, p);
      const info = JSON.parse(await qemuImg(['info', '--output=json', p]));
      const img = await openImage(p);
      const ours = imageInfo(img);
      await img.close();
      t.is(ours.virtualSize, info['virtual-size']);
      t.is(ours.clusterSize, info['cluster-size']);
      t.is(ours.version, info['format-specific'].data.compat === '0.10' ? 2 : 3);
      t.is(ours.dirty, info['dirty-flag']);
      t.is(ours.corrupt, Boolean(info['format-specific'].data.corrupt));
    });
  }
}

for (const compression of ['zlib', 'zstd'] as const) {
  for (const cs of [4096, 65536, 2097152]) {
    test(`compressed clusters (${compression}, ${cs}): convert -c and write -c match qemu`, async (t) => {
      const src = await makeImage(dir, { name: `src-${compression}-${cs}.raw`, format: 'raw', size: 16 * 1024 * 1024, seed: 7 + cs, ops: 30, kinds: ['write'] });
      const out = join(dir, `c-${compression}-${cs}.qcow2`);
      await qemuImg(['convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs},compression_type=${compression}`, src, out]);
      await checkAgainstQemu(t, out);
      const info = JSON.parse(await qemuImg(['info', '--output=json', out]));
      const img = await openImage(out);
      t.is(imageInfo(img).compressionType, info['format-specific'].data['compression-type']);
      await img.close();
      const w = await makeImage(dir, { name: `w-${compression}-${cs}.qcow2`, size: 16 * 1024 * 1024, clusterSize: cs, compression, seed: 99 + cs, ops: 40 });
      await checkAgainstQemu(t, w);
    });
  }
}

for (const cs of [16384, 65536, 2097152]) {
  test(`extended L2 entries (cluster ${cs}): subclusters match qemu`, async (t) => {
    const p = await makeImage(dir, { name: `ext-${cs}.qcow2`, size: 32 * 1024 * 1024, clusterSize: cs, extendedL2: true, seed: 5 + cs, ops: 80, kinds: ['write', 'write', 'zero', 'zero-unmap', 'discard'] });
    await checkAgainstQemu(t, p);
    const img = await openImage(p);
    t.true(imageInfo(img).extendedL2);
    await img.close();
    // An overlay with extended L2 over a backing file: unallocated subclusters read through.
    const o = await makeImage(dir, { name: `ext-${cs}-ovl.qcow2`, size: 32 * 1024 * 1024, clusterSize: cs, extendedL2: true, backing: `ext-${cs}.qcow2`, seed: 6 + cs, ops: 80, kinds: ['write', 'write', 'zero', 'zero-unmap', 'discard'] });
    await checkAgainstQemu(t, o);
  });
}

test('backing chains: depth 4, raw bottom, relative names in sub-folders, shorter and longer layers', async (t) => {
  await mkdir(join(dir, 'chain', 'a', 'b'), { recursive: true });
  const c = join(dir, 'chain');
  await makeImage(c, { name: 'bottom.raw', format: 'raw', size: 6 * 1024 * 1024, seed: 11, ops: 20, kinds: ['write', 'write', 'zero'] });
  await makeImage(c, { name: 'a/l1.qcow2', size: 12 * 1024 * 1024, backing: '../bottom.raw', backingFormat: 'raw', seed: 12, ops: 30 });
  await makeImage(c, { name: 'a/b/l2.qcow2', size: 4 * 1024 * 1024, backing: '../l1.qcow2', seed: 13, ops: 30, clusterSize: 4096 });
  const top = await makeImage(c, { name: 'a/b/top.qcow2', size: 16 * 1024 * 1024, backing: 'l2.qcow2', seed: 14, ops: 30, compat: '0.10' });
  await checkAgainstQemu(t, top);
  await checkAgainstQemu(t, join(c, 'a/l1.qcow2'));
  const info = JSON.parse(await qemuImg(['info', '--output=json', '--backing-chain', top]));
  const img = await openImage(top);
  t.deepEqual(imageInfo(img).backingChain, info.slice(1).map((i: { filename: string }) => i.filename));
  t.is(img.layers.length, 4);
  await img.close();
  // Through a symlinked folder, names resolve against the path as given (QEMU's path_combine
  // is textual), so the chain reports paths under the link.
  await symlink(c, join(dir, 'clink'));
  const viaLink = join(dir, 'clink/a/b/top.qcow2');
  t.deepEqual(await ourMap(viaLink), normalizeMap(await qemuMap(viaLink)));
  const linkInfo = JSON.parse(await qemuImg(['info', '--output=json', '--backing-chain', viaLink]));
  const li = await openImage(viaLink);
  t.deepEqual(imageInfo(li).backingChain, linkInfo.slice(1).map((i: { filename: string }) => i.filename));
  t.true(imageInfo(li).backingChain.every((p) => p.startsWith(join(dir, 'clink'))));
  await li.close();
});

test('external data file: data_file and data_file_raw match qemu', async (t) => {
  const p = await makeImage(dir, { name: 'ext-data.qcow2', size: 16 * 1024 * 1024, dataFile: 'ext-data.bin', seed: 21, ops: 40 });
  await checkAgainstQemu(t, p);
  const r = await makeImage(dir, { name: 'ext-raw.qcow2', size: 16 * 1024 * 1024, dataFile: 'ext-raw.bin', dataFileRaw: true, seed: 22, ops: 40 });
  await checkAgainstQemu(t, r);
});

test('metadata preallocation: host holes reported as qemu does', async (t) => {
  const p = await makeImage(dir, { name: 'prealloc.qcow2', size: 16 * 1024 * 1024, extraOptions: ['preallocation=metadata'], seed: 23, ops: 20, kinds: ['write', 'zero'] });
  await checkAgainstQemu(t, p);
  const f = await makeImage(dir, { name: 'falloc.qcow2', size: 8 * 1024 * 1024, extraOptions: ['preallocation=falloc'], seed: 24, ops: 20 });
  await checkAgainstQemu(t, f);
});

test('internal snapshots: each snapshot reads as qemu-img convert -l says', async (t) => {
  const p = await makeImage(dir, { name: 'snap.qcow2', size: 8 * 1024 * 1024, seed: 31, ops: 30 });
  await qemuImg(['snapshot', '-c', 'first', p]);
  const { randomOps } = await import('../helpers/images.ts');
  const { qemuIo } = await import('../helpers/tools.ts');
  await qemuIo(p, randomOps(32, 8 * 1024 * 1024, 65536, 30, ['write', 'zero', 'discard']));
  await qemuImg(['snapshot', '-c', 'second', p]);
  await qemuIo(p, randomOps(33, 8 * 1024 * 1024, 65536, 30, ['write', 'zero', 'discard']));
  await checkAgainstQemu(t, p);
  for (const name of ['first', 'second']) {
    const theirs = join(dir, `snap-${name}.raw`);
    await qemuImg(['convert', '-l', `snapshot.name=${name}`, '-O', 'raw', p, theirs]);
    const img = await openImage(p, { snapshot: name });
    const buf = Buffer.alloc(img.top.virtualSize);
    await readChain(img.top, 0, buf);
    await img.close();
    t.true(buf.equals(await readFile(theirs)), `snapshot ${name}`);
  }
  const img = await openImage(p);
  const info = JSON.parse(await qemuImg(['info', '--output=json', p]));
  t.deepEqual(
    imageInfo(img).snapshots.map((s) => [s.id, s.name]),
    info.snapshots.map((s: { id: string; name: string }) => [s.id, s.name]),
  );
  await img.close();
});

test('bitmaps listed as qemu-img info lists them', async (t) => {
  const p = await makeImage(dir, { name: 'bm.qcow2', size: 64 * 1024 * 1024, seed: 41, ops: 5 });
  await qemuImg(['bitmap', '--add', '-g', '65536', p, 'b-64k']);
  await qemuImg(['bitmap', '--add', '-g', '512', '--disable', p, 'b-512']);
  const info = JSON.parse(await qemuImg(['info', '--output=json', p]));
  const img = await openImage(p);
  const ours = imageInfo(img).bitmaps;
  await img.close();
  t.deepEqual(
    ours.map((b) => [b.name, b.granularity, b.inUse, b.auto]),
    info['format-specific'].data.bitmaps.map((b: { name: string; granularity: number; flags: string[] }) => [b.name, b.granularity, b.flags.includes('in-use'), b.flags.includes('auto')]),
  );
});

/**
 * Soak: random combinations of what qemu-img can make (version, cluster size, extended L2,
 * compression type, refcount width, lazy refcounts, external data file), chains of 1–3 layers of
 * different sizes, resizes, internal snapshots with writes after them, and every kind of write;
 * each image checked against qemu-img map/convert. CBT_SOAK=N runs N combinations (default 12).
 */
const SOAK = Number(process.env.CBT_SOAK ?? '12');
const SOAK_SEED = Number(process.env.CBT_SOAK_SEED ?? '20261123');
test('soak: random qemu-img option combinations, chains, resizes and snapshots match qemu', async (t) => {
  const r = rng(SOAK_SEED);
  const pick = <T,>(xs: readonly T[]): T => xs[randInt(r, 0, xs.length - 1)];
  const MiB = 1024 * 1024;
  for (let n = 0; n < SOAK; n++) {
    const d = join(dir, `soak-${n}`);
    await mkdir(d, { recursive: true });
    const depth = randInt(r, 1, 3);
    let below: string | undefined;
    let belowFormat: 'qcow2' | 'raw' = 'qcow2';
    const desc: string[] = [];
    for (let layer = 0; layer < depth; layer++) {
      const raw = layer === 0 && depth > 1 && r() < 0.25;
      const compat = pick(['0.10', '1.1', '1.1', '1.1'] as const);
      const cs = pick([512, 4096, 16384, 65536, 65536, 262144, 2097152]);
      const extendedL2 = compat === '1.1' && cs >= 16384 && r() < 0.4;
      const compression = compat === '1.1' && r() < 0.4 ? 'zstd' : 'zlib';
      const extra: string[] = [];
      if (compat === '1.1' && r() < 0.3) extra.push(`refcount_bits=${pick([1, 2, 4, 8, 32, 64])}`);
      if (compat === '1.1' && r() < 0.3) extra.push('lazy_refcounts=on');
      const dataFile = compat === '1.1' && !raw && r() < 0.15 ? `data-${layer}.bin` : undefined;
      const size = randInt(r, 2, 24) * MiB + (r() < 0.3 ? randInt(r, 1, 1023) * 512 : 0);
      const name = raw ? `l${layer}.raw` : `l${layer}.qcow2`;
      const spec: RandomImageSpec = { name, size, seed: randInt(r, 1, 1e9), ops: randInt(r, 5, 60), ...(raw ? { format: 'raw' as const } : { clusterSize: cs, compat, extendedL2, compression, extraOptions: extra, ...(dataFile ? { dataFile, dataFileRaw: !below && r() < 0.5 } : {}) }), ...(below ? { backing: below, backingFormat: belowFormat } : {}) };
      const p = await makeImage(d, spec);
      desc.push(raw ? `raw ${size}` : `qcow2 v${compat} cs=${cs}${extendedL2 ? ' extl2' : ''} ${compression} ${extra.join(' ')}${dataFile ? ` data_file${spec.dataFileRaw ? '_raw' : ''}` : ''} ${size}`);
      if (!raw && !dataFile && !extra.some((o) => /^refcount_bits=[1248]$/.test(o)) && r() < 0.3) {
        // An internal snapshot, then more writes on top of it. (Not with narrow refcounts: a host
        // cluster holding many compressed clusters would overflow, and qemu-img refuses.)
        await qemuImg(['snapshot', '-c', 's1', name], { cwd: d }).catch((e: Error) => {
          throw new Error(`soak ${n}: ${desc.join(' | ')}: ${e.message}`);
        });
        await qemuIo(p, randomOps(randInt(r, 1, 1e9), size, cs, 20, ['write', 'zero', 'discard']), [], d);
        desc.push('snapshot+writes');
      }
      if (!raw && !dataFile && compat === '1.1' && r() < 0.25) {
        // Grow (qemu-img refuses to shrink an image with snapshots, and to resize a v2 image with
        // snapshots or over a longer backing file: it cannot write zero clusters there).
        const grown = size + randInt(r, 1, 8) * MiB;
        await qemuImg(['resize', '-q', name, String(grown)], { cwd: d });
        desc.push(`resize→${grown}`);
      }
      below = name;
      belowFormat = raw ? 'raw' : 'qcow2';
      if (layer === depth - 1 && !raw) {
        t.log(`soak ${n}: ${desc.join(' | ')}`);
        await checkAgainstQemu(t, p);
      }
    }
  }
});
