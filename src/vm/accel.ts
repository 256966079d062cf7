/**
 * Accelerator choice. `/dev/kvm` existing proves nothing: on a host that is itself a VM, a guest
 * kernel under nested KVM can stall in early boot (seen: the bzImage decompressor never finishes).
 * So `auto` boots a probe kernel under KVM and uses KVM only if that kernel reaches userspace
 * (prints the probe's marker on the serial console) within the time limit; otherwise TCG, with
 * the reason recorded. One probe per (QEMU binary, probe kernel, initrd, machine) per process,
 * and its answer kept for a day in the harness cache (`accel-probe.json`, see accel-cache.ts)
 * so the next run on this host does not pay for it again; `force` probes anew.
 *
 * The probe QEMU is a VM like the others for the sweeper: a `cbt-vm-accel-probe-*` runtime
 * folder with its `cbt-vm.json`, `-name cbt-accel-probe-…`, and it runs under
 * `setpriv --pdeathsig SIGKILL`, so it dies with the harness even when that is SIGKILLed.
 */
import { execFile, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, open, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, release, tmpdir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmError } from './errors.ts';
import { createLogger } from '../util/index.ts';
import type { Accel, AccelProbeSpec } from './spec.ts';
import { emptyAccelCache, formatAge, lookupProbe, parseAccelCache, probeKey, storeProbe, type AccelCacheDoc, type ProbeIdentity } from './accel-cache.ts';
import { withPdeathsig } from './pdeathsig.ts';

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
  /** The answer came from the probe cache: when that probe ran. */
  cachedAt?: string;
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
  /** Probe anew even when an answer is cached (once per process and key: later calls reuse it). */
  force?: boolean;
  /** The probe cache file; null keeps answers in this process only. @default accelCacheFile() */
  cacheFile?: string | null;
  /** For tests. @default Date.now */
  now?: () => number;
}

/** `$CBT_HARNESS_CACHE/accel-probe.json`, else `~/.cache/cbt-harness/accel-probe.json`. */
export function accelCacheFile(): string {
  return join(process.env.CBT_HARNESS_CACHE ?? join(homedir(), '.cache', 'cbt-harness'), 'accel-probe.json');
}

let probeCount = 0;
const cache = new Map<string, Promise<KvmProbeResult & { cachedAt?: string }>>();
/** Keys probed anew in this process by a forced probe: a second `force` reuses that answer. */
const forced = new Set<string>();

/** Forget the answers kept in this process (tests); the cache file stays. */
export function clearAccelProbeCache(): void {
  cache.clear();
  forced.clear();
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
export function probeKvm(probe: AccelProbeSpec, opts: ProbeOptions = {}): Promise<KvmProbeResult & { cachedAt?: string }> {
  const qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
  const key = JSON.stringify([qemu, probe.kernel, probe.initrd, probe.append, opts.machine ?? 'q35', opts.cpu ?? 'host', probe.timeoutMs ?? 20_000]);
  const force = opts.force === true && !forced.has(key);
  let p = force ? undefined : cache.get(key);
  if (!p) {
    if (force) forced.add(key);
    p = cachedOrProbe(qemu, probe, opts, force);
    cache.set(key, p);
    // An aborted probe proves nothing: do not keep it.
    p.catch(() => {
      cache.delete(key);
      forced.delete(key);
    });
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

/** The cached answer for this host and probe when there is a fresh one (and no `force`), else a probe, kept. */
async function cachedOrProbe(qemu: string, probe: AccelProbeSpec, opts: ProbeOptions, force: boolean): Promise<KvmProbeResult & { cachedAt?: string }> {
  const noDev = await kvmDeviceUsable();
  if (noDev) return { ok: false, reason: noDev, ms: 0 };
  const file = opts.cacheFile === undefined ? accelCacheFile() : opts.cacheFile;
  const now = opts.now ?? Date.now;
  const identity = file ? await probeIdentity(qemu, probe, opts) : null;
  const key = identity ? probeKey(identity) : null;
  if (file && key && !force) {
    const hit = lookupProbe(await readAccelCache(file), key, now());
    if (hit) {
      log.debug('kvm probe answer from the cache', { file, at: hit.at, ok: hit.ok });
      return { ok: hit.ok, reason: hit.reason, ms: hit.ms, ...(hit.cpu ? { cpu: hit.cpu } : {}), cachedAt: hit.at };
    }
  }
  const at = new Date(now()).toISOString();
  const r = await runProbe(qemu, probe, opts);
  if (file && key && identity) {
    // A cache that cannot be written costs the next run a probe, nothing more.
    await writeAccelCache(file, (doc) => storeProbe(doc, { key, at, ok: r.ok, reason: r.reason, ms: r.ms, ...(r.cpu ? { cpu: r.cpu } : {}), identity })).catch((e: unknown) => log.warn('cannot write the accel probe cache', { file, error: (e as Error).message }));
  }
  return r;
}

/** What the answer depends on; null when the QEMU binary cannot say its version (then nothing is cached). */
async function probeIdentity(qemu: string, probe: AccelProbeSpec, opts: ProbeOptions): Promise<ProbeIdentity | null> {
  try {
    const path = await realpath(await findExecutable(qemu));
    const version = await new Promise<string>((resolvePromise, reject) => {
      execFile(path, ['--version'], { timeout: 5000 }, (err, stdout) => (err ? reject(err) : resolvePromise(String(stdout).split('\n')[0].trim())));
    });
    if (!version) return null;
    const kvm = await stat('/dev/kvm');
    const files = [];
    for (const f of [probe.kernel, ...(probe.initrd ? [probe.initrd] : [])]) {
      const s = await stat(f);
      files.push({ path: await realpath(f), size: s.size, mtimeMs: s.mtimeMs });
    }
    return { qemu: { path, version }, hostKernel: release(), kvm: { rdev: kvm.rdev, ino: kvm.ino }, files, append: probe.append, marker: probe.marker, machine: opts.machine ?? 'q35', cpu: opts.cpu ?? 'host', timeoutMs: probe.timeoutMs ?? 20_000 };
  } catch (e) {
    log.debug('kvm probe not cacheable', { qemu, error: (e as Error).message });
    return null;
  }
}

async function findExecutable(cmd: string): Promise<string> {
  if (isAbsolute(cmd) || cmd.includes('/')) return cmd;
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, cmd);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  throw new Error(`${cmd} not found on PATH`);
}

/** The cache document in `file`; an empty one when it is missing or unreadable as a cache. */
export async function readAccelCache(file: string): Promise<AccelCacheDoc> {
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') log.warn('cannot read the accel probe cache', { file, error: e.message });
    return null;
  });
  if (text === null) return emptyAccelCache();
  const { doc, problem } = parseAccelCache(text);
  if (problem) log.warn('accel probe cache ignored in part', { file, problem });
  return doc;
}

/** Read, change and replace the cache atomically (temp file + rename: a reader sees old or new). */
async function writeAccelCache(file: string, change: (doc: AccelCacheDoc) => AccelCacheDoc): Promise<void> {
  const doc = change(await readAccelCache(file));
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(doc, null, 1)}\n`, { mode: 0o644 });
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

async function runProbe(qemu: string, probe: AccelProbeSpec, opts: ProbeOptions): Promise<KvmProbeResult> {
  const started = Date.now();
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
  const dir = await mkdtemp(join(tmpdir(), 'cbt-vm-accel-probe-'));
  const consoleLog = join(dir, 'console.log');
  const label = `cbt-accel-probe-${process.pid}-${++probeCount}`;
  const argv = [
    '-name', `${label},debug-threads=on`,
    '-machine', opts.machine ?? 'q35', '-accel', 'kvm', '-cpu', cpu, '-m', '256', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-chardev', `file,id=c0,path=${consoleLog.replaceAll(',', ',,')}`, '-serial', 'chardev:c0',
    '-kernel', probe.kernel,
    ...(probe.initrd ? ['-initrd', probe.initrd] : []),
    '-append', probe.append,
  ];
  const [cmd, args] = await withPdeathsig(qemu, argv);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
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
  // The sweeper's label: a probe left by a harness that died is found and killed like a VM.
  // (Written after the exit listeners are attached: a QEMU that exits at once must not be missed.)
  if (child.pid !== undefined) await writeFile(join(dir, 'cbt-vm.json'), `${JSON.stringify({ label, runId: 'accel-probe', vmId: 'probe', pid: child.pid, ownerPid: process.pid, startedAt: new Date().toISOString(), qemu, argv }, null, 1)}\n`, { mode: 0o600 }).catch(() => undefined);
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
  const cached = r.cachedAt ? { cachedAt: r.cachedAt } : {};
  const from = r.cachedAt ? ` (cached answer of a probe ${formatAge((opts.now ?? Date.now)() - Date.parse(r.cachedAt))} ago; --accel-probe probes again)` : '';
  if (r.ok) return { accel: 'kvm', requested, reason: `${r.reason}${from}`, probeMs: r.ms, cpu: r.cpu, ...cached };
  return { accel: 'tcg', requested, reason: `${r.reason}; using tcg${from}`, probeMs: r.ms, ...cached };
}
