/**
 * Accel `auto`: KVM only when a probe kernel reaches userspace under it. On this kind of host
 * (nested KVM) the probe must fall back to TCG and say why; where KVM works, the chosen accel
 * must really boot the guest.
 */
import test from 'ava';
import { LINUX_REF_MARKERS, linuxRefVmSpec } from '../../src/guest/linux-ref-image.ts';
import { chooseAccel, clearAccelProbeCache, probeKvm } from '../../src/vm/index.ts';
import { linuxRefImage, loginKey, startTracked } from '../helpers/vm-guest.ts';

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
