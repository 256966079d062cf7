/** src/vm/live.ts: its own signal handlers only while no application owns the signals. */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { killLiveVms, leaveSignalsToApplication, liveVmLabels, trackLive, untrackLive, type LiveVm } from '../../src/vm/live.ts';

test.serial('signal handlers while a VM lives, none once the application owns the signals; killLiveVms removes runtime folders', (t) => {
  const before = process.listenerCount('SIGINT');
  const runtimeDir = mkdtempSync(join(tmpdir(), 'cbt-live-'));
  const vm: LiveVm = { label: 'cbt-test-vm0', pid: undefined, runtimeDir, emergencyStop: async () => undefined };
  trackLive(vm);
  try {
    t.is(process.listenerCount('SIGINT'), before + 1, 'library use: live.ts handles SIGINT');
    leaveSignalsToApplication();
    t.is(process.listenerCount('SIGINT'), before, 'the application owns it');
    t.is(process.listenerCount('SIGHUP'), 0);
    t.deepEqual(liveVmLabels(), ['cbt-test-vm0']);
    t.deepEqual(killLiveVms(), ['cbt-test-vm0']);
    t.false(existsSync(runtimeDir));
    leaveSignalsToApplication(false);
    t.is(process.listenerCount('SIGINT'), before + 1, 'given back while the VM is still tracked');
  } finally {
    untrackLive(vm);
    leaveSignalsToApplication(false);
  }
  t.is(process.listenerCount('SIGINT'), before, 'no VM, no handler');
});
