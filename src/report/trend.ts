/**
 * Accuracy over many runs, per OS build and per driver version: "which Windows build regressed,
 * and since when?". Pure: works on `TrendCell`s (one run × scenario × build × driver aggregate),
 * which come from records read directly or from the SQLite history index (history.ts).
 *
 * Per group (a build, a driver version…) the runs are put in time order; the last `window` runs
 * are compared with the ones before:
 *   - `missed-up`: a higher unexpected-MISSED rate (per epoch) than before;
 *   - `resync-up`: resync rate up by more than `resyncThreshold`;
 *   - `over-report-up`: over-report ratio up by more than `threshold` (relative).
 * Any flag makes the group `regressed`; the mirror images with no flag make it `improved`.
 * `missedSince` is the first run of the current streak of runs with unexpected MISSED.
 */
import type { RunRecord } from './run-record.ts';
import { buildOf, driverOf } from './metrics.ts';

export interface TrendCell extends TrendSums {
  file: string;
  runId: string;
  startedAt: string;
  scenario: string;
  build: string;
  driver: string;
}

export const TREND_DIMENSIONS = ['build', 'driver', 'build+driver', 'scenario'] as const;
export type TrendDimension = (typeof TREND_DIMENSIONS)[number];

export function dimensionKey(c: Pick<TrendCell, 'build' | 'driver' | 'scenario'>, by: TrendDimension): string {
  switch (by) {
    case 'build':
      return c.build;
    case 'driver':
      return c.driver;
    case 'build+driver':
      return `${c.build} · ${c.driver}`;
    case 'scenario':
      return c.scenario;
  }
}

/** One run × scenario × build × driver. */
export function trendCellsOf(record: RunRecord, file: string): TrendCell[] {
  const out = new Map<string, TrendCell>();
  for (const j of record.jobs) {
    const build = buildOf(j);
    const driver = driverOf(j);
    const key = `${j.scenario.name}\u0000${build}\u0000${driver}`;
    let c = out.get(key);
    if (!c) {
      c = { file, runId: record.runId, startedAt: record.startedAt, scenario: j.scenario.name, build, driver, jobs: 0, passed: 0, failed: 0, infraErrors: 0, epochs: 0, exact: 0, superset: 0, resync: 0, missed: 0, unexpectedMissed: 0, changedBlocks: 0, claimedBlocks: 0 };
      out.set(key, c);
    }
    c.jobs++;
    if (j.status === 'passed') c.passed++;
    else if (j.status === 'failed') c.failed++;
    else c.infraErrors++;
    for (const e of j.epochs) {
      c.epochs++;
      if (e.verdict === 'EXACT') c.exact++;
      else if (e.verdict === 'SUPERSET') c.superset++;
      else if (e.verdict === 'RESYNC') c.resync++;
      else c.missed++;
      if (e.verdict === 'MISSED' && !e.expected.includes('MISSED') && j.expectedStatus !== 'failed') c.unexpectedMissed++;
      if (e.claim.state === 'valid') {
        c.changedBlocks += e.changedBlocks;
        c.claimedBlocks += e.claimedBlocks;
      }
    }
  }
  return [...out.values()];
}

/** Sums of one group in one run (or over many). */
export interface TrendSums {
  jobs: number;
  passed: number;
  failed: number;
  infraErrors: number;
  epochs: number;
  exact: number;
  superset: number;
  resync: number;
  missed: number;
  unexpectedMissed: number;
  changedBlocks: number;
  claimedBlocks: number;
}

const SUM_KEYS = ['jobs', 'passed', 'failed', 'infraErrors', 'epochs', 'exact', 'superset', 'resync', 'missed', 'unexpectedMissed', 'changedBlocks', 'claimedBlocks'] as const;

function zero(): TrendSums {
  return { jobs: 0, passed: 0, failed: 0, infraErrors: 0, epochs: 0, exact: 0, superset: 0, resync: 0, missed: 0, unexpectedMissed: 0, changedBlocks: 0, claimedBlocks: 0 };
}

function addSums(into: TrendSums, s: TrendSums): void {
  for (const k of SUM_KEYS) into[k] += s[k];
}

export interface TrendRates {
  runs: number;
  epochs: number;
  /** Unexpected MISSED epochs / epochs. */
  missedRate: number | null;
  resyncRate: number | null;
  overReportRatio: number | null;
  /** Failed jobs / jobs that ran (not infrastructure errors). */
  failedRate: number | null;
}

function rates(s: TrendSums, runs: number): TrendRates {
  const ran = s.jobs - s.infraErrors;
  return { runs, epochs: s.epochs, missedRate: s.epochs ? s.unexpectedMissed / s.epochs : null, resyncRate: s.epochs ? s.resync / s.epochs : null, overReportRatio: s.changedBlocks ? s.claimedBlocks / s.changedBlocks : null, failedRate: ran ? s.failed / ran : null };
}

export interface TrendPoint extends TrendSums {
  runId: string;
  startedAt: string;
}

export interface TrendGroup {
  key: string;
  runs: number;
  firstRun: string;
  lastRun: string;
  totals: TrendSums;
  overall: TrendRates;
  /** The last `window` runs. */
  recent: TrendRates;
  /** The runs before those (null when there are none). */
  earlier: TrendRates | null;
  status: 'regressed' | 'improved' | 'stable' | 'new';
  flags: Array<'missed-up' | 'resync-up' | 'over-report-up'>;
  /** First run of the trailing streak of runs with unexpected MISSED (null when the last run has none). */
  missedSince: { runId: string; startedAt: string } | null;
  /** Per run, in time order (only when asked for). */
  series?: TrendPoint[];
}

export interface TrendOptions {
  by?: TrendDimension;
  /** Recent runs compared with the earlier ones. @default 5 */
  window?: number;
  /** @default 0.1 */
  threshold?: number;
  /** @default 0 */
  resyncThreshold?: number;
  /** Include the per-run series. @default false */
  series?: boolean;
}

export interface TrendResult {
  by: TrendDimension;
  window: number;
  runs: number;
  groups: TrendGroup[];
}

const EPS = 1e-9;

/** Groups per-run points (already summed per group and run) into trends. */
export function trendFromPoints(pointsByGroup: Map<string, TrendPoint[]>, runs: number, options: TrendOptions = {}): TrendResult {
  const by = options.by ?? 'build';
  const window = options.window ?? 5;
  const threshold = options.threshold ?? 0.1;
  const resyncThreshold = options.resyncThreshold ?? 0;
  const groups: TrendGroup[] = [];
  for (const [key, pts] of pointsByGroup) {
    const points = [...pts].sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.runId.localeCompare(b.runId));
    const totals = zero();
    for (const p of points) addSums(totals, p);
    const split = Math.max(0, points.length - window);
    const recentSums = zero();
    const earlierSums = zero();
    points.forEach((p, i) => addSums(i >= split ? recentSums : earlierSums, p));
    const recent = rates(recentSums, points.length - split);
    const earlier = split > 0 ? rates(earlierSums, split) : null;
    const flags: TrendGroup['flags'] = [];
    let improved = false;
    if (earlier) {
      const up = (a: number | null, b: number | null, slack: number) => a !== null && b !== null && b > a + slack + EPS;
      const down = (a: number | null, b: number | null, slack: number) => a !== null && b !== null && b < a - slack - EPS;
      if (up(earlier.missedRate, recent.missedRate, 0)) flags.push('missed-up');
      if (up(earlier.resyncRate, recent.resyncRate, resyncThreshold)) flags.push('resync-up');
      if (earlier.overReportRatio !== null && recent.overReportRatio !== null && recent.overReportRatio > earlier.overReportRatio * (1 + threshold) + EPS) flags.push('over-report-up');
      improved = down(earlier.missedRate, recent.missedRate, 0) || down(earlier.resyncRate, recent.resyncRate, resyncThreshold) || (earlier.overReportRatio !== null && recent.overReportRatio !== null && recent.overReportRatio * (1 + threshold) < earlier.overReportRatio - EPS);
    }
    let since: TrendPoint | null = null;
    for (let i = points.length - 1; i >= 0 && points[i].unexpectedMissed > 0; i--) since = points[i];
    const g: TrendGroup = {
      key,
      runs: points.length,
      firstRun: points[0]?.startedAt ?? '',
      lastRun: points.at(-1)?.startedAt ?? '',
      totals,
      overall: rates(totals, points.length),
      recent,
      earlier,
      status: !earlier ? 'new' : flags.length ? 'regressed' : improved ? 'improved' : 'stable',
      flags,
      missedSince: since ? { runId: since.runId, startedAt: since.startedAt } : null,
    };
    if (options.series) g.series = points;
    groups.push(g);
  }
  const order = { regressed: 0, new: 1, improved: 2, stable: 3 };
  groups.sort((a, b) => order[a.status] - order[b.status] || (b.overall.missedRate ?? 0) - (a.overall.missedRate ?? 0) || a.key.localeCompare(b.key, undefined, { numeric: true }));
  return { by, window, runs, groups };
}

/** Sums cells into per-group, per-run points. */
export function pointsFromCells(cells: Iterable<TrendCell>, by: TrendDimension): { points: Map<string, TrendPoint[]>; runs: number } {
  const byGroup = new Map<string, Map<string, TrendPoint>>();
  const files = new Set<string>();
  for (const c of cells) {
    files.add(c.file);
    const key = dimensionKey(c, by);
    let runs = byGroup.get(key);
    if (!runs) byGroup.set(key, (runs = new Map()));
    let p = runs.get(c.file);
    if (!p) runs.set(c.file, (p = { runId: c.runId, startedAt: c.startedAt, ...zero() }));
    addSums(p, c);
  }
  return { points: new Map([...byGroup].map(([k, m]) => [k, [...m.values()]])), runs: files.size };
}

export function computeTrend(cells: Iterable<TrendCell>, options: TrendOptions = {}): TrendResult {
  const by = options.by ?? 'build';
  const { points, runs } = pointsFromCells(cells, by);
  return trendFromPoints(points, runs, { ...options, by });
}

function pct(x: number | null): string {
  return x === null ? '–' : `${(100 * x).toFixed(1)}%`;
}

/** Human-readable trend table. */
export function formatTrend(t: TrendResult): string {
  const head = [`by ${t.by}`, 'runs', 'epochs', 'MISSED', 'resync', 'over-report', `recent ${t.window}: MISSED`, 'resync', 'over-report', 'status', 'MISSED since'];
  const rows = [head];
  for (const g of t.groups) {
    rows.push([g.key, String(g.runs), String(g.totals.epochs), pct(g.overall.missedRate), pct(g.overall.resyncRate), g.overall.overReportRatio === null ? '–' : g.overall.overReportRatio.toFixed(2), pct(g.recent.missedRate), pct(g.recent.resyncRate), g.recent.overReportRatio === null ? '–' : g.recent.overReportRatio.toFixed(2), `${g.status}${g.flags.length ? ` (${g.flags.join(', ')})` : ''}`, g.missedSince ? `${g.missedSince.runId} (${g.missedSince.startedAt})` : '']);
  }
  const widths = head.map((_, c) => Math.max(...rows.map((r) => [...r[c]].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 || c >= 9 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n');
}
