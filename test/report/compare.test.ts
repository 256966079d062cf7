/** compare: per scenario × build, what got worse and better; the CLI's exit codes and JSON. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { compareRuns, computeTotals, evaluateRun, type Comparison, type RunRecord } from '../../src/report/index.ts';
import { makeRunRecord } from '../helpers/report-fixtures.ts';
import { reportCli } from '../helpers/report-cli.ts';
import { tempDir } from '../helpers/tools.ts';

const QUIET = { threshold: 100, resyncThreshold: 1 };

function kinds(c: Comparison, list: 'worse' | 'better' | 'notes'): string[] {
  return [...new Set(c[list].map((x) => `${x.kind} ${x.scenario} @ ${x.build}`))].sort();
}

function retotal(r: RunRecord): RunRecord {
  r.totals = computeTotals(r.jobs);
  return r;
}

test('driver 2.4.0 → 2.4.1: new MISSED exactly where the record has unexpected MISSED, nothing else worse; the reverse is better', async (t) => {
  const base = await makeRunRecord({ seed: 21, driverVersion: '2.4.0', infraRate: 0, missRate: () => 0 });
  const cur = await makeRunRecord({ seed: 22, driverVersion: '2.4.1', infraRate: 0 });
  const c = compareRuns(base, cur, QUIET);
  const expected = new Set(cur.jobs.filter((j) => j.epochs.some((e) => e.verdict === 'MISSED')).map((j) => `new-missed ${j.scenario.name} @ ${j.guest.os.build}`));
  t.true(expected.size > 0);
  t.deepEqual(kinds(c, 'worse').filter((k) => k.startsWith('new-missed')), [...expected].sort());
  t.true(c.worse.every((w) => w.kind === 'new-missed' || w.kind === 'new-failure'), JSON.stringify(c.worse.map((w) => w.kind)));
  t.true(c.worse.every((w) => w.build.includes('24H2')), 'only 24H2 misses with 2.4.1');
  const back = compareRuns(cur, base, QUIET);
  t.deepEqual(back.worse, []);
  t.deepEqual(kinds(back, 'better').filter((k) => k.startsWith('missed-fixed')), [...expected].map((k) => k.replace('new-missed', 'missed-fixed')).sort());
});

test('a record compared with itself: nothing worse, nothing better', async (t) => {
  const r = await makeRunRecord({ seed: 23, driverVersion: '2.4.1' });
  const c = compareRuns(r, structuredClone(r));
  t.deepEqual(c.worse, []);
  t.deepEqual(c.better, []);
  t.true(c.cells.every((x) => x.status === 'same'));
});

test('resync rate and over-report ratio: thresholds decide; added and removed cells are notes; a new cell with MISSED is worse', async (t) => {
  const base = await makeRunRecord({ seed: 24, missRate: () => 0, resyncRate: () => 0, infraRate: 0, repeats: 1 });
  const key = (j: RunRecord['jobs'][number]) => j.scenario.name === 'hard-reset' && j.guest.name === 'win11-23h2';
  // One of three epochs becomes RESYNC: resync rate 0 → 33 %.
  const resync = structuredClone(base);
  const e = resync.jobs.find(key)!.epochs[0];
  Object.assign(e, { verdict: 'RESYNC', claim: { state: 'lost', reason: 'generation changed' }, overReportRatio: null, claimedBlocks: 0, extraBlocks: 0 });
  retotal(resync);
  t.deepEqual(kinds(compareRuns(base, resync), 'worse'), ['resync-up hard-reset @ Windows 11 23H2 22631.3007']);
  t.deepEqual(compareRuns(base, resync, { resyncThreshold: 0.5 }).worse, [], 'below the resync threshold');
  // Over-report: claimed blocks × 1.5 in every epoch of the cell.
  const over = structuredClone(base);
  for (const ep of over.jobs.find(key)!.epochs) ep.claimedBlocks = Math.round(ep.claimedBlocks * 1.5);
  t.deepEqual(kinds(compareRuns(base, over, { threshold: 0.1 }), 'worse'), ['over-report-up hard-reset @ Windows 11 23H2 22631.3007']);
  t.deepEqual(compareRuns(base, over, { threshold: 0.6 }).worse, []);
  t.deepEqual(kinds(compareRuns(over, base, { threshold: 0.1 }), 'better'), ['over-report-down hard-reset @ Windows 11 23H2 22631.3007']);
  // A scenario only in one run.
  const fewer = structuredClone(base);
  fewer.jobs = fewer.jobs.filter((j) => j.scenario.name !== 'hot-unplug');
  retotal(fewer);
  const removed = compareRuns(base, fewer);
  t.deepEqual(removed.worse, []);
  t.true(removed.notes.some((n) => n.kind === 'removed' && n.scenario === 'hot-unplug'));
  const added = compareRuns(fewer, base);
  t.deepEqual(added.worse, []);
  t.true(added.notes.some((n) => n.kind === 'added'));
  const addedBad = structuredClone(base);
  const j = addedBad.jobs.find((x) => x.scenario.name === 'hot-unplug')!;
  Object.assign(j.epochs[0], { verdict: 'MISSED', acceptable: false, missedBlocks: 3, missed: [[1, 3]], missedRanges: 1 });
  j.status = 'failed';
  retotal(addedBad);
  t.deepEqual(kinds(compareRuns(fewer, addedBad), 'worse'), [`new-failure hot-unplug @ ${j.guest.os.build}`, `new-missed hot-unplug @ ${j.guest.os.build}`]);
  t.throws(() => compareRuns(base, base, { threshold: -1 }), { message: /non-negative/ });
});

test('evaluateRun: known-bad caught passes, not caught fails; unexpected MISSED fails; infrastructure exit 2 or a note; regressions fail', async (t) => {
  const policy = { failOn: { missed: 'unexpected' as const, regression: true, infraError: true } };
  const caught = await makeRunRecord({ seed: 25, missRate: () => 0, infraRate: 0, knownBad: 'caught', repeats: 1 });
  t.is(caught.totals.expectedFailures, 1);
  t.is(caught.totals.unexpectedMissed, 0, 'the known-bad MISSED is expected');
  t.deepEqual(evaluateRun(caught, policy, compareRuns(caught, caught)), { exitCode: 0, problems: [], notes: [] });
  const notCaught = await makeRunRecord({ seed: 25, missRate: () => 0, infraRate: 0, knownBad: 'not-caught', repeats: 1 });
  t.is(notCaught.totals.unexpectedPasses, 1);
  const ev = evaluateRun(notCaught, policy, null);
  t.is(ev.exitCode, 1);
  t.regex(ev.problems[0], /known-bad-drop-writes\/linux-ref\/1: a known-bad tracker passed; the harness did not catch it/);
  t.deepEqual(ev.notes, ['no baseline to compare with: regressions not checked']);
  const missed = await makeRunRecord({ seed: 26, driverVersion: '2.4.1', infraRate: 0, repeats: 1 });
  const em = evaluateRun(missed, policy, null);
  t.is(em.exitCode, 1);
  t.true(em.problems.some((p) => /MISSED in epoch \d+/.test(p)));
  const infra = await makeRunRecord({ seed: 27, missRate: () => 0, infraRate: 0.3, repeats: 1 });
  t.true(infra.totals.infraErrors > 0);
  t.is(evaluateRun(infra, policy, null).exitCode, 2);
  const relaxed = evaluateRun(infra, { failOn: { missed: 'unexpected', regression: false, infraError: false } }, null);
  t.is(relaxed.exitCode, 0);
  t.regex(relaxed.notes[0], /infrastructure errors/);
  const worse = evaluateRun(missed, { failOn: { missed: 'never', regression: true, infraError: true } }, compareRuns(caught, missed));
  t.is(worse.exitCode, 1);
  t.true(worse.problems.some((p) => p.startsWith('worse than baseline')));
});

test('CLI: report compare — exit 1 and JSON when worse, 0 when not, 2 on bad input naming the file', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-compare-');
  t.teardown(cleanup);
  const base = await makeRunRecord({ seed: 21, driverVersion: '2.4.0', infraRate: 0, missRate: () => 0, repeats: 1 });
  const cur = await makeRunRecord({ seed: 21, driverVersion: '2.4.1', infraRate: 0, repeats: 1 });
  await mkdir(join(dir, 'base'));
  await writeFile(join(dir, 'base/run.json'), JSON.stringify(base));
  await writeFile(join(dir, 'cur.json'), JSON.stringify(cur));
  const worse = await reportCli(['compare', join(dir, 'base'), join(dir, 'cur.json'), '--json', '--threshold', '100', '--resync-threshold', '1']);
  t.is(worse.exitCode, 1, worse.stderr);
  const doc = JSON.parse(worse.stdout) as Comparison;
  t.is(doc.baseline.runId, base.runId);
  t.true(doc.worse.some((w) => w.kind === 'new-missed' && w.build.includes('24H2')));
  t.regex(worse.stderr, /got worse/);
  const same = await reportCli(['compare', join(dir, 'cur.json'), join(dir, 'cur.json')]);
  t.is(same.exitCode, 0, same.stderr);
  t.regex(same.stdout, /nothing worse/);
  const text = await reportCli(['compare', join(dir, 'base'), join(dir, 'cur.json'), '--threshold', '100', '--resync-threshold', '1']);
  t.regex(text.stdout, /WORSE \(\d+\):\n {2}.*on Windows 11 24H2 26100\.2605: new MISSED/);
  const missing = await reportCli(['compare', join(dir, 'base'), join(dir, 'nope')]);
  t.is(missing.exitCode, 2);
  t.true(missing.stderr.includes(join(dir, 'nope')));
  await writeFile(join(dir, 'bad.json'), '{"schemaVersion": 1, "runId": 3}');
  const bad = await reportCli(['compare', join(dir, 'bad.json'), join(dir, 'cur.json')]);
  t.is(bad.exitCode, 2);
  t.regex(bad.stderr, /bad\.json: not a valid run record/);
  const usage = await reportCli(['compare', join(dir, 'base'), join(dir, 'cur.json'), '--threshold', 'lots']);
  t.is(usage.exitCode, 2);
});
