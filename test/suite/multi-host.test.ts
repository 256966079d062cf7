/**
 * Real scenario runs spread over the local testbed: a private dockerd with the worker image and
 * two sshd hosts in their own network namespaces, plus this machine. Jobs must land on all three
 * kinds of host (and the record must say where); a host killed mid-run must not stop the run; no
 * VM or container may be left behind.
 */
import { readFile, writeFile } from 'node:fs/promises';
import test from 'ava';
import { execa } from 'execa';
import { testbedKillHost } from '../../src/hosts/index.ts';
import { readRunRecord, type RunRecord } from '../../src/report/index.ts';
import { startTestbed, type Testbed } from '../helpers/testbed-setup.ts';
import { ROOT, runCli, tempDir } from '../helpers/tools.ts';

let tb: Testbed | undefined;
let hostsFile: string;
test.before(async () => {
  tb = await startTestbed();
  // One VM per host at a time: four TCG guests on two cores is as much as this machine takes.
  hostsFile = `${tb.hostsFile}.one-slot.yaml`;
  await writeFile(hostsFile, (await readFile(tb.hostsFile, 'utf8')).replaceAll('slots: 2', 'slots: 1'));
});
test.after.always(async () => {
  await tb?.down();
});

async function leftovers(runId: string): Promise<string[]> {
  const ps = await execa('ps', ['-eo', 'pid,args'], { reject: false });
  const procs = String(ps.stdout).split('\n').filter((l) => l.includes(runId) && l.includes('qemu-system'));
  const docker = await execa('docker', ['--host', `unix://${tb!.state.docker?.socket ?? ''}`, 'ps', '-aq', '--filter', `label=cbt-harness.run=${runId}`], { reject: false });
  return [...procs, ...String(docker.stdout).split('\n').filter(Boolean).map((c) => `container ${c}`)];
}

function record(stdout: string): RunRecord {
  return JSON.parse(stdout) as RunRecord;
}

test.serial('one run places scenario jobs on local, ssh and docker hosts, and says where each ran', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-mh-');
  t.teardown(cleanup);
  // Two jobs per host (one slot each): an attempt that fails on infrastructure (a first boot on a
  // cold host under load, seen once in CI) is retried elsewhere, and the host still gets a second job.
  const r = await runCli(['run', `${ROOT}/scenarios/two-epochs.yaml`, '--repeat', '8', '--hosts', hostsFile, '--accel', 'tcg', '--seed', '4', '--out', dir, '--json'], { timeout: 15 * 60_000 });
  t.is(r.exitCode, 0, r.stderr.slice(-3000));
  const rec = record(r.stdout);
  const where = rec.jobs.map((j) => `${j.id}: ${j.attempts.map((a) => `${a.host} ${a.outcome}${a.error ? ` (${a.error})` : ''}`).join(', ')}`).join('\n');
  const retried = rec.jobs.filter((j) => j.attempts.length > 1);
  if (retried.length > 0) t.log(`retried on infrastructure:\n${where}`);
  t.true(retried.every((j) => j.attempts.slice(0, -1).every((a) => a.outcome === 'infrastructure' && a.error)), where);
  t.true(retried.length <= 1, `more than one infrastructure retry:\n${where}`);
  const kinds = new Set(rec.jobs.map((j) => j.host?.type));
  t.deepEqual([...kinds].sort(), ['docker', 'local', 'ssh'], `jobs passed on each kind of host:\n${where}`);
  for (const j of rec.jobs) {
    t.is(j.status, 'passed', `${j.id} on ${j.host?.name}: ${j.error ?? ''}`);
    t.deepEqual(j.epochs.map((e) => e.verdict), ['EXACT', 'EXACT']);
    t.is(j.attempts.at(-1)?.host, j.host?.name);
  }
  t.deepEqual(rec.hosts.map((h) => h.name).sort(), ['docker-1', 'local', 'ssh-1', 'ssh-2']);
  t.is((await readRunRecord(dir)).runId, rec.runId, 'run.json is valid against the published schema');
  t.deepEqual(await leftovers(rec.runId), []);
});

test.serial('--speculate: an idle host runs a backup copy; the first to finish is the job, the other is stopped and left nowhere', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-mh-');
  t.teardown(cleanup);
  // One job, four hosts: three slots idle from the start, so the job gets one backup at once.
  const r = await runCli(['run', `${ROOT}/scenarios/two-epochs.yaml`, '--speculate', '--hosts', hostsFile, '--accel', 'tcg', '--seed', '6', '--out', dir, '--json'], { timeout: 15 * 60_000 });
  t.is(r.exitCode, 0, r.stderr.slice(-3000));
  const rec = record(r.stdout);
  t.is(rec.jobs.length, 1);
  const [job] = rec.jobs;
  t.is(job.status, 'passed', job.error);
  t.deepEqual(job.epochs.map((e) => e.verdict), ['EXACT', 'EXACT']);
  t.is(job.attempts.length, 2, JSON.stringify(job.attempts));
  const winner = job.attempts.find((a) => a.outcome === 'ok');
  const loser = job.attempts.find((a) => a.outcome === 'superseded');
  t.truthy(winner);
  t.truthy(loser);
  t.not(winner?.host, loser?.host);
  t.is(job.attempts.filter((a) => a.speculative).length, 1, 'exactly one copy is the backup');
  t.is(job.host?.name, winner?.host, 'the record names the host of the copy that finished');
  t.deepEqual((await readRunRecord(dir)).jobs[0].attempts, job.attempts, 'run.json is valid against the published schema and lists both copies');
  t.deepEqual(await leftovers(rec.runId), []);
});

test.serial('an ssh host killed mid-run: its jobs finish elsewhere, the run completes, nothing is left', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-mh-');
  t.teardown(cleanup);
  const child = runCli(['run', `${ROOT}/scenarios/repeated-reboots.yaml`, `${ROOT}/scenarios/two-epochs.yaml`, '--repeat', '2', '--hosts', hostsFile, '--accel', 'tcg', '--seed', '5', '--out', dir, '--json'], { timeout: 15 * 60_000 });
  // Let the jobs start, then kill ssh-1 with whatever it runs.
  await new Promise((r) => setTimeout(r, 15_000));
  await testbedKillHost(tb!.state, 'ssh-1');
  const r = await child;
  const rec = record(r.stdout);
  t.is(r.exitCode, 0, r.stderr.slice(-3000));
  for (const j of rec.jobs) t.is(j.status, 'passed', `${j.id}: ${j.error ?? ''}`);
  const moved = rec.jobs.filter((j) => j.attempts.some((a) => a.host === 'ssh-1' && a.outcome === 'infrastructure'));
  t.true(moved.length >= 1, 'a job was running on ssh-1 when it died');
  for (const j of moved) t.not(j.host?.name, 'ssh-1');
  t.deepEqual(await leftovers(rec.runId), []);
});

test.serial('a host that cannot be reached when the run begins is down from the start: named on stderr and in the record, no job placed on it', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-mh-');
  t.teardown(cleanup);
  // ssh-1 was killed above: the run's host pool cannot connect to it.
  const r = await runCli(['run', `${ROOT}/scenarios/two-epochs.yaml`, '--repeat', '3', '--hosts', hostsFile, '--accel', 'tcg', '--seed', '7', '--out', dir, '--json'], { timeout: 15 * 60_000 });
  t.is(r.exitCode, 0, r.stderr.slice(-3000));
  const rec = record(r.stdout);
  t.regex(r.stderr, /^cbt-harness: host ssh-1 is down, no job will run on it: .*ssh-1/m);
  const down = rec.hosts.filter((h) => h.down !== undefined).map((h) => h.name);
  t.deepEqual(down, ['ssh-1']);
  for (const j of rec.jobs) {
    t.is(j.status, 'passed', `${j.id}: ${j.error ?? ''}`);
    t.false(j.attempts.some((a) => a.host === 'ssh-1'), `${j.id} was attempted on the down host: ${JSON.stringify(j.attempts)}`);
  }
  t.is((await readRunRecord(dir)).hosts.find((h) => h.name === 'ssh-1')?.down, rec.hosts.find((h) => h.name === 'ssh-1')?.down, 'run.json is valid against the published schema');
  t.deepEqual(await leftovers(rec.runId), []);
});

test.serial('a wrong pinned host key is refused with a clear error', async (t) => {
  const wrong = `${tb!.hostsFile}.wrong-key.yaml`;
  const text = await readFile(tb!.hostsFile, 'utf8');
  // ssh-1 was killed above; pin a wrong key for ssh-2.
  await writeFile(wrong, text.replaceAll(/hostKey: SHA256:[A-Za-z0-9+/=]+/g, 'hostKey: SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'));
  const r = await runCli(['hosts', 'check', '--hosts', wrong], { timeout: 120_000 });
  t.is(r.exitCode, 1);
  t.regex(r.stdout + r.stderr, /ssh-2: .*host key/i);
  t.regex(r.stdout + r.stderr, /SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/);
});
