/**
 * The reporter interface (after Playwright's `types/testReporter.d.ts`): optional hooks, called in
 * run order. Hooks may return a promise; the multiplexer awaits it before the next hook of the
 * same reporter, so a reporter sees its events in order.
 */
import type { Logger } from '../util/log.ts';
import type { EpochRecord, JobRecord, JobRef, RunBegin, RunRecord, StepRecord } from './run-record.ts';

export interface Reporter {
  /** Short name, for messages ("terminal", "junit"). */
  readonly name?: string;
  onBegin?(run: RunBegin): void | Promise<void>;
  onJobBegin?(job: JobRef): void | Promise<void>;
  onStep?(job: JobRef, step: StepRecord): void | Promise<void>;
  onEpoch?(job: JobRef, epoch: EpochRecord): void | Promise<void>;
  onJobEnd?(job: JobRecord): void | Promise<void>;
  /** The complete record. Writers write their files here. */
  onEnd?(record: RunRecord): void | Promise<void>;
}

export type { LogFields } from '../util/log.ts';

/** Where reporters' own problems go (the CLI prints them on stderr): the warning half of the modules' logger. */
export type ReportLogger = Pick<Logger, 'warn'>;
