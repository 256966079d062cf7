/**
 * The reference guest with volumes (set-up file, fw_cfg opt/cbt/setup) under TCG: the GPT and file
 * systems made on the first boot and kept by a reboot, file plans, the Windows shutdown order
 * (CBT-PHASE markers), the cbtf-ref tracker's CBTF file decoded on the host with the project's own
 * parser and CRC, the flush-before-fs known-bad variant, and a resize. Oracles on the host:
 * `sgdisk`, `ntfsinfo`, `dumpe2fs`, `ntfscat` on raw copies of the qcow2 images.
 */
import { execFile } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { parseCbtfHeader, CBTF_FLAG_CLEAN, CBTF_FLAG_TRACKING_LOST, type CbtfHeader } from '../../src/cbt/cbtf/format.ts';
import { crc32c } from '../../src/cbt/crc32c.ts';
import { LINUX_REF_MARKERS } from '../../src/guest/linux-ref-image.ts';
import { linuxRefSetupText } from '../../src/guest/linux-ref-setup.ts';
import { qemuImg, tempDir } from '../helpers/tools.ts';
import { bootGuest, jsonLines } from '../helpers/vm-guest.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;
const META = 64 * MiB; // dm-era metadata area: the space starts after it

interface Volume {
  volume: string;
  serial: string;
  part: number;
  fs: string;
  start: number;
  size: number;
  mount: string | null;
  tracked: boolean;
}

const cleanups: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const c of cleanups) await c();
});

async function workDir(prefix: string): Promise<string> {
  const { dir, cleanup } = await tempDir(prefix);
  cleanups.push(cleanup);
  return dir;
}

async function disk(dir: string, id: string, size: string): Promise<string> {
  const p = join(dir, `${id}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', p, size]);
  return p;
}

/** A raw copy of the whole qcow2 chain (-U: the VM may still run). */
async function rawCopy(image: string, out: string): Promise<string> {
  await qemuImg(['convert', '-U', '-O', 'raw', image, out]);
  return out;
}

/** Bytes [start, start+len) of a raw file into a new file. */
async function slice(raw: string, start: number, len: number, out: string): Promise<string> {
  await run('sh', ['-c', 'dd if="$1" of="$2" bs=1M iflag=skip_bytes,count_bytes skip="$3" count="$4" status=none', 'sh', raw, out, String(start), String(len)]);
  return out;
}

interface Part {
  first: number;
  last: number;
  size: number;
}
async function gptPartitions(raw: string): Promise<Part[]> {
  const { stdout } = await run('sgdisk', ['-p', raw]);
  return [...stdout.matchAll(/^\s+(\d+)\s+(\d+)\s+(\d+)\s/gm)].map((m) => ({ first: Number(m[2]), last: Number(m[3]), size: (Number(m[3]) - Number(m[2]) + 1) * 512 }));
}

interface Cbtf {
  header: CbtfHeader;
  headerCrcOk: boolean;
  bitmapCrcOk: boolean;
  blocks: number[];
  bytes: Buffer;
}
/** The CBTF file read through NTFS (ntfscat of the partition) and checked with the project's parser. */
async function readCbtf(ntfsPartition: string, path: string): Promise<Cbtf> {
  const { stdout } = await run('ntfscat', [ntfsPartition, path], { encoding: 'buffer', maxBuffer: 64 * MiB });
  const bytes = stdout as unknown as Buffer;
  const head = Buffer.from(bytes.subarray(0, 4096));
  const header = parseCbtfHeader(head);
  head.writeUInt32LE(0, 92);
  const bitmap = bytes.subarray(Number(header.bitmapOffset), Number(header.bitmapOffset + header.bitmapLength));
  const blocks: number[] = [];
  for (let i = 0; i < bitmap.length * 8; i++) if (bitmap[i >> 3] & (1 << (i & 7))) blocks.push(i);
  return { header, headerCrcOk: crc32c(head) === header.headerCrc, bitmapCrcOk: crc32c(bitmap) === header.bitmapCrc, blocks, bytes };
}

/** CBT-PHASE markers of a console log, in order. */
async function phases(consoleLog: string): Promise<string[]> {
  const text = await readFile(consoleLog, 'latin1');
  return [...text.matchAll(/CBT-PHASE (\S+) [\d.]+/g)].map((m) => m[1]);
}

/** cbtf-ref on data0: the CBTF file on a 64 MiB NTFS partition 1, tracking partition 2 (the rest), as the host writes it. */
function cbtfSetup(variant: string, trackedFs: 'ext4' | 'none'): string {
  return linuxRefSetupText({
    tracker: 'cbtf-ref',
    variant,
    volumes: [
      { serial: 'data0', index: 1, fs: 'ntfs', size: 64 << 20 },
      { serial: 'data0', index: 2, fs: trackedFs, size: null },
    ],
    cbtf: { file: { serial: 'data0', index: 1, path: '/cbt/cbt.bin' }, tracked: { serial: 'data0', index: 2 }, blockBytes: 65536 },
  });
}

test.serial('volumes: the first boot makes GPT + NTFS + ext4 inside the dm-era space, a reboot keeps them, file plans on both', async (t) => {
  const dir = await workDir('cbt-vol-a-');
  const data0 = await disk(dir, 'data0', '512M');
  const setup = 'CBT_VOLUMES="data0:1:ntfs:134217728 data0:2:ext4:0"\n';
  const g = await bootGuest(t, { runId: 'vol-a', vmId: 'vm', logDir: dir, setup, disks: [{ id: 'data0', path: data0, bus: 'virtio-blk' }] });
  const ready = JSON.parse(await g.sh('cbt-ctl wait-ready 180')) as { uptime: number };
  t.log(`first boot ready at uptime ${ready.uptime} s`);
  const vols = jsonLines<Volume>(await g.sh('cbt-ctl volumes'));
  t.deepEqual(
    vols.map((v) => [v.volume, v.serial, v.part, v.fs, v.start, v.mount, v.tracked]),
    [
      ['data0p1', 'data0', 1, 'ntfs', MiB, '/mnt/data0p1', true],
      ['data0p2', 'data0', 2, 'ext4', MiB + 128 * MiB, '/mnt/data0p2', true],
    ],
  );
  t.is(vols[0].size, 128 * MiB);
  t.regex(await g.sh('cat /proc/mounts'), /vol-data0p1 \/mnt\/data0p1 fuseblk[\s\S]*vol-data0p2 \/mnt\/data0p2 ext4/);
  t.regex(await g.sh('dmsetup table vol-data0p2'), /^0 \d+ linear \d+:\d+ 264192$/m);
  t.is((await g.sh('cat /proc/sys/vm/dirty_writeback_centisecs')).trim(), '0');

  const plan = ['mkdir d', 'create d/a 300000 7', 'overwrite d/a 4096 8192 0x21', 'append d/a 5000 9', 'create b 4096 1', 'rename b c', 'truncate d/a 200000', 'fsync d/a', 'dirsync d', 'create gone 10 2', 'delete gone'].join('\n') + '\n';
  for (const v of ['data0p1', 'data0p2']) {
    t.deepEqual(jsonLines(await g.sh(`cbt-ctl files ${v}`, plan)), [{ volume: v, ops: 11, bytes: 300000 + 8192 + 5000 + 4096 + 10 }]);
  }
  const bad = await g.ssh.exec('cbt-ctl files data0p2', { stdin: 'mkdir e\noverwrite nope 0 1 1\n' });
  t.is(bad.exitCode, 1);
  t.regex(bad.stderr, /line 2 \(overwrite nope 0 1 1\)/);
  t.deepEqual(jsonLines(await g.sh('cbt-ctl space data0p2')), [{ serial: 'data0p2', size: vols[1].size, align: 1 }]);

  // Reboot: the GPT is found and reused (no mkfs), the files are there.
  const mark = g.vm.console.end;
  const [r] = jsonLines<{ action: string; metadataCommitted: boolean; phases: Array<{ phase: string }> }>(await g.sh('cbt-ctl reboot'));
  t.deepEqual(r.phases.map((p) => p.phase), ['pre-fs', 'fs-unmounted', 'post-fs', 'power-off']);
  await g.vm.waitForConsole(LINUX_REF_MARKERS.sshUp, { from: mark, timeoutMs: 120_000 });
  await g.reconnect(g.vm, mark);
  const ready2 = JSON.parse(await g.sh('cbt-ctl wait-ready 180')) as { uptime: number };
  // (The guest's uptime keeps counting across a reboot inside the same QEMU here.)
  t.log(`second boot ready at uptime ${ready2.uptime} s (reboot at ${r.phases[3] ? (r.phases[3] as { uptime?: number }).uptime : '?'} s)`);
  t.deepEqual(jsonLines<Volume>(await g.sh('cbt-ctl volumes')), vols);
  t.is((await g.sh('stat -c %s /mnt/data0p1/d/a /mnt/data0p2/d/a /mnt/data0p2/c')).trim().split('\n').join(' '), '200000 200000 4096');
  t.notRegex(await readFile(g.vm.consoleLogPath, 'latin1').then((s) => s.slice(s.lastIndexOf('CBT-SSH-UP'))), /GPT made/);
  const stop = await g.vm.stop({ graceful: async () => g.sh('cbt-ctl shutdown') });
  t.is(stop.shutdown, 'clean');

  // Offline: the GPT is in the data area after the dm-era metadata; NTFS and ext4 inside.
  const raw = await rawCopy(data0, join(dir, 'data0.raw'));
  const space = await slice(raw, META, 512 * MiB - META, join(dir, 'space.raw'));
  const parts = await gptPartitions(space);
  t.deepEqual(parts.map((p) => [p.first * 512, p.size]), [
    [vols[0].start, vols[0].size],
    [vols[1].start, vols[1].size],
  ]);
  const ntfs = await slice(space, vols[0].start, vols[0].size, join(dir, 'p1.ntfs'));
  t.regex((await run('ntfsinfo', ['-m', ntfs])).stdout, /Cluster Size: 4096/);
  t.is((await run('ntfscat', [ntfs, '/c'], { encoding: 'buffer' })).stdout.length, 4096);
  const ext4 = await slice(space, vols[1].start, vols[1].size, join(dir, 'p2.ext4'));
  const { stdout: sb } = await run('dumpe2fs', ['-h', ext4]);
  t.regex(sb, /Filesystem state:\s+clean/);
  t.regex(sb, /Filesystem features:.*has_journal.*extent/);
});

test.serial('cbtf-ref: CLEAN clear after load; an orderly shutdown persists exactly the written blocks; resize grows partition and bitmap', async (t) => {
  const dir = await workDir('cbt-vol-b-');
  const data0 = await disk(dir, 'data0', '256M');
  const setup = cbtfSetup('normal', 'none');
  const g = await bootGuest(t, { runId: 'vol-b', vmId: 'vm', logDir: dir, setup, untracked: ['data0'], disks: [{ id: 'data0', path: data0, bus: 'virtio-blk' }] });
  await g.sh('cbt-ctl wait-ready 180');
  const vols = jsonLines<Volume>(await g.sh('cbt-ctl volumes'));
  t.deepEqual(vols.map((v) => [v.volume, v.fs, v.tracked, v.mount]), [
    ['data0p1', 'ntfs', false, '/mnt/data0p1'],
    ['data0p2', 'none', true, null],
  ]);
  const [st] = jsonLines<{ state: string; tracker: string; fileExtents: number; sequence: string }>(await g.sh('cbt-ctl status'));
  t.deepEqual([st.tracker, st.state, st.sequence], ['cbtf-ref', 'active', '1']);
  t.true(st.fileExtents >= 1);

  // After load: CLEAN clear on disk (and TRACKING_LOST: a new file, no trusted prior state).
  const rawLoad = await rawCopy(data0, join(dir, 'load.raw'));
  const loaded = await readCbtf(await slice(rawLoad, vols[0].start, vols[0].size, join(dir, 'load.ntfs')), '/cbt/cbt.bin');
  t.is(loaded.header.magic, 'CBTFILE1');
  t.true(loaded.headerCrcOk);
  t.is(loaded.header.flags & CBTF_FLAG_CLEAN, 0);
  t.truthy(loaded.header.flags & CBTF_FLAG_TRACKING_LOST);

  const [cp] = jsonLines<{ generation: string; epochId: string; era: number; volume: string }>(await g.sh('cbt-ctl checkpoint data0'));
  t.is(cp.volume, 'data0p2');
  t.regex(cp.generation, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  t.is(cp.epochId, '1');
  t.is(cp.generation, loaded.header.generation);
  await g.sh('cbt-ctl write data0p2', `0 4096 1\n${10 * BLOCK} ${2 * BLOCK} 2\n${40 * BLOCK + 100} 1 3\n`);

  // Resize: QMP block_resize, then the guest grows GPT, the last volume and the tracker.
  const oldSize = vols[1].size;
  await g.vm.qmp.execute('block_resize', { 'node-name': g.vm.disk('data0').topNode, size: 320 * MiB });
  const [rs] = jsonLines<{ serial: string; size: number; volumes: Volume[] }>(await g.sh(`cbt-ctl resize data0 ${320 * MiB}`));
  t.is(rs.size, 320 * MiB);
  const grown = rs.volumes[1];
  t.is(grown.start, vols[1].start);
  t.true(grown.size > oldSize + 60 * MiB, `grown to ${grown.size}`);
  const pastOld = Math.ceil(oldSize / BLOCK) + 3;
  await g.sh('cbt-ctl write data0p2', `${pastOld * BLOCK} 4096 4\n`);

  const stop = await g.vm.stop({ graceful: async () => g.sh('cbt-ctl shutdown') });
  t.is(stop.shutdown, 'clean');
  t.deepEqual(await phases(g.vm.consoleLogPath), ['pre-fs', 'fs-unmounted', 'post-fs', 'power-off']);

  const raw = await rawCopy(data0, join(dir, 'data0.raw'));
  const parts = await gptPartitions(raw);
  t.is(parts[1].size, grown.size);
  t.true(parts[1].last * 512 > 310 * MiB);
  const f = await readCbtf(await slice(raw, vols[0].start, vols[0].size, join(dir, 'p1.ntfs')), '/cbt/cbt.bin');
  t.true(f.headerCrcOk);
  t.true(f.bitmapCrcOk);
  t.is(f.header.flags, CBTF_FLAG_CLEAN);
  t.is(f.header.sequence, 3n); // load 1, checkpoint 2, persist 3
  t.is(f.header.generation, cp.generation);
  t.is(f.header.epochId, 1n);
  t.is(f.header.granularityShift, 16);
  t.is(f.header.volumeSize, BigInt(parts[1].size));
  t.is(f.header.volumeSerial, 0n); // fs none
  t.is(f.header.bitmapOffset, 4096n);
  t.is(f.header.bitmapLength, BigInt(Math.ceil(Math.ceil(parts[1].size / BLOCK) / 8)));
  t.deepEqual(f.blocks, [0, 10, 11, 40, pastOld]);
});

test.serial('flush-before-fs (known-bad): persists at pre-fs, so the unmount writes of ext4 are missing from the bitmap', async (t) => {
  const dir = await workDir('cbt-vol-c-');
  const data0 = await disk(dir, 'data0', '256M');
  const setup = cbtfSetup('flush-before-fs', 'ext4');
  const g = await bootGuest(t, { runId: 'vol-c', vmId: 'vm', logDir: dir, setup, untracked: ['data0'], disks: [{ id: 'data0', path: data0, bus: 'virtio-blk' }] });
  await g.sh('cbt-ctl wait-ready 180');
  const vols = jsonLines<Volume>(await g.sh('cbt-ctl volumes'));
  await g.sh('cbt-ctl checkpoint data0');
  // Dirty pages only (no fsync): they reach the disk at the unmount, after the pre-fs persist.
  const plan = Array.from({ length: 20 }, (_, i) => `create f${i} ${(i + 1) * 20000} ${i + 1}`).join('\n') + '\n';
  await g.sh('cbt-ctl files data0p2', plan);
  const before = await rawCopy(data0, join(dir, 'before.raw'));
  const stop = await g.vm.stop({ graceful: async () => g.sh('cbt-ctl shutdown') });
  t.is(stop.shutdown, 'clean');
  const log = await readFile(g.vm.consoleLogPath, 'latin1');
  t.true(log.indexOf('cbtf-ref: persisted') < log.indexOf('CBT-PHASE fs-unmounted'), 'persisted before the unmount');
  t.true(log.indexOf('cbtf-ref: persisted') > log.indexOf('CBT-PHASE pre-fs'));

  const after = await rawCopy(data0, join(dir, 'after.raw'));
  const f = await readCbtf(await slice(after, vols[0].start, vols[0].size, join(dir, 'p1.ntfs')), '/cbt/cbt.bin');
  t.true(f.headerCrcOk && f.bitmapCrcOk);
  t.is(f.header.flags, CBTF_FLAG_CLEAN); // claims a complete bitmap…
  // …serial of the tracked ext4: the first 8 bytes of s_uuid (superblock 1024 + 0x68), little-endian.
  const fh = await open(after);
  const uuid = Buffer.alloc(8);
  await fh.read(uuid, 0, 8, vols[1].start + 1024 + 0x68);
  t.is(f.header.volumeSerial, uuid.readBigUInt64LE(0));
  // Blocks of the tracked volume that the shutdown changed, against the bitmap.
  const a = await open(before);
  const changed: number[] = [];
  const x = Buffer.alloc(BLOCK);
  const y = Buffer.alloc(BLOCK);
  for (let b = 0; b * BLOCK < vols[1].size; b++) {
    const len = Math.min(BLOCK, vols[1].size - b * BLOCK);
    await a.read(x, 0, len, vols[1].start + b * BLOCK);
    await fh.read(y, 0, len, vols[1].start + b * BLOCK);
    if (!x.subarray(0, len).equals(y.subarray(0, len))) changed.push(b);
  }
  await a.close();
  await fh.close();
  const claimed = new Set(f.blocks);
  const missed = changed.filter((b) => !claimed.has(b));
  t.log(`shutdown changed ${changed.length} blocks of data0p2; the bitmap lacks ${missed.length}`);
  t.true(changed.length > 0);
  t.true(missed.length > 0);
});

test.serial('stale-clean (known-bad): after a power cut the file still claims a CLEAN bitmap that lacks the writes', async (t) => {
  const dir = await workDir('cbt-vol-d-');
  const data0 = await disk(dir, 'data0', '256M');
  const setup = cbtfSetup('stale-clean', 'none');
  const g = await bootGuest(t, { runId: 'vol-d', vmId: 'vm', logDir: dir, setup, untracked: ['data0'], disks: [{ id: 'data0', path: data0, bus: 'virtio-blk' }] });
  await g.sh('cbt-ctl wait-ready 180');
  const vols = jsonLines<Volume>(await g.sh('cbt-ctl volumes'));
  await g.sh('cbt-ctl checkpoint data0');
  await g.sh('cbt-ctl write data0p2', `${5 * BLOCK} 4096 1\n`);
  const next = await g.vm.powerCut();
  await next.stop({ graceful: 'none' });
  const raw = await rawCopy(data0, join(dir, 'data0.raw'));
  const f = await readCbtf(await slice(raw, vols[0].start, vols[0].size, join(dir, 'p1.ntfs')), '/cbt/cbt.bin');
  t.true(f.headerCrcOk && f.bitmapCrcOk);
  t.is(f.header.flags, CBTF_FLAG_CLEAN); // a correct tracker would have CLEAN clear here
  t.is(f.header.sequence, 2n); // load 1, checkpoint 2: nothing since
  t.deepEqual(f.blocks, []); // block 5 was written
});
