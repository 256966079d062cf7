/**
 * Jobs × hosts. One p-queue per host with `slots` concurrency; a job is bound to a host only when
 * a slot is free there (late binding: a slow host never hoards queued jobs), placed on the
 * least-loaded host that has every tag it requires.
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
 * the abort through their signal and the scheduler waits for them to stop (bounded by
 * `cancelGraceMs`).
 */
import PQueue from 'p-queue';
import { isInfrastructureError } from '../hosts/index.ts';
import { MinHeap } from '../util/index.ts';
import { SchedulerError } from './errors.ts';
import { balancedOrder, longestFirst, REPLAN } from './plan.ts';

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
  /** Backup copies of running jobs on slots with nothing left to take (see above). @default false */
  speculate?: boolean;
  /** Hosts already known to be unusable (failed a check): never used. name → reason */
  downHosts?: ReadonlyMap<string, string>;
  onEvent?: (event: SchedulerEvent<J, H>) => void;
  /** Milliseconds since the epoch, for start times and durations. @default Date.now (a virtual clock in bench:schedule) */
  clock?: () => number;
}

interface HostState<H extends SchedulerHost, J, R> {
  host: H;
  index: number;
  tags: ReadonlySet<string>;
  queue: PQueue;
  running: number;
  down: boolean;
  downReason?: string;
  failuresInRow: number;
  summary: HostSummary;
  /** Groups this host serves, most constrained first. */
  groups: Array<Group<J, R>>;
}

interface JobState<J, R> {
  job: Job<J>;
  index: number;
  group: Group<J, R>;
  outcome: JobOutcome<J, R>;
  /** Hosts where an attempt failed on infrastructure: avoided while another host can take the job. */
  failedOn?: Set<number>;
  finished: boolean;
  /** Attempts running now (more than one only with speculation). */
  live: Array<LiveAttempt<J, R>>;
  /** Attempts started (ended or not): numbers the next one. */
  started: number;
}

interface LiveAttempt<J, R> {
  host: HostState<SchedulerHost, J, R>;
  ac: AbortController;
  startedAt: number;
}

/** Pending jobs with the same requirements, in dispatch order. */
interface Group<J, R> {
  key: string;
  requires: readonly string[];
  /** Retries go first (a retried job waited already). */
  retries: Array<JobState<J, R>>;
  queue: Array<JobState<J, R>>;
  head: number;
  /** Indexes of up hosts that have all the tags. */
  hosts: number[];
}

function positiveInt(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new SchedulerError(`Expected \`${name}\` to be a positive integer, got \`${String(v)}\` (${typeof v})`);
  return v;
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

export async function schedule<J, R, H extends SchedulerHost>(jobs: Iterable<Job<J>>, hosts: readonly H[], run: RunJob<J, R, H>, options: ScheduleOptions<J, H> = {}): Promise<ScheduleResult<J, R>> {
  const clock = options.clock ?? Date.now;
  const started = clock();
  const maxAttempts = positiveInt('maxAttempts', options.maxAttempts, 3);
  const hostFailureLimit = positiveInt('hostFailureLimit', options.hostFailureLimit, 3);
  const isInfra = options.isInfrastructure ?? isInfrastructureError;
  const cancelGraceMs = options.cancelGraceMs ?? 120_000;
  const emit = (event: SchedulerEvent<J, H>) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A broken listener must not break the schedule.
    }
  };

  // 1. Hosts.
  const names = new Set<string>();
  const hs: Array<HostState<H, J, R>> = hosts.map((host, index) => {
    if (names.has(host.name)) throw new SchedulerError(`two hosts named ${host.name}`);
    names.add(host.name);
    const slots = positiveInt(`slots\` of host \`${host.name}`, host.slots, 1);
    const downReason = options.downHosts?.get(host.name);
    return {
      host,
      index,
      tags: new Set(host.tags ?? []),
      queue: new PQueue({ concurrency: slots }),
      running: 0,
      down: downReason !== undefined,
      downReason,
      failuresInRow: 0,
      summary: { name: host.name, slots, attempts: 0, completed: 0, infrastructureFailures: 0, down: downReason !== undefined, downReason, busyMs: 0 },
      groups: [],
    };
  });

  // 2. Jobs, grouped by requirements.
  const groups = new Map<string, Group<J, R>>();
  const states: Array<JobState<J, R>> = [];
  const ids = new Set<string>();
  for (const job of jobs) {
    if (typeof job.id !== 'string' || job.id === '') throw new SchedulerError(`Expected every job to have a non-empty string \`id\`, got \`${String(job.id)}\``);
    if (ids.has(job.id)) throw new SchedulerError(`two jobs with id ${job.id}`);
    ids.add(job.id);
    const requires = job.requires === undefined || job.requires.length === 0 ? [] : [...new Set(job.requires)].sort();
    const key = requires.length === 0 ? '' : requires.join('\0');
    let group = groups.get(key);
    if (!group) {
      group = { key, requires, retries: [], queue: [], head: 0, hosts: hs.filter((h) => !h.down && requires.every((t) => h.tags.has(t))).map((h) => h.index) };
      groups.set(key, group);
    }
    const state: JobState<J, R> = { job, index: states.length, group, outcome: { job, status: 'cancelled', host: null, attempts: [] }, finished: false, live: [], started: 0 };
    states.push(state);
    group.queue.push(state);
  }
  // Most constrained first: a job that only a few hosts can take gets their free slots before
  // jobs that could run anywhere (otherwise `kvm` jobs wait until every general job is placed).
  let groupOrder: Array<Group<J, R>> = [];
  const sortGroups = () => {
    groupOrder = [...groups.values()].sort((a, b) => a.hosts.length - b.hosts.length);
    for (const h of hs) h.groups = [];
    for (const g of groupOrder) for (const i of g.hosts) hs[i].groups.push(g);
  };
  sortGroups();

  let unfinished = states.length;
  let cancelled = false;
  let resolveAll!: () => void;
  const allDone = new Promise<void>((resolve) => (resolveAll = resolve));
  /** Jobs with at least one live attempt. */
  const running = new Set<JobState<J, R>>();
  const speculate = options.speculate === true;
  // Mean duration of completed attempts: the expected length of a job without a `cost`.
  let okCount = 0;
  let okMs = 0;
  const meanOkMs = () => (okCount > 0 ? okMs / okCount : 0);
  // How much longer than its `cost` a completed attempt took, on average (start-up, transfer,
  // timer latency): added to every cost when planning.
  let costedCount = 0;
  let costedOverMs = 0;

  // One reason for every copy that lost the race (an error per copy costs a stack trace each, at
  // the tail of the run where hundreds of copies stop at once).
  const superseded = new SchedulerError('superseded by another attempt of the same job');
  const finish = (s: JobState<J, R>, status: JobStatus, extra: { result?: R; error?: unknown } = {}) => {
    if (s.finished) return;
    s.finished = true;
    // Other copies still running lost the race: stop them (their attempts end `superseded`).
    for (const l of s.live) l.ac.abort(superseded);
    s.outcome.status = status;
    if ('result' in extra) s.outcome.result = extra.result;
    if (extra.error !== undefined) s.outcome.error = extra.error;
    emit({ type: 'job-end', job: s.job, status, host: s.outcome.host });
    unfinished--;
    settled();
  };
  /** Every job has its outcome and every copy has stopped (a superseded copy is waited for too). */
  const settled = () => {
    if (unfinished === 0 && running.size === 0) resolveAll();
  };

  const pendingCount = (g: Group<J, R>) => g.retries.length + g.queue.length - g.head;

  /**
   * order 'cost': the pending jobs (not the retries, which go first anyway) in the order of a
   * plan over the slots of the up hosts (plan.ts), each free now or when its running attempt is
   * expected to end; retries are charged to the slots that free first. Planned at the start and
   * again when the pending jobs have halved since the last plan, or near the end (fewer than
   * `endgameWaves` jobs per slot) after a retry or a host going down, once a tenth of the
   * pending jobs have started since the last plan: early deviations are evened out by the next
   * halving, late ones cannot wait that long.
   */
  const planned = options.order === 'cost';
  let lastPlan = Infinity;
  let replanWanted = false;
  const rankOf = new Float64Array(planned ? states.length : 0);
  const upSlots = () => {
    let slots = 0;
    for (const h of hs) if (!h.down) slots += h.summary.slots;
    return slots;
  };
  /** The share of the attempts on hosts still up that failed on infrastructure (a host marked down fails no more). */
  const failureRate = () => {
    let failed = 0;
    let ended = 0;
    for (const h of hs) {
      if (h.down) continue;
      failed += h.summary.infrastructureFailures;
      ended += h.summary.infrastructureFailures + h.summary.completed;
    }
    return ended === 0 ? 0 : failed / ended;
  };
  const replan = () => {
    const now = clock();
    const mean = meanOkMs();
    const over = costedCount > 0 ? costedOverMs / costedCount : 0;
    const expected = (s: JobState<J, R>) => Math.max(0, s.job.cost === undefined ? mean : s.job.cost + over);
    const ready = new MinHeap<number>((a, b) => a < b);
    const slots = upSlots();
    for (const h of hs) if (!h.down) for (let i = h.running; i < h.summary.slots; i++) ready.push(now);
    for (const s of running) for (const l of s.live) if (!l.host.down) ready.push(Math.max(now, l.startedAt + expected(s)));
    for (const g of groups.values()) {
      for (const s of g.retries) {
        const t = ready.pop();
        if (t !== undefined) ready.push(t + expected(s));
      }
    }
    const times: number[] = [];
    while (ready.size > 0 && times.length < slots) times.push((ready.pop() as number) - now);
    const pending: Array<JobState<J, R>> = [];
    for (const g of groups.values()) for (let i = g.head; i < g.queue.length; i++) pending.push(g.queue[i]);
    const tail = speculate && failureRate() * slots >= 1 ? Math.floor(REPLAN.tailWaves * slots) : 0;
    const order = balancedOrder(
      pending.map((s) => (s.job.cost === undefined ? 0 : expected(s))),
      times,
      { tail },
    );
    order.forEach((p, r) => (rankOf[pending[p].index] = r));
    for (const g of groups.values()) {
      g.queue = g.queue.slice(g.head).sort((a, b) => rankOf[a.index] - rankOf[b.index]);
      g.head = 0;
    }
    lastPlan = pending.length;
    replanWanted = false;
  };
  const maybeReplan = () => {
    if (!planned || cancelled) return;
    let pending = 0;
    for (const g of groups.values()) pending += g.queue.length - g.head;
    if (pending === 0) return;
    if (pending <= lastPlan * REPLAN.shrink || (replanWanted && pending <= lastPlan * REPLAN.endgameStep && pending < REPLAN.endgameWaves * upSlots())) replan();
  };

  /** Fails pending jobs of groups no up host can serve. */
  const failOrphans = () => {
    for (const g of groups.values()) {
      g.hosts = g.hosts.filter((i) => !hs[i].down);
      if (g.hosts.length > 0 || pendingCount(g) === 0) continue;
      const tags = g.requires.length ? ` with the tags ${g.requires.join(', ')}` : '';
      // Hosts that could have run it exist but are down: an infrastructure outcome. None at all: unschedulable.
      const someDown = hs.some((h) => h.down && g.requires.every((t) => h.tags.has(t)));
      for (const s of [...g.retries, ...g.queue.slice(g.head)]) {
        if (s.outcome.attempts.length > 0) finish(s, 'infrastructure', { error: s.outcome.error });
        else if (someDown) finish(s, 'infrastructure', { error: new SchedulerError(`job ${s.job.id}: every host${tags} is down (${hs.filter((h) => h.down && g.requires.every((t) => h.tags.has(t))).map((h) => `${h.host.name}: ${h.downReason}`).join('; ')})`) });
        else finish(s, 'unschedulable', { error: new SchedulerError(`job ${s.job.id}: no host${tags} in the inventory`) });
      }
      g.retries = [];
      g.queue = [];
      g.head = 0;
    }
    sortGroups();
  };

  const markDown = (h: HostState<H, J, R>, reason: string) => {
    if (h.down) return;
    h.down = true;
    h.downReason = reason;
    h.summary.down = true;
    h.summary.downReason = reason;
    replanWanted = true;
    emit({ type: 'host-down', host: h.host, reason });
    failOrphans();
  };

  /** May host `h` take a job of `g` now? (A retry avoids the host it failed on while another host could take it.) */
  const acceptable = (s: JobState<J, R>, g: Group<J, R>, h: HostState<H, J, R>) => !s.failedOn?.has(h.index) || g.hosts.every((x) => s.failedOn?.has(x));
  const canTake = (g: Group<J, R>, h: HostState<H, J, R>) => g.head < g.queue.length || g.retries.some((s) => acceptable(s, g, h));

  /** Takes the next job of `g` for host `h`, avoiding jobs that failed there when another host could take them. */
  const take = (g: Group<J, R>, h: HostState<H, J, R>): JobState<J, R> | undefined => {
    for (let i = 0; i < g.retries.length; i++) {
      const s = g.retries[i];
      if (acceptable(s, g, h)) {
        g.retries.splice(i, 1);
        return s;
      }
    }
    if (g.head < g.queue.length) {
      const s = g.queue[g.head++];
      // Compact now and then so the array does not keep finished prefixes forever.
      if (g.head > 1024 && g.head * 2 > g.queue.length) {
        g.queue = g.queue.slice(g.head);
        g.head = 0;
      }
      return s;
    }
    return undefined;
  };

  const hasFree = (h: HostState<H, J, R>) => !h.down && h.running < h.summary.slots;

  /**
   * Binds pending jobs to free slots. Each round goes over the groups, most constrained first,
   * and gives each group with work the least loaded free host that serves it. The search starts
   * after the host the group took last and stops at a host as idle as the least load seen in
   * this call (loads only grow within a call): placing a thousand jobs at the start is linear in
   * the hosts, not quadratic.
   */
  let dispatching = false;
  const cursor = new Map<Group<J, R>, number>();
  const dispatch = () => {
    if (dispatching || cancelled) return;
    dispatching = true;
    try {
      maybeReplan();
      const lowest = new Map<Group<J, R>, number>();
      let progress = true;
      while (progress) {
        progress = false;
        for (const g of groupOrder) {
          if (pendingCount(g) === 0) continue;
          const n = g.hosts.length;
          const from = (cursor.get(g) ?? 0) % Math.max(1, n);
          const floor = lowest.get(g) ?? 0;
          let best: HostState<H, J, R> | undefined;
          let bestLoad = Infinity;
          let bestPos = 0;
          for (let k = 0; k < n; k++) {
            const pos = (from + k) % n;
            const h = hs[g.hosts[pos]];
            if (!hasFree(h) || !canTake(g, h)) continue;
            const load = h.running / h.summary.slots;
            if (load < bestLoad) {
              best = h;
              bestLoad = load;
              bestPos = pos;
              if (load <= floor) break;
            }
          }
          if (!best) continue;
          lowest.set(g, bestLoad);
          cursor.set(g, bestPos + 1);
          const s = take(g, best);
          if (!s) continue;
          start(s, best);
          progress = true;
        }
      }
      if (speculate) for (const h of hs) if (hasFree(h)) backup(h);
    } finally {
      dispatching = false;
    }
  };

  /**
   * A slot freed on `h`: give it the next job of the most constrained group it serves. (Any
   * other free host would already have taken a compatible pending job — except a retry avoiding
   * its failed host, which goes through the full dispatch.)
   */
  const fill = (h: HostState<H, J, R>) => {
    if (cancelled) return;
    maybeReplan();
    for (const g of h.groups) {
      if (!hasFree(h)) return;
      while (hasFree(h) && pendingCount(g) > 0) {
        const s = take(g, h);
        if (!s) break;
        start(s, h);
      }
    }
    if (speculate) backup(h);
  };

  /**
   * Speculation: while `h` has a free slot and nothing pending it can take, start a second copy of
   * the running job expected to end last (start + cost, or + the mean duration of completed
   * attempts) among those with one copy, none on `h`, that `h` may run.
   */
  const backup = (h: HostState<H, J, R>) => {
    while (hasFree(h) && !cancelled) {
      for (const g of h.groups) if (pendingCount(g) > 0 && canTake(g, h)) return;
      const mean = meanOkMs();
      let best: JobState<J, R> | undefined;
      let bestEnd = -Infinity;
      for (const s of running) {
        if (s.finished || s.live.length !== 1) continue;
        const l = s.live[0];
        if (l.host === (h as HostState<SchedulerHost, J, R>) || s.failedOn?.has(h.index) || !h.groups.includes(s.group)) continue;
        const end = l.startedAt + (s.job.cost ?? mean);
        if (end > bestEnd) {
          best = s;
          bestEnd = end;
        }
      }
      if (!best) return;
      start(best, h, true);
    }
  };

  const start = (s: JobState<J, R>, h: HostState<H, J, R>, speculative = false) => {
    h.running++;
    h.summary.attempts++;
    const attempt = ++s.started;
    const ac = new AbortController();
    const t0 = clock();
    const live: LiveAttempt<J, R> = { host: h as HostState<SchedulerHost, J, R>, ac, startedAt: t0 };
    s.live.push(live);
    running.add(s);
    if (!speculative) s.outcome.host = h.host.name;
    emit({ type: 'attempt-start', job: s.job, host: h.host, attempt, speculative });
    void h.queue.add(async () => {
      const record: AttemptRecord = { host: h.host.name, attempt, startedAt: new Date(t0).toISOString(), durationMs: 0, outcome: 'ok', ...(speculative ? { speculative } : {}) };
      let next: (() => void) | undefined;
      let retried = false;
      let copyLost = false;
      try {
        const result = await run(s.job, h.host, ac.signal, { attempt, previous: s.outcome.attempts.slice(), speculative });
        record.durationMs = clock() - t0;
        h.failuresInRow = 0;
        h.summary.completed++;
        if (s.finished) {
          // Another copy ended first; this result is not the job's.
          record.outcome = cancelled && s.outcome.status === 'cancelled' ? 'cancelled' : 'superseded';
        } else {
          okCount++;
          okMs += record.durationMs;
          if (s.job.cost !== undefined) {
            costedCount++;
            costedOverMs += record.durationMs - s.job.cost;
          }
          s.outcome.host = h.host.name;
          next = () => finish(s, 'done', { result });
        }
        s.outcome.attempts.push(record);
      } catch (error) {
        record.durationMs = clock() - t0;
        record.error = describeError(error);
        if (ac.signal.aborted && cancelled) {
          record.outcome = 'cancelled';
          s.outcome.attempts.push(record);
          next = () => finish(s, 'cancelled', { error });
        } else if (s.finished) {
          // Stopped (or failed) after another copy gave the job its outcome: not this host's fault.
          record.outcome = 'superseded';
          s.outcome.attempts.push(record);
        } else if (isInfra(error)) {
          record.outcome = 'infrastructure';
          s.outcome.attempts.push(record);
          s.outcome.error = error;
          h.summary.infrastructureFailures++;
          (s.failedOn ??= new Set()).add(h.index);
          if (++h.failuresInRow >= hostFailureLimit) next = () => markDown(h, `${h.failuresInRow} infrastructure failures in a row, the last: ${record.error}`);
          // Another copy still running carries the job on; otherwise retry.
          const others = s.live.length > 1;
          // With speculation, the job is back to one copy: another host may back it up again now.
          copyLost = others && speculate;
          const retry = () => {
            if (others) return;
            if (s.outcome.attempts.filter((a) => a.outcome === 'infrastructure').length >= maxAttempts) finish(s, 'infrastructure', { error });
            else if (cancelled) finish(s, 'cancelled', { error });
            else if (s.group.hosts.length === 0) finish(s, 'infrastructure', { error });
            else {
              s.group.retries.push(s);
              retried = true;
              replanWanted = true;
            }
          };
          const down = next;
          next = () => {
            down?.();
            if (!s.finished) retry();
          };
        } else {
          record.outcome = 'error';
          s.outcome.attempts.push(record);
          s.outcome.host = h.host.name;
          // The host did its part: a failing check is not the host's fault.
          h.failuresInRow = 0;
          h.summary.completed++;
          next = () => finish(s, 'error', { error });
        }
      } finally {
        h.summary.busyMs += record.durationMs;
        h.running--;
        s.live.splice(s.live.indexOf(live), 1);
        if (s.live.length === 0) running.delete(s);
        emit({ type: 'attempt-end', job: s.job, host: h.host, record });
        next?.();
        settled();
        if (retried || copyLost || h.down) dispatch();
        else fill(h);
      }
    });
  };

  // 3. Cancellation.
  const onAbort = () => {
    if (cancelled) return;
    cancelled = true;
    for (const g of groups.values()) {
      for (const s of [...g.retries, ...g.queue.slice(g.head)]) finish(s, 'cancelled', { error: options.signal?.reason });
      g.retries = [];
      g.queue = [];
      g.head = 0;
    }
    for (const s of running) for (const l of s.live) l.ac.abort(options.signal?.reason);
  };
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    if (states.length === 0) resolveAll();
    failOrphans();
    // A large run starts its first wave longest first and plans while it runs (planning 10,000
    // jobs takes about 10 ms, which a thousand slots need not wait for); a small one plans first,
    // since its first wave is a good part of the plan.
    const planLater = planned && states.length > REPLAN.planFirstUpTo;
    if (planLater) {
      for (const g of groups.values()) {
        const queue = g.queue;
        g.queue = longestFirst(queue.map((s) => s.job.cost ?? 0)).map((i) => queue[i]);
      }
      lastPlan = states.length;
    } else if (planned) replan();
    dispatch();
    if (planLater && !cancelled) replan();
    if (cancelled) {
      // Wait for running jobs to stop, but not forever (a run function that ignores its signal).
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, cancelGraceMs)));
      await Promise.race([allDone, grace]);
      clearTimeout(timer);
    } else {
      await new Promise<void>((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        const onCancel = () => {
          timer = setTimeout(resolve, cancelGraceMs);
        };
        options.signal?.addEventListener('abort', onCancel, { once: true });
        void allDone.then(() => {
          clearTimeout(timer);
          options.signal?.removeEventListener('abort', onCancel);
          resolve();
        });
      });
    }
    for (const s of states) {
      if (!s.finished) {
        s.outcome.error = new SchedulerError(`job ${s.job.id} did not stop within ${cancelGraceMs} ms of the cancel`);
        s.finished = true;
        s.outcome.status = 'cancelled';
      }
    }
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  return { outcomes: states.map((s) => s.outcome), hosts: hs.map((h) => h.summary), cancelled, durationMs: clock() - started };
}

/** scenarios × guests × repeats as jobs (ids `scenario/guest/#n`). */
export function jobMatrix<S, G>(input: {
  scenarios: readonly S[];
  guests: readonly G[];
  /** @default 1 */
  repeats?: number;
  /** @default String(index) */
  name?: (item: S | G) => string;
  requires?: (scenario: S, guest: G) => readonly string[];
  cost?: (scenario: S, guest: G) => number;
}): Array<Job<{ scenario: S; guest: G; repeat: number }>> {
  const repeats = positiveInt('repeats', input.repeats, 1);
  const out: Array<Job<{ scenario: S; guest: G; repeat: number }>> = [];
  const name = input.name ?? ((x: S | G) => String(x));
  for (const scenario of input.scenarios) {
    for (const guest of input.guests) {
      for (let repeat = 1; repeat <= repeats; repeat++) {
        out.push({ id: `${name(scenario)}/${name(guest)}/${repeat}`, payload: { scenario, guest, repeat }, requires: input.requires?.(scenario, guest), cost: input.cost?.(scenario, guest) });
      }
    }
  }
  return out;
}
