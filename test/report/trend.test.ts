/**
 * Trend over a results history of ~2,000 generated run records: the SQLite index gives the same
 * answer as reading every record, finds the regressed build and driver, and is reused (only new,
 * changed or removed files are touched on the next query).
 */
import { mkdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { BUILDS, makeRunRecord, SCENARIOS } from '../helpers/report-fixtures.ts';
import { computeTrend, historyTrend, HistoryIndexError, INDEX_FILE, trendCellsOf, type RunRecord, type TrendResult } from '../../src/report/index.ts';
import { reportCli } from '../helpers/report-cli.ts';
import { tempDir } from '../helpers/tools.ts';

const RUNS = 2000;
const REGRESSION_AT = 1500;
const DAY = 86_400_000;

/** Nightly runs: 24H2 with driver 2.4.1 (from run 1500 on) misses blocks in every epoch after a fault. */
async function history(dir: string, runs: number): Promise<RunRecord[]> {
  const records: RunRecord[] = [];
  const t0 = Date.parse('2020-01-01T02:00:00.000Z');
  for (let i = 0; i < runs; i++) {
    const driver = i >= REGRESSION_AT ? '2.4.1' : '2.4.0';
    const record = await makeRunRecord({
      seed: i + 1,
      runId: `night-${String(i).padStart(4, '0')}`,
      startedAt: new Date(t0 + i * DAY).toISOString(),
      builds: [BUILDS[0], BUILDS[3]],
      scenarios: SCENARIOS.slice(1, 3),
      driverVersion: driver,
      repeats: 1,
      epochsPerJob: 2,
      eventsPerJob: 2,
      infraRate: 0.01,
      missRate: (build, drv) => (build.includes('24H2') && drv === '2.4.1' ? 1 : 0),
    });
    records.push(record);
    // Both layouts of a history folder: run directories and bare record files.
    if (i % 2) {
      await mkdir(join(dir, record.runId));
      await writeFile(join(dir, record.runId, 'run.json'), JSON.stringify(record));
    } else await writeFile(join(dir, `${record.runId}.json`), JSON.stringify(record));
  }
  return records;
}

function strip(t: TrendResult): TrendResult {
  return { by: t.by, window: t.window, runs: t.runs, groups: t.groups };
}

let shared: { dir: string; records: RunRecord[]; cleanup: () => Promise<void> } | undefined;
async function fixture() {
  if (!shared) {
    const { dir, cleanup } = await tempDir('cbt-trend-');
    shared = { dir, cleanup, records: await history(dir, RUNS) };
  }
  return shared;
}
test.after.always(async () => {
  await shared?.cleanup();
});

test.serial('trend over 2,000 runs: index = direct read = in-memory; the regressed build and driver are found, with the run it started', async (t) => {
  const { dir, records } = await fixture();
  const warnings: string[] = [];
  const logger = { warn: (m: string) => void warnings.push(m) };
  for (const by of ['build', 'driver', 'build+driver', 'scenario'] as const) {
    const direct = await historyTrend([dir], { by, index: false, series: true });
    const indexed = await historyTrend([dir], { by, series: true, logger });
    const memory = computeTrend(records.flatMap((r) => trendCellsOf(r, r.runId)), { by, series: true });
    t.deepEqual(strip(indexed), strip(direct), by);
    t.deepEqual(strip(direct), strip(memory), by);
    t.is(direct.runs, RUNS);
  }
  t.deepEqual(warnings, []);
  const byBuild = await historyTrend([dir], { by: 'build' });
  const w24 = byBuild.groups.find((g) => g.key.includes('24H2'))!;
  t.is(w24.status, 'regressed');
  t.deepEqual(w24.flags.includes('missed-up'), true);
  t.is(w24.missedSince?.runId, `night-${REGRESSION_AT}`);
  t.is(w24.earlier?.missedRate !== null && w24.earlier!.missedRate! < w24.recent.missedRate!, true);
  t.is(byBuild.groups[0].key, w24.key, 'regressed groups come first');
  const linux = byBuild.groups.find((g) => g.key.startsWith('Linux'))!;
  t.is(linux.totals.unexpectedMissed, 0);
  t.is(linux.missedSince, null);
  t.false(linux.flags.includes('missed-up'), 'resync noise may move, MISSED may not');
  const byDriver = await historyTrend([dir], { by: 'driver' });
  t.deepEqual(byDriver.groups.map((g) => g.key).sort(), ['cbtf 2.4.0', 'cbtf 2.4.1', 'dm-era 6.1.0-28-amd64']);
  const d241 = byDriver.groups.find((g) => g.key === 'cbtf 2.4.1')!;
  const d240 = byDriver.groups.find((g) => g.key === 'cbtf 2.4.0')!;
  t.is(d241.runs, RUNS - REGRESSION_AT);
  t.is(d240.totals.unexpectedMissed, 0);
  // Every 24H2 epoch of 2.4.1 (jobs that ran) is MISSED.
  t.is(d241.totals.unexpectedMissed, d241.totals.epochs);
  t.is(d241.missedSince?.runId, `night-${REGRESSION_AT}`);
});

test.serial('the index is reused: nothing re-read when nothing changed; one changed, one removed, one bad file', async (t) => {
  const { dir, records } = await fixture();
  const first = await historyTrend([dir], { by: 'build' });
  t.truthy(first.index);
  const again = await historyTrend([dir], { by: 'build' });
  t.deepEqual({ ...again.index!, file: '' }, { file: '', scanned: RUNS, indexed: 0, unchanged: RUNS, removed: 0 });
  t.is(again.index!.file, join(dir, INDEX_FILE));
  // Change one record (24H2 loses its regression in the last run) and remove another.
  const last = structuredClone(records[RUNS - 1]);
  for (const j of last.jobs) for (const e of j.epochs) if (e.verdict === 'MISSED') Object.assign(e, { verdict: 'SUPERSET', acceptable: true, missedBlocks: 0, missed: [], missedRanges: 0 });
  const lastFile = (RUNS - 1) % 2 ? join(dir, last.runId, 'run.json') : join(dir, `${last.runId}.json`);
  await writeFile(lastFile, JSON.stringify(last));
  await utimes(lastFile, new Date(), new Date(Date.now() + 5000));
  await rm(join(dir, `${records[0].runId}.json`));
  await writeFile(join(dir, 'broken.json'), '{"schemaVersion": 1');
  const warnings: string[] = [];
  const after = await historyTrend([dir], { by: 'build', logger: { warn: (m) => void warnings.push(m) } });
  t.deepEqual({ ...after.index!, file: '' }, { file: '', scanned: RUNS, indexed: 2, unchanged: RUNS - 2, removed: 1 });
  t.is(after.runs, RUNS - 1);
  t.is(after.skipped.length, 1);
  t.regex(after.skipped[0].error, /broken\.json: not JSON/);
  t.is(warnings.length, 1);
  const w24 = after.groups.find((g) => g.key.includes('24H2'))!;
  t.is(w24.missedSince, null, 'the last run has no MISSED any more');
  // The bad file is remembered: not re-read until it changes.
  const once = await historyTrend([dir], { by: 'build' });
  t.is(once.index!.indexed, 0);
  t.is(once.skipped.length, 1);
  const direct = await historyTrend([dir], { by: 'build', index: false });
  t.deepEqual(strip(once), strip(direct));
  await rm(join(dir, 'broken.json'));
});

test('CLI: report trend — text and JSON, --fail-on-regression, bad input', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-trend-cli-');
  t.teardown(cleanup);
  const t0 = Date.parse('2024-06-01T02:00:00.000Z');
  for (let i = 0; i < 12; i++) {
    const r = await makeRunRecord({ seed: 100 + i, runId: `n${i}`, startedAt: new Date(t0 + i * DAY).toISOString(), builds: [BUILDS[2], BUILDS[3]], scenarios: SCENARIOS.slice(1, 2), driverVersion: i >= 8 ? '2.4.1' : '2.4.0', repeats: 1, infraRate: 0, missRate: (b, d) => (b.includes('24H2') && d === '2.4.1' ? 1 : 0) });
    await writeFile(join(dir, `n${i}.json`), JSON.stringify(r));
  }
  const json = await reportCli(['trend', dir, '--json', '--window', '4']);
  t.is(json.exitCode, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as { runs: number; trends: Record<string, Array<{ key: string; status: string; missedSince: { runId: string } | null }>>; index: { indexed: number } };
  t.is(doc.runs, 12);
  t.is(doc.index.indexed, 12);
  t.deepEqual(Object.keys(doc.trends), ['build', 'driver']);
  const w24 = doc.trends.build.find((g) => g.key.includes('24H2'))!;
  t.is(w24.status, 'regressed');
  t.is(w24.missedSince?.runId, 'n8');
  t.is(doc.trends.driver.find((g) => g.key === 'cbtf 2.4.1')!.status, 'new');
  const text = await reportCli(['trend', dir, '--by', 'build', '--window', '4', '--fail-on-regression']);
  t.is(text.exitCode, 1);
  t.regex(text.stdout, /index .*: 0 read, 12 unchanged/);
  t.regex(text.stdout, /Windows 11 24H2 26100\.2605 .* regressed \(missed-up\)\s+n8/);
  t.regex(text.stderr, /regressed: build Windows 11 24H2/);
  const noIndex = await reportCli(['trend', dir, '--no-index', '--by', 'driver', '--json']);
  t.is(noIndex.exitCode, 0);
  t.is((JSON.parse(noIndex.stdout) as { index: unknown }).index, null);
  t.is((await reportCli(['trend', join(dir, 'missing')])).exitCode, 2);
  t.is((await reportCli(['trend', dir, '--by', 'colour'])).exitCode, 2);
});

test('an unusable default index falls back to reading the records (with a warning); a named one is an error', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-trend-ro-');
  t.teardown(cleanup);
  await writeFile(join(dir, 'a.json'), JSON.stringify(await makeRunRecord({ seed: 7, repeats: 1 })));
  // A directory where the index file should be: SQLite cannot open it.
  await mkdir(join(dir, INDEX_FILE));
  const warnings: string[] = [];
  const r = await historyTrend([dir], { logger: { warn: (m) => void warnings.push(m) } });
  t.is(r.index, null);
  t.is(r.runs, 1);
  t.is(warnings.length, 1);
  t.regex(warnings[0], /reading every record instead/);
  await t.throwsAsync(historyTrend([dir], { index: join(dir, INDEX_FILE) }), { instanceOf: HistoryIndexError, message: /cannot open the history index/ });
});
