/**
 * Accuracy metrics over a set of jobs, shared by the terminal summary, the HTML charts, `compare`
 * and `trend`:
 *   - resync rate = RESYNC epochs / epochs (the cost: each one is a full backup);
 *   - missed rate = MISSED epochs / epochs;
 *   - over-report ratio = Σ claimed / Σ changed over epochs with a valid claim (SUPERSET, EXACT,
 *     MISSED), so big epochs weigh more than tiny ones; null when nothing changed.
 */
import type { EpochRecord, JobRecord, VerdictCounts } from './run-record.ts';

export interface Metrics {
  jobs: number;
  passed: number;
  failed: number;
  infraErrors: number;
  /** Jobs that did not end as they should (failed, or a known-bad tracker that passed). */
  unexpectedOutcomes: number;
  epochs: number;
  verdicts: VerdictCounts;
  unexpectedMissed: number;
  /** Σ over epochs with a valid claim. */
  changedBlocks: number;
  claimedBlocks: number;
  missedBlocks: number;
}

export function emptyMetrics(): Metrics {
  return { jobs: 0, passed: 0, failed: 0, infraErrors: 0, unexpectedOutcomes: 0, epochs: 0, verdicts: { EXACT: 0, SUPERSET: 0, RESYNC: 0, MISSED: 0 }, unexpectedMissed: 0, changedBlocks: 0, claimedBlocks: 0, missedBlocks: 0 };
}

export function addEpoch(m: Metrics, e: EpochRecord, job: Pick<JobRecord, 'expectedStatus'> = {}): void {
  m.epochs++;
  m.verdicts[e.verdict]++;
  if (e.verdict === 'MISSED' && !e.expected.includes('MISSED') && job.expectedStatus !== 'failed') m.unexpectedMissed++;
  if (e.claim.state === 'valid') {
    m.changedBlocks += e.changedBlocks;
    m.claimedBlocks += e.claimedBlocks;
    m.missedBlocks += e.missedBlocks;
  }
}

export function addJob(m: Metrics, j: JobRecord): void {
  m.jobs++;
  if (j.status === 'passed') m.passed++;
  else if (j.status === 'failed') m.failed++;
  else m.infraErrors++;
  if (j.status !== 'infra-error' && j.status !== (j.expectedStatus ?? 'passed')) m.unexpectedOutcomes++;
  for (const e of j.epochs) addEpoch(m, e, j);
}

export function resyncRate(m: Metrics): number | null {
  return m.epochs ? m.verdicts.RESYNC / m.epochs : null;
}

export function missedRate(m: Metrics): number | null {
  return m.epochs ? m.verdicts.MISSED / m.epochs : null;
}

export function overReportRatio(m: Metrics): number | null {
  return m.changedBlocks ? m.claimedBlocks / m.changedBlocks : null;
}

/** The OS build a job ran on: the key of every per-build view. */
export function buildOf(j: Pick<JobRecord, 'guest'>): string {
  return j.guest.os.build;
}

/** "cbtf 2.4.1", "dm-era 6.1.0-28-amd64". */
export function driverOf(j: Pick<JobRecord, 'guest'>): string {
  return `${j.guest.tracker.name} ${j.guest.tracker.version}`.trim();
}

export function groupMetrics<K>(jobs: Iterable<JobRecord>, key: (j: JobRecord) => K): Map<K, Metrics> {
  const out = new Map<K, Metrics>();
  for (const j of jobs) {
    const k = key(j);
    let m = out.get(k);
    if (!m) out.set(k, (m = emptyMetrics()));
    addJob(m, j);
  }
  return out;
}

/** The worst verdict of a set of epochs, for colouring a cell: MISSED > RESYNC > SUPERSET > EXACT. */
export function worstVerdict(v: VerdictCounts): keyof VerdictCounts | null {
  if (v.MISSED) return 'MISSED';
  if (v.RESYNC) return 'RESYNC';
  if (v.SUPERSET) return 'SUPERSET';
  if (v.EXACT) return 'EXACT';
  return null;
}

export function formatRatio(x: number | null, digits = 2): string {
  return x === null ? '–' : x.toFixed(digits);
}

export function formatPercent(x: number | null): string {
  return x === null ? '–' : `${(100 * x).toFixed(x > 0 && x < 0.01 ? 2 : 1)}%`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
