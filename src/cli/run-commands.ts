/** `cbt-harness run` (the main job) and `cbt-harness job run` (one job, on the host that runs its VM). */
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { compareRuns, evaluateRun, expectedDurations, loadRunConfig, plannedJobs, readRunRecord, type RunRecord } from '../report/index.ts';
import { runJob, type JobSpec } from '../scenario/job.ts';
import { runScenarios, type PlannedScenario, type RunOptions } from '../scenario/run.ts';
import { MAX_SEED } from '../scenario/seeds.ts';
import { CheckFailed, Interrupted, UsageError } from './errors.ts';
import { ownSignals } from './signals.ts';
import { log, printJson, userWarnings } from './output.ts';
import { InfrastructureHarnessError } from '../util/index.ts';

function positive(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (name === 'seed' && !(Number.isSafeInteger(n) && n >= 0 && n <= MAX_SEED)) throw new InvalidArgumentError(`Expected --seed to be an integer from 0 to ${MAX_SEED}, got \`${v}\``);
    if (!Number.isSafeInteger(n) || n < 0 || (name !== 'seed' && n === 0)) throw new InvalidArgumentError(`Expected --${name} to be a ${name === 'seed' ? 'non-negative' : 'positive'} integer, got \`${v}\``);
    return n;
  };
}

/** Exit code 2 for a run that could not complete for infrastructure reasons. */
export class InfrastructureFailed extends InfrastructureHarnessError {
  override name = 'InfrastructureFailed';
}

/** The built-in default of `run` with no scenario: the release gate on the reference guest, locally. */
export const DEFAULT_CONFIG = join(dirname(fileURLToPath(import.meta.url)), '../../harness/gate.yaml');

interface RunFlags {
  config?: string;
  hosts?: string;
  seed?: number;
  out?: string;
  repeat: number;
  reporter: string[];
  accel: string;
  accelProbe?: boolean;
  keepImages?: boolean;
  expectFail?: boolean;
  speculate?: boolean;
  json?: boolean;
}

/** A run config → the runner's options, and what to do with the record afterwards. */
async function fromConfig(file: string, flags: RunFlags): Promise<{ options: Partial<RunOptions>; after: (record: RunRecord) => Promise<{ exitCode: 0 | 1 | 2; problems: string[]; notes: string[] }> }> {
  const cfg = await loadRunConfig(file);
  const planned = await plannedJobs(cfg);
  const plan = new Map<string, PlannedScenario>();
  for (const j of planned) {
    const key = `${j.scenarioFile}\0${j.mustFail}\0${(j.expect ?? []).join(',')}`;
    const p = plan.get(key) ?? { file: j.scenarioFile, repeats: 0, mustFail: j.mustFail, ...(j.expect ? { expect: j.expect } : {}), tags: j.tags };
    p.repeats++;
    plan.set(key, p);
  }
  return {
    options: {
      plan: [...plan.values()],
      hostsFile: flags.hosts ?? cfg.hosts ?? undefined,
      seed: flags.seed ?? (cfg.seed === 'random' ? undefined : cfg.seed),
      outDir: flags.out ?? cfg.out ?? undefined,
      reporters: flags.reporter.length ? flags.reporter : cfg.reporters,
      maxAttempts: cfg.limits.maxAttempts,
      hostFailureLimit: cfg.limits.hostFailureLimit,
      speculate: flags.speculate === true || cfg.limits.speculate,
      // The scheduler plans from how long each scenario took in the newest runs of the history.
      ...(cfg.history && existsSync(cfg.history) ? { expectedMs: (await expectedDurations([cfg.history])).byJob } : {}),
      jobTimeoutMs: cfg.limits.jobTimeoutMs,
      config: { name: cfg.name, file: resolve(file) },
      labels: cfg.labels,
    },
    after: async (record) => {
      const baseline = cfg.baseline && existsSync(cfg.baseline) ? await readRunRecord(cfg.baseline) : null;
      const comparison = baseline ? compareRuns(baseline, record, cfg.compare) : null;
      const evaluation = evaluateRun(record, cfg, comparison);
      if (cfg.history) {
        await mkdir(cfg.history, { recursive: true });
        const out = flags.out ?? cfg.out;
        const src = out ? join(resolve(out.replaceAll('{runId}', record.runId)), 'run.json') : null;
        if (src && existsSync(src)) await copyFile(src, join(cfg.history, `${record.runId}.json`));
      }
      return evaluation;
    },
  };
}

export function runCommand(version: string): Command {
  return new Command('run')
    .description('run scenario files, or a run config (default: harness/gate.yaml on the reference guest, locally): boot guests, inject faults, verify every epoch (exit 0 pass, 1 a verdict failed, 2 bad input or infrastructure)')
    .argument('[scenarios...]', 'scenario files (YAML)')
    .option('--config <file>', 'a run config (matrix, hosts, baseline, reporters): harness/gate.yaml, harness/nightly.yaml')
    .option('--hosts <file>', 'host inventory (default: this machine)')
    .option('--seed <n>', 'seed for write plans and ranges (recorded in the run record)', positive('seed'))
    .option('--out <dir>', 'write run.json (and junit.xml, report.html with those reporters) and artifacts here')
    .option('--repeat <n>', 'run each scenario N times', positive('repeat'), 1)
    .option('--reporter <names>', 'terminal, json, junit, html (comma separated)', (v: string, prev: string[]) => [...prev, ...v.split(',').map((x) => x.trim()).filter(Boolean)], [] as string[])
    .addOption(new Option('--accel <mode>', 'auto (probe KVM, else TCG), kvm or tcg').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--accel-probe', 'with --accel auto: probe KVM again on every host instead of trusting the answer cached there (kept a day)')
    .option('--keep-images', 'keep the qcow2 images of every epoch (large)')
    .option('--expect-fail', 'the scenarios are known-bad trackers: the run passes only if every job fails')
    .option('--speculate', 'at the tail of the run, idle slots start backup copies of running jobs on other hosts; the first to finish is the result (config: limits.speculate)')
    .option('--json', 'print the run record on stdout (progress goes to stderr)')
    .action(async (files: string[], flags: RunFlags) => {
      if (flags.config && files.length) throw new UsageError(`give scenario files or --config, not both (got --config ${flags.config} and ${files.join(' ')})`);
      const stream = flags.json ? process.stderr : process.stdout;
      const reporters = flags.reporter.length ? flags.reporter : ['terminal'];
      const configFile = flags.config ?? (files.length ? undefined : DEFAULT_CONFIG);
      const fromCfg = configFile ? await fromConfig(configFile, flags) : null;
      const controller = new AbortController();
      // First Ctrl-C: a graceful stop (the record is written, exit 128 + signal); second: VMs killed, exit at once.
      using signals = ownSignals({ controller });
      try {
        const { record, exitCode: runExit } = await runScenarios({
          files,
          hostsFile: flags.hosts,
          seed: flags.seed,
          outDir: flags.out,
          repeat: flags.repeat,
          reporters,
          ...fromCfg?.options,
          stream,
          isTTY: Boolean((stream as NodeJS.WriteStream).isTTY),
          logger: userWarnings('cbt-harness'),
          signal: controller.signal,
          accel: flags.accel as 'auto' | 'kvm' | 'tcg',
          ...(flags.accelProbe ? { accelProbe: 'force' as const } : {}),
          keepImages: flags.keepImages,
          expectFailure: flags.expectFail,
          ...(flags.speculate ? { speculate: true } : {}),
          version,
        });
        if (flags.json) await printJson(record);
        if (signals.received) {
          const cancelled = record.jobs.filter((j) => j.attempts.some((a) => a.outcome === 'cancelled') || /cancelled/.test(j.error ?? '')).length;
          throw new Interrupted(signals.received, `stopped by ${signals.received}: ${cancelled} of ${record.totals.jobs} job(s) cancelled${flags.out ? `; the run record is in ${flags.out}` : ''}`);
        }
        let exitCode = runExit;
        if (fromCfg) {
          const ev = await fromCfg.after(record);
          for (const p of ev.problems) log(`cbt-harness: ${p}`);
          for (const n of ev.notes) log(`cbt-harness: note: ${n}`);
          exitCode = ev.exitCode;
        }
        if (exitCode === 1) throw new CheckFailed(`the run failed: ${record.totals.failed} of ${record.totals.jobs} jobs failed${record.totals.expectedFailures ? ` (${record.totals.expectedFailures} known-bad caught as expected)` : ''}, ${record.totals.verdicts.MISSED} MISSED epoch(s)`);
        if (exitCode === 2) throw new InfrastructureFailed(`${record.totals.infraErrors} of ${record.totals.jobs} jobs could not run (infrastructure)`);
      } catch (e) {
        // Stopped before a record existed (loading, the first boot's image build): still 128 + signal.
        if (signals.received && !(e instanceof Interrupted)) throw new Interrupted(signals.received, `stopped by ${signals.received} (${(e as Error)?.message ?? String(e)})`);
        throw e;
      }
    });
}

/** The job spec, or a one-line error naming the file. */
async function readJobSpec(file: string): Promise<JobSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new UsageError(`${file}: cannot read the job spec: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message}`);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: the job spec is not JSON: ${(e as Error).message}`);
  }
  const s = spec as Partial<Record<keyof JobSpec, unknown>> | null;
  if (typeof s !== 'object' || s === null || Array.isArray(s)) throw new UsageError(`${file}: the job spec is not a JSON object`);
  for (const key of ['jobId', 'runId', 'scenarioFile', 'scenarioText', 'workDir'] as const) {
    if (typeof s[key] !== 'string') throw new UsageError(`${file}: the job spec has no string \`${key}\``);
  }
  for (const key of ['seed', 'repeat'] as const) {
    if (typeof s[key] !== 'number') throw new UsageError(`${file}: the job spec has no number \`${key}\``);
  }
  return spec as JobSpec;
}

export function jobCommand(): Command {
  const job = new Command('job').description('internal: run one job on the host that runs its VM (used by remote executors)');
  job
    .command('run')
    .argument('<spec>', 'job spec (JSON written by the scheduling host)')
    .option('--json', 'print the job outcome on stdout')
    .action(async (specPath: string, flags: { json?: boolean }) => {
      const spec = await readJobSpec(specPath);
      const controller = new AbortController();
      using signals = ownSignals({ controller });
      {
        let out;
        try {
          out = await runJob(spec, {}, controller.signal);
        } catch (e) {
          // Still one JSON document: the scheduling host reads the infrastructure flag from it.
          if ((e as { infrastructure?: unknown }).infrastructure !== true || !flags.json) throw e;
          out = { jobId: spec.jobId, status: 'infra-error', infrastructure: true, error: (e as Error).message, steps: [], epochs: [], timeline: [], artifacts: {} };
        }
        if (flags.json) await printJson(out);
        else log(`${out.jobId}: ${out.status}${out.error ? ` (${out.error})` : ''}`);
        signals.throwIfInterrupted();
      }
    });
  return job;
}
