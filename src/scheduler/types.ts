/**
 * The scheduler's types: what callers pass and get back (jobs, hosts, options, events, results),
 * and the dispatcher's own state (a host's slots, a job's entry, a live attempt, a group).
 */
import type { Logger } from '../util/index.ts';
import type { Clock } from './clock.ts';
import type { JobGroup } from './group.ts';

export interface SchedulerHost {
  readonly name: string;
  readonly slots: number;
  readonly tags?: readonly string[];
}

export interface Job<J> {
  /** Unique among the jobs of a schedule. */
  id: string;
  /** Opaque to the scheduler (a scenario × guest × repeat, a fake in tests). */
  payload: J;
  /** Tags a host must have. */
  requires?: readonly string[];
  /** Expected duration in ms (the plan corrects it by how much measured attempts exceed it). With order 'cost', the order comes from a plan that evens out the slots (plan.ts). */
  cost?: number;
}

export interface AttemptRecord {
  host: string;
  attempt: number;
  startedAt: string;
  durationMs: number;
  outcome: 'ok' | 'infrastructure' | 'error' | 'cancelled' | 'superseded';
  /** `Name: message` of the error, when there was one. */
  error?: string;
  /** A backup copy started while another attempt of the job ran (option `speculate`). */
  speculative?: boolean;
}

export type JobStatus =
  /** run() resolved: its result (a verdict of any kind) is in `result`. */
  | 'done'
  /** run() threw something other than an infrastructure error: never retried. */
  | 'error'
  /** Infrastructure failures on every attempt, or every host able to run it is down. */
  | 'infrastructure'
  /** The schedule was cancelled before the job finished. */
  | 'cancelled'
  /** No host in the inventory has the tags the job requires. */
  | 'unschedulable';

export interface JobOutcome<J, R> {
  job: Job<J>;
  status: JobStatus;
  result?: R;
  /** The last error (status error or infrastructure), or why unschedulable. */
  error?: unknown;
  /** The host of the last attempt (null when it never ran). */
  host: string | null;
  attempts: AttemptRecord[];
}

export interface HostSummary {
  name: string;
  slots: number;
  /** Attempts started on this host. */
  attempts: number;
  completed: number;
  infrastructureFailures: number;
  down: boolean;
  downReason?: string;
  /** Sum of attempt durations (ms): busy time. */
  busyMs: number;
}

export interface ScheduleResult<J, R> {
  /** In the order of the input jobs. */
  outcomes: Array<JobOutcome<J, R>>;
  hosts: HostSummary[];
  cancelled: boolean;
  durationMs: number;
}

export interface AttemptContext {
  /** 1 for the first attempt. */
  attempt: number;
  /** Earlier attempts of this job that have ended (infrastructure failures). */
  previous: readonly AttemptRecord[];
  /** A backup copy: another attempt of the same job runs at the same time, on another host. */
  speculative: boolean;
}

export type RunJob<J, R, H extends SchedulerHost> = (job: Job<J>, host: H, signal: AbortSignal, context: AttemptContext) => Promise<R>;

export type SchedulerEvent<J, H extends SchedulerHost> =
  | { type: 'attempt-start'; job: Job<J>; host: H; attempt: number; speculative: boolean }
  | { type: 'attempt-end'; job: Job<J>; host: H; record: AttemptRecord }
  | { type: 'job-end'; job: Job<J>; status: JobStatus; host: string | null }
  | { type: 'host-down'; host: H; reason: string };

export interface ScheduleOptions<J, H extends SchedulerHost> {
  signal?: AbortSignal;
  /** Attempts per job when attempts fail on infrastructure. @default 3 */
  maxAttempts?: number;
  /** Infrastructure failures in a row after which a host is down for the run. @default 3 */
  hostFailureLimit?: number;
  /** Which errors are infrastructure failures. @default isInfrastructureError (hosts/) */
  isInfrastructure?: (error: unknown) => boolean;
  /** After cancel, wait at most this long for running jobs to stop. @default 120000 */
  cancelGraceMs?: number;
  /**
   * `input`: jobs in the given order; `cost`: by a plan over the slots from the jobs' `cost`
   * (counts per slot chosen so that every slot finishes at the same time, longest first within a
   * slot; with `speculate` and failing attempts, a tail of the shortest jobs for backups),
   * planned again as the run goes (plan.ts).
   * @default 'input'
   */
  order?: 'input' | 'cost';
  /** Backup copies of running jobs on slots with nothing left to take. @default false */
  speculate?: boolean;
  /** Hosts already known to be unusable (failed a check): never used. name → reason */
  downHosts?: ReadonlyMap<string, string>;
  onEvent?: (event: SchedulerEvent<J, H>) => void;
  /**
   * Time: start times, durations and the cancel grace timer. A `Clock` (realClock, a
   * VirtualClock in tests and bench:schedule), or only a `now()` function (milliseconds since
   * the epoch), in which case the grace timer is the real one. @default realClock
   */
  clock?: Clock | (() => number);
  /** Where the decisions go (placed, retried, host down, speculated, cancelled…). @default createLogger('cbt:scheduler'): shown with DEBUG=cbt:scheduler */
  log?: Logger;
}

// The dispatcher's state.

/** A host and its slots as the dispatcher sees them. */
export interface HostSlot<J, R, H extends SchedulerHost> {
  readonly host: H;
  readonly index: number;
  readonly tags: ReadonlySet<string>;
  readonly slots: number;
  /** Attempts running on it now (≤ slots). */
  running: number;
  down: boolean;
  downReason?: string;
  failuresInRow: number;
  readonly summary: HostSummary;
  /** Groups this host serves, most constrained first. */
  groups: Array<JobGroup<JobEntry<J, R, H>>>;
}

/** One job of the schedule, from pending to its outcome. */
export interface JobEntry<J, R, H extends SchedulerHost> {
  readonly job: Job<J>;
  readonly index: number;
  readonly group: JobGroup<JobEntry<J, R, H>>;
  readonly outcome: JobOutcome<J, R>;
  /** Hosts (indexes) where an attempt failed on infrastructure: avoided while another host can take the job. */
  failedOn?: Set<number>;
  finished: boolean;
  /** Attempts running now (more than one only with speculation). */
  readonly live: Array<LiveAttempt<J, R, H>>;
  /** Attempts started (ended or not): numbers the next one. */
  started: number;
}

/** An attempt that has started and not yet ended. */
export interface LiveAttempt<J, R, H extends SchedulerHost> {
  readonly host: HostSlot<J, R, H>;
  readonly controller: AbortController;
  readonly startedAt: number;
  readonly attempt: number;
  readonly speculative: boolean;
}
