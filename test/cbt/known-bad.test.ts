/**
 * Known-bad trackers the harness must catch, offline, with a variant of each that must pass:
 * dm-era metadata lacking a changed block (MISSED), a qemu bitmap left in_use by a killed QEMU
 * (RESYNC) or added after the writes began (MISSED). The CBTF cases live in cbtf.test.ts.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { verifyImages } from '../../src/scenario/oracle.ts';
import type { DiskProviders } from '../../src/cbt/index.ts';
import { buildEraMetadata, type EraModel } from '../helpers/era-fixtures.ts';
import { withBitmaps } from '../helpers/qmp-raw.ts';
import { qemuImg, qemuIo, runCli, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-knownbad-'));
});
test.after.always(async () => {
  await cleanup?.();
});

/** These disks carry no partition table: regions are given as offset:length. */
const noPartitions: DiskProviders = {
  readVolumes: async () => [],
  openNtfs: async () => {
    throw new Error('no NTFS in these fixtures');
  },
  detectFs: async () => ({ fs: 'none' }),
};

const MiB = 1024 * 1024;
const META = 8 * MiB;
const DATA = 32 * MiB;
const BLOCK = 64 * 1024;

function model(blocks: number[], currentEra: number): EraModel {
  const nrBlocks = DATA / BLOCK;
  return { seed: 0, blockSectors: BLOCK / 512, nrBlocks, currentEra, writesets: [{ era: currentEra - 1, nrBits: nrBlocks, bits: [...blocks].sort((a, b) => a - b) }], eraArray: new Uint32Array(nrBlocks), current: null };
}

/** base: data + era metadata at era 5; top: overlay with writes to `written` blocks and new metadata. */
async function eraPair(name: string, written: number[], claimed: number[]): Promise<{ base: string; top: string }> {
  const raw = join(dir, `${name}.raw`);
  await writeFile(raw, Buffer.alloc(0));
  await qemuImg(['create', '-q', '-f', 'raw', raw, String(META + DATA)]);
  const md0 = await readFile(await buildEraMetadata(dir, `${name}-md0`, model([], 5)));
  await qemuIo(raw, [`write -P 0x11 ${META} ${DATA}`], ['-f', 'raw']);
  const base = join(dir, `${name}-base.qcow2`);
  const mdFile = join(dir, `${name}-md0.bin`);
  await writeFile(mdFile, md0);
  await qemuImg(['convert', '-O', 'qcow2', raw, base]);
  await qemuIo(base, [`write -s ${mdFile} 0 ${md0.length}`]);
  const top = join(dir, `${name}-top.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', `${name}-base.qcow2`, '-F', 'qcow2', top], { cwd: dir });
  // The guest's writes in era 5 (now archived: dm-era starts era 6 at the next activation)…
  await qemuIo(top, written.map((b) => `write -P ${0x20 + (b % 200)} ${META + b * BLOCK + 4096} 8k`));
  // …and the metadata the tracker committed.
  const md1 = await readFile(await buildEraMetadata(dir, `${name}-md1`, model(claimed, 6)));
  const md1File = join(dir, `${name}-md1.bin`);
  await writeFile(md1File, md1);
  await qemuIo(top, [`write -s ${md1File} 0 ${md1.length}`]);
  return { base, top };
}

const eraOpts = { metadata: `0:${META}`, data: `${META}:${DATA}`, since: '5' };

test('dm-era: metadata lacking a changed block is MISSED; complete metadata is EXACT', async (t) => {
  const written = [3, 10, 11, 200, 511];
  const bad = await eraPair('era-bad', written, [3, 10, 11, 511]);
  const r = await verifyImages({ ...bad, decoder: 'dm-era', options: eraOpts, providers: noPartitions });
  t.is(r.result.verdict, 'MISSED');
  t.deepEqual(r.result.missed, [[200, 1]]);
  t.is(r.result.changedBlocks, 5);
  t.is(r.claim.excluded.length, 1, 'the metadata region is excluded from the truth');
  const good = await eraPair('era-good', written, written);
  const g = await verifyImages({ ...good, decoder: 'dm-era', options: eraOpts, providers: noPartitions });
  t.is(g.result.verdict, 'EXACT');
  const extra = await eraPair('era-extra', written, [...written, 100]);
  const e = await verifyImages({ ...extra, decoder: 'dm-era', options: eraOpts, providers: noPartitions });
  t.is(e.result.verdict, 'SUPERSET');
  t.is(e.result.extraBlocks, 1);
  // Through the CLI: exit 1 on MISSED with the contract's JSON, 0 on EXACT.
  const optArgs = Object.entries(eraOpts).flatMap(([k, v]) => ['--opt', `${k}=${v}`]);
  const cli = await runCli(['verify', '--base', bad.base, '--top', bad.top, '--decoder', 'dm-era', ...optArgs, '--json']);
  t.is(cli.exitCode, 1);
  t.deepEqual(JSON.parse(cli.stdout), { verdict: 'MISSED', missedBlocks: 1, extraBlocks: 0, changedBlocks: 5, claimedBlocks: 4, granularity: BLOCK, missed: [[200, 1]] });
  const ok = await runCli(['verify', '--base', good.base, '--top', good.top, '--decoder', 'dm-era', ...optArgs, '--json']);
  t.is(ok.exitCode, 0, ok.stderr);
  t.is(JSON.parse(ok.stdout).verdict, 'EXACT');
  // A corrupted superblock is detected: lost → RESYNC, which --expect EXACT refuses.
  const corrupt = join(dir, 'era-corrupt-top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'era-good-top.qcow2', '-F', 'qcow2', corrupt], { cwd: dir });
  await qemuIo(corrupt, ['write -P 0x99 64 16']);
  const rs = await runCli(['verify', '--base', good.base, '--top', corrupt, '--decoder', 'dm-era', ...optArgs, '--expect', 'EXACT,SUPERSET', '--json']);
  t.is(rs.exitCode, 1);
  t.is(JSON.parse(rs.stdout).verdict, 'RESYNC');
  const dec = await runCli(['cbt', 'decode', corrupt, '--decoder', 'dm-era', ...optArgs, '--json']);
  t.is(dec.exitCode, 0);
  const claim = JSON.parse(dec.stdout);
  t.is(claim.state, 'lost');
  t.regex(claim.reason, /superblock/);
});

async function bitmapPair(name: string): Promise<{ base: string; top: string }> {
  const base = join(dir, `${name}-base.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']);
  await qemuIo(base, ['write -P 0x41 0 16M', 'write -P 0x42 40M 1M']);
  const top = join(dir, `${name}-top.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', `${name}-base.qcow2`, '-F', 'qcow2', top], { cwd: dir });
  return { base, top };
}

const writes = ['write -P 0x51 4096 4096', 'write -P 0x52 1M 300k', 'write -P 0x42 40M 64k', 'write -z 50M 128k'];

test('qemu-bitmap: a clean quit is EXACT/SUPERSET; a killed QEMU leaves in_use → RESYNC, and expecting EXACT fails', async (t) => {
  const clean = await bitmapPair('bm-clean');
  await withBitmaps(clean.top, dir, [{ name: 'cbt', granularity: 65536 }], writes, 'quit');
  const c = await verifyImages({ ...clean, decoder: 'qemu-bitmap', options: { name: 'cbt' }, providers: noPartitions });
  t.is(c.claim.state, 'valid');
  // Claimed but unchanged: the identical rewrite at 40M (one 64 KiB block) and the zeroes written
  // over zeroes at 50M (two blocks): SUPERSET with three extra blocks.
  t.is(c.result.verdict, 'SUPERSET');
  t.is(c.result.extraBlocks, 3);
  t.is(c.result.changedBlocks, 6);
  t.is(c.result.missedBlocks, 0);
  // The bitmap was stored once (a clean stop), then QEMU reopened the image (marking the bitmap
  // in_use on disk) and was killed.
  const killed = await bitmapPair('bm-killed');
  await withBitmaps(killed.top, dir, [{ name: 'cbt', granularity: 65536 }], [], 'quit');
  await withBitmaps(killed.top, dir, [], writes, 'kill');
  const k = await verifyImages({ ...killed, decoder: 'qemu-bitmap', options: { name: 'cbt' }, providers: noPartitions });
  t.is(k.result.verdict, 'RESYNC');
  t.regex(k.claim.reason ?? '', /in_use/);
  // A bitmap added and never stored (QEMU killed in the same session) is simply absent: RESYNC
  // when the caller knows a power cut lost it (absent=resync), bad input otherwise.
  const never = await bitmapPair('bm-never');
  await withBitmaps(never.top, dir, [{ name: 'cbt', granularity: 65536 }], writes, 'kill');
  const n = await verifyImages({ ...never, decoder: 'qemu-bitmap', options: { name: 'cbt', absent: 'resync' }, providers: noPartitions });
  t.is(n.result.verdict, 'RESYNC');
  t.regex(n.claim.reason ?? '', /absent/);
  await t.throwsAsync(verifyImages({ ...never, decoder: 'qemu-bitmap', options: { name: 'cbt' }, providers: noPartitions }), { name: 'BitmapNotFoundError', message: /no bitmap "cbt" \(it has none/ });
  const lostCli = await runCli(['verify', '--base', never.base, '--top', never.top, '--decoder', 'qemu-bitmap', '--opt', 'name=cbt', '--opt', 'absent=resync', '--json']);
  t.is(lostCli.exitCode, 0, lostCli.stderr);
  t.like(JSON.parse(lostCli.stdout), { verdict: 'RESYNC', reason: 'bitmap "cbt" is absent from the image' }, '--json carries the reason the text output has');
  const cli = await runCli(['verify', '--base', killed.base, '--top', killed.top, '--decoder', 'qemu-bitmap', '--expect', 'EXACT', '--json']);
  t.is(cli.exitCode, 1, 'the known-bad expectation (EXACT after a power cut) must fail');
  t.is(JSON.parse(cli.stdout).verdict, 'RESYNC');
  const ok = await runCli(['verify', '--base', clean.base, '--top', clean.top, '--decoder', 'qemu-bitmap', '--expect', 'EXACT,SUPERSET', '--json']);
  t.is(ok.exitCode, 0, ok.stderr);
});

test('qemu-bitmap: a bitmap added after the first writes is MISSED', async (t) => {
  const late = await bitmapPair('bm-late');
  await qemuIo(late.top, ['write -P 0x61 8M 4k']);
  await withBitmaps(late.top, dir, [{ name: 'cbt', granularity: 65536 }], writes, 'quit');
  const r = await verifyImages({ ...late, decoder: 'qemu-bitmap', options: { name: 'cbt' }, providers: noPartitions });
  t.is(r.result.verdict, 'MISSED');
  t.deepEqual(r.result.missed, [[128, 1]]);
});

test('qemu-bitmap decode through the CLI: the contract JSON', async (t) => {
  const p = await bitmapPair('bm-decode');
  await withBitmaps(p.top, dir, [{ name: 'cbt', granularity: 65536 }], ['write -P 1 0 4k', 'write -P 2 1M 64k'], 'quit');
  const r = await runCli(['cbt', 'decode', p.top, '--decoder', 'qemu-bitmap', '--opt', 'name=cbt', '--json']);
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), { decoder: 'qemu-bitmap', state: 'valid', reason: null, granularity: 65536, volume: { offset: 0, length: 64 * MiB }, blocks: [[0, 1], [16, 1]], excluded: [] });
  const missing = await runCli(['cbt', 'decode', p.top, '--decoder', 'qemu-bitmap', '--opt', 'name=nope', '--json']);
  t.is(missing.exitCode, 2);
  t.regex(missing.stderr, /^cbt-harness: BitmapNotFoundError: .*: no bitmap "nope" \(it has "cbt"; --opt absent=resync to judge it lost\)$/);
  const lost = await runCli(['cbt', 'decode', p.top, '--decoder', 'qemu-bitmap', '--opt', 'name=nope', '--opt', 'absent=resync', '--json']);
  t.is(JSON.parse(lost.stdout).state, 'lost');
  t.is((await runCli(['cbt', 'decode', p.top, '--decoder', 'qemu-bitmap', '--opt', 'absent=maybe'])).exitCode, 2);
  const badOpt = await runCli(['cbt', 'decode', p.top, '--decoder', 'qemu-bitmap', '--opt', 'colour=blue', '--json']);
  t.is(badOpt.exitCode, 2);
  t.regex(badOpt.stderr, /no option `colour`/);
  const unknown = await runCli(['cbt', 'decode', p.top, '--decoder', 'zfs-magic', '--json']);
  t.is(unknown.exitCode, 2);
  t.regex(unknown.stderr, /unknown decoder `zfs-magic`/);
});
