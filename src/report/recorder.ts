/**
 * Builds the run record while a run goes, and tells the reporters as it goes. The scenario runner
 * owns one `RunRecorder` per run:
 *
 *   const rec = new RunRecorder(begin, createReporters(...).reporter);
 *   await rec.begin();
 *   await rec.jobBegin(ref);                      // when a job gets a host
 *   rec.event(ref.id, { at, kind: 'qmp', event: 'STOP' });
 *   await rec.step(ref.id, step);                 // after each step
 *   await rec.epoch(ref.id, epochRecord(result, {...}));
 *   await rec.jobEnd(ref.id, { attempts, host }); // status derived unless given
 *   const record = await rec.end();               // totals; reporters write their files
 *
 * Also here: `epochRecord` (a VerifyResult → the record's epoch), `computeTotals`, `hostInfo`.
 */
import { acceptable as isAcceptable, type Verdict, type VerifyResult } from '../verify/index.ts';
import { blockMap } from './block-map.ts';
import { ReporterOptionError } from './errors.ts';
import type { Reporter } from './reporter.ts';
import {
  MAX_MISSED_RANGES,
  MAX_TIMELINE_EVENTS,
  SCHEMA_VERSION,
  type AccelInfo,
  type AttemptInfo,
  type BlockRange,
  type EpochRecord,
  type GuestInfo,
  type HostInfo,
  type HostType,
  type JobArtifacts,
  type JobRecord,
  type JobRef,
  type JobStatus,
  type RunBegin,
  type RunRecord,
  type StepRecord,
  type TimelineEvent,
  type Totals,
} from './run-record.ts';

/** Longest text kept for an error, a command or stderr in the record (the tail of stderr). */
export const MAX_TEXT = 4096;

export function clip(text: string, max = MAX_TEXT, keep: 'head' | 'tail' = 'head'): string {
  if (text.length <= max) return text;
  const note = `…[${text.length - max + 1} characters cut]`;
  return keep === 'head' ? text.slice(0, max - note.length) + note : note + text.slice(text.length - max + note.length);
}

export interface EpochInput {
  index: number;
  id?: string;
  base: string;
  top: string;
  /** Acceptable verdicts; empty or absent: anything but MISSED. */
  expected?: readonly Verdict[];
  /** Claim blocks in the tracked volume (claim.volume.length / granularity, rounded up): enables the block map. */
  volumeBlocks?: number;
  /** Claimed-but-unchanged runs (claim granularity), for the map. */
  extra?: readonly BlockRange[];
  /** Changed runs (claim granularity), for the map. */
  changed?: readonly BlockRange[];
  truthGranularity?: number;
  startedAt?: string;
  verifiedAt?: string;
  verifyMs?: number;
}

/** The record's epoch from a verify result. */
export function epochRecord(result: VerifyResult, input: EpochInput): EpochRecord {
  const expected = [...new Set(input.expected ?? [])];
  const lost = result.verdict === 'RESYNC';
  const ratio = lost || !Number.isFinite(result.overReportRatio) ? null : result.overReportRatio;
  const e: EpochRecord = {
    index: input.index,
    base: input.base,
    top: input.top,
    verdict: result.verdict,
    expected,
    acceptable: isAcceptable(result.verdict, expected),
    changedBlocks: result.changedBlocks,
    claimedBlocks: result.claimedBlocks,
    missedBlocks: result.missedBlocks,
    extraBlocks: result.extraBlocks,
    excludedTruthBlocks: result.excludedTruthBlocks,
    granularity: result.granularity,
    overReportRatio: ratio,
    claim: { state: lost ? 'lost' : 'valid', reason: result.reason === null ? null : clip(result.reason) },
    missed: result.missed.slice(0, MAX_MISSED_RANGES).map(([f, c]) => [f, c] as BlockRange),
    missedRanges: result.missed.length,
  };
  if (input.id !== undefined) e.id = input.id;
  if (input.truthGranularity !== undefined) e.truthGranularity = input.truthGranularity;
  if (input.volumeBlocks !== undefined) e.map = blockMap({ blocks: input.volumeBlocks, missed: result.missed, extra: input.extra, changed: input.changed });
  if (input.startedAt !== undefined) e.startedAt = input.startedAt;
  if (input.verifiedAt !== undefined) e.verifiedAt = input.verifiedAt;
  if (input.verifyMs !== undefined) e.verifyMs = Math.max(0, Math.round(input.verifyMs));
  return e;
}

/** A MISSED that neither the scenario nor the job (a known-bad tracker) expected: data loss. */
export function isUnexpectedMissed(job: Pick<JobRecord, 'expectedStatus'>, e: EpochRecord): boolean {
  return e.verdict === 'MISSED' && !e.expected.includes('MISSED') && job.expectedStatus !== 'failed';
}

/**
 * Whether a job ended as it should: `passed`, or `failed` for a known-bad tracker. null for an
 * infrastructure error (nothing was learnt).
 */
export function asExpected(job: Pick<JobRecord, 'status' | 'expectedStatus'>): boolean | null {
  if (job.status === 'infra-error') return null;
  return job.status === (job.expectedStatus ?? 'passed');
}

/** The run's outcome: `failed` when a job did not end as it should, else `infra-error` when one could not run. */
export function runOutcome(record: Pick<RunRecord, 'jobs'>): JobStatus {
  let infra = false;
  for (const j of record.jobs) {
    const ok = asExpected(j);
    if (ok === false) return 'failed';
    if (ok === null) infra = true;
  }
  return infra ? 'infra-error' : 'passed';
}

export function computeTotals(jobs: readonly JobRecord[]): Totals {
  const t: Totals = { jobs: jobs.length, passed: 0, failed: 0, infraErrors: 0, epochs: 0, verdicts: { EXACT: 0, SUPERSET: 0, RESYNC: 0, MISSED: 0 }, unacceptable: 0, unexpectedMissed: 0, expectedFailures: 0, unexpectedPasses: 0 };
  for (const j of jobs) {
    if (j.status === 'passed') t.passed++;
    else if (j.status === 'failed') t.failed++;
    else t.infraErrors++;
    if (j.expectedStatus === 'failed' && j.status === 'failed') t.expectedFailures++;
    if (j.expectedStatus === 'failed' && j.status === 'passed') t.unexpectedPasses++;
    for (const e of j.epochs) {
      t.epochs++;
      t.verdicts[e.verdict]++;
      if (!e.acceptable) t.unacceptable++;
      if (isUnexpectedMissed(j, e)) t.unexpectedMissed++;
    }
  }
  return t;
}

/** What the record keeps of an inventory host: never addresses, users or keys. */
export function hostInfo(spec: { name: string; type: HostType; tags?: readonly string[]; slots?: number; down?: string }): HostInfo {
  const h: HostInfo = { name: spec.name, type: spec.type, tags: [...(spec.tags ?? [])] };
  if (spec.slots !== undefined) h.slots = spec.slots;
  if (spec.down !== undefined) h.down = spec.down;
  return h;
}

/** The status a job earns from what it did (absent an infrastructure failure). */
export function deriveStatus(job: { steps: readonly StepRecord[]; epochs: readonly EpochRecord[]; error?: string }): JobStatus {
  if (job.error !== undefined) return 'failed';
  if (job.steps.some((s) => !s.ok && !s.allowFailure)) return 'failed';
  if (job.epochs.some((e) => !e.acceptable)) return 'failed';
  return 'passed';
}

export interface JobEnd {
  /** Default: derived from steps and epochs (`failed` when `error` is given). Give `infra-error` explicitly. */
  status?: JobStatus;
  error?: string;
  host?: { name: string; type: HostType } | null;
  accel?: AccelInfo;
  attempts?: AttemptInfo[];
  artifacts?: JobArtifacts;
  endedAt?: string;
  /** What the job learned of its guest and tracker once it booted (OS build, driver version); replaces the planned `guest`. */
  guest?: GuestInfo;
}

interface JobState {
  ref: JobRef;
  startedAt: string;
  steps: StepRecord[];
  epochs: EpochRecord[];
  timeline: TimelineEvent[];
  /** Events of droppable kinds kept so far. */
  droppable: number;
  dropped: number;
  ended?: JobRecord;
}

/** Kinds never dropped from a long timeline: there are few of them and the report is about them. */
const KEEP: ReadonlySet<TimelineEvent['kind']> = new Set(['step', 'epoch', 'verdict', 'fault', 'phase']);

function isoNow(now: () => Date): string {
  return now().toISOString();
}

function ms(from: string, to: string): number {
  const d = Date.parse(to) - Date.parse(from);
  return Number.isFinite(d) && d > 0 ? Math.round(d) : 0;
}

function clipEvent(e: TimelineEvent): TimelineEvent {
  if (e.kind === 'guest' || e.kind === 'host') {
    const out = { ...e, command: clip(e.command), durationMs: Math.max(0, Math.round(e.durationMs)) };
    if (e.stderr !== undefined) out.stderr = clip(e.stderr, MAX_TEXT, 'tail');
    return out;
  }
  if (e.kind === 'note') return { ...e, message: clip(e.message) };
  if (e.kind === 'fault' && e.detail !== undefined) return { ...e, detail: clip(e.detail) };
  return e;
}

/** Attempts as the record keeps them: whole non-negative milliseconds, errors clipped. */
function normalizeAttempts(attempts: readonly AttemptInfo[]): AttemptInfo[] {
  return attempts.map((a) => ({ ...a, durationMs: Math.max(0, Math.round(a.durationMs)), ...(a.error !== undefined ? { error: clip(a.error) } : {}) }));
}

export interface RunRecorderOptions {
  /** Clock. @default () => new Date() */
  now?: () => Date;
  /** Timeline events kept per job (steps, epochs, verdicts and faults are always kept). @default 2000 */
  maxTimelineEvents?: number;
}

export class RunRecorder {
  readonly #begin: RunBegin;
  readonly #reporter: Reporter;
  readonly #now: () => Date;
  readonly #maxEvents: number;
  readonly #jobs = new Map<string, JobState>();
  readonly #order: string[] = [];
  #cancelled = false;
  #record: RunRecord | undefined;

  constructor(begin: RunBegin, reporter: Reporter, options: RunRecorderOptions = {}) {
    this.#begin = begin;
    this.#reporter = reporter;
    this.#now = options.now ?? (() => new Date());
    this.#maxEvents = options.maxTimelineEvents ?? MAX_TIMELINE_EVENTS;
    if (!Number.isSafeInteger(this.#maxEvents) || this.#maxEvents < 0) throw new ReporterOptionError(`Expected \`maxTimelineEvents\` to be a non-negative integer, got \`${String(options.maxTimelineEvents)}\``);
    // Planned jobs keep the plan's order in the record, whatever order they run in.
    for (const j of begin.jobs) this.#order.push(j.id);
  }

  async begin(): Promise<void> {
    await this.#reporter.onBegin?.(this.#begin);
  }

  #job(id: string): JobState {
    const s = this.#jobs.get(id);
    if (!s) throw new ReporterOptionError(`job \`${id}\` was not begun (call jobBegin first)`);
    return s;
  }

  async jobBegin(ref: JobRef, startedAt = isoNow(this.#now)): Promise<void> {
    if (this.#jobs.has(ref.id)) throw new ReporterOptionError(`job \`${ref.id}\` was begun twice`);
    if (!this.#order.includes(ref.id)) this.#order.push(ref.id);
    this.#jobs.set(ref.id, { ref, startedAt, steps: [], epochs: [], timeline: [], droppable: 0, dropped: 0 });
    await this.#reporter.onJobBegin?.(ref);
  }

  /** Adds a timeline event (not passed to reporters: they get steps and epochs). */
  event(jobId: string, event: TimelineEvent): void {
    const s = this.#job(jobId);
    if (!KEEP.has(event.kind)) {
      if (s.droppable >= this.#maxEvents) {
        s.dropped++;
        return;
      }
      s.droppable++;
    }
    s.timeline.push(clipEvent(event));
  }

  async step(jobId: string, step: StepRecord): Promise<void> {
    const s = this.#job(jobId);
    const rec: StepRecord = { ...step, durationMs: Math.max(0, Math.round(step.durationMs)) };
    if (step.error !== undefined) rec.error = clip(step.error);
    s.steps.push(rec);
    await this.#reporter.onStep?.(s.ref, rec);
  }

  async epoch(jobId: string, epoch: EpochRecord): Promise<void> {
    const s = this.#job(jobId);
    s.epochs.push(epoch);
    this.event(jobId, { at: epoch.verifiedAt ?? isoNow(this.#now), kind: 'verdict', epoch: epoch.index, verdict: epoch.verdict, acceptable: epoch.acceptable });
    await this.#reporter.onEpoch?.(s.ref, epoch);
  }

  async jobEnd(jobId: string, end: JobEnd = {}): Promise<JobRecord> {
    const s = this.#job(jobId);
    if (s.ended) throw new ReporterOptionError(`job \`${jobId}\` ended twice`);
    const endedAt = end.endedAt ?? isoNow(this.#now);
    const error = end.error === undefined ? undefined : clip(end.error);
    const timeline = s.timeline.map((e, i) => [e, i] as const).sort((a, b) => Date.parse(a[0].at) - Date.parse(b[0].at) || a[1] - b[1]).map(([e]) => e);
    const job: JobRecord = {
      id: s.ref.id,
      scenario: s.ref.scenario,
      guest: end.guest ?? s.ref.guest,
      host: end.host !== undefined ? end.host : (s.ref.host ?? null),
      seed: s.ref.seed,
      repeat: s.ref.repeat,
      status: end.status ?? deriveStatus({ steps: s.steps, epochs: s.epochs, error }),
      ...(s.ref.expectedStatus ? { expectedStatus: s.ref.expectedStatus } : {}),
      startedAt: s.startedAt,
      endedAt,
      durationMs: ms(s.startedAt, endedAt),
      attempts: normalizeAttempts(end.attempts ?? []),
      steps: s.steps,
      epochs: s.epochs,
      timeline,
      artifacts: end.artifacts ?? {},
    };
    const accel = end.accel ?? s.ref.accel;
    if (accel) job.accel = accel;
    if (error !== undefined) job.error = error;
    if (s.dropped) job.timelineDropped = s.dropped;
    s.ended = job;
    await this.#reporter.onJobEnd?.(job);
    return job;
  }

  /**
   * Replaces the attempts of an ended job: with speculation, a copy that lost the race ends after
   * the winner recorded the job. Reporters saw the job already; the run record has the full list.
   */
  amendAttempts(jobId: string, attempts: AttemptInfo[]): void {
    const job = this.#job(jobId).ended;
    if (!job) throw new ReporterOptionError(`job \`${jobId}\` has not ended`);
    job.attempts = normalizeAttempts(attempts);
  }

  /**
   * A job that never began (cancelled, unschedulable, out of attempts before a session): recorded
   * as `infra-error` with the reason.
   */
  async jobNotRun(ref: JobRef, error: string, attempts: AttemptInfo[] = []): Promise<JobRecord> {
    if (!this.#jobs.has(ref.id)) await this.jobBegin(ref);
    return this.jobEnd(ref.id, { status: 'infra-error', error, attempts, host: ref.host ?? null });
  }

  cancel(): void {
    this.#cancelled = true;
  }

  /** Ends the run: planned jobs that never ended become `infra-error`; reporters get the record. */
  async end(endedAt = isoNow(this.#now)): Promise<RunRecord> {
    if (this.#record) return this.#record;
    for (const id of this.#order) {
      const s = this.#jobs.get(id);
      if (s?.ended) continue;
      const ref = s?.ref ?? this.#begin.jobs.find((j) => j.id === id);
      if (!ref) continue;
      await this.jobNotRun(ref, this.#cancelled ? 'the run was cancelled before this job finished' : 'the job did not finish');
    }
    const jobs = this.#order.map((id) => this.#jobs.get(id)?.ended).filter((j): j is JobRecord => j !== undefined);
    const b = this.#begin;
    const record: RunRecord = {
      schemaVersion: SCHEMA_VERSION,
      runId: b.runId,
      startedAt: b.startedAt,
      endedAt,
      durationMs: ms(b.startedAt, endedAt),
      harness: b.harness,
      seed: b.seed,
      hosts: b.hosts,
      jobs,
      totals: computeTotals(jobs),
    };
    if (b.config) record.config = b.config;
    if (b.labels) record.labels = b.labels;
    if (this.#cancelled) record.cancelled = true;
    this.#record = record;
    await this.#reporter.onEnd?.(record);
    return record;
  }
}
