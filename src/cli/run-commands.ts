/** `cbt-harness run` (the main job) and `cbt-harness job run` (one job, on the host that runs its VM). */
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { runJob, type JobSpec } from '../scenario/job.ts';
import { runScenarios } from '../scenario/run.ts';
import { CheckFailed } from './errors.ts';
import { log, printJson } from './output.ts';

function positive(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0 || (name !== 'seed' && n === 0)) throw new InvalidArgumentError(`Expected --${name} to be a ${name === 'seed' ? 'non-negative' : 'positive'} integer, got \`${v}\``);
    return n;
  };
}

/** Exit code 2 for a run that could not complete for infrastructure reasons. */
export class InfrastructureFailed extends Error {
  override name = 'InfrastructureFailed';
}

export function runCommand(version: string): Command {
  return new Command('run')
    .description('run scenario files: boot guests, inject faults, verify every epoch (exit 0 pass, 1 a verdict failed, 2 infrastructure)')
    .argument('<scenarios...>', 'scenario files (YAML)')
    .option('--hosts <file>', 'host inventory (default: this machine)')
    .option('--seed <n>', 'seed for write plans and ranges (recorded in the run record)', positive('seed'))
    .option('--out <dir>', 'write run.json (and junit.xml, report.html with those reporters) and artifacts here')
    .option('--repeat <n>', 'run each scenario N times', positive('repeat'), 1)
    .option('--reporter <names>', 'terminal, json, junit, html (comma separated)', (v: string, prev: string[]) => [...prev, ...v.split(',').map((x) => x.trim()).filter(Boolean)], [] as string[])
    .option('--accel <mode>', 'auto (probe KVM, else TCG), kvm or tcg', 'auto')
    .option('--keep-images', 'keep the qcow2 images of every epoch (large)')
    .option('--expect-fail', 'the scenarios are known-bad trackers: the run passes only if every job fails')
    .option('--json', 'print the run record on stdout (progress goes to stderr)')
    .action(async (files: string[], flags: { hosts?: string; seed?: number; out?: string; repeat: number; reporter: string[]; accel: string; keepImages?: boolean; expectFail?: boolean; json?: boolean }) => {
      if (!['auto', 'kvm', 'tcg'].includes(flags.accel)) throw new InvalidArgumentError(`Expected --accel to be auto, kvm or tcg, got \`${flags.accel}\``);
      const stream = flags.json ? process.stderr : process.stdout;
      const reporters = flags.reporter.length ? flags.reporter : ['terminal'];
      const controller = new AbortController();
      const onSignal = () => {
        log('cbt-harness: interrupted; stopping VMs and cleaning up (again to force)…');
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        controller.abort(new Error('interrupted'));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const { record, exitCode } = await runScenarios({
          files,
          hostsFile: flags.hosts,
          seed: flags.seed,
          outDir: flags.out,
          repeat: flags.repeat,
          reporters,
          stream,
          isTTY: Boolean((stream as NodeJS.WriteStream).isTTY),
          logger: { warn: (m: string) => log(`cbt-harness: ${m}`) },
          signal: controller.signal,
          accel: flags.accel as 'auto' | 'kvm' | 'tcg',
          keepImages: flags.keepImages,
          expectFailure: flags.expectFail ? () => true : undefined,
          version,
        });
        if (flags.json) await printJson(record);
        if (exitCode === 1) throw new CheckFailed(`${record.totals.failed} of ${record.totals.jobs} jobs failed (${record.totals.verdicts.MISSED} MISSED epochs)`);
        if (exitCode === 2) throw new InfrastructureFailed(`${record.totals.infraErrors} of ${record.totals.jobs} jobs could not run (infrastructure)`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

export function jobCommand(): Command {
  const job = new Command('job').description('internal: run one job on the host that runs its VM (used by remote executors)');
  job
    .command('run')
    .argument('<spec>', 'job spec (JSON written by the scheduling host)')
    .option('--json', 'print the job outcome on stdout')
    .action(async (specPath: string, flags: { json?: boolean }) => {
      const spec = JSON.parse(await readFile(specPath, 'utf8')) as JobSpec;
      const controller = new AbortController();
      const stop = () => controller.abort(new Error('interrupted'));
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      try {
        const out = await runJob(spec, {}, controller.signal);
        if (flags.json) await printJson(out);
        else log(`${out.jobId}: ${out.status}${out.error ? ` (${out.error})` : ''}`);
      } finally {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
      }
    });
  return job;
}
