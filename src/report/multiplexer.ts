/**
 * Fans hooks out to several reporters (after Playwright's `reporters/multiplexer.ts`). A reporter
 * that throws (or rejects) is reported through the logger and stops neither the others nor the
 * run; the failures are kept in `failures` so the CLI can say a report is incomplete.
 */
import type { LogFields, ReportLogger, Reporter } from './reporter.ts';
import type { EpochRecord, JobRecord, JobRef, RunBegin, RunRecord, StepRecord } from './run-record.ts';

type Hook = Exclude<keyof Reporter, 'name'>;

export interface ReporterFailure {
  reporter: string;
  hook: Hook;
  error: unknown;
}

export class Multiplexer implements Reporter {
  readonly name = 'multiplexer';
  readonly #reporters: Reporter[];
  readonly #logger: ReportLogger;
  /** Every hook failure so far, for the CLI to decide on an exit code. */
  readonly failures: ReporterFailure[] = [];

  constructor(reporters: readonly Reporter[], logger: ReportLogger) {
    this.#reporters = [...reporters];
    this.#logger = logger;
  }

  async #call(hook: Hook, args: unknown[]): Promise<void> {
    // Sequential: reporters that write the same stream must not interleave.
    for (const [i, r] of this.#reporters.entries()) {
      const fn = r[hook] as ((...a: unknown[]) => void | Promise<void>) | undefined;
      if (!fn) continue;
      try {
        await fn.apply(r, args);
      } catch (error) {
        const name = r.name ?? `reporter #${i}`;
        this.failures.push({ reporter: name, hook, error });
        const fields: LogFields = { reporter: name, hook };
        this.#logger.warn(`reporter ${name} failed in ${hook}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`, fields);
      }
    }
  }

  onBegin(run: RunBegin): Promise<void> {
    return this.#call('onBegin', [run]);
  }
  onJobBegin(job: JobRef): Promise<void> {
    return this.#call('onJobBegin', [job]);
  }
  onStep(job: JobRef, step: StepRecord): Promise<void> {
    return this.#call('onStep', [job, step]);
  }
  onEpoch(job: JobRef, epoch: EpochRecord): Promise<void> {
    return this.#call('onEpoch', [job, epoch]);
  }
  onJobEnd(job: JobRecord): Promise<void> {
    return this.#call('onJobEnd', [job]);
  }
  onEnd(record: RunRecord): Promise<void> {
    return this.#call('onEnd', [record]);
  }
}
