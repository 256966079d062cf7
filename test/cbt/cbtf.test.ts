/**
 * The CBTF decoder on real NTFS (mkntfs + ntfscp) inside GPT partitions (sgdisk) of a qcow2 disk:
 * every validity rule gives `lost` with its reason; a stale bitmap with CLEAN set is MISSED (the
 * known-bad driver that forgot to clear CLEAN); a complete one is EXACT. The file is found
 * independently of our NTFS parser (by its unique bytes in the raw disk) to write the "driver's"
 * persists into the overlay.
 */
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { execa } from 'execa';
import { bitmapFromBlocks, CBTF_FLAG_CLEAN, CBTF_FLAG_TRACKING_LOST, encodeCbtf, type CbtfWriteSpec } from '../../src/cbt/index.ts';
import { crc32c } from '../../src/cbt/crc32c.ts';
import { verifyImages } from '../../src/scenario/oracle.ts';
import { defaultProviders } from '../../src/cbt/index.ts';
import { qemuImg, qemuIo, runCli, tempDir } from '../helpers/tools.ts';

const MiB = 1024 * 1024;
const P1 = { offset: 1 * MiB, length: 64 * MiB };
const P2 = { offset: 65 * MiB, length: 64 * MiB };
const SHIFT = 16; // 64 KiB blocks
const GEN = '6f1d2c3b-4a59-4e8f-9a0b-1c2d3e4f5a6b';
const FILE_SIZE = 256 * 1024;

let dir: string;
let cleanup: () => Promise<void>;
let base: string;
/** Disk offsets of the CBTF file on partition 1 and on partition 2. */
let fileOn: { p1: number; p2: number };
let serial2: bigint;

async function ntfsPartition(name: string, files: Array<[string, Buffer]>): Promise<Buffer> {
  const img = join(dir, name);
  const fh = await open(img, 'w');
  await fh.truncate(64 * MiB);
  await fh.close();
  await execa('mkntfs', ['-F', '-Q', '-s', '512', '-c', '4096', '-L', name, img]);
  for (const [path, data] of files) {
    const src = join(dir, `${name}-${path.replace(/\W/g, '_')}`);
    await writeFile(src, data);
    await execa('ntfscp', ['-f', img, src, path]);
  }
  return readFile(img);
}

function initialFile(tag: number): Buffer {
  // What the driver pre-allocates at start: a valid header (generation, not yet CLEAN), unique filler.
  const f = encodeCbtf({ generation: GEN, flags: 0, granularityShift: SHIFT, volumeSize: BigInt(P2.length), volumeSerial: 0n, bitmap: Buffer.alloc(128), fileSize: FILE_SIZE });
  randomBytes(FILE_SIZE - 8192).copy(f, 8192);
  f[8192] = tag;
  return f;
}

test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-cbtf-'));
  const raw = join(dir, 'disk.raw');
  const fh = await open(raw, 'w');
  await fh.truncate(130 * MiB);
  await fh.close();
  await execa('sgdisk', ['-n', `1:${P1.offset / 512}:+64M`, '-t', '1:0700', '-n', `2:${P2.offset / 512}:+64M`, '-t', '2:0700', raw]);
  const f1 = initialFile(1);
  const f2 = initialFile(2);
  const p1 = await ntfsPartition('p1', [['cbt.dat', f1]]);
  const p2 = await ntfsPartition('p2', [['cbt.dat', f2], ['data.bin', Buffer.alloc(4 * MiB, 7)]]);
  const d = await open(raw, 'r+');
  await d.write(p1, 0, p1.length, P1.offset);
  await d.write(p2, 0, p2.length, P2.offset);
  await d.close();
  const disk = await readFile(raw);
  // Find each file by its unique filler, independently of src/fs/ntfs.
  const at1 = disk.indexOf(f1.subarray(8192, 8192 + 4096));
  const at2 = disk.indexOf(f2.subarray(8192, 8192 + 4096));
  if (at1 < 0 || at2 < 0) throw new Error('fixture files not found in the raw disk');
  fileOn = { p1: at1 - 8192, p2: at2 - 8192 };
  if (!disk.subarray(fileOn.p1, fileOn.p1 + FILE_SIZE).equals(f1) || !disk.subarray(fileOn.p2, fileOn.p2 + FILE_SIZE).equals(f2)) throw new Error('fixture files are not contiguous');
  serial2 = disk.readBigUInt64LE(P2.offset + 0x48);
  base = join(dir, 'base.qcow2');
  await qemuImg(['convert', '-O', 'qcow2', raw, base]);
});
test.after.always(async () => {
  await cleanup?.();
});

let n = 0;
/** An epoch: the guest writes `written` blocks of partition 2, then the driver persists `file`. */
async function epoch(written: number[], file: Partial<CbtfWriteSpec> & { blocks: number[] }, where: 'p1' | 'p2' = 'p1', mutate?: (b: Buffer) => void): Promise<string> {
  const id = n++;
  const top = join(dir, `top-${id}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top], { cwd: dir });
  const cmds = written.map((b) => `write -P ${0x30 + (b % 100)} ${P2.offset + b * 2 ** SHIFT + 512} 4k`);
  const bytes = encodeCbtf({
    generation: GEN,
    flags: CBTF_FLAG_CLEAN,
    granularityShift: SHIFT,
    volumeSize: BigInt(P2.length),
    volumeSerial: serial2,
    sequence: 7n,
    epochId: 3n,
    bitmap: bitmapFromBlocks(P2.length, SHIFT, file.blocks),
    ...file,
  });
  mutate?.(bytes);
  const src = join(dir, `persist-${id}.bin`);
  await writeFile(src, bytes);
  cmds.push(`write -s ${src} ${fileOn[where]} ${bytes.length}`);
  await qemuIo(top, cmds);
  return top;
}

const opts = (extra: Record<string, string> = {}) => ({ volume: '1', path: '/cbt.dat', tracked: '2', ...extra });

async function verdictOf(top: string, options = opts()) {
  return verifyImages({ base, top, decoder: 'cbtf', options, providers: defaultProviders });
}

test('CRC-32C is the Castagnoli CRC', (t) => {
  t.is(crc32c(Buffer.from('123456789')), 0xe3069283);
  t.is(crc32c(Buffer.alloc(32)), 0x8a9136aa);
  const big = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
  t.is(crc32c(big.subarray(500), crc32c(big.subarray(0, 500))), crc32c(big));
});

test('a complete bitmap with CLEAN set is EXACT; a stale one is MISSED (the known-bad driver)', async (t) => {
  const written = [0, 5, 6, 300, 1023];
  const good = await verdictOf(await epoch(written, { blocks: written }));
  t.is(good.claim.state, 'valid', good.claim.reason ?? '');
  t.is(good.result.verdict, 'EXACT');
  t.is(good.result.granularity, 65536);
  const stale = await verdictOf(await epoch(written, { blocks: [0, 5, 6] }));
  t.is(stale.result.verdict, 'MISSED');
  t.deepEqual(stale.result.missed, [[300, 1], [1023, 1]]);
  const superset = await verdictOf(await epoch(written, { blocks: [...written, 9] }));
  t.is(superset.result.verdict, 'SUPERSET');
});

test('the file on the tracked volume itself: its own extents are excluded from the truth', async (t) => {
  const written = [100, 101];
  const top = await epoch(written, { blocks: written }, 'p2');
  const r = await verdictOf(top, opts({ volume: '2', tracked: '2' }));
  t.is(r.result.verdict, 'EXACT', JSON.stringify(r.result));
  t.true(r.claim.excluded.some(([o, l]) => o <= fileOn.p2 && fileOn.p2 < o + l));
});

test('every validity rule breaks to lost → RESYNC, with its reason', async (t) => {
  const w = [10, 11];
  const cases: Array<[string, Partial<CbtfWriteSpec>, ((b: Buffer) => void) | undefined, RegExp, Record<string, string>?]> = [
    ['crash left CLEAN clear', { flags: 0 }, undefined, /CLEAN is not set/],
    ['tracking lost', { flags: CBTF_FLAG_CLEAN | CBTF_FLAG_TRACKING_LOST }, undefined, /TRACKING_LOST/],
    ['generation changed', { generation: '00000000-1111-2222-3333-444444444444' }, undefined, /generation .* differs/, { generation: GEN }],
    ['header CRC', { corruptHeaderCrc: true }, undefined, /header CRC-32C mismatch/],
    ['bitmap CRC', { corruptBitmapCrc: true }, undefined, /bitmap CRC-32C mismatch/],
    ['bad magic', {}, (b) => b.write('CBTFILE2', 0, 'latin1'), /bad magic/],
    ['version', {}, (b) => b.writeUInt32LE(2, 8), /unsupported version 2/],
    ['volume size', { volumeSize: BigInt(P2.length - 4096) }, undefined, /tracked volume size .* does not match/],
    ['serial', { volumeSerial: 0x1234n }, undefined, /volume serial 0x1234 is not the tracked volume's/],
    ['granularity', { granularityShift: 30 }, undefined, /granularity shift 30 outside 12\.\.24/],
    ['short bitmap', { bitmap: Buffer.alloc(16) }, undefined, /cannot cover 1024 blocks/],
  ];
  for (const [what, spec, mutate, reason, extra] of cases) {
    const top = await epoch(w, { blocks: w, ...spec }, 'p1', mutate);
    const r = await verdictOf(top, opts(extra));
    t.is(r.claim.state, 'lost', what);
    t.regex(r.claim.reason ?? '', reason, what);
    t.is(r.result.verdict, 'RESYNC', what);
  }
  // The generation matches: valid.
  const ok = await verdictOf(await epoch(w, { blocks: w }), opts({ generation: GEN.toUpperCase() }));
  t.is(ok.result.verdict, 'EXACT');
});

test('CLI: cbt decode and verify with partitions and NTFS', async (t) => {
  const written = [1, 2, 3];
  const good = await epoch(written, { blocks: written });
  const optArgs = Object.entries(opts()).flatMap(([k, v]) => ['--opt', `${k}=${v}`]);
  const dec = await runCli(['cbt', 'decode', good, '--decoder', 'cbtf', ...optArgs, '--json']);
  t.is(dec.exitCode, 0, dec.stderr);
  const claim = JSON.parse(dec.stdout);
  t.deepEqual(Object.keys(claim), ['decoder', 'state', 'reason', 'granularity', 'volume', 'blocks', 'excluded']);
  t.deepEqual(claim.volume, P2);
  t.deepEqual(claim.blocks, [[1, 3]]);
  t.is(claim.excluded[0][0], fileOn.p1);
  const stale = await epoch(written, { blocks: [1] });
  const v = await runCli(['verify', '--base', base, '--top', stale, '--decoder', 'cbtf', ...optArgs, '--json']);
  t.is(v.exitCode, 1);
  t.deepEqual(JSON.parse(v.stdout), { verdict: 'MISSED', missedBlocks: 2, extraBlocks: 0, changedBlocks: 3, claimedBlocks: 1, granularity: 65536, missed: [[2, 2]] });
  const noFile = await runCli(['cbt', 'decode', good, '--decoder', 'cbtf', '--opt', 'volume=1', '--opt', 'path=/missing.dat', '--json']);
  t.is(noFile.exitCode, 2);
  t.regex(noFile.stderr, /NtfsNotFoundError/);
  const noPart = await runCli(['cbt', 'decode', good, '--decoder', 'cbtf', '--opt', 'volume=9', '--opt', 'path=/cbt.dat', '--json']);
  t.is(noPart.exitCode, 2);
  t.regex(noPart.stderr, /no partition 9/);
});

test('a plugin decoder (docs/examples/sidecar-decoder.js) runs through the same context', async (t) => {
  const top = join(dir, 'plugin-top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top], { cwd: dir });
  // The sidecar list lives in place of cbt.dat on partition 1: blocks 3, 4 and 9 of 1 MiB.
  const list = Buffer.alloc(FILE_SIZE);
  list.write('3\n4\n9\n');
  list.write('\n \n12\n', 100); // past the NUL: not part of the list
  const src = join(dir, 'list.bin');
  // Only the first 4 KiB is rewritten: the rest of the file keeps its random filler (which may
  // hold newlines and blanks), and the text must end at the first NUL.
  await writeFile(src, list.subarray(0, 4096));
  await qemuIo(top, [`write -s ${src} ${fileOn.p1} 4096`, `write -P 0x77 ${P1.offset + 3 * MiB} 8k`]);
  const r = await runCli(['cbt', 'decode', top, '--decoder', join('docs', 'examples', 'sidecar-decoder.js'), '--opt', 'volume=1', '--opt', 'path=/cbt.dat', '--json'], { cwd: join(dir, '..', '..', process.cwd()) });
  t.is(r.exitCode, 0, r.stderr);
  const claim = JSON.parse(r.stdout);
  t.is(claim.decoder, 'sidecar-list');
  t.deepEqual(claim.blocks, [[3, 2], [9, 1]]);
  const broken = join(dir, 'broken.mjs');
  await writeFile(broken, 'export async function decode() { return { decoder: "x", state: "valid", granularity: 0 }; }\n');
  const b = await runCli(['cbt', 'decode', top, '--decoder', broken, '--json']);
  t.is(b.exitCode, 2);
  t.regex(b.stderr, /DecoderPluginError: decoder .*broken\.mjs returned an invalid claim: `reason` must be a string or null; `granularity` must be a positive integer/);
  const missing = await runCli(['cbt', 'decode', top, '--decoder', './nope.js', '--json']);
  t.is(missing.exitCode, 2);
  t.regex(missing.stderr, /does not exist/);
});
