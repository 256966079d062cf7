/**
 * Accelerator choice. `/dev/kvm` existing proves nothing: on a host that is itself a VM, a guest
 * kernel under nested KVM can stall in early boot (seen: the bzImage decompressor never finishes).
 * So `auto` boots a probe kernel under KVM and uses KVM only if that kernel reaches userspace
 * (prints the probe's marker on the serial console) within the time limit; otherwise TCG, with
 * the reason recorded. One probe per (QEMU binary, probe kernel, initrd, machine) per process.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmError } from './errors.ts';
import { createLogger } from '../util/index.ts';
import type { Accel, AccelProbeSpec } from './spec.ts';

const log = createLogger('cbt:vm');

export interface AccelChoice {
  accel: Accel;
  /** What was asked for. */
  requested: 'auto' | Accel;
  /** Why this accel: e.g. "kvm probe: no userspace marker within 20000 ms (nested KVM stalls?)". */
  reason: string;
  /** How long the probe boot took (when one ran). */
  probeMs?: number;
  /** KVM only: the `-cpu` model the probe booted with (QEMU can refuse `host` on some hosts). */
  cpu?: string;
}

export interface KvmProbeResult {
  ok: boolean;
  reason: string;
  ms: number;
  /** The `-cpu` model that booted (ok only). */
  cpu?: string;
}

export interface ProbeOptions {
  qemuBinary?: string;
  machine?: 'q35' | 'pc';
  cpu?: string;
  signal?: AbortSignal;
}

const cache = new Map<string, Promise<KvmProbeResult>>();

/** Forget cached probe results (tests). */
export function clearAccelProbeCache(): void {
  cache.clear();
}

async function kvmDeviceUsable(): Promise<string | null> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
    return null;
  } catch (e) {
    return `no usable /dev/kvm (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
  }
}

/**
 * Boot `probe` under KVM once: ok when its marker appears on the console in time. Never throws for
 * a failed probe (that is a result); throws VmError `aborted` when the signal fires.
 */
export function probeKvm(probe: AccelProbeSpec, opts: ProbeOptions = {}): Promise<KvmProbeResult> {
  const qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
  const key = JSON.stringify([qemu, probe.kernel, probe.initrd, probe.append, opts.machine ?? 'q35', opts.cpu ?? 'host']);
  let p = cache.get(key);
  if (!p) {
    p = runProbe(qemu, probe, opts);
    cache.set(key, p);
    // An aborted probe proves nothing: do not keep it.
    p.catch(() => cache.delete(key));
  }
  if (!opts.signal) return p;
  const signal = opts.signal;
  return new Promise<KvmProbeResult>((resolve, reject) => {
    const onAbort = () => reject(new VmError('aborted', 'accel probe aborted', { cause: signal.reason }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function runProbe(qemu: string, probe: AccelProbeSpec, opts: ProbeOptions): Promise<KvmProbeResult> {
  const started = Date.now();
  const noDev = await kvmDeviceUsable();
  if (noDev) return { ok: false, reason: noDev, ms: 0 };
  // `-cpu host` is what a KVM VM wants, but QEMU refuses it on some hosts (nested: "failed to
  // set MSR"); then try QEMU's default model once before giving up on KVM.
  const candidates = opts.cpu ? [opts.cpu] : ['host', 'qemu64'];
  const reasons: string[] = [];
  for (const cpu of candidates) {
    const r = await probeOnce(qemu, probe, opts, cpu);
    if (r.ok) return { ...r, ms: Date.now() - started, cpu };
    reasons.push(`-cpu ${cpu}: ${r.reason}`);
    if (!r.exitedEarly) break;
  }
  return { ok: false, reason: `kvm probe: ${reasons.join('; ')}`, ms: Date.now() - started };
}

async function probeOnce(qemu: string, probe: AccelProbeSpec, opts: ProbeOptions, cpu: string): Promise<{ ok: boolean; reason: string; exitedEarly: boolean }> {
  const started = Date.now();
  const timeoutMs = probe.timeoutMs ?? 20_000;
  const dir = await mkdtemp(join(tmpdir(), 'cbt-probe-'));
  const consoleLog = join(dir, 'console.log');
  const argv = [
    '-name', 'cbt-accel-probe',
    '-machine', opts.machine ?? 'q35', '-accel', 'kvm', '-cpu', cpu, '-m', '256', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-chardev', `file,id=c0,path=${consoleLog.replaceAll(',', ',,')}`, '-serial', 'chardev:c0',
    '-kernel', probe.kernel,
    ...(probe.initrd ? ['-initrd', probe.initrd] : []),
    '-append', probe.append,
  ];
  const child = spawn(qemu, argv, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    if (stderr.length < 8192) stderr += d;
  });
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  let spawnError: Error | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve();
    });
    child.once('error', (e) => {
      spawnError = e;
      resolve();
    });
  });
  try {
    const deadline = started + timeoutMs;
    while (true) {
      opts.signal?.throwIfAborted();
      const text = await readSmall(consoleLog);
      if (text.includes(probe.marker)) return { ok: true, reason: `kvm probe: kernel reached userspace in ${Date.now() - started} ms (-cpu ${cpu})`, exitedEarly: false };
      if (spawnError) return { ok: false, reason: `cannot run ${qemu}: ${(spawnError as Error).message}`, exitedEarly: false };
      if (exit) {
        const e = exit as { code: number | null; signal: NodeJS.Signals | null };
        const why = stderr.trim().split('\n')[0] || `exit ${e.code ?? e.signal}`;
        return { ok: false, reason: `QEMU exited before userspace (${why})`, exitedEarly: true };
      }
      if (Date.now() >= deadline) {
        return { ok: false, reason: `no userspace marker within ${timeoutMs} ms (the guest kernel stalls under this KVM, e.g. nested virtualization)`, exitedEarly: false };
      }
      await sleep(100);
    }
  } catch (e) {
    if (opts.signal?.aborted) throw new VmError('aborted', 'accel probe aborted', { cause: opts.signal.reason });
    throw e;
  } finally {
    if (!exit && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
    log.debug('kvm probe done', { cpu, ms: Date.now() - started });
  }
}

async function readSmall(path: string): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const buf = Buffer.alloc(256 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.toString('latin1', 0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The accel for a spec: explicit, or `auto` → probe. */
export async function chooseAccel(requested: 'auto' | Accel, probe: AccelProbeSpec | undefined, opts: ProbeOptions = {}): Promise<AccelChoice> {
  if (requested === 'tcg') return { accel: 'tcg', requested, reason: 'tcg requested' };
  if (requested === 'kvm') return { accel: 'kvm', requested, reason: 'kvm requested' };
  if (!probe) {
    const noDev = await kvmDeviceUsable();
    return { accel: 'tcg', requested, reason: noDev ?? 'no probe kernel given, so kvm is unproven: tcg' };
  }
  const r = await probeKvm(probe, opts);
  if (r.ok) return { accel: 'kvm', requested, reason: r.reason, probeMs: r.ms, cpu: r.cpu };
  return { accel: 'tcg', requested, reason: `${r.reason}; using tcg`, probeMs: r.ms };
}
