/**
 * Boot-to-SSH of the reference guest under TCG (`npm run bench:boot`): N boots (default 5) of
 * linux-ref with one tracked virtio-blk disk; for each, the time from QEMU's start to the guest's
 * `CBT-SSH-UP` console marker, to the first command run over SSH (`true`: the boot-to-SSH
 * figure), and to `CBT-READY` (dm-era set up). The reference measured in the same run is the
 * floor: the same kernel and initramfs with `rdinit=/cbt-probe`, which prints a marker as soon as
 * userspace starts — boot-to-SSH divided by it shows what userspace adds on top of the kernel.
 *
 *   node bench/boot.ts [--boots N] [--machine q35|pc]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildLinuxRef, LINUX_REF_MARKERS, linuxRefVmSpec } from '../src/guest/linux-ref-image.ts';
import { generateKeyPair, SshClient } from '../src/ssh/index.ts';
import { startVm } from '../src/vm/index.ts';

const { values } = parseArgs({ options: { boots: { type: 'string', default: '5' }, machine: { type: 'string', default: 'q35' } } });
const boots = Number(values.boots);
if (!Number.isInteger(boots) || boots < 1 || boots > 100) throw new Error(`--boots must be 1..100, got ${values.boots}`);
const machine = values.machine === 'pc' ? 'pc' : 'q35';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

const image = await buildLinuxRef({ log: (l) => process.stderr.write(`${l}\n`) });
const key = await generateKeyPair();
const dir = mkdtempSync(join(tmpdir(), 'cbt-bench-boot-'));
try {
  const disk = join(dir, 'data0.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '1G']);
  const rows: Array<{ sshUp: number; ssh: number; ready: number; floor: number }> = [];
  for (let i = 0; i < boots; i++) {
    // Floor: the kernel to its first userspace instruction, same kernel, initramfs and machine.
    const { spec: probeSpec } = linuxRefVmSpec(image, { runId: 'bench', vmId: `floor${i}`, authorizedKeys: [key.publicKey], accel: 'tcg', machine });
    const floorSpec = { ...probeSpec, append: `${probeSpec.append} rdinit=/cbt-probe`, network: false as const, fwCfg: [] };
    let t0 = Date.now();
    {
      await using vm = await startVm(floorSpec);
      await vm.waitForConsole(LINUX_REF_MARKERS.probe, { timeoutMs: 60_000 });
      await vm.stop({ graceful: 'none' });
    }
    const floor = Date.now() - t0;

    const { spec, hostKey } = linuxRefVmSpec(image, { runId: 'bench', vmId: `boot${i}`, authorizedKeys: [key.publicKey], accel: 'tcg', machine, disks: [{ id: 'data0', path: disk, bus: 'virtio-blk' }] });
    t0 = Date.now();
    await using vm = await startVm(spec);
    await vm.waitForConsole(LINUX_REF_MARKERS.sshUp, { timeoutMs: 60_000 });
    const sshUp = Date.now() - t0;
    const ssh = await SshClient.connect(
      { host: '127.0.0.1', port: vm.hostPort(22), username: 'root', privateKey: key.privateKey, hostKey: { kind: 'pinned', fingerprints: [hostKey.fingerprint] } },
      { retryUntil: Date.now() + 60_000 },
    );
    await ssh.exec('true', { check: true });
    const sshMs = Date.now() - t0;
    await vm.waitForConsole(LINUX_REF_MARKERS.ready, { timeoutMs: 60_000 });
    const ready = Date.now() - t0;
    await ssh.exec('cbt-ctl shutdown', { timeoutMs: 30_000 }).catch(() => undefined);
    await ssh.close();
    await vm.stop({ timeoutMs: 30_000 });
    rows.push({ sshUp, ssh: sshMs, ready, floor });
    process.stdout.write(`boot ${i + 1}: ssh ${fmt(sshMs)} (dropbear up ${fmt(sshUp)}, dm-era ready ${fmt(ready)}); kernel-to-userspace floor ${fmt(floor)}\n`);
  }
  const m = (k: keyof (typeof rows)[number]) => median(rows.map((r) => r[k]));
  process.stdout.write(
    [
      `linux-ref ${image.key} (kernel ${image.kernelRelease}, initrd ${(image.manifest.files.initrd.size / 2 ** 20).toFixed(1)} MiB, ${image.manifest.compression}), TCG, ${machine}, ${boots} boots`,
      `boot-to-SSH median ${fmt(m('ssh'))}   values ${rows.map((r) => fmt(r.ssh)).join(', ')}`,
      `dropbear up median ${fmt(m('sshUp'))}, dm-era ready median ${fmt(m('ready'))}`,
      `kernel-to-userspace floor median ${fmt(m('floor'))}; boot-to-SSH / floor = ${(m('ssh') / m('floor')).toFixed(2)}`,
      '',
    ].join('\n'),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
