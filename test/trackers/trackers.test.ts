/** The trackers behind `Tracker`: options, the host side of an epoch, verify plans, labels. */
import test from 'ava';
import { BUILTIN_TRACKERS, cbtfRefTracker, cbtfTracker, dmEraTracker, qemuBitmapTracker, trackerFor, trackerOptionProblems, type HostTracking, type SessionFacts } from '../../src/trackers/index.ts';

const idle: SessionFacts = { running: false, sessionFromPowercut: false, cleanExitSinceEpoch: true, powercutSinceEpoch: false };

test('the registry knows the built-in trackers and takes a path as a plugin', (t) => {
  t.deepEqual([...BUILTIN_TRACKERS.keys()], ['dm-era', 'qemu-bitmap', 'cbtf', 'cbtf-ref']);
  t.is(trackerFor('dm-era'), dmEraTracker);
  t.is(trackerFor('./plugins/mine.js')?.name, './plugins/mine.js');
  t.is(trackerFor('mine.ts')?.name, 'mine.ts');
  t.is(trackerFor('dm-eraa'), null);
});

test('option problems name the option: unknown, bad value, missing required', (t) => {
  t.deepEqual(trackerOptionProblems(dmEraTracker, { blockSize: '64KiB', metadataFault: 'drop-writes' }), []);
  t.deepEqual(trackerOptionProblems(dmEraTracker, { blockSize: '6KiB' }), [{ option: 'blockSize', message: 'Expected `blockSize` to be a size of at least 4KiB, a multiple of 4KiB' }]);
  t.deepEqual(trackerOptionProblems(dmEraTracker, { granularity: 1 }), [{ option: 'granularity', message: 'Unknown option `granularity` for tracker dm-era; allowed: metadataFault, variant, blockSize' }]);
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
  t.deepEqual(dmEraTracker.guestSetup({}), { inGuest: true, linuxRef: { tracker: 'dm-era', blockSectors: 128, metadataMiB: 64, variant: 'normal', trackerVariant: 'normal' } });
  t.deepEqual(dmEraTracker.guestSetup({ blockSize: '16KiB', metadataFault: 'drop-writes' }).linuxRef, { tracker: 'dm-era', blockSectors: 32, metadataMiB: 64, variant: 'drop_writes', trackerVariant: 'normal' });
  t.is(dmEraTracker.guestSetup({ variant: 'late-attach' }).linuxRef?.trackerVariant, 'late-attach');
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
  t.deepEqual(dmEraTracker.knownBad.map((k) => k.options), [{ metadataFault: 'drop-writes' }, { variant: 'late-attach' }]);
  const layout = [{ id: 'data0', size: 256 << 20, volumes: [{ id: 'data0p1', index: 1, fs: 'ext4' as const, size: 191 << 20 }] }];
  t.regex(dmEraTracker.checkLayout!({}, layout) ?? '', /metadata in the first 64MiB of data0: its volumes need \d+ bytes of the 201326592 left/);
  t.is(dmEraTracker.checkLayout!({}, [{ ...layout[0], volumes: [{ ...layout[0].volumes[0], size: 100 << 20 }] }]), null);
});

test('cbtf-ref: linux-ref only; the guest gets the file, the tracked volume, granularity and variant; verify is the plain cbtf decoder', async (t) => {
  const o = { file: 'data0p1:/cbt/cbt.bin', tracked: 'data0p2', granularity: '16KiB', variant: 'stale-clean' };
  t.deepEqual(trackerOptionProblems(cbtfRefTracker, o), []);
  t.deepEqual(cbtfRefTracker.guests, ['linux-ref']);
  t.deepEqual(cbtfRefTracker.guestSetup(o), {
    inGuest: true,
    linuxRef: { tracker: 'cbtf-ref', blockSectors: 32, metadataMiB: 0, variant: 'normal', trackerVariant: 'stale-clean', cbtf: { fileVolume: 'data0p1', path: '/cbt/cbt.bin', tracked: 'data0p2', blockBytes: 16384 } },
  });
  const layout = [
    { id: 'data0', size: 1 << 30, volumes: [{ id: 'data0p1', index: 1, fs: 'ntfs' as const, size: 64 << 20 }, { id: 'data0p2', index: 2, fs: 'ext4' as const, size: null }] },
    { id: 'data1', size: 1 << 30, volumes: [] },
  ];
  t.is(cbtfRefTracker.checkLayout!(o, layout), null);
  t.deepEqual(cbtfRefTracker.trackedDisks!(o, layout), ['data0']);
  const gen = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
  const host: HostTracking = { addDirtyBitmap: async () => t.fail('cbtf-ref adds no bitmap') };
  t.is(await cbtfRefTracker.openEpoch({ index: 0, diskId: 'data0', guestEpochId: gen, options: o, host }), gen);
  t.deepEqual(cbtfRefTracker.verifyPlan({ id: gen, index: 0, diskId: 'data0', diskSize: 1 << 30 }, idle, o), { decoder: 'cbtf', options: { volume: '1', path: '/cbt/cbt.bin', tracked: '2', generation: gen } });
  t.deepEqual(cbtfRefTracker.verifyPlan({ id: '12', index: 0, diskId: 'data0', diskSize: 1 << 30 }, idle, { ...o, tracked: 'data0p12' }).options, { volume: '1', path: '/cbt/cbt.bin', tracked: '12' });
  t.deepEqual(
    cbtfRefTracker.knownBad.map((k) => k.options.variant),
    ['flush-before-fs', 'stale-clean', 'late-attach', 'resize-blind', 'no-persist-offline', 'tracks-own-file'],
  );
  t.is(cbtfRefTracker.verifyRefusal(idle), null, 'after a shutdown the file is what the tracker persisted');
  t.is(cbtfRefTracker.verifyRefusal({ ...idle, running: true }), null, 'a running guest is frozen for verify');
  t.true(cbtfRefTracker.verifyFreeze, 'its claim of a running guest is in guest memory');
  t.falsy(dmEraTracker.verifyFreeze);
  for (const k of cbtfRefTracker.knownBad) t.regex(k.source, /CBT-BUGS\.md row/, `${k.options.variant} cites its real bug`);
  t.regex(cbtfRefTracker.checkLayout!({ ...o, tracked: 'data1p1' }, layout) ?? '', /tracked volume `data1p1` is not declared/);
  const twoDisks = [layout[0], { id: 'data1', size: 1 << 30, volumes: [{ id: 'data1p1', index: 1, fs: 'none' as const, size: null }] }];
  t.regex(cbtfRefTracker.checkLayout!({ ...o, tracked: 'data1p1' }, twoDisks) ?? '', /must be on the same disk/);
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
