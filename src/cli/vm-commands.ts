/**
 * `cbt-harness vm …`: boot a guest once to check the host (accel, boot time, SSH), and sweep
 * what crashed runs left behind. Register with `program.addCommand(vmCommand())`.
 */
import { randomBytes } from 'node:crypto';
import { Command, Option } from 'commander';
import { buildLinuxRef, connectLinuxRef, linuxRefVmSpec } from '../guest/linux-ref-image.ts';
import { generateKeyPair } from '../ssh/index.ts';
import { startVm, sweepLeftoverVms, type RunningVm, type StopResult } from '../vm/index.ts';
import { log, printJson, printText } from './output.ts';

export interface VmBootReport {
  accel: 'kvm' | 'tcg';
  accelReason: string;
  bootToSshMs: number;
  kernel: string;
  shutdown: StopResult['shutdown'];
}

/** Boots linux-ref, logs in over SSH, runs `uname -r`, powers off through the guest. */
export async function bootCheck(opts: { accel?: 'auto' | 'kvm' | 'tcg'; accelProbe?: boolean; machine?: 'q35' | 'pc'; logDir?: string; signal?: AbortSignal; runId?: string }): Promise<VmBootReport> {
  const image = await buildLinuxRef({ log, signal: opts.signal });
  const key = await generateKeyPair();
  const { spec, hostKey } = linuxRefVmSpec(image, {
    runId: opts.runId ?? `boot-${randomBytes(3).toString('hex')}`,
    vmId: 'vm0',
    authorizedKeys: [key.publicKey],
    accel: opts.accel ?? 'auto',
    machine: opts.machine,
    logDir: opts.logDir,
  });
  const vm: RunningVm = await startVm(spec, { signal: opts.signal, forceAccelProbe: opts.accelProbe === true });
  try {
    log(`vm: ${vm.label} accel ${vm.accel.accel} (${vm.accel.reason})`);
    // Boot time counts from QEMU's start, not from the accel probe.
    const started = Date.now();
    const ssh = await connectLinuxRef(vm, { privateKey: key.privateKey, hostKey }, { signal: opts.signal });
    const bootToSshMs = Date.now() - started;
    let kernel: string;
    try {
      const r = await ssh.exec('uname -r', { timeoutMs: 30_000, check: true });
      kernel = r.stdout.trim();
    } catch (e) {
      await ssh.close();
      throw e;
    }
    const stop = await vm.stop({
      graceful: async () => {
        try {
          await ssh.exec('cbt-ctl shutdown', { timeoutMs: 30_000 });
        } finally {
          await ssh.close();
        }
      },
      timeoutMs: 30_000,
    });
    return { accel: vm.accel.accel, accelReason: vm.accel.reason, bootToSshMs, kernel, shutdown: stop.shutdown };
  } finally {
    await vm.stop({ graceful: 'none' });
  }
}

export function vmCommand(): Command {
  const vm = new Command('vm').description('boot guests, check the host, clean up leftovers');
  vm.command('boot')
    .description('build the guest if needed, boot it, SSH in, run `uname -r`, power off')
    // choices: commander itself rejects anything else (printed, exit code 2).
    .addOption(new Option('--guest <name>', 'guest image').choices(['linux-ref']).default('linux-ref'))
    .addOption(new Option('--accel <a>', 'auto probes KVM and falls back to TCG').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--accel-probe', 'with --accel auto: probe KVM again instead of trusting the cached answer')
    .addOption(new Option('--machine <m>', 'QEMU machine').choices(['q35', 'pc']).default('q35'))
    .option('--log-dir <dir>', 'keep the serial console log here')
    .option('--json', 'one JSON document on stdout')
    .action(async (flags: { guest: string; accel: 'auto' | 'kvm' | 'tcg'; accelProbe?: boolean; machine: 'q35' | 'pc'; logDir?: string; json?: boolean }) => {
      const r = await bootCheck({ accel: flags.accel, accelProbe: flags.accelProbe, machine: flags.machine, logDir: flags.logDir });
      if (flags.json) await printJson(r);
      else await printText(`${r.kernel}: SSH after ${r.bootToSshMs} ms under ${r.accel} (${r.accelReason}); shutdown ${r.shutdown}`);
    });
  vm.command('sweep')
    .description('kill QEMU processes and remove runtime folders left by crashed runs')
    .option('--run-id <id>', 'only this run')
    .option('--json', 'one JSON document on stdout')
    .action(async (flags: { runId?: string; json?: boolean }) => {
      const found = await sweepLeftoverVms({ runId: flags.runId });
      if (flags.json) await printJson(found);
      else await printText(found.length ? found.map((l) => `${l.alive ? 'killed' : 'removed'} ${l.label} (${l.dir})`).join('\n') : 'nothing left behind');
    });
  return vm;
}
