/**
 * One interface for what a job needs on a host, whatever the host type:
 *   - `HostExecutor` (one per inventory host): connect, probe facts, stage guest images and the
 *     harness once per host, open job sessions, sweep leftovers of crashed runs;
 *   - `JobSession` (one per job): a work folder, commands with exit code / output / timeout /
 *     abort, small files in and out, TCP to a port on the host, the harness's own CLI run there,
 *     and cleanup that kills every process the job started and removes its folder.
 *
 * Layout on a host (W = workdir):
 *   W/images/<hash>/{files…, manifest.json, .complete}   guest images, by content hash
 *   W/images/.tmp/                                        uploads in flight
 *   W/harness/<sha256>/                                   the harness (ssh hosts)
 *   W/runs/<runId>/run.json                               the run's lease (who, pid, since when)
 *   W/runs/<runId>/<jobId>/                               a job's folder (.cbt/ holds bookkeeping)
 *
 * Every process a job starts carries CBT_HARNESS_RUN / CBT_HARNESS_JOB / CBT_HARNESS_SESSION /
 * CBT_HARNESS_EXEC in its environment (see shell.ts): killing a command (EXEC), a job (SESSION, a
 * random id per session) or a crashed run (RUN) finds them all, and nothing else.
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { CommandTimeoutError, HostError, HostOperationError, InfrastructureError } from './errors.ts';
import { factsScript, parseFacts, type FactLimits, type HostFacts } from './facts.ts';
import { defaultLogger, type Logger } from './log.ts';
import { currentLease, isLeaseLive, RUN_ID_PATTERN, type LivenessOptions, type RunLease } from './run-lease.ts';
import { ENV_EXEC, ENV_JOB, ENV_RUN, ENV_SESSION, ID_PATTERN, KILL_FN, shJoin, shq } from './shell.ts';
import { hashImageSet } from './staging.ts';
import type { Transport, TransportResult } from './transport.ts';
import type { HostSpec } from './types.ts';

export interface ExecOptions {
  /** Folder to run in: relative to the job folder, or absolute. @default the job folder */
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string | Uint8Array | Readable;
  /** Kill the command (and everything it started) after this long and reject with CommandTimeoutError. */
  timeoutMs?: number;
  /** Kill the command on abort and reject with the signal's reason. */
  signal?: AbortSignal;
  /** @default 16 MiB per stream */
  maxOutputBytes?: number;
}

export interface ExecResult {
  /** The command as one shell line (for messages). */
  command: string;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Output beyond maxOutputBytes was dropped. */
  truncated: boolean;
  durationMs: number;
}

/** A command left running (a VM): wait for it or kill it and everything it started. */
export interface RunningCommand {
  readonly id: string;
  readonly command: string;
  /** Settles when it ends; rejects only on infrastructure failure, timeout or abort. */
  readonly done: Promise<ExecResult>;
  /** TERM, then KILL after 2 s, to the command and all its descendants. Resolves once they are gone. */
  kill(): Promise<{ forced: boolean }>;
}

export interface HarnessResult {
  exitCode: number | null;
  signal: string | null;
  /** stdout parsed as JSON, when it is JSON. */
  json: unknown;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface JobSession extends AsyncDisposable {
  readonly host: string;
  readonly jobId: string;
  /** Absolute path of the job folder on the host (inside the container for docker hosts). */
  readonly workdir: string;
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  spawn(argv: readonly string[], options?: Omit<ExecOptions, 'timeoutMs'>): Promise<RunningCommand>;
  /** Writes a small file (relative to the job folder, or absolute); returns its absolute path. */
  putFile(path: string, data: string | Uint8Array, options?: { mode?: number; signal?: AbortSignal }): Promise<string>;
  /** Reads a small file. @default maxBytes 16 MiB; larger files are refused. */
  getFile(path: string, options?: { maxBytes?: number; signal?: AbortSignal }): Promise<Buffer>;
  /** A TCP connection to 127.0.0.1:port on the host (in the container for docker hosts). */
  connectTcp(port: number, signal?: AbortSignal): Promise<Duplex>;
  /** Runs `cbt-harness ARGS…` on the host, in the job folder (the harness is staged if needed). */
  runHarness(args: readonly string[], options?: Omit<ExecOptions, 'stdin'>): Promise<HarnessResult>;
  /** Kills what the job started and removes its folder (or container). Idempotent. */
  close(): Promise<void>;
}

export interface StagedImage {
  hash: string;
  /** Folder on the host holding the files. */
  dir: string;
  /** name → absolute path on the host. */
  files: Record<string, string>;
  /** False when the host already had it. */
  copied: boolean;
  bytes: number;
}

export interface SweepOptions extends LivenessOptions {
  signal?: AbortSignal;
  /** Leases known from elsewhere (the local run registry), for QEMU processes whose run has no folder here. */
  knownLeases?: Map<string, Partial<RunLease>>;
}

export interface SweepReport {
  host: string;
  /** Runs judged crashed (their leftovers were removed). */
  staleRuns: string[];
  killedPids: number[];
  removedDirs: string[];
  removedContainers: string[];
}

export interface HostExecutor extends AsyncDisposable {
  readonly spec: HostSpec;
  readonly name: string;
  readonly runId: string;
  /** Reaches the host (idempotent). Rejects with InfrastructureError when it cannot. */
  connect(signal?: AbortSignal): Promise<void>;
  facts(signal?: AbortSignal): Promise<HostFacts>;
  /** Copies the files to the host's image cache unless it holds them already (by content hash). */
  stageImage(paths: readonly string[], options?: { signal?: AbortSignal; verify?: boolean }): Promise<StagedImage>;
  /** Path of `cbt-harness` on the host (stages the harness on ssh hosts, once per content hash). */
  harnessPath(signal?: AbortSignal): Promise<string>;
  openJob(jobId: string, options?: { signal?: AbortSignal }): Promise<JobSession>;
  /** Removes leftovers of crashed runs: processes, job folders, containers (only what carries a stale run id). */
  sweep(options?: SweepOptions): Promise<SweepReport>;
  /** Closes job sessions still open, then the connection. Idempotent. */
  close(): Promise<void>;
}

export interface ExecutorOptions {
  runId: string;
  /** @default currentLease(runId) */
  lease?: RunLease;
  log?: Logger;
  limits?: FactLimits;
}

/** Makes an arbitrary string usable as a job id (paths, labels, container names). */
export function safeId(text: string): string {
  if (ID_PATTERN.test(text) && text.length <= 64) return text;
  const cleaned = text.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 48);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return `${cleaned || 'job'}-${h.toString(36)}`;
}

function toResult(command: string, r: TransportResult, started: number): ExecResult {
  return { command, exitCode: r.exitCode, signal: r.signal, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), truncated: r.truncated, durationMs: Date.now() - started };
}

export interface JobSessionInit {
  host: string;
  runId: string;
  jobId: string;
  workdir: string;
  transport: Transport;
  harnessPath: (signal?: AbortSignal) => Promise<string>;
  /** Frees what holds the job (closes its connection, removes its container). */
  release: () => Promise<void>;
  log: Logger;
}

export class ShellJobSession implements JobSession {
  readonly host: string;
  readonly jobId: string;
  readonly workdir: string;
  private readonly init: JobSessionInit;
  private closed: Promise<void> | null = null;
  private readonly running = new Set<Promise<unknown>>();
  private readonly session = `s${randomBytes(8).toString('hex')}`;

  constructor(init: JobSessionInit) {
    this.init = init;
    this.host = init.host;
    this.jobId = init.jobId;
    this.workdir = init.workdir;
  }

  private resolve(path: string): string {
    if (path.startsWith('/')) return posix.normalize(path);
    const abs = posix.normalize(posix.join(this.workdir, path));
    if (abs !== this.workdir && !abs.startsWith(`${this.workdir}/`)) throw new HostOperationError(this.host, `path ${path} leaves the job folder ${this.workdir}`);
    return abs;
  }

  private checkOpen(): void {
    if (this.closed) throw new HostOperationError(this.host, `job ${this.jobId} is closed`);
  }

  /** Runs a host-side script without labels (bookkeeping, kills). */
  private async admin(script: string, signal?: AbortSignal): Promise<TransportResult> {
    return this.init.transport.run(script, { signal, maxOutputBytes: 1 << 20 });
  }

  private async killExec(id: string): Promise<{ forced: boolean }> {
    const script = `${KILL_FN}
cd ${shq(this.workdir)} 2>/dev/null && mkdir -p .cbt/cancel && : > .cbt/cancel/${id}
cbt_killall ${shq(`${ENV_EXEC}=${id}`)}
sleep 0.1; cbt_kill KILL ${shq(`${ENV_EXEC}=${id}`)} >/dev/null`;
    const r = await this.admin(script);
    return { forced: r.stdout.toString().includes('forced:') };
  }

  async spawn(argv: readonly string[], options: Omit<ExecOptions, 'timeoutMs'> = {}): Promise<RunningCommand> {
    return this.start(argv, options);
  }

  private async start(argv: readonly string[], options: ExecOptions): Promise<RunningCommand> {
    this.checkOpen();
    if (argv.length === 0) throw new HostOperationError(this.host, 'empty command');
    options.signal?.throwIfAborted();
    const id = `x${randomBytes(6).toString('hex')}`;
    const command = shJoin(argv);
    const env: Record<string, string> = { ...options.env, [ENV_RUN]: this.init.runId, [ENV_JOB]: this.jobId, [ENV_SESSION]: this.session, [ENV_EXEC]: id };
    for (const k of Object.keys(env)) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new HostOperationError(this.host, `not an environment variable name: ${JSON.stringify(k)}`);
    const cwd = options.cwd === undefined ? this.workdir : this.resolve(options.cwd);
    // `exec` replaces the shell, so the command itself carries the labels in /proc/PID/environ.
    const script = [
      `cd ${shq(this.workdir)} || exit 125`,
      `[ -e .cbt/cancel/${id} ] && exit 130`,
      `export ${Object.entries(env).map(([k, v]) => `${k}=${shq(v)}`).join(' ')}`,
      `cd ${shq(cwd)} || exit 125`,
      `exec ${command}`,
    ].join('\n');
    const started = Date.now();
    // The transport's own abort is a last resort (after the kill): closing a channel first would
    // leave the remote process running.
    const hard = new AbortController();
    let killing: Promise<{ forced: boolean }> | null = null;
    const kill = () => {
      killing ??= this.killExec(id).catch((error: unknown) => {
        this.init.log('kill failed', { host: this.host, job: this.jobId, exec: id, error: (error as Error).message });
        return { forced: true };
      }).finally(() => setTimeout(() => hard.abort(new Error('killed')), 5000).unref());
      return killing;
    };
    let timedOut = false;
    const timer = options.timeoutMs !== undefined ? setTimeout(() => {
      timedOut = true;
      void kill();
    }, options.timeoutMs) : undefined;
    const onAbort = () => void kill();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.init.log('exec', { host: this.host, job: this.jobId, exec: id, command });
    const done = (async () => {
      try {
        const r = await this.init.transport.run(script, { stdin: options.stdin, signal: hard.signal, maxOutputBytes: options.maxOutputBytes });
        if (killing) await killing;
        if (timedOut) throw new CommandTimeoutError(this.host, command, options.timeoutMs ?? 0);
        if (options.signal?.aborted) throw options.signal.reason;
        return toResult(command, r, started);
      } catch (error) {
        if (timedOut && !(error instanceof CommandTimeoutError)) throw new CommandTimeoutError(this.host, command, options.timeoutMs ?? 0);
        if (options.signal?.aborted) throw options.signal.reason;
        throw error;
      } finally {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      }
    })();
    const tracked = done.catch(() => {});
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
    return { id, command, done, kill };
  }

  async exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return (await this.start(argv, options)).done;
  }

  async putFile(path: string, data: string | Uint8Array, options: { mode?: number; signal?: AbortSignal } = {}): Promise<string> {
    this.checkOpen();
    const abs = this.resolve(path);
    const mode = options.mode === undefined ? '' : ` && chmod ${(options.mode & 0o7777).toString(8)} ${shq(abs)}`;
    const r = await this.init.transport.run(`mkdir -p ${shq(posix.dirname(abs))} && cat > ${shq(abs)}${mode}`, { stdin: typeof data === 'string' ? Buffer.from(data) : data, signal: options.signal, maxOutputBytes: 65536 });
    if (r.exitCode !== 0) throw new HostOperationError(this.host, `cannot write ${abs}: ${r.stderr.toString().trim()}`);
    return abs;
  }

  async getFile(path: string, options: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<Buffer> {
    this.checkOpen();
    const abs = this.resolve(path);
    const max = options.maxBytes ?? 16 * 2 ** 20;
    // base64: text-safe through every transport; the size check first bounds what we accept.
    const r = await this.init.transport.run(`f=${shq(abs)}; [ -f "$f" ] || { echo "no such file" >&2; exit 3; }; n=$(wc -c < "$f"); [ "$n" -le ${max} ] || { echo "$n bytes, more than the limit of ${max}" >&2; exit 4; }; base64 < "$f"`, { signal: options.signal, maxOutputBytes: Math.ceil(max / 3) * 4 + Math.ceil(max / 57) + 1024 });
    if (r.exitCode !== 0) throw new HostOperationError(this.host, `cannot read ${abs}: ${r.stderr.toString().trim()}`);
    return Buffer.from(r.stdout.toString('latin1').replace(/\s+/g, ''), 'base64');
  }

  connectTcp(port: number, signal?: AbortSignal): Promise<Duplex> {
    this.checkOpen();
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new HostOperationError(this.host, `Expected \`port\` to be an integer from 1 to 65535, got \`${port}\``);
    return this.init.transport.connectTcp(port, signal);
  }

  async runHarness(args: readonly string[], options: Omit<ExecOptions, 'stdin'> = {}): Promise<HarnessResult> {
    const bin = await this.init.harnessPath(options.signal);
    const r = await this.exec([bin, ...args], { maxOutputBytes: 64 * 2 ** 20, ...options });
    let json: unknown;
    const text = r.stdout.trim();
    if (text.startsWith('{') || text.startsWith('[')) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    return { exitCode: r.exitCode, signal: r.signal, json, stdout: r.stdout, stderr: r.stderr, durationMs: r.durationMs };
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      try {
        const r = await this.admin(`${KILL_FN}\ncbt_killall ${shq(`${ENV_SESSION}=${this.session}`)}\nrm -rf ${shq(this.workdir)}`);
        if (r.stdout.toString().includes('forced:')) this.init.log('job processes needed SIGKILL', { host: this.host, job: this.jobId });
      } catch (error) {
        // The host may be gone (that is often why a job ends early); the sweeper covers it.
        this.init.log('job cleanup failed', { host: this.host, job: this.jobId, error: (error as Error).message });
      }
      await Promise.allSettled([...this.running]);
      await this.init.release().catch((error: unknown) => this.init.log('release failed', { host: this.host, job: this.jobId, error: (error as Error).message }));
    })();
    return this.closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Local and ssh hosts (a work folder on a POSIX host) and docker hosts (containers) share this. */
export abstract class ShellExecutor implements HostExecutor {
  readonly spec: HostSpec;
  readonly name: string;
  readonly runId: string;
  protected readonly lease: RunLease;
  protected readonly log: Logger;
  protected readonly limits: FactLimits;
  protected readonly jobs = new Set<JobSession>();
  private readonly staging = new Map<string, Promise<StagedImage>>();
  private closing: Promise<void> | null = null;
  private leaseWritten: Promise<void> | null = null;

  constructor(spec: HostSpec, options: ExecutorOptions) {
    if (!RUN_ID_PATTERN.test(options.runId) && !ID_PATTERN.test(options.runId)) throw new HostOperationError(spec.name, `not a run id: ${JSON.stringify(options.runId)}`);
    this.spec = spec;
    this.name = spec.name;
    this.runId = options.runId;
    this.lease = options.lease ?? currentLease(options.runId);
    this.log = options.log ?? defaultLogger('cbt-hosts');
    this.limits = options.limits ?? {};
  }

  /** The work folder as seen by commands on the host (docker: inside containers). */
  protected abstract get workdir(): string;
  protected get imagesDir(): string {
    return `${this.workdir}/images`;
  }
  protected get runsDir(): string {
    return `${this.workdir}/runs`;
  }
  /** The transport for host-wide work (facts, staging, sweeping). */
  protected abstract control(signal?: AbortSignal): Promise<Transport>;
  /** A transport for one job and how to free it. */
  protected abstract jobTransport(jobId: string, signal?: AbortSignal): Promise<{ transport: Transport; release: () => Promise<void> }>;
  abstract harnessPath(signal?: AbortSignal): Promise<string>;
  protected abstract closeTransports(): Promise<void>;

  async connect(signal?: AbortSignal): Promise<void> {
    await this.control(signal);
  }

  /** Runs a host-wide script; non-zero exit is an error naming `what`. */
  protected async sh(script: string, what: string, options: { signal?: AbortSignal; stdin?: string | Uint8Array; transport?: Transport } = {}): Promise<string> {
    const t = options.transport ?? (await this.control(options.signal));
    const r = await t.run(script, { signal: options.signal, stdin: options.stdin, maxOutputBytes: 8 * 2 ** 20 });
    if (r.exitCode !== 0) throw new HostOperationError(this.name, `${what} failed (exit ${r.exitCode ?? r.signal}): ${r.stderr.toString().trim().slice(-2000)}`);
    return r.stdout.toString('utf8');
  }

  async facts(signal?: AbortSignal): Promise<HostFacts> {
    const out = await this.sh(factsScript(this.workdir, this.imagesDir), 'probing facts', { signal });
    return parseFacts(this.name, this.spec.type, this.workdir, out, this.limits);
  }

  stageImage(paths: readonly string[], options: { signal?: AbortSignal; verify?: boolean } = {}): Promise<StagedImage> {
    return (async () => {
      const set = await hashImageSet(paths, options.signal);
      // Jobs staging the same set at once share one copy; only the first reports `copied`.
      const inflight = this.staging.get(set.hash);
      if (inflight) return { ...(await inflight), copied: false };
      const p = this.stageSet(set, options);
      this.staging.set(set.hash, p);
      try {
        return await p;
      } finally {
        this.staging.delete(set.hash);
      }
    })();
  }

  /** Uploads into a private temporary folder, verifies, then renames into place (atomic for concurrent controllers). */
  private async stageSet(set: Awaited<ReturnType<typeof hashImageSet>>, options: { signal?: AbortSignal; verify?: boolean }): Promise<StagedImage> {
    const dir = `${this.imagesDir}/${set.hash}`;
    const files = Object.fromEntries(set.files.map((f) => [f.name, `${dir}/${f.name}`]));
    const result = (copied: boolean): StagedImage => ({ hash: set.hash, dir, files, copied, bytes: set.bytes });
    const t = await this.control(options.signal);
    const probe = await this.sh(`if [ -e ${shq(dir)}/.complete ]; then echo present; else mkdir -p ${shq(this.imagesDir)}/.tmp && mktemp -d ${shq(`${this.imagesDir}/.tmp/${set.hash}.XXXXXX`)}; fi`, 'checking the image cache', { transport: t, signal: options.signal });
    if (probe.trim() === 'present') {
      this.log('image cached', { host: this.name, hash: set.hash.slice(0, 12) });
      return result(false);
    }
    const tmp = probe.trim();
    if (!tmp.startsWith(`${this.imagesDir}/.tmp/`)) throw new HostOperationError(this.name, `unexpected answer while staging an image: ${tmp.slice(0, 200)}`);
    try {
      this.log('staging image', { host: this.name, hash: set.hash.slice(0, 12), bytes: set.bytes });
      for (const f of set.files) await t.upload(f.path, `${tmp}/${f.name}`, options.signal);
      const manifest = JSON.stringify({ hash: set.hash, files: set.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })), stagedAt: new Date().toISOString(), stagedBy: this.lease.controller });
      await this.sh(`cat > ${shq(tmp)}/manifest.json`, 'writing the image manifest', { transport: t, stdin: manifest, signal: options.signal });
      if (options.verify !== false) {
        const sums = await this.sh(`cd ${shq(tmp)} && sha256sum ${set.files.map((f) => shq(f.name)).join(' ')}`, 'verifying staged files', { transport: t, signal: options.signal });
        for (const f of set.files) {
          if (!sums.split('\n').some((l) => l.startsWith(`${f.sha256} `) && l.trim().endsWith(f.name))) throw new InfrastructureError(this.name, `staged ${f.name} does not match its sha256 after the copy (${f.sha256.slice(0, 12)}…); transfer corrupted`);
        }
      }
      // Read-only: jobs must never write into a shared base.
      await this.sh(`chmod a-w ${shq(tmp)}/* && : > ${shq(tmp)}/.complete && { mv -T ${shq(tmp)} ${shq(dir)} 2>/dev/null || { rm -rf ${shq(tmp)}; [ -e ${shq(dir)}/.complete ]; }; }`, 'publishing the staged image', { transport: t, signal: options.signal });
      return result(true);
    } catch (error) {
      await t.run(`rm -rf ${shq(tmp)}`).catch(() => {});
      if (error instanceof HostError) throw error;
      throw new InfrastructureError(this.name, `staging image ${set.hash.slice(0, 12)} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Writes this run's lease into W/runs/<runId>/run.json once. */
  protected writeLease(t: Transport): Promise<void> {
    this.leaseWritten ??= (async () => {
      const runDir = `${this.runsDir}/${this.runId}`;
      await this.sh(`mkdir -p ${shq(runDir)} && cat > ${shq(runDir)}/run.json.tmp && mv ${shq(runDir)}/run.json.tmp ${shq(runDir)}/run.json`, 'writing the run lease', { transport: t, stdin: JSON.stringify(this.lease) });
    })();
    this.leaseWritten.catch(() => (this.leaseWritten = null));
    return this.leaseWritten;
  }

  async openJob(jobId: string, options: { signal?: AbortSignal } = {}): Promise<JobSession> {
    if (this.closing) throw new HostOperationError(this.name, 'executor is closed');
    if (!ID_PATTERN.test(jobId)) throw new HostOperationError(this.name, `Expected a job id of letters, digits, . _ - (use safeId()), got ${JSON.stringify(jobId)}`);
    const { transport, release } = await this.jobTransport(jobId, options.signal);
    try {
      await this.writeLease(transport);
      const workdir = `${this.runsDir}/${this.runId}/${jobId}`;
      await this.sh(`rm -rf ${shq(workdir)} && mkdir -p ${shq(workdir)}/.cbt/cancel`, 'creating the job folder', { transport, signal: options.signal });
      const job: JobSession = new ShellJobSession({
        host: this.name,
        runId: this.runId,
        jobId,
        workdir,
        transport,
        harnessPath: (s) => this.harnessPath(s),
        release: async () => {
          this.jobs.delete(job);
          await release();
        },
        log: this.log,
      });
      this.jobs.add(job);
      return job;
    } catch (error) {
      await release().catch(() => {});
      throw error;
    }
  }

  /** Stale runs in W/runs, their processes, their folders; and QEMU processes named after them. */
  protected async sweepWorkdir(t: Transport, options: SweepOptions, report: SweepReport): Promise<void> {
    const listing = await this.sh(`for d in ${shq(this.runsDir)}/r*/; do [ -d "$d" ] || continue; r=$(basename "$d"); printf 'run=%s %s\\n' "$r" "$(head -c 4096 "$d/run.json" 2>/dev/null | tr -d '\\n')"; done
for d in /proc/[0-9]*; do c=$(tr '\\000' '\\001' < "$d/cmdline" 2>/dev/null); case "$c" in *qemu-system*) printf 'proc=%s %s %s\\n' "\${d#/proc/}" "$(sed 's/.*) //' "$d/stat" 2>/dev/null | cut -d' ' -f20)" "$c";; esac; done
echo "clock=$(cut -d' ' -f1 /proc/uptime) $(getconf CLK_TCK)"
true`, 'listing runs', { transport: t, signal: options.signal });
    const leases = new Map<string, Partial<RunLease> | null>();
    const procs: Array<{ pid: number; runId: string; startTicks: number }> = [];
    let uptime = 0;
    let ticks = 100;
    for (const line of listing.split('\n')) {
      let m = /^run=(\S+) ?(.*)$/.exec(line);
      if (m) {
        if (!RUN_ID_PATTERN.test(m[1])) continue;
        let lease: Partial<RunLease> | null = null;
        try {
          lease = m[2] ? (JSON.parse(m[2]) as Partial<RunLease>) : null;
        } catch {
          lease = null;
        }
        // A folder with no readable lease: judge by the time in its run id.
        leases.set(m[1], lease ?? { runId: m[1], startedAt: runIdTime(m[1]) });
        continue;
      }
      m = /^proc=(\d+) (\d*) (.*)$/.exec(line);
      if (m) {
        const runId = qemuRunLabel(m[3].split('\x01'));
        if (runId) procs.push({ pid: Number(m[1]), runId, startTicks: Number(m[2] || 0) });
        continue;
      }
      m = /^clock=([\d.]+) (\d+)$/.exec(line);
      if (m) {
        uptime = Number(m[1]);
        ticks = Number(m[2]) || 100;
      }
    }
    const stale = new Set<string>();
    for (const [runId, lease] of leases) if (!isLeaseLive(lease, { ...options, currentRunId: this.runId })) stale.add(runId);
    for (const p of procs) {
      if (p.runId === this.runId) continue;
      const known = leases.get(p.runId) ?? options.knownLeases?.get(p.runId);
      if (known) {
        if (!isLeaseLive(known, { ...options, currentRunId: this.runId })) stale.add(p.runId);
        continue;
      }
      // No lease anywhere: judge by age — of the run id's time and of the process itself (a
      // VM a crashed run left has been running since then; a fresh one is someone's live work).
      const maxAge = options.foreignMaxAgeMs ?? 24 * 3600 * 1000;
      const processAgeMs = uptime > 0 ? (uptime - p.startTicks / ticks) * 1000 : 0;
      if (processAgeMs > maxAge && !isLeaseLive({ runId: p.runId, startedAt: runIdTime(p.runId) }, { ...options, currentRunId: this.runId })) stale.add(p.runId);
    }
    for (const runId of stale) {
      const qemuPids = procs.filter((p) => p.runId === runId).map((p) => p.pid);
      const out = await this.sh(`${KILL_FN}
cbt_kill KILL ${shq(`${ENV_RUN}=${runId}`)}
for p in ${qemuPids.join(' ')}; do c=$(tr '\\000' '\\001' < /proc/$p/cmdline 2>/dev/null); case "$c" in *qemu-system*cbt-${runId}*) kill -KILL "$p" 2>/dev/null && echo "$p";; esac; done
if [ -d ${shq(`${this.runsDir}/${runId}`)} ]; then rm -rf ${shq(`${this.runsDir}/${runId}`)} && echo "dir=${this.runsDir}/${runId}"; fi
true`, `sweeping run ${runId}`, { transport: t, signal: options.signal });
      report.staleRuns.push(runId);
      for (const line of out.split('\n')) {
        if (/^\d+$/.test(line)) report.killedPids.push(Number(line));
        else if (line.startsWith('dir=')) report.removedDirs.push(line.slice(4));
      }
    }
    // Uploads a crashed run left half-way.
    await this.sh(`[ -d ${shq(this.imagesDir)}/.tmp ] && find ${shq(this.imagesDir)}/.tmp -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + ; true`, 'removing stale uploads', { transport: t, signal: options.signal });
  }

  async sweep(options: SweepOptions = {}): Promise<SweepReport> {
    const report: SweepReport = { host: this.name, staleRuns: [], killedPids: [], removedDirs: [], removedContainers: [] };
    await this.sweepWorkdir(await this.control(options.signal), options, report);
    return report;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.jobs].map((j) => j.close()));
      await this.cleanupRunDir().catch(() => {});
      await this.closeTransports();
    })();
    return this.closing;
  }

  /** Removes W/runs/<runId> when no job is left in it. */
  protected async cleanupRunDir(): Promise<void> {
    if (!this.leaseWritten) return;
    const t = await this.control();
    await t.run(`d=${shq(`${this.runsDir}/${this.runId}`)}; [ -d "$d" ] && [ -z "$(ls -A "$d" | grep -v '^run.json$')" ] && rm -rf "$d"; true`);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The time encoded in a run id, as ISO (runs without a lease are judged by it). */
export function runIdTime(runId: string): string | undefined {
  const m = /^r(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})-/.exec(runId);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z` : undefined;
}

/**
 * The run id in a QEMU command line's `-name` (`cbt-<runId>…` or `guest=cbt-<runId>…`), or null.
 * Only processes whose program is qemu-system-* qualify.
 */
export function qemuRunLabel(argv: readonly string[]): string | null {
  if (!argv[0] || !posix.basename(argv[0]).startsWith('qemu-system')) return null;
  for (let i = 1; i < argv.length - 1; i++) {
    if (argv[i] !== '-name') continue;
    const m = /(?:^|guest=)cbt-(r\d{8}T\d{6}-[a-z0-9]{6})(?:[^a-z0-9]|$)/.exec(argv[i + 1]);
    if (m) return m[1];
  }
  return null;
}
