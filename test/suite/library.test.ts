/**
 * The scenario library end to end, under TCG on the reference guest: every scenario must get the
 * verdicts it expects; the known-bad trackers must make the run fail (exit 1) with the verdicts
 * that catch them. This is the slow suite (`npm run test:suite`); it runs after the unit tests.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { suiteRun } from '../helpers/suite-run.ts';
import { ROOT } from '../helpers/tools.ts';

test.serial('the scenario library passes with its expected verdicts', async (t) => {
  const files = (await readdir(join(ROOT, 'scenarios'))).filter((f) => f.endsWith('.yaml')).map((f) => join(ROOT, 'scenarios', f));
  t.true(files.length >= 13);
  const { exitCode, record, stderr, out } = await suiteRun(t, files);
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
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).map((f) => join(dir, f));
  t.true(files.length >= 7);
  const { exitCode, record } = await suiteRun(t, files);
  for (const j of record.jobs) {
    t.log(`${j.scenario.name}: ${j.status} ${j.epochs.map((e) => `${e.verdict}(${e.changedBlocks}/${e.claimedBlocks} missed ${e.missedBlocks})`).join(' ')} ${Math.round(j.durationMs / 1000)}s${j.error ? ` — ${j.error}` : ''}`);
  }
  t.is(exitCode, 1);
  t.is(record.jobs.length, files.length);
  const by = new Map(record.jobs.map((j) => [j.scenario.name, j]));
  // Every tracker of the shutdown-order catalogue is caught by the verdict its bug gives, not by
  // a failing step: the job failed, the last epoch is MISSED with missed blocks, every step ran.
  for (const name of ['cbtf-ref-flush-before-fs', 'cbtf-ref-stale-clean', 'dm-era-late-attach', 'cbtf-ref-resize-blind', 'cbtf-ref-no-persist-offline']) {
    const j = by.get(`known-bad-${name}`);
    t.is(j?.status, 'failed', name);
    t.true(j?.steps.every((s) => s.ok || s.kind === 'verify'), `${name}: a step other than verify failed: ${j?.error}`);
    t.is(j?.epochs.at(-1)?.verdict, 'MISSED', name);
    t.true((j?.epochs.at(-1)?.missedBlocks ?? 0) > 0, name);
  }
  const drop = by.get('known-bad-dm-era-drop-writes');
  t.is(drop?.status, 'failed');
  t.is(drop?.epochs[0].verdict, 'MISSED');
  t.true((drop?.epochs[0].missedBlocks ?? 0) > 0);
  const bitmap = by.get('known-bad-qemu-bitmap-powercut-exact');
  t.is(bitmap?.status, 'failed');
  t.is(bitmap?.epochs[0].verdict, 'RESYNC');
  // Declared known-bad (--expect-fail), a run of them passes: they were caught.
  const caught = await suiteRun(t, files.filter((f) => /drop-writes|expect-exact/.test(f)), ['--expect-fail']);
  t.is(caught.exitCode, 0);
  t.true(caught.record.jobs.every((j) => j.expectedStatus === 'failed' && j.status === 'failed'));
});
