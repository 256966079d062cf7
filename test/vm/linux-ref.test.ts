/**
 * The reference guest under TCG, end to end: SSH with a pinned per-run host key, dm-era on every
 * bus, checkpoints, a write plan, external snapshots, eject/surprise removal/re-plug, clean
 * shutdown, reboot, power cut, and the known-bad drop_writes variant. The oracles are
 * thin-provisioning-tools on the host (`era_dump`, `era_invalidate` on the metadata area read
 * out of the qcow2 chain with `qemu-img dd`) and `qemu-io` reads of the data.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { LINUX_REF_MARKERS } from '../../src/guest/linux-ref-image.ts';
import { qemuImg, tempDir } from '../helpers/tools.ts';
import { bootGuest, eraDumpCurrentEra, eraWrittenSince, extractMetadata, jsonLines, linuxRefImage, stopInTeardown } from '../helpers/vm-guest.ts';

const run = promisify(execFile);
const BLOCK = 64 * 1024; // default era block: 128 sectors
const META = 64 * 1024 * 1024; // default metadata area

interface Status {
  serial: string;
  state: string;
  dev: string;
  bus: string;
  era: number | null;
  metadata: string;
  variant: string;
}

async function disks(n: string[], size = '256M'): Promise<{ dir: string; paths: Record<string, string> }> {
  const { dir, cleanup } = await tempDir('cbt-vm-guest-');
  const paths: Record<string, string> = {};
  for (const id of n) {
    paths[id] = join(dir, `${id}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', paths[id], size]);
  }
  cleanups.push(cleanup);
  return { dir, paths };
}
const cleanups: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const c of cleanups) await c();
});

/** Pattern byte at a data-area offset of a disk, read by qemu-io through the whole chain. */
async function readsPattern(image: string, offset: number, length: number, pattern: number): Promise<boolean> {
  const { stdout } = await run('qemu-io', ['-r', '-U', '-c', `read -P ${pattern} ${META + offset} ${length}`, image]);
  return !/Pattern verification failed|failed/i.test(stdout);
}

test.serial('boot to SSH, dm-era on every bus, checkpoint, write plan, snapshot, eject, surprise removal, clean shutdown', async (t) => {
  const img = await linuxRefImage();
  const { dir, paths } = await disks(['data0', 'data1', 'data2']);
  const g = await bootGuest(t, {
    runId: 'guest-a',
    vmId: 'vm',
    logDir: dir,
    disks: [
      { id: 'data0', path: paths.data0, bus: 'virtio-blk' },
      { id: 'data1', path: paths.data1, bus: 'virtio-scsi' },
      { id: 'data2', path: paths.data2, bus: 'nvme' },
    ],
  });
  t.is((await g.sh('uname -r')).trim(), img.kernelRelease);
  await g.sh('cbt-ctl wait-ready 120');
  const st = jsonLines<Status>(await g.sh('cbt-ctl status'));
  t.deepEqual(
    st.map((s) => [s.serial, s.state, s.bus, s.metadata]),
    [
      ['data0', 'active', 'virtio-blk', 'formatted'],
      ['data1', 'active', 'virtio-scsi', 'formatted'],
      ['data2', 'active', 'nvme', 'formatted'],
    ],
  );
  t.regex(await g.sh('dmsetup status era-data0'), /^0 \d+ era 8 \d+\/\d+ \d+ -/);

  // A checkpoint starts a new era.
  const [c1] = jsonLines<Status>(await g.sh('cbt-ctl checkpoint data0'));
  const [c2] = jsonLines<Status>(await g.sh('cbt-ctl checkpoint data0'));
  t.is(c2.era, (c1.era ?? 0) + 1);
  const epoch = c2.era ?? 0;

  // Write plan: block 3 (4 KiB), blocks 10–11 (128 KiB).
  const w = jsonLines(await g.sh('cbt-ctl write data0', `${3 * BLOCK} 4096 0x5a\n${10 * BLOCK} ${2 * BLOCK} 165\n`));
  t.deepEqual(w, [{ serial: 'data0', writes: 2, bytes: 4096 + 2 * BLOCK }]);

  // External snapshot while paused: the old top becomes the read-only base.
  await g.vm.pause();
  const snap = await g.vm.snapshot('data0');
  await g.vm.resume();
  t.is(snap.base, paths.data0);
  t.is(g.vm.disk('data0').topPath, snap.overlay);
  const info = JSON.parse(await qemuImg(['info', '-U', '--output=json', snap.overlay])) as { 'backing-filename': string };
  t.is(info['backing-filename'], paths.data0);
  await g.sh('cbt-ctl write data0', `${20 * BLOCK} 512 0x11\n`);

  // Orderly eject of the NVMe disk (tracking taken offline first), then plug it back.
  await g.sh('cbt-ctl offline data2');
  const ej = await g.vm.eject('data2', { timeoutMs: 15_000 });
  t.log(`eject data2: ${ej.outcome} after ${ej.waitedMs} ms`);
  t.true(ej.outcome === 'deleted' || ej.outcome === 'vetoed');
  if (ej.outcome === 'deleted') {
    t.is(g.vm.disk('data2').plugged, 'ejected');
    await g.vm.replug('data2');
    const [on] = jsonLines<Status>(await g.sh('cbt-ctl online data2'));
    t.is(on.state, 'active');
    t.is(on.metadata, 'kept');
  }

  // Surprise removal of the SCSI LUN: gone at once, the guest is told afterwards.
  const sr = await g.vm.surpriseRemove('data1');
  t.is(sr.outcome, 'removed');
  t.is(sr.device, 'dev-data1');
  await g.sh('for i in $(seq 50); do ls /sys/block | grep -q "^sd" || exit 0; usleep 100000; done; exit 1');
  await t.throwsAsync(g.vm.surpriseRemove('data1'), { message: /not plugged/ });
  await t.throwsAsync(g.vm.surpriseRemove('data0'), { message: /needs a virtio-scsi disk/ });
  await g.vm.replug('data1');
  const [back] = jsonLines<Status>(await g.sh('cbt-ctl online data1'));
  t.is(back.state, 'active');
  t.is(back.bus, 'virtio-scsi');

  // Disable/enable per bus: the disk leaves its driver and comes back; the metadata is kept.
  for (const id of ['data1', 'data2', 'data0']) {
    const [off] = jsonLines<Status>(await g.sh(`cbt-ctl disable ${id}`));
    t.is(off.state, 'disabled', id);
    const [on] = jsonLines<Status>(await g.sh(`cbt-ctl enable ${id}`));
    t.deepEqual([on.state, on.metadata], ['active', 'kept'], id);
  }
  t.deepEqual(jsonLines(await g.sh('cbt-ctl space data0')), [{ serial: 'data0', size: 256 * 1024 * 1024 - META, align: 1 }]);
  t.deepEqual(jsonLines(await g.sh('cbt-ctl flush')), [{ flushed: true }]);
  const bad = await g.ssh.exec('cbt-ctl write data0', { stdin: `${256 * 1024 * 1024} 4096 1\n` });
  t.is(bad.exitCode, 2);
  t.regex(bad.stderr, /past the end of the era device/);

  // Clean shutdown through the guest: dm-era devices removed, metadata committed.
  const out: string[] = [];
  const stop = await g.vm.stop({ graceful: async () => out.push(await g.sh('cbt-ctl shutdown')) });
  t.is(stop.shutdown, 'clean');
  t.deepEqual(jsonLines(out.join('')), [{ action: 'poweroff', metadataCommitted: true }]);

  // Offline: the metadata area of data0's chain parses, and claims exactly what was written.
  const meta = join(dir, 'data0-meta.raw');
  await extractMetadata(snap.overlay, meta);
  t.true((await eraDumpCurrentEra(meta)) >= epoch);
  t.deepEqual(await eraWrittenSince(meta, epoch), [3, 10, 11, 20]);
  t.true(await readsPattern(snap.overlay, 10 * BLOCK, 2 * BLOCK, 0xa5));
});

test.serial('metadata survives a reboot and a power cut (never reformatted); power cut restarts on the same chain', async (t) => {
  const { dir, paths } = await disks(['data0']);
  const g = await bootGuest(t, { runId: 'guest-b', vmId: 'vm', logDir: dir, disks: [{ id: 'data0', path: paths.data0, bus: 'virtio-blk' }] });
  await g.sh('cbt-ctl wait-ready 120');
  const [s1] = jsonLines<Status>(await g.sh('cbt-ctl status data0'));
  t.is(s1.metadata, 'formatted');
  await g.sh('cbt-ctl write data0', `${5 * BLOCK} 4096 1\n`);

  // Reboot inside the same QEMU: the guest tears dm-era down, reboots, sets it up again.
  const mark = g.vm.console.end;
  await g.sh('cbt-ctl reboot');
  await g.vm.waitForConsole(LINUX_REF_MARKERS.sshUp, { from: mark, timeoutMs: 120_000 });
  await g.reconnect(g.vm, mark);
  await g.sh('cbt-ctl wait-ready 120');
  const [s2] = jsonLines<Status>(await g.sh('cbt-ctl status data0'));
  t.is(s2.metadata, 'kept');
  t.true((s2.era ?? 0) > (s1.era ?? 0));

  // Power cut: SIGKILL, then a new QEMU on the same chain.
  await g.sh('cbt-ctl write data0', `${7 * BLOCK} 4096 2\n`);
  const before = g.vm;
  const next = stopInTeardown(t, await before.powerCut());
  t.false(before.running);
  t.is(next.boot, 2);
  t.is(next.disk('data0').topPath, paths.data0);
  t.not(next.pid, before.pid);
  t.regex(next.consoleLogPath, /console-2\.log$/);
  await g.reconnect(next);
  await g.sh('cbt-ctl wait-ready 120');
  const [s3] = jsonLines<Status>(await g.sh('cbt-ctl status data0'));
  t.is(s3.metadata, 'kept');
  t.true((s3.era ?? 0) > (s2.era ?? 0));
  const stop = await next.stop({ graceful: async () => g.sh('cbt-ctl shutdown') });
  t.is(stop.shutdown, 'clean');

  // dm-era persists a block's bit before the write completes: both writes are claimed.
  const meta = join(dir, 'meta.raw');
  await extractMetadata(paths.data0, meta);
  t.deepEqual(await eraWrittenSince(meta, 1), [5, 7]);
});

test.serial('known-bad variant: dm-era over a metadata device that drops writes boots, and its claims miss the writes', async (t) => {
  const { dir, paths } = await disks(['data0']);
  const g = await bootGuest(t, { runId: 'guest-c', vmId: 'vm', logDir: dir, variant: 'drop_writes', disks: [{ id: 'data0', path: paths.data0, bus: 'virtio-scsi' }] });
  await g.sh('cbt-ctl wait-ready 120');
  const [s] = jsonLines<Status>(await g.sh('cbt-ctl status data0'));
  t.is(s.variant, 'drop_writes');
  t.is(s.state, 'active');
  t.regex(await g.sh('dmsetup table cbt-meta-data0'), /flakey .* 0 0 \d+ 1 drop_writes/);
  const [c] = jsonLines<Status>(await g.sh('cbt-ctl checkpoint data0'));
  await g.sh('cbt-ctl write data0', `${4 * BLOCK} 8192 0x77\n`);
  // Default stop: the ACPI power button; the guest's acpid runs `cbt-ctl shutdown`.
  const stop = await g.vm.stop();
  t.deepEqual([stop.shutdown, stop.via], ['clean', 'guest']);
  t.regex(await g.vm.console.text(), /cbt: poweroff \(dm-era devices removed: yes\)/);
  // The data is on the disk…
  t.true(await readsPattern(paths.data0, 4 * BLOCK, 8192, 0x77));
  // …but the persisted metadata is the stale, valid one from the format: era 1, nothing claimed.
  const meta = join(dir, 'meta.raw');
  await extractMetadata(paths.data0, meta);
  t.is(await eraDumpCurrentEra(meta), 1);
  t.true((c.era ?? 0) > 1);
  t.deepEqual(await eraWrittenSince(meta, 1), []);
});
