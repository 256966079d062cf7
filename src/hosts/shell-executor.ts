/**
 * The shared part of every executor: facts, image staging, job sessions, the sweeper. Subclasses
 * say how to reach the host (control transport), how to hold a job (its transport), and where
 * the harness is.
 */
import { HostError, HostOperationError, InfrastructureError } from './errors.ts';
import type { ExecutorOptions, HostExecutor, JobSession, StagedImage, SweepOptions, SweepReport } from './executor.ts';
import { factsScript, parseFacts, type FactLimits, type HostFacts } from './facts.ts';
import { ShellJobSession } from './job-session.ts';
import { createLogger, type Logger } from '../util/log.ts';
import { currentLease, isLeaseLive, RUN_ID_PATTERN, type RunLease } from './run-lease.ts';
import { ENV_RUN, ID_PATTERN, KILL_FN, shq } from './shell.ts';
import { hashImageSet } from './staging.ts';
import { qemuRunLabel, runIdTime } from './sweep-labels.ts';
import type { Transport } from './transport.ts';
import type { HostSpec } from './types.ts';

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
    this.log = options.log ?? createLogger('cbt:hosts');
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
      this.log.debug('image cached', { host: this.name, hash: set.hash.slice(0, 12) });
      return result(false);
    }
    const tmp = probe.trim();
    if (!tmp.startsWith(`${this.imagesDir}/.tmp/`)) throw new HostOperationError(this.name, `unexpected answer while staging an image: ${tmp.slice(0, 200)}`);
    try {
      this.log.debug('staging image', { host: this.name, hash: set.hash.slice(0, 12), bytes: set.bytes });
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
