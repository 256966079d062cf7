/**
 * The scheduler: jobs × hosts, one `Dispatcher` per schedule (after Playwright's test runner
 * `Dispatcher`: private state, one named step per decision). A job is bound to a host only when a
 * slot is free there (late binding: a slow host never hoards a backlog), on the least-loaded host
 * that has every tag it requires; groups of jobs with fewer eligible hosts are served first.
 *
 * The steps (each one private method):
 *
 *   #dispatch        place pending jobs on free slots, most constrained group first
 *   #pickHost        the least-loaded free host of a group
 *   #fill            a slot freed on a host: its next job, or a backup
 *   #startAttempt    start one attempt (or a backup copy) of a job on a host
 *   #runAttempt      await the run function; #onAttemptSucceeded / #onAttemptFailed say what it
 *                    means, #onAttemptEnded frees the slot and acts on it
 *   #retry           an infrastructure failure with no other copy running: again, elsewhere
 *   #markHostDown    `hostFailureLimit` infrastructure failures in a row: down for the run
 *   #failOrphans     pending jobs no up host can take end `infrastructure` / `unschedulable`
 *   #maybeReplan     order 'cost': plan the pending jobs again (#replan, plan.ts) when due
 *   #speculate       a slot with nothing to take starts a backup copy (#pickBackup chooses)
 *   #finish          a job's outcome; the copies still running lost and are aborted
 *   #cancel          the signal aborted: nothing new starts, running attempts get the abort,
 *                    the grace timer starts
 *   #emit            events to `onEvent` (a broken listener never breaks the schedule)
 *
 * Failures are of two kinds:
 *   - infrastructure (`InfrastructureError`, or any error with `infrastructure: true`): the host,
 *     the network, the container or the VM failed. The job is retried on another host, up to
 *     `maxAttempts` attempts in all; a host with `hostFailureLimit` such failures in a row is
 *     marked down for the rest of the run;
 *   - anything else (a verdict, a failed check, a bug): recorded once, never retried.
 * Every attempt is recorded (host, outcome, error, duration).
 *
 * Speculation (`speculate: true`, the backup tasks of MapReduce, Dean & Ghemawat 2004): a slot
 * with nothing left to take starts a second copy of a running job, on another host, the job
 * expected to end last first. The first copy to end with a result (a verdict of any kind, or a
 * non-infrastructure error) is the job's outcome, as it is; the other copy is aborted through its
 * signal and recorded `superseded`. A copy failing on infrastructure while the other still runs
 * is recorded and not retried. So the tail of a run does not wait for a straggling host or for
 * the retry of a job that failed late, and a failure is never replaced by a pass: each job has
 * exactly one result, the first complete one.
 *
 * Cancellation (AbortSignal): nothing new starts, pending jobs end `cancelled`, running jobs get
 * the abort through their signal and the dispatcher waits for them to stop, at most
 * `cancelGraceMs` on its clock; those still running then are abandoned (status `cancelled`).
 *
 * Time comes only from the clock (options.clock), so a VirtualClock drives every step in tests.
 */
import { isInfrastructureError } from '../hosts/index.ts';
import { createLogger, MinHeap, type Logger } from '../util/index.ts';
import { toClock, type Clock } from './clock.ts';
import { positiveInt, SchedulerError } from './errors.ts';
import { JobGroup } from './group.ts';
import { balancedOrder, longestFirst, REPLAN } from './plan.ts';
import type { AttemptRecord, HostSlot, Job, JobEntry, JobStatus, LiveAttempt, RunJob, ScheduleOptions, ScheduleResult, SchedulerEvent, SchedulerHost } from './types.ts';

const defaultLog = createLogger('cbt:scheduler');

/** What an ended attempt means for its job and host, acted on once its slot is free. */
interface AttemptEnd<R> {
  /** The job's outcome, when this attempt decides it. */
  finish?: { status: JobStatus; result?: R; error?: unknown; hasResult?: boolean };
  /** The host failed on infrastructure too often in a row: why it goes down. */
  hostDown?: string;
  /** An infrastructure failure and no other copy running: retry the job, or give up. */
  retry?: { error: unknown };
  /** Another copy still runs: the job is back to one copy (a backup may start again). */
  copyLost?: boolean;
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

export class Dispatcher<J, R, H extends SchedulerHost> {
  readonly #run: RunJob<J, R, H>;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #signal: AbortSignal | undefined;
  readonly #onEvent: ((event: SchedulerEvent<J, H>) => void) | undefined;
  readonly #maxAttempts: number;
  readonly #hostFailureLimit: number;
  readonly #isInfrastructure: (error: unknown) => boolean;
  readonly #cancelGraceMs: number;
  readonly #speculative: boolean;
  /** order 'cost': the pending jobs follow a plan (plan.ts). */
  readonly #planned: boolean;
  readonly #startedAt: number;

  readonly #hosts: Array<HostSlot<J, R, H>>;
  readonly #jobs: Array<JobEntry<J, R, H>>;
  /** In the order of their first job. */
  readonly #groups: Array<JobGroup<JobEntry<J, R, H>>> = [];
  /** Most constrained (fewest up hosts) first. */
  #groupOrder: Array<JobGroup<JobEntry<J, R, H>>> = [];
  /** Where each group's host search starts next (after the host it took last). */
  readonly #cursor = new Map<JobGroup<JobEntry<J, R, H>>, number>();
  /** Jobs with at least one live attempt. */
  readonly #running = new Set<JobEntry<J, R, H>>();

  #unfinished: number;
  #cancelled = false;
  #dispatching = false;
  #used = false;
  /** Resolves when every job has its outcome and every copy has stopped, or the cancel grace ran out. */
  readonly #stopped: Promise<void>;
  #release!: () => void;
  #cancelGrace: (() => void) | undefined;

  // Measured durations: the expected length of a job without a `cost` (mean of completed
  // attempts), and how much longer than its `cost` a completed attempt takes on average
  // (start-up, transfer, timer latency), added to every cost when planning.
  #okCount = 0;
  #okMs = 0;
  #costedCount = 0;
  #costedOverMs = 0;

  // Planning (order 'cost').
  #lastPlan = Infinity;
  #replanWanted = false;
  readonly #rankOf: Float64Array;

  /** One reason for every copy that lost the race (an error per copy costs a stack trace each, at the tail of the run where hundreds of copies stop at once). */
  readonly #superseded = new SchedulerError('superseded by another attempt of the same job');

  /** Checks the input (a SchedulerError for bad options, hosts or jobs) and builds the state; `run()` starts it. */
  constructor(jobs: Iterable<Job<J>>, hosts: readonly H[], run: RunJob<J, R, H>, options: ScheduleOptions<J, H> = {}) {
    this.#run = run;
    this.#clock = toClock(options.clock);
    this.#startedAt = this.#clock.now();
    this.#log = options.log ?? defaultLog;
    this.#signal = options.signal;
    this.#onEvent = options.onEvent;
    this.#maxAttempts = positiveInt('maxAttempts', options.maxAttempts, 3);
    this.#hostFailureLimit = positiveInt('hostFailureLimit', options.hostFailureLimit, 3);
    this.#isInfrastructure = options.isInfrastructure ?? isInfrastructureError;
    this.#cancelGraceMs = options.cancelGraceMs ?? 120_000;
    this.#speculative = options.speculate === true;
    this.#planned = options.order === 'cost';
    this.#hosts = this.#hostSlots(hosts, options.downHosts);
    this.#jobs = this.#entries(jobs);
    this.#unfinished = this.#jobs.length;
    this.#rankOf = new Float64Array(this.#planned ? this.#jobs.length : 0);
    this.#sortGroups();
    this.#stopped = new Promise<void>((resolve) => (this.#release = resolve));
  }

  /** Runs the schedule (once): resolves when every job has its outcome and every attempt has stopped, or the cancel grace has run out. */
  async run(): Promise<ScheduleResult<J, R>> {
    if (this.#used) throw new SchedulerError('a Dispatcher runs once');
    this.#used = true;
    const signal = this.#signal;
    const onAbort = () => this.#cancel(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      this.#settle();
      this.#failOrphans();
      this.#begin();
      await this.#stopped;
      this.#cancelGrace?.();
      this.#abandonStuck();
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    return { outcomes: this.#jobs.map((s) => s.outcome), hosts: this.#hosts.map((h) => h.summary), cancelled: this.#cancelled, durationMs: this.#clock.now() - this.#startedAt };
  }

  // Input.

  #hostSlots(hosts: readonly H[], downHosts: ReadonlyMap<string, string> | undefined): Array<HostSlot<J, R, H>> {
    const names = new Set<string>();
    return hosts.map((host, index) => {
      if (names.has(host.name)) throw new SchedulerError(`two hosts named ${host.name}`);
      names.add(host.name);
      const slots = positiveInt(`slots\` of host \`${host.name}`, host.slots, 1);
      const downReason = downHosts?.get(host.name);
      const down = downReason !== undefined;
      return { host, index, tags: new Set(host.tags ?? []), slots, running: 0, down, downReason, failuresInRow: 0, summary: { name: host.name, slots, attempts: 0, completed: 0, infrastructureFailures: 0, down, downReason, busyMs: 0 }, groups: [] };
    });
  }

  /** The jobs, each in the group of its requirements (hosts known down serve none). */
  #entries(jobs: Iterable<Job<J>>): Array<JobEntry<J, R, H>> {
    const byKey = new Map<string, JobGroup<JobEntry<J, R, H>>>();
    const entries: Array<JobEntry<J, R, H>> = [];
    const ids = new Set<string>();
    for (const job of jobs) {
      if (typeof job.id !== 'string' || job.id === '') throw new SchedulerError(`Expected every job to have a non-empty string \`id\`, got \`${String(job.id)}\``);
      if (ids.has(job.id)) throw new SchedulerError(`two jobs with id ${job.id}`);
      ids.add(job.id);
      const requires = job.requires === undefined || job.requires.length === 0 ? [] : [...new Set(job.requires)].sort();
      const key = requires.join('\0');
      let group = byKey.get(key);
      if (!group) {
        group = new JobGroup(requires, this.#hosts.filter((h) => !h.down && requires.every((t) => h.tags.has(t))).map((h) => h.index));
        byKey.set(key, group);
        this.#groups.push(group);
      }
      const entry: JobEntry<J, R, H> = { job, index: entries.length, group, outcome: { job, status: 'cancelled', host: null, attempts: [] }, finished: false, live: [], started: 0 };
      entries.push(entry);
      group.push(entry);
    }
    return entries;
  }

  /**
   * Most constrained first: a job that only a few hosts can take gets their free slots before
   * jobs that could run anywhere (otherwise `kvm` jobs wait until every general job is placed).
   */
  #sortGroups(): void {
    this.#groupOrder = [...this.#groups].sort((a, b) => a.hosts.length - b.hosts.length);
    for (const h of this.#hosts) h.groups = [];
    for (const g of this.#groupOrder) for (const i of g.hosts) this.#hosts[i].groups.push(g);
  }

  /**
   * The first dispatch. A large run starts its first wave longest first and plans while it runs
   * (planning 10,000 jobs takes about 10 ms, which a thousand slots need not wait for); a small
   * one plans first, since its first wave is a good part of the plan.
   */
  #begin(): void {
    const planLater = this.#planned && this.#jobs.length > REPLAN.planFirstUpTo;
    if (planLater) {
      for (const g of this.#groups) g.arrange((queue) => longestFirst(queue.map((s) => s.job.cost ?? 0)).map((i) => queue[i]));
      this.#lastPlan = this.#jobs.length;
    } else if (this.#planned && !this.#cancelled) this.#replan();
    this.#dispatch();
    if (planLater && !this.#cancelled) this.#replan();
  }

  // Placement.

  #hasFree(h: HostSlot<J, R, H>): boolean {
    return !h.down && h.running < h.slots;
  }

  /**
   * Binds pending jobs to free slots. Each round goes over the groups, most constrained first,
   * and gives each group with work the least loaded free host that serves it (#pickHost).
   */
  #dispatch(): void {
    if (this.#dispatching || this.#cancelled) return;
    this.#dispatching = true;
    try {
      this.#maybeReplan();
      const lowest = new Map<JobGroup<JobEntry<J, R, H>>, number>();
      let progress = true;
      while (progress) {
        progress = false;
        for (const g of this.#groupOrder) {
          if (g.pending === 0) continue;
          const pos = this.#pickHost(g, lowest.get(g) ?? 0);
          if (pos < 0) continue;
          const h = this.#hosts[g.hosts[pos]];
          lowest.set(g, h.running / h.slots);
          this.#cursor.set(g, pos + 1);
          const s = g.take(h.index);
          if (!s) continue;
          this.#startAttempt(s, h, false);
          progress = true;
        }
      }
      if (this.#speculative) for (const h of this.#hosts) if (this.#hasFree(h)) this.#speculate(h);
    } finally {
      this.#dispatching = false;
    }
  }

  /**
   * The position in `g.hosts` of the least loaded host (running / slots) with a free slot that
   * may take a job of `g`, or -1. The search starts after the host the group took last and stops
   * at a host as idle as `floor`, the least load seen in this dispatch (loads only grow within
   * one): placing a thousand jobs at the start is linear in the hosts, not quadratic.
   */
  #pickHost(g: JobGroup<JobEntry<J, R, H>>, floor: number): number {
    const n = g.hosts.length;
    const from = (this.#cursor.get(g) ?? 0) % Math.max(1, n);
    let bestLoad = Infinity;
    let bestPos = -1;
    for (let k = 0; k < n; k++) {
      const pos = (from + k) % n;
      const h = this.#hosts[g.hosts[pos]];
      if (!this.#hasFree(h) || !g.canTake(h.index)) continue;
      const load = h.running / h.slots;
      if (load < bestLoad) {
        bestLoad = load;
        bestPos = pos;
        if (load <= floor) break;
      }
    }
    return bestPos;
  }

  /**
   * A slot freed on `h`: give it the next job of the most constrained group it serves. (Any
   * other free host would already have taken a compatible pending job — except a retry avoiding
   * its failed host, which goes through the full #dispatch.)
   */
  #fill(h: HostSlot<J, R, H>): void {
    if (this.#cancelled) return;
    this.#maybeReplan();
    for (const g of h.groups) {
      if (!this.#hasFree(h)) return;
      while (this.#hasFree(h) && g.pending > 0) {
        const s = g.take(h.index);
        if (!s) break;
        this.#startAttempt(s, h, false);
      }
    }
    if (this.#speculative) this.#speculate(h);
  }

  // Speculation.

  /** While `h` has a free slot and nothing pending it may take, start backup copies (#pickBackup). */
  #speculate(h: HostSlot<J, R, H>): void {
    while (this.#hasFree(h) && !this.#cancelled) {
      for (const g of h.groups) if (g.pending > 0 && g.canTake(h.index)) return;
      const s = this.#pickBackup(h);
      if (!s) return;
      this.#startAttempt(s, h, true);
    }
  }

  /**
   * The running job expected to end last (start + cost, or + the mean duration of completed
   * attempts) among those with one copy, none on `h`, not failed on `h`, that `h` may run.
   */
  #pickBackup(h: HostSlot<J, R, H>): JobEntry<J, R, H> | undefined {
    const mean = this.#meanOkMs();
    let best: JobEntry<J, R, H> | undefined;
    let bestEnd = -Infinity;
    for (const s of this.#running) {
      if (s.finished || s.live.length !== 1) continue;
      const l = s.live[0];
      if (l.host === h || s.failedOn?.has(h.index) || !h.groups.includes(s.group)) continue;
      const end = l.startedAt + (s.job.cost ?? mean);
      if (end > bestEnd) {
        best = s;
        bestEnd = end;
      }
    }
    return best;
  }

  #meanOkMs(): number {
    return this.#okCount > 0 ? this.#okMs / this.#okCount : 0;
  }

  // Attempts.

  /** Takes a slot of `h` and starts an attempt of `s` there (a backup copy when `speculative`). */
  #startAttempt(s: JobEntry<J, R, H>, h: HostSlot<J, R, H>, speculative: boolean): void {
    h.running++;
    h.summary.attempts++;
    const live: LiveAttempt<J, R, H> = { host: h, controller: new AbortController(), startedAt: this.#clock.now(), attempt: ++s.started, speculative };
    s.live.push(live);
    this.#running.add(s);
    if (!speculative) s.outcome.host = h.host.name;
    if (this.#log.enabled) {
      if (speculative) this.#log.debug('speculated', { job: s.job.id, host: h.host.name, attempt: live.attempt, reason: `backup of the copy on ${s.live[0].host.host.name}` });
      else this.#log.debug('placed', { job: s.job.id, host: h.host.name, attempt: live.attempt, reason: live.attempt > 1 ? 'retry' : undefined });
    }
    this.#emit({ type: 'attempt-start', job: s.job, host: h.host, attempt: live.attempt, speculative });
    void this.#runAttempt(s, live);
  }

  async #runAttempt(s: JobEntry<J, R, H>, live: LiveAttempt<J, R, H>): Promise<void> {
    const record: AttemptRecord = { host: live.host.host.name, attempt: live.attempt, startedAt: new Date(live.startedAt).toISOString(), durationMs: 0, outcome: 'ok', ...(live.speculative ? { speculative: true } : {}) };
    let end: AttemptEnd<R>;
    try {
      const result = await this.#run(s.job, live.host.host, live.controller.signal, { attempt: live.attempt, previous: s.outcome.attempts.slice(), speculative: live.speculative });
      end = this.#onAttemptSucceeded(s, live, record, result);
    } catch (error) {
      end = this.#onAttemptFailed(s, live, record, error);
    }
    this.#onAttemptEnded(s, live, record, end);
  }

  /** run() returned: the job's result, unless another copy ended first. */
  #onAttemptSucceeded(s: JobEntry<J, R, H>, live: LiveAttempt<J, R, H>, record: AttemptRecord, result: R): AttemptEnd<R> {
    const h = live.host;
    record.durationMs = this.#clock.now() - live.startedAt;
    h.failuresInRow = 0;
    h.summary.completed++;
    s.outcome.attempts.push(record);
    if (s.finished) {
      // Another copy ended first (or the schedule was cancelled): this result is not the job's.
      record.outcome = this.#cancelled && s.outcome.status === 'cancelled' ? 'cancelled' : 'superseded';
      return {};
    }
    this.#okCount++;
    this.#okMs += record.durationMs;
    if (s.job.cost !== undefined) {
      this.#costedCount++;
      this.#costedOverMs += record.durationMs - s.job.cost;
    }
    s.outcome.host = h.host.name;
    return { finish: { status: 'done', result, hasResult: true } };
  }

  /** run() threw: cancelled, superseded, the host's failure (infrastructure) or the job's (a verdict). */
  #onAttemptFailed(s: JobEntry<J, R, H>, live: LiveAttempt<J, R, H>, record: AttemptRecord, error: unknown): AttemptEnd<R> {
    const h = live.host;
    record.durationMs = this.#clock.now() - live.startedAt;
    record.error = describeError(error);
    if (live.controller.signal.aborted && this.#cancelled) {
      record.outcome = 'cancelled';
      s.outcome.attempts.push(record);
      return { finish: { status: 'cancelled', error } };
    }
    if (s.finished) {
      // Stopped (or failed) after another copy gave the job its outcome: not this host's fault.
      record.outcome = 'superseded';
      s.outcome.attempts.push(record);
      return {};
    }
    if (this.#isInfrastructure(error)) {
      record.outcome = 'infrastructure';
      s.outcome.attempts.push(record);
      s.outcome.error = error;
      h.summary.infrastructureFailures++;
      (s.failedOn ??= new Set()).add(h.index);
      const end: AttemptEnd<R> = {};
      if (++h.failuresInRow >= this.#hostFailureLimit) end.hostDown = `${h.failuresInRow} infrastructure failures in a row, the last: ${record.error}`;
      // Another copy still running carries the job on; otherwise retry.
      if (s.live.length > 1) end.copyLost = this.#speculative;
      else end.retry = { error };
      return end;
    }
    record.outcome = 'error';
    s.outcome.attempts.push(record);
    s.outcome.host = h.host.name;
    // The host did its part: a failing check is not the host's fault.
    h.failuresInRow = 0;
    h.summary.completed++;
    return { finish: { status: 'error', error } };
  }

  /** Frees the slot, then acts on what the attempt meant, then gives the free slot(s) work. */
  #onAttemptEnded(s: JobEntry<J, R, H>, live: LiveAttempt<J, R, H>, record: AttemptRecord, end: AttemptEnd<R>): void {
    const h = live.host;
    h.summary.busyMs += record.durationMs;
    h.running--;
    s.live.splice(s.live.indexOf(live), 1);
    if (s.live.length === 0) this.#running.delete(s);
    if (record.outcome === 'superseded' && this.#log.enabled) this.#log.debug('superseded', { job: s.job.id, host: h.host.name, attempt: record.attempt });
    this.#emit({ type: 'attempt-end', job: s.job, host: h.host, record });
    if (end.hostDown !== undefined) this.#markHostDown(h, end.hostDown);
    let retried = false;
    if (end.retry && !s.finished) retried = this.#retry(s, record, end.retry.error);
    if (end.finish) this.#finish(s, end.finish.status, end.finish.hasResult ? { result: end.finish.result, error: end.finish.error } : { error: end.finish.error });
    this.#settle();
    if (retried || end.copyLost || h.down) this.#dispatch();
    else this.#fill(h);
  }

  /** After an infrastructure failure (`record`) with no other copy: back in its group before fresh jobs, unless out of attempts, cancelled or no host is left. */
  #retry(s: JobEntry<J, R, H>, record: AttemptRecord, error: unknown): boolean {
    const failures = s.outcome.attempts.filter((a) => a.outcome === 'infrastructure').length;
    let reason: string | undefined;
    if (failures >= this.#maxAttempts) reason = `${failures} infrastructure failures (maxAttempts ${this.#maxAttempts})`;
    else if (this.#cancelled) reason = 'cancelled';
    else if (s.group.hosts.length === 0) reason = 'no host left up';
    if (reason !== undefined) {
      if (this.#log.enabled) this.#log.debug('gave up', { job: s.job.id, host: record.host, attempt: record.attempt, reason });
      this.#finish(s, this.#cancelled && reason === 'cancelled' ? 'cancelled' : 'infrastructure', { error });
      return false;
    }
    s.group.retry(s);
    this.#replanWanted = true;
    if (this.#log.enabled) this.#log.debug('retried', { job: s.job.id, host: record.host, attempt: record.attempt, reason: record.error });
    return true;
  }

  // Hosts.

  #markHostDown(h: HostSlot<J, R, H>, reason: string): void {
    if (h.down) return;
    h.down = true;
    h.downReason = reason;
    h.summary.down = true;
    h.summary.downReason = reason;
    this.#replanWanted = true;
    this.#log.debug('host down', { host: h.host.name, reason });
    this.#emit({ type: 'host-down', host: h.host, reason });
    this.#failOrphans();
  }

  /** Drops down hosts from the groups; fails the pending jobs of groups no up host can serve. */
  #failOrphans(): void {
    for (const g of this.#groups) {
      g.hosts = g.hosts.filter((i) => !this.#hosts[i].down);
      if (g.hosts.length > 0 || g.pending === 0) continue;
      const tags = g.requires.length ? ` with the tags ${g.requires.join(', ')}` : '';
      // Hosts that could have run it exist but are down: an infrastructure outcome. None at all: unschedulable.
      const downOnes = this.#hosts.filter((h) => h.down && g.requires.every((t) => h.tags.has(t)));
      for (const s of g.drain()) {
        if (s.outcome.attempts.length > 0) this.#finish(s, 'infrastructure', { error: s.outcome.error });
        else if (downOnes.length > 0) this.#finish(s, 'infrastructure', { error: new SchedulerError(`job ${s.job.id}: every host${tags} is down (${downOnes.map((h) => `${h.host.name}: ${h.downReason}`).join('; ')})`) });
        else this.#finish(s, 'unschedulable', { error: new SchedulerError(`job ${s.job.id}: no host${tags} in the inventory`) });
      }
    }
    this.#sortGroups();
  }

  // Planning (order 'cost').

  /**
   * Plans again when the pending jobs have halved since the last plan, or near the end (fewer than
   * `endgameWaves` jobs per slot) after a retry or a host going down, once a tenth of the pending
   * jobs have started since the last plan: early deviations are evened out by the next halving,
   * late ones cannot wait that long.
   */
  #maybeReplan(): void {
    if (!this.#planned || this.#cancelled) return;
    let pending = 0;
    for (const g of this.#groups) pending += g.fresh;
    if (pending === 0) return;
    if (pending <= this.#lastPlan * REPLAN.shrink || (this.#replanWanted && pending <= this.#lastPlan * REPLAN.endgameStep && pending < REPLAN.endgameWaves * this.#upSlots())) this.#replan();
  }

  /**
   * The pending jobs (not the retries, which go first anyway) in the order of a plan over the
   * slots of the up hosts (plan.ts), each free now or when its running attempt is expected to
   * end; retries are charged to the slots that free first.
   */
  #replan(): void {
    const now = this.#clock.now();
    const mean = this.#meanOkMs();
    const over = this.#costedCount > 0 ? this.#costedOverMs / this.#costedCount : 0;
    const expected = (s: JobEntry<J, R, H>) => Math.max(0, s.job.cost === undefined ? mean : s.job.cost + over);
    const ready = new MinHeap<number>((a, b) => a < b);
    const slots = this.#upSlots();
    for (const h of this.#hosts) if (!h.down) for (let i = h.running; i < h.slots; i++) ready.push(now);
    for (const s of this.#running) for (const l of s.live) if (!l.host.down) ready.push(Math.max(now, l.startedAt + expected(s)));
    for (const g of this.#groups) {
      for (const s of g.retries) {
        const t = ready.pop();
        if (t !== undefined) ready.push(t + expected(s));
      }
    }
    const times: number[] = [];
    while (ready.size > 0 && times.length < slots) times.push((ready.pop() as number) - now);
    const pending: Array<JobEntry<J, R, H>> = [];
    for (const g of this.#groups) for (const s of g.queued()) pending.push(s);
    const tail = this.#speculative && this.#failureRate() * slots >= 1 ? Math.floor(REPLAN.tailWaves * slots) : 0;
    const order = balancedOrder(
      pending.map((s) => (s.job.cost === undefined ? 0 : expected(s))),
      times,
      { tail },
    );
    const rank = this.#rankOf;
    order.forEach((p, r) => (rank[pending[p].index] = r));
    for (const g of this.#groups) g.arrange((queue) => queue.sort((a, b) => rank[a.index] - rank[b.index]));
    this.#lastPlan = pending.length;
    this.#replanWanted = false;
    if (this.#log.enabled) this.#log.debug('planned', { pending: pending.length, slots, tail });
  }

  #upSlots(): number {
    let slots = 0;
    for (const h of this.#hosts) if (!h.down) slots += h.slots;
    return slots;
  }

  /** The share of the attempts on hosts still up that failed on infrastructure (a host marked down fails no more). */
  #failureRate(): number {
    let failed = 0;
    let ended = 0;
    for (const h of this.#hosts) {
      if (h.down) continue;
      failed += h.summary.infrastructureFailures;
      ended += h.summary.infrastructureFailures + h.summary.completed;
    }
    return ended === 0 ? 0 : failed / ended;
  }

  // Outcomes, cancellation, events.

  /** The job's outcome (once); copies still running lost the race and are aborted (they end `superseded`). */
  #finish(s: JobEntry<J, R, H>, status: JobStatus, extra: { result?: R; error?: unknown } = {}): void {
    if (s.finished) return;
    s.finished = true;
    for (const l of s.live) l.controller.abort(this.#superseded);
    s.outcome.status = status;
    if ('result' in extra) s.outcome.result = extra.result;
    if (extra.error !== undefined) s.outcome.error = extra.error;
    this.#emit({ type: 'job-end', job: s.job, status, host: s.outcome.host });
    this.#unfinished--;
    this.#settle();
  }

  /** Every job has its outcome and every copy has stopped (a superseded copy is waited for too): release run(). */
  #settle(): void {
    if (this.#unfinished === 0 && this.#running.size === 0) this.#release();
  }

  /** Nothing new starts, pending jobs end `cancelled`, running attempts get `reason` through their signal; after `cancelGraceMs` run() returns anyway. */
  #cancel(reason: unknown): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    let pending = 0;
    for (const g of this.#groups) {
      for (const s of g.drain()) {
        pending++;
        this.#finish(s, 'cancelled', { error: reason });
      }
    }
    if (this.#log.enabled) this.#log.debug('cancelled', { pending, running: this.#running.size, reason: describeError(reason), graceMs: this.#cancelGraceMs });
    for (const s of this.#running) for (const l of s.live) l.controller.abort(reason);
    this.#cancelGrace = this.#clock.after(this.#cancelGraceMs, () => this.#release());
  }

  /** After the grace: jobs whose attempts never stopped end `cancelled` with an error saying so. */
  #abandonStuck(): void {
    for (const s of this.#jobs) {
      if (s.finished) continue;
      s.outcome.error = new SchedulerError(`job ${s.job.id} did not stop within ${this.#cancelGraceMs} ms of the cancel`);
      s.finished = true;
      s.outcome.status = 'cancelled';
      this.#log.debug('abandoned', { job: s.job.id, host: s.live[0]?.host.host.name, attempt: s.live[0]?.attempt, reason: `did not stop within ${this.#cancelGraceMs} ms of the cancel` });
    }
  }

  #emit(event: SchedulerEvent<J, H>): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // A broken listener must not break the schedule.
    }
  }
}
