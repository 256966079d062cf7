/** Expected durations from the history (the scheduler's costs) and how `run` turns them into an order. */
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { durationKey, expectedDurations, RunRecorder, type AttemptInfo, type RunRecord } from '../../src/report/index.ts';
import { jobCosts } from '../../src/scenario/run.ts';
import type { Job } from '../../src/scheduler/index.ts';
import { tempDir } from '../helpers/tools.ts';

const ref = (scenario: string, n: number) => ({ id: `${scenario}#${n + 1}`, scenario: { name: scenario, file: `${scenario}.yaml` }, guest: { name: 'linux-ref', os: { family: 'linux' as const, build: 'Linux 6.1' }, tracker: { name: 'dm-era', decoder: 'dm-era', version: '6.1' } }, repeat: n + 1, seed: n });
const at = new Date(0).toISOString();
const ok = (ms: number): AttemptInfo => ({ host: 'local', attempt: 1, startedAt: at, durationMs: ms, outcome: 'ok' });

/** A record whose jobs are [scenario, status, attempts]. */
async function record(runId: string, jobs: Array<[string, 'passed' | 'failed' | 'infra-error', AttemptInfo[]]>): Promise<RunRecord> {
  const refs = jobs.map(([s], i) => ref(s, i));
  const rec = new RunRecorder({ runId, startedAt: at, harness: { version: 'x' }, seed: 1, hosts: [], jobs: refs }, {});
  for (const [i, [, status, attempts]] of jobs.entries()) {
    await rec.jobBegin(refs[i], at);
    await rec.jobEnd(refs[i].id, { status, attempts, endedAt: new Date(99_000).toISOString() });
  }
  return rec.end(new Date(100_000).toISOString());
}

test('median duration of the verdict attempt per scenario × guest over the newest runs; infra errors and bad files say nothing', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-durations-');
  t.teardown(cleanup);
  const runs: Array<[string, RunRecord]> = [
    ['r1.json', await record('r1', [['a', 'passed', [ok(100)]], ['b', 'passed', [ok(50)]]])],
    ['r2.json', await record('r2', [['a', 'failed', [ok(300)]], ['b', 'infra-error', [{ ...ok(9_000), outcome: 'infrastructure' }]]])],
    ['r3.json', await record('r3', [['a', 'passed', [{ ...ok(10_000), outcome: 'infrastructure' }, { ...ok(200), attempt: 2 }]], ['c', 'passed', [{ ...ok(70), outcome: 'superseded' }, { ...ok(60), attempt: 2, speculative: true }]]])],
  ];
  for (const [i, [name, r]] of runs.entries()) {
    await writeFile(join(dir, name), JSON.stringify(r));
    await utimes(join(dir, name), 1000 + i, 1000 + i); // r3 newest
  }
  await mkdir(join(dir, 'broken'));
  await writeFile(join(dir, 'broken', 'run.json'), '{"schemaVersion": 1, "jobs": [');
  await utimes(join(dir, 'broken', 'run.json'), 2000, 2000);

  const all = await expectedDurations([dir]);
  t.is(all.runs, 3, JSON.stringify(all.skipped));
  t.is(all.skipped.length, 1);
  t.regex(all.skipped[0].file, /broken/);
  t.deepEqual(Object.fromEntries(all.byJob), {
    [durationKey('a', 'linux-ref')]: 200, // 100, 300 and the 200 of the attempt that gave the verdict (not the failed 10 s)
    [durationKey('b', 'linux-ref')]: 50, // the infra-error run says nothing
    [durationKey('c', 'linux-ref')]: 60, // the backup copy's time, not the superseded one
  });
  const newest = await expectedDurations([dir], { maxRuns: 2 });
  t.is(newest.runs, 2);
  t.is(newest.byJob.get(durationKey('a', 'linux-ref')), 250, 'r3 and r2 only: median of 200 and 300');
  t.false(newest.byJob.has(durationKey('b', 'linux-ref')));
  await t.throwsAsync(expectedDurations([dir], { maxRuns: 0 }), { message: /maxRuns/ });
  await t.throwsAsync(expectedDurations([join(dir, 'nope')]), { message: /cannot list the history folder/ });
});

test('jobCosts: longest first when anything is known; an unknown job counts as the longest known; nothing known keeps the input order', (t) => {
  const jobs = (): Array<Job<string>> => ['a', 'b', 'c'].map((s) => ({ id: s, payload: s }));
  const some = jobs();
  t.is(jobCosts(some, (j) => ({ a: 100, b: 400 })[j.payload]), 'cost');
  t.deepEqual(some.map((j) => j.cost), [100, 400, 400]);
  const none = jobs();
  t.is(jobCosts(none, () => undefined), 'input');
  t.deepEqual(none.map((j) => j.cost), [undefined, undefined, undefined]);
  const bad = jobs();
  t.is(jobCosts(bad, (j) => (j.payload === 'a' ? Number.NaN : j.payload === 'b' ? -5 : 0)), 'cost');
  t.deepEqual(bad.map((j) => j.cost), [0, 0, 0]);
});
