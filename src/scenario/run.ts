/**
 * `cbt-harness run`: scenarios × repeats scheduled over the hosts of an inventory (the local host
 * by default). Each job runs where its VM runs — in this process for `local` hosts, behind
 * `cbt-harness job run` on ssh and docker hosts — and only its outcome (steps, epochs, verdicts,
 * timeline) and small artifacts come back. Reporters get every job; the run record is written.
 */
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { buildLinuxRef } from '../guest/index.ts';
import { InfrastructureError, loadInventory, newRunId, type HostSpec, type JobSession } from '../hosts/index.ts';
import { createReporters, durationKey, hostInfo, RunRecorder, type JobRef, type ReportLogger, type RunRecord, type TextStream } from '../report/index.ts';
import { onJobSession, openHostPool, schedule, type HostPool, type Job } from '../scheduler/index.ts';
import { JOB_SPEC_VERSION, runJob, type JobOutcome, type JobSpec } from './job.ts';
import { loadScenarios } from './loader.ts';
import { deriveSeed, randomSeed } from './seeds.ts';
import type { Scenario } from './types.ts';
import { ConfigError } from '../config/index.ts';
import type { Verdict } from '../verify/index.ts';

/** One line of a run's plan: a scenario file run `repeats` times. */
export interface PlannedScenario {
  file: string;
  repeats: number;
  /** Known-bad tracker: the job must fail. */
  mustFail?: boolean;
  /** Overrides the scenario's acceptable verdicts. */
  expect?: Verdict[];
  tags?: string[];
}

export interface RunOptions {
  /** Scenario files (each run `repeat` times), or a plan (a run config's matrix). */
  files?: string[];
  plan?: PlannedScenario[];
  /** Host inventory; default: this machine only, one slot. */
  hostsFile?: string;
  seed?: number;
  /** Writes run.json (always), plus the files of the junit/html reporters. */
  outDir?: string;
  /** @default 1 */
  repeat?: number;
  /** @default ['terminal'] */
  reporters?: string[];
  stream: TextStream;
  isTTY: boolean;
  logger: ReportLogger;
  signal?: AbortSignal;
  accel?: 'auto' | 'kvm' | 'tcg';
  /** `force`: probe KVM anew on each host (once per host) instead of trusting its cached answer. */
  accelProbe?: 'cached' | 'force';
  keepImages?: boolean;
  /** Every job is a known-bad tracker (with `files`): its failure is the expected outcome. */
  expectFailure?: boolean;
  /** Run config name/file and labels for the record. */
  config?: { name: string; file: string };
  labels?: Record<string, string>;
  /** @default 2 */
  maxAttempts?: number;
  /** Infrastructure failures in a row that mark a host down. @default 3 */
  hostFailureLimit?: number;
  /** Backup copies of running jobs on idle slots at the tail of the run (scheduler `speculate`). @default false */
  speculate?: boolean;
  /**
   * Expected milliseconds per `durationKey(scenario, guest)` (from earlier runs: report
   * `expectedDurations`). When any job has one, jobs run in the order of the scheduler's plan (see `jobCosts`).
   */
  expectedMs?: ReadonlyMap<string, number>;
  /** Limit of one job (its VM is stopped when it passes). */
  jobTimeoutMs?: number;
  /** Harness version for the record. */
  version: string;
}

export interface RunResult {
  record: RunRecord;
  /** 0 every job passed (or failed as expected), 1 a verdict or step failed, 2 infrastructure. */
  exitCode: 0 | 1 | 2;
}

interface Payload {
  ref: JobRef;
  scenario: Scenario;
  text: string;
  expect?: Verdict[];
}

const LOCAL: HostSpec = { name: 'local', type: 'local', slots: 1, tags: [], workdir: join(tmpdir(), 'cbt-harness') } as unknown as HostSpec;

export async function runScenarios(opts: RunOptions): Promise<RunResult> {
  const plan: PlannedScenario[] = opts.plan ?? (opts.files ?? []).map((file) => ({ file, repeats: opts.repeat ?? 1, mustFail: opts.expectFailure }));
  if (plan.length === 0) throw new ConfigError('no scenario files to run', { file: opts.config?.file ?? '(command line)' });
  const scenarios = await loadScenarios([...new Set(plan.map((p) => p.file))]);
  const byFile = new Map(scenarios.map((s) => [s.file, s]));
  const texts = new Map<string, string>();
  for (const s of scenarios) texts.set(s.file, await readFile(s.file, 'utf8'));
  const seed = opts.seed ?? randomSeed();
  const runId = newRunId();
  const inventory = opts.hostsFile ? await loadInventory(opts.hostsFile) : { file: '(built-in)', hosts: [LOCAL] };
  const jobs: Array<Job<Payload>> = [];
  const ids = new Set<string>();
  for (const p of plan) {
    const s = byFile.get(p.file)!;
    for (let r = 0; r < p.repeats; r++) {
      let id = p.repeats > 1 ? `${s.name}#${r + 1}` : s.name;
      for (let k = 2; ids.has(id); k++) id = `${s.name}~${k}`;
      ids.add(id);
      const ref: JobRef = {
        id,
        scenario: { name: s.name, file: s.file, description: s.description },
        guest: { name: s.guest, os: { family: 'linux', build: s.guest }, tracker: { name: s.tracker, decoder: s.tracker, version: 'unknown' } },
        repeat: r + 1,
        // The run's --seed, else the scenario's own `seed`, else the run's random seed.
        seed: deriveSeed(opts.seed ?? s.seed ?? seed, s.name, r),
        ...(p.mustFail ? { expectedStatus: 'failed' as const } : {}),
      };
      jobs.push({ id, payload: { ref, scenario: s, text: texts.get(s.file)!, expect: p.expect }, requires: p.tags?.length ? p.tags : undefined });
    }
  }
  const order = jobCosts(jobs, (j) => opts.expectedMs?.get(durationKey(j.payload.ref.scenario.name, j.payload.ref.guest.name)));
  const outDir = opts.outDir ? resolve(opts.outDir.replaceAll('{runId}', runId)) : undefined;
  if (outDir) await mkdir(outDir, { recursive: true });
  const workRoot = outDir ? join(outDir, 'jobs') : await mkdtemp(join(tmpdir(), 'cbt-run-'));
  const reporters = createReporters(opts.reporters ?? ['terminal'], { outDir, stream: opts.stream, isTTY: opts.isTTY, logger: opts.logger });
  // Every host connected and swept of crashed runs' leftovers before any job; one that cannot be
  // reached starts down (no job is placed on it) and the record says why.
  const pool = await openHostPool(inventory.hosts, { runId, signal: opts.signal });
  for (const [name, why] of pool.down) opts.logger.warn(`host ${name} is down, no job will run on it: ${why}`);
  for (const s of pool.sweeps) if (s.staleRuns.length > 0) opts.logger.warn(`host ${s.host}: removed leftovers of crashed runs ${s.staleRuns.join(', ')}`, { killed: s.killedPids.length, folders: s.removedDirs.length, containers: s.removedContainers.length });
  const remote = onJobSession(pool, (job: Job<RemoteJob>, session, signal) => runRemote(pool, job.payload, session, signal));
  const recorder = new RunRecorder(
    {
      runId,
      startedAt: new Date().toISOString(),
      harness: { version: opts.version, node: process.version },
      seed,
      ...(opts.config ? { config: opts.config } : {}),
      ...(opts.labels ? { labels: opts.labels } : {}),
      hosts: inventory.hosts.map((h) => hostInfo({ name: h.name, type: h.type, tags: h.tags, slots: h.slots, down: pool.down.get(h.name) })),
      jobs: jobs.map((j) => j.payload.ref),
    },
    reporters.reporter,
  );
  await recorder.begin();
  // A forced probe once per host: in this process the first forced probe is reused by the rest;
  // a remote host gets it with its first job (later ones read the fresh answer it cached).
  const probeAgain = new Set(opts.accelProbe === 'force' ? inventory.hosts.map((h) => h.name) : []);
  const begun = new Set<string>();
  const ended = new Set<string>();
  /** The recorded outcome of each job: a second copy that completes late returns the first's. */
  const recorded = new Map<string, Promise<JobOutcome>>();
  const hostsByName = new Map(inventory.hosts.map((h) => [h.name, h]));
  try {
    const result = await schedule(
      jobs,
      inventory.hosts.map((h) => ({ name: h.name, slots: h.slots, tags: h.tags })),
      async (job, host, signal, context) => {
        const { ref, text, scenario, expect } = job.payload;
        const startedAt = new Date();
        if (!begun.has(ref.id)) {
          begun.add(ref.id);
          await recorder.jobBegin(ref, startedAt.toISOString());
        }
        const spec = hostsByName.get(host.name)!;
        // A backup copy (speculation) runs beside the first one: its own folder.
        const dirName = context.speculative ? `${safe(ref.id)}.attempt-${context.attempt}` : safe(ref.id);
        const jobSpec: JobSpec = { jobId: safe(ref.id), runId, scenarioFile: scenario.file, scenarioText: text, seed: ref.seed, repeat: ref.repeat, workDir: join(workRoot, dirName), accel: opts.accel, keepImages: opts.keepImages, ...(expect ? { expect } : {}) };
        if (spec.type === 'local' ? probeAgain.has(spec.name) : probeAgain.delete(spec.name)) jobSpec.accelProbe = 'force';
        const jobSignal = opts.jobTimeoutMs ? AbortSignal.any([signal, AbortSignal.timeout(opts.jobTimeoutMs)]) : signal;
        // Local jobs run in this process; the others in a job session on their host.
        const outcome = spec.type === 'local' ? await runJob(jobSpec, {}, jobSignal) : await remote({ ...job, payload: { spec, job: jobSpec } }, spec, jobSignal, context);
        // Stopped because another copy finished first: not an outcome of this job.
        if (signal.aborted && !opts.signal?.aborted) throw signal.reason;
        // Stopped by the run's signal (Ctrl-C): cancelled, with the steps it did run.
        const cancelled = outcome.cancelled === true && opts.signal?.aborted === true;
        // A VM that never came up is the infrastructure's failure: the scheduler retries elsewhere.
        if (outcome.infrastructure && !cancelled) throw new InfrastructureError(host.name, outcome.error ?? 'the job failed for infrastructure reasons');
        // Both copies completed: the first to get here is the job's outcome (the scheduler
        // marks the other superseded).
        const first = recorded.get(ref.id);
        if (first) return first;
        // Record the finished job now, so reporters show it while the others run.
        const attempts = [...context.previous, { host: host.name, attempt: context.attempt, startedAt: startedAt.toISOString(), durationMs: Date.now() - startedAt.getTime(), outcome: cancelled ? ('cancelled' as const) : ('ok' as const), ...(context.speculative ? { speculative: true } : {}) }];
        const status = cancelled ? ('infra-error' as const) : outcome.status;
        const error = cancelled ? `cancelled: ${describeReason(opts.signal?.reason)}${outcome.error ? ` (${outcome.error})` : ''}` : outcome.error;
        const recording = (async () => {
          for (const e of outcome.timeline) recorder.event(ref.id, e);
          for (const st of outcome.steps) await recorder.step(ref.id, st);
          for (const ep of outcome.epochs) await recorder.epoch(ref.id, ep);
          await recorder.jobEnd(ref.id, { status, error, host: { name: host.name, type: spec.type }, accel: outcome.accel, guest: outcome.guest, attempts, artifacts: prefixArtifacts(outcome, dirName, outDir), endedAt: outcome.endedAt });
          ended.add(ref.id);
          return outcome;
        })();
        recorded.set(ref.id, recording);
        return recording;
      },
      { signal: opts.signal, maxAttempts: opts.maxAttempts ?? 2, hostFailureLimit: opts.hostFailureLimit, speculate: opts.speculate === true, order, downHosts: pool.down },
    );
    for (const o of result.outcomes) {
      const { ref } = o.job.payload;
      if (ended.has(ref.id)) {
        // A copy that lost the race ended after the job was recorded: the record lists it too.
        if (o.attempts.length > 1) recorder.amendAttempts(ref.id, o.attempts);
        continue;
      }
      const host = o.host ? { name: o.host, type: hostsByName.get(o.host)?.type ?? 'local' } : null;
      const why = `${(o.error as Error)?.name ?? o.status}: ${(o.error as Error)?.message ?? String(o.error ?? '')}`;
      if (o.status === 'error') {
        if (!begun.has(ref.id)) await recorder.jobBegin(ref);
        await recorder.jobEnd(ref.id, { status: 'failed', error: why, host, attempts: o.attempts });
      } else {
        await recorder.jobNotRun({ ...ref, host }, why, o.attempts);
      }
    }
    if (result.cancelled) recorder.cancel();
  } finally {
    await pool.close();
  }
  const record = await recorder.end();
  const failed = record.jobs.some((j) => (j.expectedStatus === 'failed' ? j.status === 'passed' : j.status === 'failed'));
  const infra = record.jobs.some((j) => j.status === 'infra-error');
  return { record, exitCode: failed ? 1 : infra ? 2 : 0 };
}

/**
 * Sets each job's `cost` from `expected` and returns the scheduler order: `cost` (a plan that
 * makes the slots finish together) when any job has an expected duration, else `input`. A job with none gets the
 * longest known one: an unknown job may be long, and a long job started last is the worst tail.
 */
export function jobCosts<J>(jobs: Array<Job<J>>, expected: (job: Job<J>) => number | undefined): 'cost' | 'input' {
  const known = jobs.map((j) => expected(j)).map((ms) => (ms !== undefined && Number.isFinite(ms) && ms >= 0 ? ms : undefined));
  const max = Math.max(-1, ...known.map((ms) => ms ?? -1));
  if (max < 0) return 'input';
  jobs.forEach((j, i) => (j.cost = known[i] ?? max));
  return 'cost';
}

function describeReason(reason: unknown): string {
  return reason instanceof Error ? reason.message : reason === undefined ? 'the run was cancelled' : String(reason);
}

function safe(id: string): string {
  return id.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
}

function prefixArtifacts(out: JobOutcome, dirName: string, outDir: string | undefined): JobOutcome['artifacts'] {
  if (!outDir) return {};
  const base = `jobs/${dirName}`;
  return { ...(out.artifacts.serialLog ? { serialLog: `${base}/${out.artifacts.serialLog}` } : {}), ...(out.artifacts.timeline ? { timeline: `${base}/${out.artifacts.timeline}` } : {}) };
}

interface RemoteJob {
  spec: HostSpec;
  job: JobSpec;
}

/**
 * Runs one job in its session on an ssh or docker host: stage the guest image (once per host,
 * by content hash), run the harness there, bring back its timeline and console logs. The session
 * (folder or container) is onJobSession's: closed whatever happens.
 */
async function runRemote(pool: HostPool, { spec, job }: RemoteJob, session: JobSession, signal: AbortSignal): Promise<JobOutcome> {
  const ex = pool.executors.get(spec.name)!;
  const image = await buildLinuxRef({ signal });
  const staged = await ex.stageImage([image.vmlinux, image.vmlinuz, image.initrd, ...(image.tools ? [image.tools] : [])], { signal });
  const remote: JobSpec = { ...job, version: JOB_SPEC_VERSION, workDir: join(session.workdir, 'job'), stagedImage: { dir: staged.dir, manifest: image.manifest } };
  const specPath = await session.putFile('job.json', JSON.stringify(remote));
  const r = await session.runHarness(['job', 'run', specPath, '--json'], { signal });
  const out = r.json as JobOutcome | undefined;
  if (!out || typeof out !== 'object' || !Array.isArray(out.steps)) {
    throw new InfrastructureError(spec.name, `cbt-harness job run gave no outcome (exit ${r.exitCode}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  if (job.workDir) {
    await mkdir(job.workDir, { recursive: true });
    await writeFile(join(job.workDir, 'timeline.json'), `${JSON.stringify(out.timeline)}\n`);
    const logs = await session.exec(['sh', '-c', `cd ${JSON.stringify(join(remote.workDir, 'logs'))} 2>/dev/null && ls`], { signal }).catch(() => null);
    for (const name of (logs?.stdout ?? '').split('\n').filter((n) => /^console-\d+\.log$/.test(n))) {
      const data = await session.getFile(join(remote.workDir, 'logs', name), { maxBytes: 8 * 2 ** 20, signal }).catch(() => null);
      if (data) {
        await mkdir(join(job.workDir, 'logs'), { recursive: true });
        await writeFile(join(job.workDir, 'logs', basename(name)), data);
      }
    }
  }
  return out;
}
