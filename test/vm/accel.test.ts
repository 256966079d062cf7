/**
 * Accel `auto`: KVM only when a probe kernel reaches userspace under it. On this kind of host
 * (nested KVM) the probe must fall back to TCG and say why; where KVM works, the chosen accel
 * must really boot the guest.
 */
import { constants } from 'node:fs';
import { access, chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { LINUX_REF_MARKERS, linuxRefVmSpec } from '../../src/guest/linux-ref-image.ts';
import { chooseAccel, clearAccelProbeCache, probeKvm } from '../../src/vm/index.ts';
import { linuxRefImage, loginKey, startTracked } from '../helpers/vm-guest.ts';
import { processAlive, tempDir } from '../helpers/tools.ts';

test.serial('auto probes KVM with the reference kernel: TCG with a reason here, or a KVM that boots', async (t) => {
  const img = await linuxRefImage();
  const key = await loginKey();
  const { spec } = linuxRefVmSpec(img, { runId: 'accel', vmId: 'auto', authorizedKeys: [key.publicKey], accel: 'auto' });
  const probe = { ...spec.probe!, timeoutMs: 10_000 };
  clearAccelProbeCache();
  const choice = await chooseAccel('auto', probe);
  t.is(choice.requested, 'auto');
  t.true(choice.reason.length > 0);
  t.log(`${choice.accel}: ${choice.reason}`);
  if (choice.accel === 'tcg') {
    t.regex(choice.reason, /no usable \/dev\/kvm|QEMU exited|no userspace marker/);
    t.regex(choice.reason, /using tcg/);
  } else {
    t.regex(choice.reason, /reached userspace/);
  }
  // Same host, same kernel: the cached answer, without a second probe boot.
  const again = await chooseAccel('auto', probe);
  t.deepEqual(again, choice);
  // The VM started with `auto` records the same decision and reaches its SSH marker with it.
  const vm = await startTracked(t, { ...spec, probe });
  t.is(vm.accel.accel, choice.accel);
  await vm.waitForConsole(LINUX_REF_MARKERS.sshUp, { timeoutMs: 120_000 });
});

test.serial('a QEMU that cannot run is a failed probe with the reason, never an exception', async (t) => {
  const img = await linuxRefImage();
  const r = await probeKvm({ kernel: img.vmlinuz, initrd: img.initrd, append: 'console=ttyS0', marker: LINUX_REF_MARKERS.probe, timeoutMs: 5_000 }, { qemuBinary: '/nonexistent/qemu-system-x86_64' });
  t.false(r.ok);
  t.regex(r.reason, /nonexistent|no usable \/dev\/kvm/);
  t.deepEqual(await chooseAccel('tcg', undefined), { accel: 'tcg', requested: 'tcg', reason: 'tcg requested' });
});

/**
 * Each decision of the probe, deterministically: a stand-in for qemu-system-x86_64 that behaves
 * as told (prints the marker, stalls, refuses `-cpu host`, dies) — beside the real probe above.
 * Without a usable /dev/kvm every one of them must be refused before any QEMU runs.
 */
const FAKE_QEMU = `#!/bin/sh
cpu=; log=
while [ $# -gt 0 ]; do case "$1" in -cpu) cpu=$2; shift;; -chardev) log=\${2#*path=}; shift;; esac; shift; done
echo "$$ $cpu" >> "$(dirname "$0")/runs"
case "$MODE" in
  marker) printf 'early boot\\nCBT-PROBE-OK\\n' > "$log"; exec sleep 60;;
  stall) exec sleep 300;;
  msr) if [ "$cpu" = host ]; then echo "qemu-system-x86_64: error: failed to set MSR 0x38d to 0x0" >&2; exit 1; fi; echo CBT-PROBE-OK > "$log"; exec sleep 60;;
  die) echo "qemu-system-x86_64: kvm: boom on $cpu" >&2; exit 1;;
esac
`;

async function fakeProbe(t: ExecutionContext, mode: string, timeoutMs = 1500) {
  const { dir, cleanup } = await tempDir('cbt-fake-qemu-');
  t.teardown(cleanup);
  const bin = join(dir, 'qemu-system-x86_64');
  await writeFile(bin, FAKE_QEMU.replace('case "$MODE" in', `MODE=${mode}\ncase "$MODE" in`));
  await chmod(bin, 0o755);
  clearAccelProbeCache();
  const choice = await chooseAccel('auto', { kernel: '/k', append: 'console=ttyS0', marker: 'CBT-PROBE-OK', timeoutMs }, { qemuBinary: bin });
  const runs = (await readFile(join(dir, 'runs'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((l) => l.split(' '));
  return { choice, runs };
}

const kvmUsable = () => access('/dev/kvm', constants.R_OK | constants.W_OK).then(() => true, () => false);

for (const [mode, expect] of [
  ['marker', { accel: 'kvm', reason: /^kvm probe: kernel reached userspace in \d+ ms \(-cpu host\)$/, cpus: ['host'], cpu: 'host' }],
  ['msr', { accel: 'kvm', reason: /reached userspace .*-cpu qemu64/, cpus: ['host', 'qemu64'], cpu: 'qemu64' }],
  ['stall', { accel: 'tcg', reason: /^kvm probe: -cpu host: no userspace marker within 1500 ms .*; using tcg$/, cpus: ['host'] }],
  ['die', { accel: 'tcg', reason: /-cpu host: QEMU exited before userspace \(.*boom on host\); -cpu qemu64: QEMU exited before userspace \(.*boom on qemu64\); using tcg$/, cpus: ['host', 'qemu64'] }],
] as const) {
  test.serial(`probe decision with a QEMU that ${mode === 'marker' ? 'reaches userspace' : mode === 'msr' ? 'refuses -cpu host' : mode === 'stall' ? 'stalls' : 'dies'}`, async (t) => {
    const { choice, runs } = await fakeProbe(t, mode);
    if (!(await kvmUsable())) {
      t.regex(choice.reason, /^no usable \/dev\/kvm/);
      t.is(choice.accel, 'tcg');
      t.deepEqual(runs, [], 'no QEMU may run without /dev/kvm');
      return;
    }
    t.is(choice.accel, expect.accel, choice.reason);
    t.regex(choice.reason, expect.reason);
    t.deepEqual(runs.map((r) => r[1]), [...expect.cpus]);
    if ('cpu' in expect) t.is(choice.cpu, expect.cpu);
    // Every probe QEMU is gone when the decision is made (the stalled one killed at its deadline).
    for (const [pid] of runs) t.false(processAlive(Number(pid)), `probe qemu ${pid} left running`);
  });
}
