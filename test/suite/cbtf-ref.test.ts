/**
 * The correct reference CBTF tracker (`cbtf-ref`) over its scenario library, under TCG on the
 * reference guest: each scenario gets the verdict a correct Windows filter must give (WINDOWS.md,
 * docs/cbtf.md "The protocol"); the claims are read from real CBTF files by the plain `cbtf`
 * decoder, and the timeline shows the guest's shutdown order.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { suiteRun } from '../helpers/suite-run.ts';
import { ROOT } from '../helpers/tools.ts';

/** The verdict of each scenario's last epoch, as the protocol predicts for a correct driver. */
const PREDICTED: Record<string, ReadonlyArray<string>> = {
  'cbtf-ref-files-reboot': ['EXACT', 'SUPERSET'],
  'cbtf-ref-ntfs-files-shutdown-start': ['EXACT', 'SUPERSET'],
  'cbtf-ref-tracks-own-file': ['SUPERSET'],
  'cbtf-ref-crashes': ['RESYNC'],
  'cbtf-ref-files-powercut': ['RESYNC'],
  'cbtf-ref-offline-disable': ['EXACT', 'SUPERSET'],
  'cbtf-ref-unplug-replug': ['RESYNC'],
  'cbtf-ref-resize': ['EXACT', 'SUPERSET'],
  'cbtf-ref-ext4-resize-files': ['EXACT', 'SUPERSET'],
  'cbtf-ref-two-epochs': ['EXACT'],
};

test.serial('the correct cbtf-ref gets the predicted verdict in every scenario', async (t) => {
  const dir = join(ROOT, 'scenarios', 'cbtf-ref');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).map((f) => join(dir, f));
  const { exitCode, record, stderr } = await suiteRun(t, files);
  for (const j of record.jobs) {
    t.log(`${j.scenario.name}: ${j.status} ${j.epochs.map((e) => `${e.verdict}(${e.changedBlocks}/${e.claimedBlocks} missed ${e.missedBlocks})`).join(' ')} ${Math.round(j.durationMs / 1000)}s${j.error ? ` — ${j.error}` : ''}`);
  }
  t.is(exitCode, 0, stderr.slice(-2000));
  t.deepEqual(record.jobs.map((j) => j.scenario.name).sort(), Object.keys(PREDICTED).sort(), 'every library scenario has a prediction');
  for (const j of record.jobs) {
    t.is(j.status, 'passed', `${j.scenario.name}: ${j.error ?? ''}`);
    t.true(j.epochs.length >= 1, `${j.scenario.name} verified nothing`);
    for (const e of j.epochs) t.true(PREDICTED[j.scenario.name].includes(e.verdict), `${j.scenario.name} epoch ${e.index}: ${e.verdict}`);
    t.deepEqual([j.guest.tracker.name, j.guest.tracker.decoder], ['cbtf-ref', 'cbtf'], j.scenario.name);
    t.true(j.epochs.every((e) => e.missedBlocks === 0), `${j.scenario.name}: a correct tracker missed blocks`);
  }
  const by = new Map(record.jobs.map((j) => [j.scenario.name, j]));
  // The orderly paths persisted a clean file with the generation of the checkpoint.
  const reboot = by.get('cbtf-ref-files-reboot')!;
  t.is(reboot.epochs[0].claim.state, 'valid');
  t.true(reboot.epochs[0].changedBlocks > 0, 'the file workload changed blocks');
  // The reboot went through the Windows shutdown order, in order, with the hook after the unmount.
  const phases = reboot.timeline.flatMap((e) => (e.kind === 'phase' ? [e.phase] : []));
  t.deepEqual(phases.slice(0, 4), ['pre-fs', 'fs-unmounted', 'post-fs', 'power-off']);
  // offline and disable ran their own hooks.
  const od = by.get('cbtf-ref-offline-disable')!.timeline.flatMap((e) => (e.kind === 'phase' ? [e.phase] : []));
  t.true(od.includes('offline') && od.includes('remove'), od.join(' '));
  // A crash left CLEAN clear: lost for that reason, not another; and the writes were durable (the truth has them).
  for (const e of by.get('cbtf-ref-crashes')!.epochs) {
    t.regex(e.claim.reason ?? '', /CLEAN is not set|TRACKING_LOST|generation/);
    t.true(e.changedBlocks > 0, 'the writes before the crash reached the disk');
  }
  // Its own file's blocks claimed on top of the truth: an over-report, not a miss.
  const own = by.get('cbtf-ref-tracks-own-file')!.epochs[0];
  t.true(own.claimedBlocks > own.changedBlocks, `claimed ${own.claimedBlocks} of ${own.changedBlocks} changed`);
});
