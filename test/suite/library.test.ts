/**
 * The scenario library end to end, under TCG on the reference guest: every scenario must get the
 * verdicts it expects; the known-bad trackers must make the run fail (exit 1) with the verdicts
 * that catch them. This is the slow suite (`npm run test:suite`); it runs after the unit tests.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { readRunRecord, type RunRecord } from '../../src/report/index.ts';
import { ROOT, runCli, tempDir } from '../helpers/tools.ts';

const SUITE_HOSTS = join(ROOT, 'test/suite/hosts.suite.yaml');

/** One `run` of `files`; its output folder lives until the test ends. */
async function run(t: ExecutionContext, files: string[], extra: string[] = []): Promise<{ exitCode: number; record: RunRecord; stderr: string; out: string }> {
  const { dir, cleanup } = await tempDir('cbt-suite-');
  t.teardown(cleanup);
  const r = await runCli(['run', ...files, '--out', dir, '--json', '--accel', 'tcg', '--seed', '20261123', '--hosts', SUITE_HOSTS, ...extra], { timeout: 25 * 60_000 });
  if (!r.stdout.trim().startsWith('{')) throw new Error(`no run record (exit ${r.exitCode}): ${r.stderr.slice(-3000)}`);
  const record = JSON.parse(r.stdout) as RunRecord;
  // The record on disk is valid against the published schema (readRunRecord validates) and is the one printed.
  const onDisk = await readRunRecord(dir);
  if (onDisk.runId !== record.runId) throw new Error(`run.json holds ${onDisk.runId}, stdout ${record.runId}`);
  return { exitCode: r.exitCode, record, stderr: r.stderr, out: dir };
}

test.serial('the scenario library passes with its expected verdicts', async (t) => {
  const files = (await readdir(join(ROOT, 'scenarios'))).filter((f) => f.endsWith('.yaml')).map((f) => join(ROOT, 'scenarios', f));
  t.true(files.length >= 13);
  const { exitCode, record, stderr, out } = await run(t, files);
  for (const j of record.jobs) {
    t.log(`${j.scenario.name}: ${j.status} ${j.epochs.map((e) => `${e.verdict}(${e.changedBlocks}/${e.claimedBlocks})`).join(' ')} ${Math.round(j.durationMs / 1000)}s${j.error ? ` — ${j.error}` : ''}`);
  }
  t.is(exitCode, 0, stderr.slice(-2000));
  t.is(record.jobs.length, files.length);
  for (const j of record.jobs) {
    t.is(j.status, 'passed', `${j.scenario.name}: ${j.error ?? ''}`);
    t.true(j.epochs.length >= 1, `${j.scenario.name} verified nothing`);
    for (const e of j.epochs) t.true(e.acceptable, `${j.scenario.name} epoch ${e.index}: ${e.verdict}`);
    t.is(j.accel?.used, 'tcg');
  }
  const by = new Map(record.jobs.map((j) => [j.scenario.name, j]));
  // Specific expectations beyond "acceptable".
  t.deepEqual(by.get('two-epochs')?.epochs.map((e) => e.verdict), ['EXACT', 'EXACT']);
  t.is(by.get('identical-rewrite')?.epochs[0].verdict, 'SUPERSET');
  t.is(by.get('identical-rewrite')?.epochs[0].changedBlocks, 0);
  t.is(by.get('qemu-bitmap-clean-shutdown')?.epochs[0].verdict, 'EXACT');
  t.is(by.get('qemu-bitmap-powercut')?.epochs[0].verdict, 'RESYNC');
  t.is(by.get('clean-reboot')?.epochs[0].claim.state, 'valid');
  // The record names the host, seed and the artifacts.
  for (const j of record.jobs) {
    t.is(j.host?.name, 'local');
    // The timeline artifact is the file the record names, holding the job's timeline: the same
    // events in the same order as the record's (which adds verdict events of its own as it
    // records each epoch, and clips long texts: events are compared by time and kind).
    const file = j.artifacts.timeline;
    t.regex(file ?? '', /^jobs\/[^/]+\/timeline\.json$/, `${j.scenario.name}: ${String(file)}`);
    const onDisk = JSON.parse(await readFile(join(out, file!), 'utf8')) as Array<{ at: string; kind: string }>;
    t.true(onDisk.length > 0, `${j.scenario.name}: ${file} is empty`);
    const key = (e: { at: string; kind: string }) => `${e.at} ${e.kind}`;
    t.deepEqual(onDisk.filter((e) => e.kind !== 'verdict').map(key), j.timeline.filter((e) => e.kind !== 'verdict').map(key), `${j.scenario.name}: ${file} is not the job's timeline`);
    t.is(onDisk.filter((e) => e.kind === 'verdict').length, j.epochs.length, `${j.scenario.name}: one verdict event per epoch in ${file}`);
    t.true(j.timeline.some((e) => e.kind === 'guest'));
    t.true(j.timeline.some((e) => e.kind === 'verdict'));
  }
});

test.serial('known-bad trackers are caught: the run fails with MISSED and RESYNC, exit code 1', async (t) => {
  const dir = join(ROOT, 'scenarios', 'known-bad');
  const files = (await readdir(dir)).map((f) => join(dir, f));
  const { exitCode, record } = await run(t, files);
  t.is(exitCode, 1);
  const by = new Map(record.jobs.map((j) => [j.scenario.name, j]));
  const drop = by.get('known-bad-dm-era-drop-writes');
  t.is(drop?.status, 'failed');
  t.is(drop?.epochs[0].verdict, 'MISSED');
  t.true((drop?.epochs[0].missedBlocks ?? 0) > 0);
  const bitmap = by.get('known-bad-qemu-bitmap-powercut-exact');
  t.is(bitmap?.status, 'failed');
  t.is(bitmap?.epochs[0].verdict, 'RESYNC');
  // Declared known-bad (--expect-fail), the same run passes: both were caught.
  const caught = await run(t, files, ['--expect-fail']);
  t.is(caught.exitCode, 0);
  t.true(caught.record.jobs.every((j) => j.expectedStatus === 'failed' && j.status === 'failed'));
});
