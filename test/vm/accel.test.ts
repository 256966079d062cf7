/**
 * Accel `auto`: KVM only when a probe kernel reaches userspace under it. On this kind of host
 * (nested KVM) the probe must fall back to TCG and say why; where KVM works, the chosen accel
 * must really boot the guest.
 */
import { constants } from 'node:fs';
import { spawn } from 'node:child_process';
import { access, chmod, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { LINUX_REF_MARKERS, linuxRefVmSpec } from '../../src/guest/linux-ref-image.ts';
import { chooseAccel, clearAccelProbeCache, probeKvm, sweepLeftoverVms } from '../../src/vm/index.ts';
import { linuxRefImage, loginKey, startTracked } from '../helpers/vm-guest.ts';
import { processAlive, tempDir } from '../helpers/tools.ts';

test.serial('auto probes KVM with the reference kernel: TCG with a reason here, or a KVM that boots', async (t) => {
  const img = await linuxRefImage();
  const key = await loginKey();
  const { spec } = linuxRefVmSpec(img, { runId: 'accel', vmId: 'auto', authorizedKeys: [key.publicKey], accel: 'auto' });
  const probe = { ...spec.probe!, timeoutMs: 10_000 };
  clearAccelProbeCache();
  // A cache of its own, so this really probes (and the second call below answers from memory).
  const { dir: cacheDir, cleanup } = await tempDir('cbt-accel-cache-');
  t.teardown(cleanup);
  const opts = { cacheFile: join(cacheDir, 'accel-probe.json') };
  const choice = await chooseAccel('auto', probe, opts);
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
  const again = await chooseAccel('auto', probe, opts);
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
[ "$1" = --version ] && { echo "QEMU emulator version 99.0.0 (fake)"; exit 0; }
cpu=; log=; name=
while [ $# -gt 0 ]; do case "$1" in -cpu) cpu=$2; shift;; -name) name=$2; shift;; -chardev) log=\${2#*path=}; shift;; esac; shift; done
echo "$$ $cpu $name" >> "$(dirname "$0")/runs"
case "$MODE" in
  marker) printf 'early boot\\nCBT-PROBE-OK\\n' > "$log"; exec sleep 60;;
  stall) exec sleep 300;;
  msr) if [ "$cpu" = host ]; then echo "qemu-system-x86_64: error: failed to set MSR 0x38d to 0x0" >&2; exit 1; fi; echo CBT-PROBE-OK > "$log"; exec sleep 60;;
  die) echo "qemu-system-x86_64: kvm: boom on $cpu" >&2; exit 1;;
esac
`;

async function fakeQemu(t: ExecutionContext, mode: string): Promise<{ dir: string; bin: string; kernel: string; runs: () => Promise<string[][]> }> {
  const { dir, cleanup } = await tempDir('cbt-fake-qemu-');
  t.teardown(cleanup);
  const bin = join(dir, 'qemu-system-x86_64');
  await writeFile(bin, FAKE_QEMU.replace('case "$MODE" in', `MODE=${mode}\ncase "$MODE" in`));
  await chmod(bin, 0o755);
  const kernel = join(dir, 'vmlinuz');
  await writeFile(kernel, 'not a kernel: the stand-in QEMU never reads it');
  const runs = async () => (await readFile(join(dir, 'runs'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((l) => l.split(' '));
  return { dir, bin, kernel, runs };
}

async function fakeProbe(t: ExecutionContext, mode: string, timeoutMs = 1500) {
  const q = await fakeQemu(t, mode);
  clearAccelProbeCache();
  const choice = await chooseAccel('auto', { kernel: q.kernel, append: 'console=ttyS0', marker: 'CBT-PROBE-OK', timeoutMs }, { qemuBinary: q.bin, cacheFile: null });
  return { choice, runs: await q.runs() };
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

test.serial('the probe answer is cached per host for a day: a later process reuses it without a QEMU, --accel-probe probes again, a changed QEMU is a new key', async (t) => {
  if (!(await kvmUsable())) {
    // No /dev/kvm: nothing is probed or cached, and the answer says why.
    const q = await fakeQemu(t, 'stall');
    const c = await chooseAccel('auto', { kernel: q.kernel, append: '', marker: 'CBT-PROBE-OK', timeoutMs: 500 }, { qemuBinary: q.bin, cacheFile: join(q.dir, 'c.json') });
    t.regex(c.reason, /^no usable \/dev\/kvm/);
    t.deepEqual(await q.runs(), []);
    return;
  }
  const q = await fakeQemu(t, 'stall');
  const cacheFile = join(q.dir, 'cache', 'accel-probe.json');
  const probe = { kernel: q.kernel, append: 'console=ttyS0', marker: 'CBT-PROBE-OK', timeoutMs: 800 };
  let now = Date.parse('2026-12-03T10:00:00Z');
  const opts = { qemuBinary: q.bin, cacheFile, now: () => now };
  clearAccelProbeCache();
  const first = await chooseAccel('auto', probe, opts);
  t.is(first.accel, 'tcg');
  t.is(first.cachedAt, undefined);
  t.is((await q.runs()).length, 1);
  const doc = JSON.parse(await readFile(cacheFile, 'utf8')) as { version: number; entries: Array<{ at: string; ok: boolean; identity: { qemu: { version: string } } }> };
  t.is(doc.version, 1);
  t.is(doc.entries.length, 1);
  t.is(doc.entries[0].at, '2026-12-03T10:00:00.000Z');
  t.false(doc.entries[0].ok);
  t.is(doc.entries[0].identity.qemu.version, 'QEMU emulator version 99.0.0 (fake)');
  // "Another process" (memory cleared) three hours on: the file answers, no QEMU runs.
  now += 3 * 3600_000;
  clearAccelProbeCache();
  const second = await chooseAccel('auto', probe, opts);
  t.is(second.accel, 'tcg');
  t.is(second.cachedAt, '2026-12-03T10:00:00.000Z');
  t.regex(second.reason, /no userspace marker within 800 ms.*; using tcg \(cached answer of a probe 3 h 0 min ago; --accel-probe probes again\)$/);
  t.is((await q.runs()).length, 1, 'a cached answer starts no QEMU');
  // Forced: probes again once; a second forced call in the same process reuses that answer.
  const forced = await chooseAccel('auto', probe, { ...opts, force: true });
  t.is(forced.cachedAt, undefined);
  t.is((await q.runs()).length, 2);
  await chooseAccel('auto', probe, { ...opts, force: true });
  t.is((await q.runs()).length, 2, 'force probes once per process');
  const afterForce = JSON.parse(await readFile(cacheFile, 'utf8')) as typeof doc;
  t.is(afterForce.entries.length, 1, 'the forced answer replaced the old one');
  t.is(afterForce.entries[0].at, '2026-12-03T13:00:00.000Z');
  // A day and a bit later the answer is stale: probe again.
  now += 25 * 3600_000;
  clearAccelProbeCache();
  await chooseAccel('auto', probe, opts);
  t.is((await q.runs()).length, 3, 'a stale answer is probed again');
  // A QEMU upgrade (another --version) is another key: probed, both kept.
  await writeFile(q.bin, (await readFile(q.bin, 'utf8')).replace('99.0.0', '99.1.0'));
  clearAccelProbeCache();
  await chooseAccel('auto', probe, opts);
  t.is((await q.runs()).length, 4);
  t.is((JSON.parse(await readFile(cacheFile, 'utf8')) as typeof doc).entries.length, 2);
  // A corrupt cache file is ignored (with a warning), never an error.
  await writeFile(cacheFile, '{"version":1,"entries":[');
  clearAccelProbeCache();
  const afterCorrupt = await chooseAccel('auto', probe, opts);
  t.is(afterCorrupt.accel, 'tcg');
  t.is((await q.runs()).length, 5);
});

test.serial('the probe QEMU dies with the harness even on SIGKILL, and is labelled for the sweeper', async (t) => {
  const q = await fakeQemu(t, 'stall');
  const script = `
import { chooseAccel } from ${JSON.stringify(new URL('../../src/vm/index.ts', import.meta.url).pathname)};
await chooseAccel('auto', { kernel: ${JSON.stringify(q.kernel)}, append: '', marker: 'CBT-PROBE-OK', timeoutMs: 120000 }, { qemuBinary: ${JSON.stringify(q.bin)}, cacheFile: null });
`;
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], { stdio: 'ignore' });
  t.teardown(() => void child.kill('SIGKILL'));
  if (!(await kvmUsable())) {
    await new Promise((r) => child.once('exit', r));
    t.deepEqual(await q.runs(), [], 'no probe without /dev/kvm');
    return;
  }
  let runs: string[][] = [];
  for (let i = 0; i < 200 && runs.length === 0; i++) {
    await sleep(50);
    runs = await q.runs();
  }
  t.is(runs.length, 1, 'the probe QEMU started');
  const pid = Number(runs[0][0]);
  t.is(runs[0][2], `cbt-accel-probe-${child.pid}-1,debug-threads=on`, 'QEMU -name carries the probe label');
  const labelled = (await readdir(tmpdir())).filter((n) => n.startsWith('cbt-vm-accel-probe-'));
  const metas = await Promise.all(labelled.map(async (n) => JSON.parse(await readFile(join(tmpdir(), n, 'cbt-vm.json'), 'utf8').catch(() => '{}')) as { pid?: number; ownerPid?: number }));
  t.true(metas.some((m) => m.pid === pid && m.ownerPid === child.pid), 'a cbt-vm.json names the probe and its owner');
  child.kill('SIGKILL');
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await sleep(50);
    gone = !processAlive(pid);
  }
  t.true(gone, 'the probe QEMU outlived a SIGKILLed harness');
  // What it left (its runtime folder) is a leftover the sweeper finds and removes.
  const left = await sweepLeftoverVms({ runId: 'accel-probe' });
  t.true(left.some((l) => l.pid === pid), JSON.stringify(left));
});
