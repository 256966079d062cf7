/** The trackers behind `Tracker`: options, the host side of an epoch, verify plans, labels. */
import test from 'ava';
import { BUILTIN_TRACKERS, cbtfTracker, dmEraTracker, qemuBitmapTracker, trackerFor, trackerOptionProblems, type HostTracking, type SessionFacts } from '../../src/trackers/index.ts';

const idle: SessionFacts = { running: false, sessionFromPowercut: false, cleanExitSinceEpoch: true, powercutSinceEpoch: false };

test('the registry knows the built-in trackers and takes a path as a plugin', (t) => {
  t.deepEqual([...BUILTIN_TRACKERS.keys()], ['dm-era', 'qemu-bitmap', 'cbtf']);
  t.is(trackerFor('dm-era'), dmEraTracker);
  t.is(trackerFor('./plugins/mine.js')?.name, './plugins/mine.js');
  t.is(trackerFor('mine.ts')?.name, 'mine.ts');
  t.is(trackerFor('dm-eraa'), null);
});

test('option problems name the option: unknown, bad value, missing required', (t) => {
  t.deepEqual(trackerOptionProblems(dmEraTracker, { blockSize: '64KiB', metadataFault: 'drop-writes' }), []);
  t.deepEqual(trackerOptionProblems(dmEraTracker, { blockSize: '6KiB' }), [{ option: 'blockSize', message: 'Expected `blockSize` to be a size of at least 4KiB, a multiple of 4KiB' }]);
  t.deepEqual(trackerOptionProblems(dmEraTracker, { granularity: 1 }), [{ option: 'granularity', message: 'Unknown option `granularity` for tracker dm-era; allowed: metadataFault, blockSize' }]);
  t.deepEqual(trackerOptionProblems(qemuBitmapTracker, { granularity: '48KiB' }), [{ option: 'granularity', message: 'Expected `granularity` to be a power of two of at least 512' }]);
  t.deepEqual(trackerOptionProblems(qemuBitmapTracker, { granularity: 256 }).map((p) => p.option), ['granularity']);
  t.deepEqual(
    trackerOptionProblems(cbtfTracker, {}).map((p) => p.message),
    ['Tracker cbtf needs the option `volume`', 'Tracker cbtf needs the option `path`'],
  );
  t.deepEqual(trackerOptionProblems(cbtfTracker, { volume: 0, path: '/cbt.bin' }).map((p) => p.option), ['volume']);
  t.deepEqual(trackerOptionProblems(cbtfTracker, { volume: 2, path: '/cbt.bin', epochIdPattern: '(' }).map((p) => p.message), ['Expected `epochIdPattern` to be a valid regular expression']);
  t.deepEqual(trackerOptionProblems(trackerFor('./p.js')!, { anything: 1, checkpoint: '' }).map((p) => p.option), ['checkpoint'], 'a plugin takes any option but checks its own');
});

test('dm-era: the guest tracks with the block size and variant asked for; verify reads the metadata area and the era', async (t) => {
  t.deepEqual(dmEraTracker.guestSetup({}), { inGuest: true, linuxRef: { blockSectors: 128, metadataMiB: 64, variant: 'normal' } });
  t.deepEqual(dmEraTracker.guestSetup({ blockSize: '16KiB', metadataFault: 'drop-writes' }).linuxRef, { blockSectors: 32, metadataMiB: 64, variant: 'drop_writes' });
  t.true(dmEraTracker.guestCheckpoint);
  const host: HostTracking = { addDirtyBitmap: async () => t.fail('dm-era adds no bitmap') };
  t.is(await dmEraTracker.openEpoch({ index: 0, diskId: 'data0', guestEpochId: '7', options: {}, host }), '7');
  await t.throwsAsync(dmEraTracker.openEpoch({ index: 0, diskId: 'data0', guestEpochId: undefined, options: {}, host }), { message: /no era/ });
  t.deepEqual(dmEraTracker.verifyPlan({ id: '7', index: 0, diskId: 'data0', diskSize: 256 << 20 }, idle, {}), {
    decoder: 'dm-era',
    options: { metadata: `0:${64 << 20}`, data: `${64 << 20}:${192 << 20}`, since: '7' },
  });
  t.is(dmEraTracker.verifyRefusal({ ...idle, running: true }), null);
  t.is(dmEraTracker.driverLabel({ kernel: '6.1.0-28-amd64' }), 'dm-era (kernel 6.1.0-28-amd64)');
  t.deepEqual(dmEraTracker.knownBad.map((k) => k.options), [{ metadataFault: 'drop-writes' }]);
});

test('qemu-bitmap: the host adds a persistent bitmap per epoch at the granularity asked for; the label is the QEMU that ran', async (t) => {
  t.deepEqual(qemuBitmapTracker.guestSetup({}), { inGuest: false });
  t.false(qemuBitmapTracker.guestCheckpoint);
  const added: unknown[] = [];
  const host: HostTracking = { addDirtyBitmap: async (...a) => void added.push(a) };
  t.is(await qemuBitmapTracker.openEpoch({ index: 3, diskId: 'data0', guestEpochId: undefined, options: { granularity: '16KiB' }, host }), 'cbt-epoch-3');
  t.deepEqual(added, [['data0', 'cbt-epoch-3', { persistent: true, granularity: 16384 }]]);
  t.deepEqual(qemuBitmapTracker.verifyPlan({ id: 'cbt-epoch-3', index: 3, diskId: 'data0', diskSize: 1 << 28 }, idle, {}), { decoder: 'qemu-bitmap', options: { name: 'cbt-epoch-3' } });
  t.deepEqual(qemuBitmapTracker.verifyPlan({ id: 'cbt-epoch-3', index: 3, diskId: 'data0', diskSize: 1 << 28 }, { ...idle, powercutSinceEpoch: true }, {}).options, { name: 'cbt-epoch-3', absent: 'resync' }, 'after a power cut an absent bitmap is the honest RESYNC');
  t.is(qemuBitmapTracker.verifyRefusal(idle), null);
  t.is(qemuBitmapTracker.driverLabel({ qemu: '7.2.15' }), 'QEMU 7.2.15 persistent dirty bitmap');
});

test('cbtf: Windows only; the checkpoint command goes to the guest; verify names the volume, path and generation', async (t) => {
  t.deepEqual(cbtfTracker.guests, ['windows']);
  t.deepEqual(cbtfTracker.guestSetup({ checkpoint: 'C:\\cbt\\cbtctl.exe checkpoint {volume}', epochIdPattern: '^g: (.*)$' }), { inGuest: true, windows: { checkpointCommand: 'C:\\cbt\\cbtctl.exe checkpoint {volume}', epochIdPattern: '^g: (.*)$' } });
  const guid = '{0f3a6b1c-2d4e-4f50-8a9b-0c1d2e3f4a5b}';
  t.deepEqual(cbtfTracker.verifyPlan({ id: guid, index: 0, diskId: 'data0', diskSize: 1 << 30 }, idle, { volume: 1, path: '/cbt/cbt.bin', tracked: 2 }), { decoder: 'cbtf', options: { volume: '1', path: '/cbt/cbt.bin', tracked: '2', generation: guid } });
  t.deepEqual(cbtfTracker.verifyPlan({ id: '17', index: 0, diskId: 'data0', diskSize: 1 << 30 }, idle, { volume: 2, path: '/c' }).options, { volume: '2', path: '/c', tracked: '2' }, 'an epoch id that is no GUID is not checked as the generation');
});
