/**
 * Results history: run records in folders (`DIR/<run>/run.json` or `DIR/*.json`), with an
 * optional SQLite index (node:sqlite, built into Node ≥ 22.13 without a flag) so trend queries
 * over thousands of runs read only what changed since the last query.
 *
 * The index keeps, per record file, its mtime and size and its `TrendCell`s (run × scenario ×
 * build × driver sums). An update stats every file, re-reads only new or changed ones (a bad
 * file is remembered with its error until it changes) and forgets files that are gone; the
 * index then mirrors the folders of the last query. Queries sum cells in SQL.
 */
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { HistoryIndexError, ReportInputError } from './errors.ts';
import { readRunRecord } from './read-record.ts';
import type { ReportLogger } from './reporter.ts';
import { pointsFromCells, trendCellsOf, trendFromPoints, type TrendCell, type TrendDimension, type TrendOptions, type TrendPoint, type TrendResult } from './trend.ts';

/** Default index file name inside the (first) history folder. */
export const INDEX_FILE = '.cbt-index.sqlite';
const INDEX_VERSION = '1';

export interface RecordFile {
  path: string;
  mtimeMs: number;
  size: number;
}

/**
 * Record files in the folders: `DIR/run.json` (a run directory given directly), `DIR/*.json`,
 * and `DIR/<sub>/run.json`. Hidden entries are skipped. Sorted by path.
 */
export async function findRecordFiles(dirs: readonly string[], signal?: AbortSignal): Promise<RecordFile[]> {
  const found = new Map<string, RecordFile>();
  const add = async (p: string) => {
    try {
      const st = await stat(p);
      if (st.isFile()) found.set(p, { path: p, mtimeMs: st.mtimeMs, size: st.size });
    } catch {
      // Vanished between readdir and stat: not there.
    }
  };
  for (const d of dirs) {
    signal?.throwIfAborted();
    const dir = resolve(d);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      throw new ReportInputError(d, `cannot list the history folder: ${(error as Error).message}`, { cause: error });
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      if (e.isFile() && e.name.endsWith('.json')) await add(join(dir, e.name));
      else if (e.isDirectory()) await add(join(dir, e.name, 'run.json'));
    }
  }
  return [...found.values()].sort((a, b) => a.path.localeCompare(b.path));
}

export interface SkippedFile {
  file: string;
  error: string;
}

export interface IndexStats {
  file: string;
  /** Record files found. */
  scanned: number;
  /** Read and indexed now (new or changed). */
  indexed: number;
  /** Taken from the index as they were. */
  unchanged: number;
  /** Forgotten: no longer in the folders. */
  removed: number;
}

const CELL_COLUMNS = ['scenario', 'build', 'driver', 'jobs', 'passed', 'failed', 'infra_errors', 'epochs', 'exact', 'superset', 'resync', 'missed', 'unexpected_missed', 'changed_blocks', 'claimed_blocks'] as const;

export class HistoryIndex {
  readonly file: string;
  readonly #db: DatabaseSync;

  private constructor(file: string, db: DatabaseSync) {
    this.file = file;
    this.#db = db;
  }

  static open(file: string): HistoryIndex {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(file);
    } catch (error) {
      throw new HistoryIndexError(file, `cannot open the history index: ${(error as Error).message}`, { cause: error });
    }
    try {
      db.exec('PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;');
      db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
      const v = db.prepare("SELECT value FROM meta WHERE key = 'version'").get() as { value: string } | undefined;
      if (v?.value !== INDEX_VERSION) {
        // Another layout (or a new file): start over; the records are the source of truth.
        db.exec('DROP TABLE IF EXISTS cells; DROP TABLE IF EXISTS runs;');
        db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)").run(INDEX_VERSION);
      }
      db.exec(`
        CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, mtime_ms REAL NOT NULL, size INTEGER NOT NULL, run_id TEXT, started_at TEXT, error TEXT);
        CREATE TABLE IF NOT EXISTS cells (path TEXT NOT NULL REFERENCES runs(path) ON DELETE CASCADE, scenario TEXT NOT NULL, build TEXT NOT NULL, driver TEXT NOT NULL,
          jobs INTEGER NOT NULL, passed INTEGER NOT NULL, failed INTEGER NOT NULL, infra_errors INTEGER NOT NULL, epochs INTEGER NOT NULL,
          exact INTEGER NOT NULL, superset INTEGER NOT NULL, resync INTEGER NOT NULL, missed INTEGER NOT NULL, unexpected_missed INTEGER NOT NULL,
          changed_blocks INTEGER NOT NULL, claimed_blocks INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS cells_path ON cells (path);
      `);
    } catch (error) {
      db.close();
      throw new HistoryIndexError(file, `not a usable history index: ${(error as Error).message}`, { cause: error });
    }
    return new HistoryIndex(file, db);
  }

  /** Brings the index in line with `files`: reads new and changed records, forgets missing ones. */
  async update(files: readonly RecordFile[], options: { signal?: AbortSignal; logger?: ReportLogger } = {}): Promise<IndexStats> {
    const known = new Map<string, { mtime_ms: number; size: number }>();
    for (const row of this.#db.prepare('SELECT path, mtime_ms, size FROM runs').all() as Array<{ path: string; mtime_ms: number; size: number }>) known.set(row.path, row);
    const stats: IndexStats = { file: this.file, scanned: files.length, indexed: 0, unchanged: 0, removed: 0 };
    const changed: Array<{ f: RecordFile; cells: TrendCell[]; runId: string | null; startedAt: string | null; error: string | null }> = [];
    for (const f of files) {
      options.signal?.throwIfAborted();
      const k = known.get(f.path);
      if (k && k.mtime_ms === f.mtimeMs && k.size === f.size) {
        stats.unchanged++;
        continue;
      }
      try {
        const record = await readRunRecord(f.path, { signal: options.signal });
        changed.push({ f, cells: trendCellsOf(record, f.path), runId: record.runId, startedAt: record.startedAt, error: null });
      } catch (error) {
        if (!(error instanceof ReportInputError)) throw error;
        options.logger?.warn(`skipping ${f.path}: ${error.message}`, { file: f.path });
        changed.push({ f, cells: [], runId: null, startedAt: null, error: error.message });
      }
    }
    const present = new Set(files.map((f) => f.path));
    const gone = [...known.keys()].filter((p) => !present.has(p));
    const db = this.#db;
    const delRun = db.prepare('DELETE FROM runs WHERE path = ?');
    const insRun = db.prepare('INSERT INTO runs (path, mtime_ms, size, run_id, started_at, error) VALUES (?, ?, ?, ?, ?, ?)');
    const insCell = db.prepare(`INSERT INTO cells (path, ${CELL_COLUMNS.join(', ')}) VALUES (?${', ?'.repeat(CELL_COLUMNS.length)})`);
    // One transaction: thousands of inserts in one fsync, and a reader never sees half an update.
    db.exec('BEGIN IMMEDIATE');
    try {
      for (const p of gone) delRun.run(p);
      for (const c of changed) {
        delRun.run(c.f.path);
        insRun.run(c.f.path, c.f.mtimeMs, c.f.size, c.runId, c.startedAt, c.error);
        for (const x of c.cells) insCell.run(c.f.path, x.scenario, x.build, x.driver, x.jobs, x.passed, x.failed, x.infraErrors, x.epochs, x.exact, x.superset, x.resync, x.missed, x.unexpectedMissed, x.changedBlocks, x.claimedBlocks);
      }
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw new HistoryIndexError(this.file, `cannot update the history index: ${(error as Error).message}`, { cause: error });
    }
    stats.indexed = changed.length;
    stats.removed = gone.length;
    return stats;
  }

  /** Files the index holds as unreadable, with why. */
  skipped(): SkippedFile[] {
    return (this.#db.prepare('SELECT path, error FROM runs WHERE error IS NOT NULL ORDER BY path').all() as Array<{ path: string; error: string }>).map((r) => ({ file: r.path, error: r.error }));
  }

  /** Per group and run sums, summed by SQLite. */
  points(by: TrendDimension): { points: Map<string, TrendPoint[]>; runs: number } {
    const keyExpr = by === 'build' ? 'c.build' : by === 'driver' ? 'c.driver' : by === 'scenario' ? 'c.scenario' : "c.build || ' · ' || c.driver";
    const rows = this.#db
      .prepare(
        `SELECT ${keyExpr} AS key, r.path AS path, r.run_id AS runId, r.started_at AS startedAt,
          SUM(jobs) AS jobs, SUM(passed) AS passed, SUM(failed) AS failed, SUM(infra_errors) AS infraErrors, SUM(epochs) AS epochs,
          SUM(exact) AS exact, SUM(superset) AS superset, SUM(resync) AS resync, SUM(missed) AS missed, SUM(unexpected_missed) AS unexpectedMissed,
          SUM(changed_blocks) AS changedBlocks, SUM(claimed_blocks) AS claimedBlocks
         FROM cells c JOIN runs r ON r.path = c.path GROUP BY key, r.path`,
      )
      .all() as unknown as Array<TrendPoint & { key: string; path: string }>;
    const points = new Map<string, TrendPoint[]>();
    for (const { key, path: _path, ...p } of rows) {
      const list = points.get(key) ?? [];
      list.push({ ...p });
      points.set(key, list);
    }
    // Runs with at least one job, as pointsFromCells counts them.
    const runs = (this.#db.prepare('SELECT COUNT(DISTINCT path) AS n FROM cells').get() as { n: number }).n;
    return { points, runs };
  }

  close(): void {
    this.#db.close();
  }
}

export interface HistoryTrendOptions extends TrendOptions {
  /** Index file; false: read every record (no index). @default `<first dir>/.cbt-index.sqlite` */
  index?: string | false;
  logger?: ReportLogger;
  signal?: AbortSignal;
}

export interface HistoryTrend extends TrendResult {
  index: IndexStats | null;
  skipped: SkippedFile[];
}

/** Trend over the run records in `dirs`, through the index unless `index: false`. */
export async function historyTrend(dirs: readonly string[], options: HistoryTrendOptions = {}): Promise<HistoryTrend> {
  if (dirs.length === 0) throw new ReportInputError('trend', 'Expected at least one history folder');
  const by = options.by ?? 'build';
  const files = await findRecordFiles(dirs, options.signal);
  let idx: HistoryIndex | null = null;
  if (options.index !== false) {
    const file = options.index ?? join(resolve(dirs[0]), INDEX_FILE);
    try {
      idx = HistoryIndex.open(file);
    } catch (error) {
      // An index asked for by name must work; the default one is a cache (a read-only share is fine).
      if (options.index !== undefined || !(error instanceof HistoryIndexError)) throw error;
      options.logger?.warn(`${error.message}; reading every record instead`, { file });
    }
  }
  if (idx) {
    try {
      const stats = await idx.update(files, { signal: options.signal, logger: options.logger });
      const { points, runs } = idx.points(by);
      return { ...trendFromPoints(points, runs, { ...options, by }), index: stats, skipped: idx.skipped() };
    } finally {
      idx.close();
    }
  }
  const cells: TrendCell[] = [];
  const skipped: SkippedFile[] = [];
  for (const f of files) {
    options.signal?.throwIfAborted();
    try {
      cells.push(...trendCellsOf(await readRunRecord(f.path, { signal: options.signal }), f.path));
    } catch (error) {
      if (!(error instanceof ReportInputError)) throw error;
      options.logger?.warn(`skipping ${f.path}: ${error.message}`, { file: f.path });
      skipped.push({ file: f.path, error: error.message });
    }
  }
  const { points, runs } = pointsFromCells(cells, by);
  return { ...trendFromPoints(points, runs, { ...options, by }), index: null, skipped };
}

/** Key of `expectedDurations`: a scenario on a guest. */
export function durationKey(scenario: string, guest: string): string {
  return `${scenario}\0${guest}`;
}

export interface ExpectedDurations {
  /** `durationKey(scenario, guest)` → median milliseconds of the attempt that gave the verdict. */
  byJob: Map<string, number>;
  /** Records read. */
  runs: number;
  skipped: SkippedFile[];
}

/**
 * How long each scenario × guest took in the newest `maxRuns` records of `dirs` (by file
 * mtime): the median duration of the attempt that gave the job its verdict (passed or failed;
 * infrastructure errors and unfinished jobs say nothing about the job's length). The scheduler's
 * `cost` for its planned order. Unreadable records are skipped and listed.
 */
export async function expectedDurations(dirs: readonly string[], options: { maxRuns?: number; signal?: AbortSignal } = {}): Promise<ExpectedDurations> {
  const maxRuns = options.maxRuns ?? 20;
  if (!Number.isSafeInteger(maxRuns) || maxRuns < 1) throw new ReportInputError('history', `Expected \`maxRuns\` to be a positive integer, got \`${String(maxRuns)}\``);
  const files = (await findRecordFiles(dirs, options.signal)).sort((a, b) => b.mtimeMs - a.mtimeMs || a.path.localeCompare(b.path));
  const samples = new Map<string, number[]>();
  const skipped: SkippedFile[] = [];
  let runs = 0;
  for (const f of files) {
    if (runs >= maxRuns) break;
    options.signal?.throwIfAborted();
    let record;
    try {
      record = await readRunRecord(f.path);
    } catch (error) {
      if (!(error instanceof ReportInputError)) throw error;
      skipped.push({ file: f.path, error: error.message });
      continue;
    }
    runs++;
    for (const job of record.jobs) {
      if (job.status !== 'passed' && job.status !== 'failed') continue;
      const verdictAttempt = job.attempts.findLast((a) => a.outcome === 'ok' || a.outcome === 'error');
      const ms = verdictAttempt?.durationMs ?? job.durationMs;
      const key = durationKey(job.scenario.name, job.guest.name);
      const list = samples.get(key) ?? [];
      list.push(ms);
      samples.set(key, list);
    }
  }
  const byJob = new Map<string, number>();
  for (const [key, list] of samples) {
    list.sort((a, b) => a - b);
    const mid = list.length >> 1;
    byJob.set(key, list.length % 2 ? list[mid] : (list[mid - 1] + list[mid]) / 2);
  }
  return { byJob, runs, skipped };
}
