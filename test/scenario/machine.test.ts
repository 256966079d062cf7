/** JobState: every refusal rule the README promises, and every transition, without a VM. */
import test from 'ava';
import { JobState, type VerifyRule } from '../../src/scenario/machine.ts';
import type { DiskSpec, Step } from '../../src/scenario/types.ts';
import { qemuBitmapTracker } from '../../src/trackers/index.ts';

const src = { file: 's.yaml', line: 1, field: 'steps[0]' };
const disks: DiskSpec[] = [
  { id: 'data0', size: 256 << 20, bus: 'virtio-blk', volumes: [] },
  { id: 'data1', size: 256 << 20, bus: 'virtio-scsi', volumes: [] },
];
const step = (s: Record<string, unknown>): Step => ({ allowFailure: false, source: src, ...s }) as unknown as Step;
const on = (kind: string, disk = 'data0') => step({ kind, disk });
const plain = (kind: string) => step({ kind });
const checkpoint = (disk: string | null = null) => step({ kind: 'checkpoint', disk });
const verify = (disk: string | null = null) => step({ kind: 'verify', disk, expect: null });
const write = (disk = 'data0') => step({ kind: 'write', disk, count: 1, size: { min: 4096, max: 4096 }, seed: null, align: 512 });

function running(rule: VerifyRule = () => null): JobState {
  const s = new JobState(disks, rule);
  s.booted();
  return s;
}

function open(s: JobState, disk = 'data0'): void {
  s.epochOpened({ index: s.nextEpochIndex(), disk, base: `/x/${disk}.qcow2`, id: '1', startedAt: 'now' });
}

test('every step that needs the VM is refused while it is not running', (t) => {
  const s = new JobState(disks);
  const kinds: Array<[Step, string]> = [
    [checkpoint(), 'checkpoint'],
    [write(), 'write'],
    [step({ kind: 'fio', disk: 'data0' }), 'run fio'],
    [plain('reset'), 'reset'],
    [plain('powercut'), 'cut the power'],
    [plain('reboot'), 'reboot'],
    [plain('shutdown'), 'shut down'],
    [plain('powerbutton'), 'press the power button'],
    [plain('hibernate'), 'hibernate'],
    [on('offline'), 'offline'],
    [on('online'), 'online'],
    [on('disable'), 'disable'],
    [on('enable'), 'enable'],
    [step({ kind: 'unplug', disk: 'data0', mode: 'eject', timeoutMs: 1 }), 'unplug'],
    [on('plug'), 'plug'],
  ];
  for (const [st, what] of kinds) t.is(s.refusal(st), `cannot ${what}: the VM is not running`, st.kind);
  t.is(s.refusal(plain('start')), null);
  t.is(s.refusal(step({ kind: 'sleep', ms: 1 })), null, 'sleep needs nothing');
});

test('start is refused while the VM runs; after start it is not', (t) => {
  const s = running();
  t.is(s.refusal(plain('start')), 'cannot start: the VM is already running');
  s.after(plain('shutdown'), { cleanExit: true });
  t.false(s.running);
  t.is(s.refusal(plain('start')), null);
  s.after(plain('start'));
  t.true(s.running);
});

test('offline twice, online while online, disable twice, enable while enabled are refused', (t) => {
  const s = running();
  t.is(s.refusal(on('online')), 'data0 is already online');
  t.is(s.refusal(on('enable')), 'data0 is already enabled');
  t.is(s.refusal(on('offline')), null);
  s.after(on('offline'));
  t.is(s.refusal(on('offline')), 'data0 is already offline');
  t.is(s.refusal(on('online')), null);
  s.after(on('online'));
  s.after(on('disable'));
  t.is(s.refusal(on('disable')), 'data0 is already disabled');
  s.after(on('enable'));
  t.true(s.disk('data0').enabled && s.disk('data0').online, 'enable brings the volume online too');
  t.true(s.disk('data1').online, 'the other disk is untouched');
});

test('a disk that is unplugged: writes, fio, faults and checkpoint are refused; unplug twice too; plug brings it back', (t) => {
  const s = running();
  s.after(step({ kind: 'unplug', disk: 'data0', mode: 'eject', timeoutMs: 1 }));
  t.false(s.disk('data0').plugged);
  t.is(s.refusal(write()), 'cannot write to data0: the disk is unplugged');
  t.is(s.refusal(step({ kind: 'fio', disk: 'data0' })), 'cannot run fio on data0: the disk is unplugged');
  t.is(s.refusal(on('offline')), 'cannot offline data0: the disk is unplugged');
  t.is(s.refusal(on('enable')), 'cannot enable data0: the disk is unplugged');
  t.is(s.refusal(checkpoint('data0')), 'cannot checkpoint data0: the disk is unplugged');
  t.is(s.refusal(checkpoint(null)), 'cannot checkpoint data0: the disk is unplugged', 'a checkpoint of every disk includes it');
  t.is(s.refusal(checkpoint('data1')), null);
  t.is(s.refusal(step({ kind: 'unplug', disk: 'data0', mode: 'surprise', timeoutMs: 1 })), 'data0 is already unplugged');
  t.is(s.refusal(on('plug', 'data1')), 'data1 is plugged already');
  s.after(on('plug'));
  t.deepEqual({ ...s.disk('data0'), spec: undefined }, { spec: undefined, plugged: true, online: true, enabled: true, size: 256 << 20, tracked: true });
});

test('I/O to an offline volume or a disabled disk reaches the guest (whether it refuses is the test); a checkpoint there is refused', (t) => {
  const s = running();
  s.after(on('offline'));
  t.is(s.refusal(write()), null);
  t.is(s.refusal(checkpoint('data0')), 'cannot checkpoint data0: the volume is offline');
  s.after(on('online'));
  s.after(on('disable'));
  t.is(s.refusal(step({ kind: 'fio', disk: 'data0' })), null);
  t.is(s.refusal(checkpoint('data0')), 'cannot checkpoint data0: the disk is disabled in the guest');
});

test('verify before any checkpoint is refused, also for a disk without an epoch of its own', (t) => {
  const s = running();
  t.is(s.refusal(verify()), 'verify before any checkpoint: no epoch is open');
  open(s, 'data1');
  t.is(s.refusal(verify('data0')), 'verify before any checkpoint: no epoch is open');
  t.is(s.refusal(verify()), null);
  t.deepEqual(
    s.verifyTargets(null).map((d) => d.spec.id),
    ['data1'],
    'verify of every disk reads only those with an epoch',
  );
  t.is(s.refusal(verify('nope')), 'no disk `nope`');
  t.is(s.refusal(on('offline', 'nope')), 'no disk `nope`');
});

test('qemu-bitmap: verify while QEMU runs is refused unless this QEMU is a power cut restart with no clean exit since the epoch', (t) => {
  const s = running((f) => qemuBitmapTracker.verifyRefusal(f));
  open(s);
  t.regex(s.refusal(verify()) ?? '', /QEMU stores persistent bitmaps only when it exits/);
  s.after(plain('powercut'));
  t.is(s.refusal(verify()), null, 'right after a power cut the image tells the truth (absent or in_use)');
  t.deepEqual(s.session(), { running: true, sessionFromPowercut: true, cleanExitSinceEpoch: false, powercutSinceEpoch: true });
  s.after(plain('shutdown'), { cleanExit: true });
  t.is(s.refusal(verify()), null, 'stopped: verify reads what QEMU stored');
  s.after(plain('start'));
  t.regex(s.refusal(verify()) ?? '', /only when it exits/, 'a fresh QEMU after a clean exit holds the bitmap again');
  open(s);
  t.deepEqual(s.session(), { running: true, sessionFromPowercut: false, cleanExitSinceEpoch: false, powercutSinceEpoch: false }, 'a new epoch clears what happened before it');
});

test('qemu-bitmap: a power cut since the checkpoint survives a later clean shutdown and restart, so verify judges the lost bitmap RESYNC', (t) => {
  const s = running((f) => qemuBitmapTracker.verifyRefusal(f));
  open(s);
  const epoch = { id: 'cbt-epoch-0', index: 0, diskId: 'data0', diskSize: 256 << 20 };
  t.deepEqual(qemuBitmapTracker.verifyPlan(epoch, s.session(), {}).options, { name: 'cbt-epoch-0' }, 'no power cut: a missing bitmap is an error');
  s.after(plain('powercut'));
  s.after(plain('shutdown'), { cleanExit: true });
  t.true(s.session().powercutSinceEpoch, 'a clean exit after the cut does not bring the killed QEMU\'s bitmap back');
  t.deepEqual(qemuBitmapTracker.verifyPlan(epoch, s.session(), {}).options, { name: 'cbt-epoch-0', absent: 'resync' });
  s.after(plain('start'));
  s.after(plain('reboot'));
  t.true(s.session().powercutSinceEpoch, 'nor a restart or a reboot');
  open(s);
  t.false(s.session().powercutSinceEpoch, 'the next checkpoint starts clean');
  t.deepEqual(qemuBitmapTracker.verifyPlan(epoch, s.session(), {}).options, { name: 'cbt-epoch-0' });
});

test('after a reset, reboot, power cut or start the guest has set every plugged disk up again; an unplugged one stays away', (t) => {
  for (const kind of ['reset', 'reboot', 'powercut', 'start']) {
    const s = running();
    s.after(on('offline'));
    s.after(on('disable', 'data1'));
    s.after(step({ kind: 'unplug', disk: 'data1', mode: 'eject', timeoutMs: 1 }));
    if (kind === 'start') s.after(plain('shutdown'));
    s.after(plain(kind));
    t.true(s.disk('data0').online && s.disk('data0').enabled, kind);
    t.false(s.disk('data1').plugged || s.disk('data1').online || s.disk('data1').enabled, kind);
  }
});

test('a shutdown that did not end cleanly leaves the epoch without a clean exit', (t) => {
  const s = running();
  open(s);
  s.after(plain('powerbutton'), { cleanExit: false });
  t.false(s.running);
  t.false(s.session().cleanExitSinceEpoch);
  s.after(plain('start'));
  s.after(plain('hibernate'), { cleanExit: true });
  t.true(s.session().cleanExitSinceEpoch);
});

test('epoch indexes count over the job; the open epoch of a disk is its last checkpoint', (t) => {
  const s = running();
  t.is(s.nextEpochIndex(), 0);
  t.is(s.nextEpochIndex(), 1);
  s.epochOpened({ index: 1, disk: 'data0', base: '/a', id: 'e1', startedAt: 't' });
  s.epochOpened({ index: 2, disk: 'data0', base: '/b', id: 'e2', startedAt: 't' });
  t.is(s.epoch('data0')?.id, 'e2');
  t.is(s.epoch('data1'), undefined);
  t.throws(() => s.disk('x'), { message: 'no disk `x`' });
});

test('a tracker that tracks one disk: checkpoint and verify without a disk address only that one; the other is refused by name', (t) => {
  const s = new JobState(disks, () => null, ['data1']);
  s.booted();
  t.deepEqual(s.targets(null).map((d) => d.spec.id), ['data1']);
  t.is(s.refusal(step({ kind: 'checkpoint', disk: 'data0' })), 'cannot checkpoint data0: the tracker does not track it');
  t.is(s.refusal(step({ kind: 'checkpoint', disk: null })), null);
});

test('files needs its volume mounted; resize grows the size verify uses', (t) => {
  const s = new JobState(disks);
  t.is(s.refusal(step({ kind: 'files', disk: 'data0', volume: 'data0p1' })), 'cannot run a file workload: the VM is not running');
  s.booted();
  t.is(s.refusal(step({ kind: 'files', disk: 'data0', volume: 'data0p1' })), null);
  s.after(step({ kind: 'offline', disk: 'data0' }));
  t.is(s.refusal(step({ kind: 'files', disk: 'data0', volume: 'data0p1' })), 'cannot run a file workload on data0p1: its file system is not mounted (data0 is offline)');
  t.is(s.refusal(step({ kind: 'resize', disk: 'data9', size: 1 })), 'no disk `data9`');
  s.after(step({ kind: 'resize', disk: 'data0', size: 512 << 20 }));
  t.is(s.disk('data0').size, 512 << 20);
  t.is(s.disk('data0').spec.size, 256 << 20, 'the scenario keeps its declared size');
});
