/**
 * Bad input: every corruption the issue names ends in a typed error (exit code 2 through the
 * CLI) that names the image and the offending offset, never a crash or a hang.
 */
import { readFile, writeFile, truncate, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ImageError, ImageOpenError, Qcow2FormatError, Qcow2UnsupportedError, mapChain, openImage, readChain, readHeader, FileBlockSource } from '../../src/qcow2/index.ts';
import { qemuImg, qemuIo, runCli, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
let good: string;
let compressed: string;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-errors-'));
  good = join(dir, 'good.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', good, '64M']);
  await qemuIo(good, ['write -P 1 0 128k', 'write -P 2 32M 64k', 'write -P 3 63M 4k']);
  compressed = join(dir, 'compressed.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', compressed, '4M']);
  await qemuIo(compressed, ['write -c -P 7 0 64k', 'write -c -P 8 1M 64k']);
});
test.after.always(async () => {
  await cleanup?.();
});

/** Read everything a user could ask for; returns the error thrown, if any. */
async function readAll(path: string): Promise<unknown> {
  try {
    const img = await openImage(path);
    try {
      const buf = Buffer.alloc(1 << 20);
      for await (const e of mapChain(img.top)) {
        if (e.data) for (let a = e.start; a < e.start + e.length; a += buf.length) await readChain(img.top, a, buf.subarray(0, Math.min(buf.length, e.start + e.length - a)));
      }
    } finally {
      await img.close();
    }
    return null;
  } catch (error) {
    return error;
  }
}

async function variant(name: string, patch: (b: Buffer) => Buffer | void, from = good): Promise<string> {
  const b = await readFile(from);
  const out = patch(b) ?? b;
  const p = join(dir, name);
  await writeFile(p, out);
  return p;
}

async function header(path: string) {
  const src = await FileBlockSource.open(path);
  try {
    return await readHeader(src);
  } finally {
    await src.close();
  }
}

function assertFormatError(t: ExecutionContext, error: unknown, path: string, pattern: RegExp, offset?: number) {
  t.true(error instanceof Qcow2FormatError, `expected Qcow2FormatError, got ${String(error)}`);
  const e = error as Qcow2FormatError;
  t.is(e.image, path);
  t.regex(e.message, pattern);
  if (offset !== undefined) t.is(e.offset, offset);
  t.true(e.message.includes(path));
}

test('truncated files: inside the header, before the L1 table, inside an L2 table, inside data', async (t) => {
  const h = await header(good);
  const size = (await readFile(good)).length;
  for (const cut of [10, 60, h.l1TableOffset + 4, h.refcountTableOffset + 8, size - 65536 - 100, size - 100]) {
    const p = join(dir, `trunc-${cut}.qcow2`);
    await copyFile(good, p);
    await truncate(p, cut);
    const err = await readAll(p);
    t.true(err instanceof Qcow2FormatError, `cut at ${cut}: ${String(err)}`);
    t.regex((err as Error).message, /truncated|past the end/);
  }
});

test('L1 table offset past the end of the file, and unaligned', async (t) => {
  const past = await variant('l1-past.qcow2', (b) => void b.writeBigUInt64BE(0x100000000n, 40));
  assertFormatError(t, await readAll(past), past, /L1 table.*past the end/, 40);
  const unaligned = await variant('l1-unaligned.qcow2', (b) => void b.writeBigUInt64BE(BigInt(b.readBigUInt64BE(40)) + 8n, 40));
  assertFormatError(t, await readAll(unaligned), unaligned, /L1 table offset .* not cluster aligned/, 40);
});

test('an L1 entry pointing into the header, into the L1 table, unaligned, past the end', async (t) => {
  const h = await header(good);
  const cases: Array<[string, bigint, RegExp]> = [
    ['into-header', 512n, /not cluster aligned/],
    ['into-l1', BigInt(h.l1TableOffset), /overlaps the L1 table/],
    ['into-refcount', BigInt(h.refcountTableOffset), /overlaps the refcount table/],
    ['past-end', 0x40000000n, /past the end/],
  ];
  for (const [name, value, re] of cases) {
    const p = await variant(`l1e-${name}.qcow2`, (b) => void b.writeBigUInt64BE(value | (1n << 63n), h.l1TableOffset));
    assertFormatError(t, await readAll(p), p, re, h.l1TableOffset);
  }
});

test('an L2 entry pointing into metadata or unaligned', async (t) => {
  const h = await header(good);
  const l2 = Number((await readFile(good)).readBigUInt64BE(h.l1TableOffset) & 0x00fffffffffffe00n);
  const into = await variant('l2e-header.qcow2', (b) => void b.writeBigUInt64BE(BigInt(h.l1TableOffset) | (1n << 63n), l2));
  assertFormatError(t, await readAll(into), into, /overlaps the L1 table/, l2);
  const unaligned = await variant('l2e-unaligned.qcow2', (b) => void b.writeBigUInt64BE(0x10200n | (1n << 63n), l2 + 8));
  assertFormatError(t, await readAll(unaligned), unaligned, /not cluster aligned/, l2 + 8);
});

test('huge l1_size and too small l1_size', async (t) => {
  const huge = await variant('l1-huge.qcow2', (b) => void b.writeUInt32BE(0xffffffff, 36));
  assertFormatError(t, await readAll(huge), huge, /l1_size .* exceeds/, 36);
  const small = await variant('l1-small.qcow2', (b) => void b.writeUInt32BE(0, 36));
  assertFormatError(t, await readAll(small), small, /too small/, 36);
});

test('overlapping tables: L1 over the refcount table', async (t) => {
  const h = await header(good);
  const p = await variant('overlap.qcow2', (b) => void b.writeBigUInt64BE(BigInt(h.refcountTableOffset), 40));
  assertFormatError(t, await readAll(p), p, /refcount table at \d+ overlaps the L1 table/, 48);
});

test('compressed clusters: length past the end, corrupt stream, wrong size', async (t) => {
  const h = await header(compressed);
  const bytes = await readFile(compressed);
  const l2 = Number(bytes.readBigUInt64BE(h.l1TableOffset) & 0x00fffffffffffe00n);
  const entry = bytes.readBigUInt64BE(l2);
  t.true((entry & (1n << 62n)) !== 0n, 'fixture has a compressed cluster');
  const shift = BigInt(62 - (h.clusterBits - 8));
  const host = entry & ((1n << shift) - 1n);
  // Past the end: the descriptor claims 255 extra sectors.
  const past = await variant('c-past.qcow2', (b) => void b.writeBigUInt64BE((1n << 62n) | (255n << shift) | BigInt(b.length - 100), l2), compressed);
  assertFormatError(t, await readAll(past), past, /runs past the end/, l2);
  // Corrupt stream: garbage where the deflate data lives.
  const corrupt = await variant('c-corrupt.qcow2', (b) => void b.fill(0xff, Number(host), Number(host) + 64), compressed);
  assertFormatError(t, await readAll(corrupt), corrupt, /compressed cluster .*(corrupt|decompresses)/, l2);
  // Wrong size: the stream of a different (shorter) cluster spliced in front.
  const short = await variant('c-short.qcow2', (b) => {
    const tiny = Buffer.from([0x63, 0x60, 0x00, 0x00]); // raw deflate of 1 zero byte
    tiny.copy(b, Number(host));
  }, compressed);
  assertFormatError(t, await readAll(short), short, /decompresses to \d+ bytes instead of the cluster size/, l2);
});

test('backing chains: loop, self loop, too deep, missing file', async (t) => {
  const a = join(dir, 'loop-a.qcow2');
  const b = join(dir, 'loop-b.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', a, '1M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'loop-a.qcow2', '-F', 'qcow2', b, '1M'], { cwd: dir });
  await qemuImg(['rebase', '-u', '-b', 'loop-b.qcow2', '-F', 'qcow2', a], { cwd: dir });
  let err = await readAll(b);
  t.true(err instanceof Qcow2FormatError);
  t.regex((err as Error).message, /backing chain loops/);
  const self = join(dir, 'self.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', self, '1M']);
  await qemuImg(['rebase', '-u', '-b', 'self.qcow2', '-F', 'qcow2', self], { cwd: dir });
  err = await readAll(self);
  t.regex(String((err as Error)?.message), /backing chain loops/);
  let prev = join(dir, 'deep-0.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', prev, '1M']);
  for (let i = 1; i <= 66; i++) {
    const p = join(dir, `deep-${i}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', `deep-${i - 1}.qcow2`, '-F', 'qcow2', p, '1M'], { cwd: dir });
    prev = p;
  }
  err = await readAll(prev);
  t.true(err instanceof Qcow2FormatError);
  t.regex((err as Error).message, /deeper than 64/);
  t.is(await readAll(join(dir, 'deep-60.qcow2')), null, 'a chain of 61 opens');
  const orphan = join(dir, 'orphan.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'nowhere.qcow2', '-F', 'qcow2', orphan, '1M'], { cwd: dir });
  err = await readAll(orphan);
  t.true(err instanceof ImageOpenError);
  t.regex((err as Error).message, /orphan\.qcow2: backing file .*nowhere\.qcow2.* cannot be opened/);
});

test('unknown incompatible feature refused, named from the feature table', async (t) => {
  const p = await variant('incompat.qcow2', (b) => void b.writeBigUInt64BE(b.readBigUInt64BE(72) | (1n << 9n), 72));
  const err = await readAll(p);
  t.true(err instanceof Qcow2UnsupportedError);
  t.regex((err as Error).message, /unsupported incompatible features: unknown incompatible feature bit 9/);
});

test('encryption refused as unsupported', async (t) => {
  const p = join(dir, 'luks.qcow2');
  await qemuImg(['create', '-q', '--object', 'secret,id=sec0,data=123456', '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0', p, '1M']);
  const err = await readAll(p);
  t.true(err instanceof Qcow2UnsupportedError);
  t.regex((err as Error).message, /encrypted images \(LUKS\) are not supported/);
});

test('dirty and corrupt bits are reported, the image still reads', async (t) => {
  const p = await variant('dirty.qcow2', (b) => void b.writeBigUInt64BE(b.readBigUInt64BE(72) | 3n, 72));
  t.is(await readAll(p), null);
  const r = await runCli(['image', 'info', p, '--json']);
  t.is(r.exitCode, 0);
  const info = JSON.parse(r.stdout);
  t.true(info.dirty);
  t.true(info.corrupt);
});

test('unknown header extensions are skipped', async (t) => {
  const p = await variant('ext.qcow2', (b) => {
    // Insert an unknown extension (type 0x12345678, 5 bytes) before the existing ones.
    const hl = b.readUInt32BE(100);
    const rest = Buffer.from(b.subarray(hl, 4096));
    b.writeUInt32BE(0x12345678, hl);
    b.writeUInt32BE(5, hl + 4);
    b.write('hello', hl + 8);
    rest.copy(b, hl + 16, 0, 4096 - hl - 16);
  });
  t.is(await readAll(p), null);
  const ours = await runCli(['image', 'map', p, '--json']);
  const plain = await runCli(['image', 'map', good, '--json']);
  t.is(ours.exitCode, 0);
  t.deepEqual(JSON.parse(ours.stdout), JSON.parse(plain.stdout));
});

test('CLI: bad input exits 2 naming the image and the offset; no stack trace', async (t) => {
  const p = await variant('cli-bad.qcow2', (b) => void b.writeUInt32BE(0xffffffff, 36));
  for (const args of [['image', 'info', p, '--json'], ['image', 'map', p, '--json'], ['image', 'export', p, join(dir, 'x.raw')], ['image', 'diff', good, p, '--granularity', '4096', '--json']]) {
    const r = await runCli(args);
    t.is(r.exitCode, 2, args.join(' '));
    t.is(r.stdout, '');
    t.regex(r.stderr, /Qcow2FormatError: .*cli-bad\.qcow2 at offset 36 \(0x24\): l1_size/);
    t.notRegex(r.stderr, /at .*\.ts:\d+/);
  }
  const missing = await runCli(['image', 'info', join(dir, 'missing.qcow2'), '--json']);
  t.is(missing.exitCode, 2);
  t.regex(missing.stderr, /ImageOpenError: .*missing\.qcow2: cannot open \(ENOENT\)/);
  const usage = await runCli(['image', 'diff', good]);
  t.is(usage.exitCode, 2);
  const badGran = await runCli(['image', 'diff', good, good, '--granularity', 'lots']);
  t.is(badGran.exitCode, 2);
  t.regex(badGran.stderr, /granularity/);
  const badRange = await runCli(['image', 'diff', good, good, '--granularity', '4096', '--range', '0:1G']);
  t.is(badRange.exitCode, 2);
  t.regex(badRange.stderr, /runs past the end/);
});

test('every error a reader throws on garbage is an ImageError', async (t) => {
  const p = await variant('garbage.qcow2', (b) => {
    for (let i = 8; i < 512; i++) b[i] = (i * 37) & 0xff;
  });
  const err = await readAll(p);
  t.true(err instanceof ImageError);
});
