/**
 * Compare two runs per scenario × OS build: what got worse and what got better.
 *
 * Worse (exit 1 from `report compare`):
 *   - new MISSED: unexpected MISSED epochs where the baseline had none (or a cell new in the
 *     current run has one); more MISSED: a higher unexpected-MISSED rate than the baseline;
 *   - new failure: failed jobs where the baseline had none; more failures: a higher failed rate;
 *   - resync rate up by more than `resyncThreshold` (absolute, default 0: any increase);
 *   - over-report ratio up by more than `threshold` (relative, default 0.1: +10 %).
 * Better: the mirror images. Notes (never worse): cells only in one run, infrastructure errors.
 * Rates, not counts, so a run with more repeats compares fairly.
 */
import { ReportInputError } from './errors.ts';
import { addJob, buildOf, driverOf, emptyMetrics, overReportRatio, resyncRate, type Metrics } from './metrics.ts';
import type { RunRecord } from './run-record.ts';

export interface CompareOptions {
  /** Relative increase of the over-report ratio that counts as worse. @default 0.1 */
  threshold?: number;
  /** Absolute increase of the resync rate that counts as worse. @default 0 */
  resyncThreshold?: number;
}

/** A cell's counts (its `Metrics` without the block sums) and the rates compared. */
export interface CellSummary extends Omit<Metrics, 'changedBlocks' | 'claimedBlocks' | 'missedBlocks'> {
  /** Unexpected MISSED epochs / epochs. */
  missedRate: number | null;
  resyncRate: number | null;
  overReportRatio: number | null;
  /** Driver / tracker versions seen ("cbtf 2.4.1"). */
  drivers: string[];
}

export type ChangeKind =
  | 'new-missed'
  | 'more-missed'
  | 'new-failure'
  | 'more-failures'
  | 'resync-up'
  | 'over-report-up'
  | 'missed-fixed'
  | 'less-missed'
  | 'failures-fixed'
  | 'fewer-failures'
  | 'resync-down'
  | 'over-report-down'
  | 'added'
  | 'removed'
  | 'infra-errors';

export interface Change {
  kind: ChangeKind;
  scenario: string;
  build: string;
  message: string;
  baseline: number | null;
  current: number | null;
}

export interface CellComparison {
  scenario: string;
  build: string;
  status: 'worse' | 'better' | 'same' | 'mixed' | 'added' | 'removed';
  baseline: CellSummary | null;
  current: CellSummary | null;
}

export interface RunRef {
  runId: string;
  startedAt: string;
  file?: string;
}

export interface Comparison {
  baseline: RunRef;
  current: RunRef;
  threshold: number;
  resyncThreshold: number;
  worse: Change[];
  better: Change[];
  notes: Change[];
  cells: CellComparison[];
}

function summarize(m: Metrics, drivers: Set<string>): CellSummary {
  return {
    jobs: m.jobs,
    passed: m.passed,
    failed: m.failed,
    infraErrors: m.infraErrors,
    unexpectedOutcomes: m.unexpectedOutcomes,
    epochs: m.epochs,
    verdicts: m.verdicts,
    unexpectedMissed: m.unexpectedMissed,
    missedRate: m.epochs ? m.unexpectedMissed / m.epochs : null,
    resyncRate: resyncRate(m),
    overReportRatio: overReportRatio(m),
    drivers: [...drivers].sort(),
  };
}

const SEP = '\u0000';

export function cellsOf(record: RunRecord): Map<string, CellSummary> {
  const metrics = new Map<string, { m: Metrics; drivers: Set<string> }>();
  for (const j of record.jobs) {
    const key = `${j.scenario.name}${SEP}${buildOf(j)}`;
    let c = metrics.get(key);
    if (!c) metrics.set(key, (c = { m: emptyMetrics(), drivers: new Set() }));
    addJob(c.m, j);
    c.drivers.add(driverOf(j));
  }
  return new Map([...metrics].map(([k, c]) => [k, summarize(c.m, c.drivers)]));
}

function pct(x: number | null): string {
  return x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`;
}

function num(x: number | null): string {
  return x === null ? 'n/a' : x.toFixed(3);
}

function validateOptions(o: CompareOptions): { threshold: number; resyncThreshold: number } {
  const threshold = o.threshold ?? 0.1;
  const resyncThreshold = o.resyncThreshold ?? 0;
  if (!Number.isFinite(threshold) || threshold < 0) throw new ReportInputError('--threshold', `Expected a non-negative ratio (0.1 = +10 %), got \`${String(o.threshold)}\``);
  if (!Number.isFinite(resyncThreshold) || resyncThreshold < 0 || resyncThreshold > 1) throw new ReportInputError('--resync-threshold', `Expected a rate from 0 to 1, got \`${String(o.resyncThreshold)}\``);
  return { threshold, resyncThreshold };
}

/** Rates compared with a little slack for floating point (0.1 + 0.2 ≠ 0.3). */
const EPS = 1e-9;

export function compareRuns(baseline: RunRecord, current: RunRecord, options: CompareOptions & { baselineFile?: string; currentFile?: string } = {}): Comparison {
  const { threshold, resyncThreshold } = validateOptions(options);
  const b = cellsOf(baseline);
  const c = cellsOf(current);
  const worse: Change[] = [];
  const better: Change[] = [];
  const notes: Change[] = [];
  const cells: CellComparison[] = [];
  const keys = [...new Set([...b.keys(), ...c.keys()])].sort();
  for (const key of keys) {
    const [scenario, build] = key.split(SEP);
    const bc = b.get(key) ?? null;
    const cc = c.get(key) ?? null;
    const w0 = worse.length;
    const b0 = better.length;
    const add = (list: Change[], kind: ChangeKind, message: string, base: number | null, cur: number | null) => list.push({ kind, scenario, build, message: `${scenario} on ${build}: ${message}`, baseline: base, current: cur });
    if (!bc && cc) {
      if (cc.unexpectedMissed) add(worse, 'new-missed', `${cc.unexpectedMissed} MISSED epoch(s) of ${cc.epochs} (not in the baseline)`, null, cc.unexpectedMissed);
      if (cc.unexpectedOutcomes) add(worse, 'new-failure', `${cc.unexpectedOutcomes} of ${cc.jobs} job(s) did not end as they should (not in the baseline)`, null, cc.unexpectedOutcomes);
      add(notes, 'added', 'only in the current run', null, cc.jobs);
      cells.push({ scenario, build, status: worse.length > w0 ? 'worse' : 'added', baseline: null, current: cc });
      continue;
    }
    if (bc && !cc) {
      add(notes, 'removed', 'not run in the current run', bc.jobs, null);
      cells.push({ scenario, build, status: 'removed', baseline: bc, current: null });
      continue;
    }
    if (!bc || !cc) continue;
    // 1. MISSED (unexpected), by rate over epochs.
    if (bc.unexpectedMissed === 0 && cc.unexpectedMissed > 0) add(worse, 'new-missed', `new MISSED: ${cc.unexpectedMissed} of ${cc.epochs} epoch(s) (baseline none of ${bc.epochs})`, 0, cc.unexpectedMissed);
    else if (bc.unexpectedMissed > 0 && cc.unexpectedMissed === 0 && cc.epochs > 0) add(better, 'missed-fixed', `no MISSED any more (baseline ${bc.unexpectedMissed} of ${bc.epochs})`, bc.unexpectedMissed, 0);
    else if (bc.missedRate !== null && cc.missedRate !== null && cc.missedRate > bc.missedRate + EPS) add(worse, 'more-missed', `MISSED rate up from ${pct(bc.missedRate)} to ${pct(cc.missedRate)}`, bc.missedRate, cc.missedRate);
    else if (bc.missedRate !== null && cc.missedRate !== null && cc.missedRate < bc.missedRate - EPS) add(better, 'less-missed', `MISSED rate down from ${pct(bc.missedRate)} to ${pct(cc.missedRate)}`, bc.missedRate, cc.missedRate);
    // 2. Jobs that did not end as they should (failed; a known-bad tracker passed), by rate over
    //    jobs that ran (infrastructure errors are notes).
    const bRan = bc.jobs - bc.infraErrors;
    const cRan = cc.jobs - cc.infraErrors;
    const bFail = bRan ? bc.unexpectedOutcomes / bRan : null;
    const cFail = cRan ? cc.unexpectedOutcomes / cRan : null;
    if (bc.unexpectedOutcomes === 0 && cc.unexpectedOutcomes > 0) add(worse, 'new-failure', `new failure: ${cc.unexpectedOutcomes} of ${cRan} job(s) did not end as they should (baseline none)`, 0, cc.unexpectedOutcomes);
    else if (bc.unexpectedOutcomes > 0 && cc.unexpectedOutcomes === 0 && cRan > 0) add(better, 'failures-fixed', `every job ends as it should now (baseline ${bc.unexpectedOutcomes} of ${bRan} did not)`, bc.unexpectedOutcomes, 0);
    else if (bFail !== null && cFail !== null && cFail > bFail + EPS) add(worse, 'more-failures', `failed jobs up from ${pct(bFail)} to ${pct(cFail)}`, bFail, cFail);
    else if (bFail !== null && cFail !== null && cFail < bFail - EPS) add(better, 'fewer-failures', `failed jobs down from ${pct(bFail)} to ${pct(cFail)}`, bFail, cFail);
    // 3. Resync rate.
    if (bc.resyncRate !== null && cc.resyncRate !== null) {
      if (cc.resyncRate > bc.resyncRate + resyncThreshold + EPS) add(worse, 'resync-up', `resync rate up from ${pct(bc.resyncRate)} to ${pct(cc.resyncRate)}`, bc.resyncRate, cc.resyncRate);
      else if (cc.resyncRate < bc.resyncRate - resyncThreshold - EPS) add(better, 'resync-down', `resync rate down from ${pct(bc.resyncRate)} to ${pct(cc.resyncRate)}`, bc.resyncRate, cc.resyncRate);
    }
    // 4. Over-report ratio, relative.
    if (bc.overReportRatio !== null && cc.overReportRatio !== null) {
      if (cc.overReportRatio > bc.overReportRatio * (1 + threshold) + EPS) add(worse, 'over-report-up', `over-report ratio up from ${num(bc.overReportRatio)} to ${num(cc.overReportRatio)} (more than +${(threshold * 100).toFixed(0)}%)`, bc.overReportRatio, cc.overReportRatio);
      else if (cc.overReportRatio * (1 + threshold) < bc.overReportRatio - EPS) add(better, 'over-report-down', `over-report ratio down from ${num(bc.overReportRatio)} to ${num(cc.overReportRatio)}`, bc.overReportRatio, cc.overReportRatio);
    }
    if (cc.infraErrors) add(notes, 'infra-errors', `${cc.infraErrors} of ${cc.jobs} job(s) hit infrastructure errors (not compared)`, bc.infraErrors, cc.infraErrors);
    const isWorse = worse.length > w0;
    const isBetter = better.length > b0;
    cells.push({ scenario, build, status: isWorse && isBetter ? 'mixed' : isWorse ? 'worse' : isBetter ? 'better' : 'same', baseline: bc, current: cc });
  }
  const ref = (r: RunRecord, file?: string): RunRef => ({ runId: r.runId, startedAt: r.startedAt, ...(file ? { file } : {}) });
  return { baseline: ref(baseline, options.baselineFile), current: ref(current, options.currentFile), threshold, resyncThreshold, worse, better, notes, cells };
}

/** Human-readable comparison. */
export function formatComparison(c: Comparison): string {
  const lines = [`compare ${c.baseline.runId} (${c.baseline.startedAt}) → ${c.current.runId} (${c.current.startedAt})`];
  const section = (title: string, list: Change[]) => {
    if (!list.length) return;
    lines.push('', `${title} (${list.length}):`);
    for (const ch of list) lines.push(`  ${ch.message}`);
  };
  section('WORSE', c.worse);
  section('better', c.better);
  section('notes', c.notes);
  const same = c.cells.filter((x) => x.status === 'same').length;
  lines.push('', `${c.cells.length} scenario × build cell(s): ${c.worse.length ? `${c.cells.filter((x) => x.status === 'worse' || x.status === 'mixed').length} worse` : 'nothing worse'}, ${c.cells.filter((x) => x.status === 'better' || x.status === 'mixed').length} better, ${same} unchanged`);
  return lines.join('\n');
}

