/**
 * Launcher lifecycle on guest-less VMs (the firmware idles: fast, no kernel needed): start-up
 * failures tear down and report QEMU's stderr, stop escalates and is idempotent, reset/pause,
 * persistent dirty bitmaps (stored on quit, `in-use` after a power cut — qemu-img is the
 * oracle), external snapshots chained across a power cut.
 */
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { liveVmLabels, startVm, VmError, type VmSpec } from '../../src/vm/index.ts';
import { qemuImg, tempDir } from '../helpers/tools.ts';
import { startTracked, stopInTeardown } from '../helpers/vm-guest.ts';

async function idleSpec(vmId: string, disks: VmSpec['disks'] = []): Promise<VmSpec> {
  return { runId: 'life', vmId, accel: 'tcg', memoryMiB: 64, network: false, disks };
}

async function qcow2(t: ExecutionContext, name: string): Promise<string> {
  const { dir, cleanup } = await tempDir('cbt-vm-life-');
  t.teardown(cleanup);
  const p = join(dir, name);
  await qemuImg(['create', '-q', '-f', 'qcow2', p, '64M']);
  return p;
}

interface Info {
  'backing-filename'?: string;
  'format-specific': { data: { bitmaps?: Array<{ name: string; flags: string[]; granularity: number }> } };
}
const info = async (p: string): Promise<Info> => JSON.parse(await qemuImg(['info', '-U', '--output=json', p])) as Info;

/** Runtime folders in the temp dir whose label file names this VM. */
async function runtimeDirsOf(label: string): Promise<string[]> {
  const out: string[] = [];
  for (const n of await readdir(tmpdir())) {
    if (!n.startsWith('cbt-vm-')) continue;
    const meta = await readFile(join(tmpdir(), n, 'cbt-vm.json'), 'utf8').catch(() => '');
    if (meta.includes(`"label": "${label}"`)) out.push(n);
  }
  return out;
}

test('a QEMU that fails at start-up: VmError with its stderr, process and runtime folder gone', async (t) => {
  const e = await t.throwsAsync(startVm(await idleSpec('bad', [{ id: 'd', path: '/nonexistent/cbt/d.qcow2', bus: 'virtio-blk' }])), { instanceOf: VmError });
  t.is(e?.kind, 'start');
  t.regex(e?.message ?? '', /cbt-life-bad: QEMU exited during start-up .*\/nonexistent\/cbt\/d\.qcow2/s);
  t.deepEqual(await runtimeDirsOf('cbt-life-bad'), []);
  t.deepEqual(liveVmLabels().filter((l) => l === 'cbt-life-bad'), []);
});

test('stop: escalates to quit when the guest does not power off, and is idempotent', async (t) => {
  const vm = await startTracked(t, await idleSpec('stop'));
  t.true(vm.running);
  const [a, b] = await Promise.all([vm.stop({ timeoutMs: 1500 }), vm.stop()]);
  t.is(a, b);
  t.deepEqual(a, { shutdown: 'forced', via: 'quit', exitCode: 0, signal: null });
  t.false(vm.running);
  t.is(await vm.stop(), a);
  await t.throwsAsync(vm.reset(), { instanceOf: VmError });
});

test('reset, pause and resume drive the VM state; QMP errors are VmErrors naming the command', async (t) => {
  const vm = await startTracked(t, await idleSpec('state'));
  const since = Date.now();
  await vm.reset();
  await vm.qmp.waitForEvent('RESET', { since, timeoutMs: 5000 });
  await vm.pause();
  t.is((await vm.execute<{ status: string }>('query-status')).status, 'paused');
  await vm.resume();
  t.is((await vm.execute<{ status: string }>('query-status')).status, 'running');
  // A reset of a running VM leaves it running (reset() continues it if QEMU left it in
  // prelaunch); of a paused one, stopped, as QEMU does.
  await vm.reset();
  t.is((await vm.execute<{ status: string }>('query-status')).status, 'running');
  await vm.pause();
  await vm.reset();
  t.is((await vm.execute<{ status: string }>('query-status')).status, 'prelaunch');
  await vm.resume();
  t.is((await vm.execute<{ status: string }>('query-status')).status, 'running');
  const e = await t.throwsAsync(vm.execute('no-such-command'), { instanceOf: VmError });
  t.is(e?.kind, 'qmp');
  t.regex(e?.message ?? '', /QMP no-such-command/);
  t.throws(() => vm.disk('nope'), { message: /no disk `nope`/ });
  t.throws(() => vm.hostPort(22), { message: /not forwarded/ });
});

test('persistent dirty bitmap: stored with flag auto on quit; in-use for good after a power cut', async (t) => {
  const path = await qcow2(t, 'bm.qcow2');
  const vm = await startTracked(t, await idleSpec('bm', [{ id: 'd0', path, bus: 'virtio-blk' }]));
  t.deepEqual(await vm.addDirtyBitmap('d0', 'cbt0', { granularity: 65536 }), { node: 'disk-d0' });
  const stop = await vm.stop({ graceful: 'none' });
  t.is(stop.via, 'quit');
  const bitmaps = (await info(path))['format-specific'].data.bitmaps ?? [];
  t.deepEqual(bitmaps.map((b) => [b.name, b.granularity, b.flags]), [['cbt0', 65536, ['auto']]]);

  const vm2 = await startTracked(t, await idleSpec('bm2', [{ id: 'd0', path, bus: 'virtio-blk' }]));
  // QEMU marks a loaded persistent bitmap in-use in the image while it runs; a power cut leaves it
  // so, and QEMU never trusts (nor clears) an in-use bitmap it finds: it stays in-use.
  const vm3 = stopInTeardown(t, await vm2.powerCut());
  t.false(vm2.running);
  t.is((await vm2.stop()).via, 'kill');
  t.deepEqual(((await info(path))['format-specific'].data.bitmaps ?? []).map((b) => [...b.flags].sort()), [['auto', 'in-use']]);
  await vm3.stop({ graceful: 'none' });
  t.deepEqual(((await info(path))['format-specific'].data.bitmaps ?? []).map((b) => [...b.flags].sort()), [['auto', 'in-use']]);
});

test('external snapshots chain across a power cut; the restarted VM runs on the top', async (t) => {
  const path = await qcow2(t, 'chain.qcow2');
  const vm = await startTracked(t, await idleSpec('snap', [{ id: 'd0', path, bus: 'virtio-scsi' }]));
  const s1 = await vm.snapshot('d0');
  t.is(s1.base, path);
  t.is(s1.node, 'disk-d0-s1');
  t.deepEqual(vm.disk('d0').chain, [path, s1.overlay]);
  const top = await vm.execute<Array<{ inserted: { 'node-name': string } | undefined; qdev: string }>>('query-block');
  t.is(top.find((b) => b.qdev.includes('dev-d0'))?.inserted?.['node-name'], 'disk-d0-s1');
  const vm2 = stopInTeardown(t, await vm.powerCut());
  t.is(vm2.disk('d0').topPath, s1.overlay);
  const s2 = await vm2.snapshot('d0');
  t.is(s2.base, s1.overlay);
  t.not(s2.overlay, s1.overlay);
  await vm2.stop({ graceful: 'none' });
  t.is((await info(s2.overlay))['backing-filename'], s1.overlay);
  t.is((await info(s1.overlay))['backing-filename'], path);
  await t.throwsAsync(vm2.snapshot('d0', { overlayPath: s1.overlay }), { instanceOf: VmError });
});

test('eject with no guest to answer is vetoed, never success; a surprise removal needs no guest', async (t) => {
  const a = await qcow2(t, 'a.qcow2');
  const b = await qcow2(t, 'b.qcow2');
  const vm = await startTracked(t, await idleSpec('unplug', [{ id: 'blk', path: a, bus: 'virtio-blk' }, { id: 'scsi', path: b, bus: 'virtio-scsi' }]));
  // The firmware idles: nobody handles the hotplug request.
  const ej = await vm.eject('blk', { timeoutMs: 1500 });
  t.deepEqual([ej.outcome, ej.device], ['vetoed', 'dev-blk']);
  t.true(ej.waitedMs >= 1500);
  t.is(vm.disk('blk').plugged, 'plugged');
  const sr = await vm.surpriseRemove('scsi');
  t.deepEqual([sr.outcome, sr.device], ['removed', 'dev-scsi']);
  t.is(vm.disk('scsi').plugged, 'lun-removed');
  await t.throwsAsync(vm.execute('qom-get', { path: '/machine/peripheral/dev-scsi', property: 'serial' }), { instanceOf: VmError });
  await vm.replug('scsi');
  t.is(vm.disk('scsi').plugged, 'plugged');
  t.is(await vm.execute('qom-get', { path: '/machine/peripheral/dev-scsi', property: 'serial' }), 'scsi');
  await t.throwsAsync(vm.replug('scsi'), { message: /plugged already/ });
});
