/**
 * Ctrl-C on `cbt-harness run` (real QEMU under TCG): the first SIGINT stops gracefully — exit 130,
 * a run record with the job cancelled, no QEMU of the run left; two in a row kill at once.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import type { RunRecord } from '../../src/report/index.ts';
import { CLI, ROOT, tempDir } from '../helpers/tools.ts';

interface Started {
  pid: number;
  runId: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  stderr: () => string;
}

/** `run clean-reboot.yaml`, resolved once its guest is up (the console shows the SSH marker). */
async function startRun(out: string): Promise<Started> {
  const child = spawn(CLI, ['run', join(ROOT, 'scenarios/clean-reboot.yaml'), '--out', out, '--accel', 'tcg'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CBT_HARNESS_LOG: 'warn' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + 5 * 60_000;
  const consoleLog = join(out, 'jobs/clean-reboot/logs/console-1.log');
  while (Date.now() < deadline && !done) {
    if (existsSync(consoleLog) && (await readFile(consoleLog, 'utf8')).includes('CBT-SSH-UP')) break;
    await sleep(250);
  }
  if (done) throw new Error(`the run ended before its guest came up: ${stderr.slice(-2000)}`);
  const runId = /cbt-harness run (\S+):/.exec(stdout)?.[1];
  if (!runId) throw new Error(`no run id on stdout: ${stdout}`);
  return { pid: child.pid!, runId, exited, stderr: () => stderr };
}

/** PIDs of QEMU processes of this run (the VM's `-name` is `cbt-<runId>-<vm>`). */
async function qemuOf(runId: string): Promise<number[]> {
  const { execFile } = await import('node:child_process');
  const ps = await new Promise<string>((resolve, reject) => execFile('ps', ['-eo', 'pid=,args='], (e, so) => (e ? reject(e) : resolve(so))));
  return ps
    .split('\n')
    .filter((l) => l.includes('qemu-system') && l.includes(`cbt-${runId}-`))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

/** The process is gone, or a zombie waiting for its new parent to reap it (it runs no more). */
async function goneOrZombie(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat === null || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

test.serial('one SIGINT: a graceful stop, exit 130, the job cancelled in run.json, no QEMU left', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-interrupt-');
  t.teardown(cleanup);
  const run = await startRun(dir);
  t.true((await qemuOf(run.runId)).length >= 1, 'the VM runs');
  await sleep(1000);
  const sent = Date.now();
  process.kill(run.pid, 'SIGINT');
  const timeout = sleep(60_000).then(() => null);
  const end = await Promise.race([run.exited, timeout]);
  if (!end) {
    process.kill(run.pid, 'SIGKILL');
    t.fail(`no exit within 60 s after SIGINT: ${run.stderr().slice(-2000)}`);
    return;
  }
  t.log(`exited ${end.code} after ${end.at - sent} ms`);
  t.is(end.code, 130, run.stderr());
  t.regex(run.stderr(), /^cbt-harness: stopping \(press Ctrl-C again to force\)$/m);
  t.regex(run.stderr(), /^cbt-harness: stopped by SIGINT: 1 of 1 job\(s\) cancelled/m);
  const record = JSON.parse(await readFile(join(dir, 'run.json'), 'utf8')) as RunRecord;
  t.is(record.runId, run.runId);
  t.true(record.cancelled);
  const [job] = record.jobs;
  t.is(job.status, 'infra-error');
  t.regex(job.error ?? '', /^cancelled: interrupted by SIGINT/);
  t.deepEqual(job.attempts.map((a) => a.outcome), ['cancelled']);
  t.deepEqual(await qemuOf(run.runId), [], 'no QEMU of the run is left');
});

test.serial('two SIGINTs in a row: the VMs are killed and the harness exits at once', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-interrupt2-');
  t.teardown(cleanup);
  const run = await startRun(dir);
  const pids = await qemuOf(run.runId);
  t.true(pids.length >= 1, 'the VM runs');
  const sent = Date.now();
  process.kill(run.pid, 'SIGINT');
  // The second as soon as the first is seen (the graceful stop of an idle guest takes well under a second).
  while (!run.stderr().includes('stopping (press Ctrl-C again')) await new Promise((r) => setImmediate(r));
  process.kill(run.pid, 'SIGINT');
  const end = await Promise.race([run.exited, sleep(10_000).then(() => null)]);
  if (!end) {
    process.kill(run.pid, 'SIGKILL');
    t.fail(`no exit within 10 s after two SIGINTs: ${run.stderr().slice(-2000)}`);
    return;
  }
  t.log(`exited ${end.code} after ${end.at - sent} ms`);
  t.true(end.at - sent < 5_000, `exited after ${end.at - sent} ms`);
  t.is(end.code, 130);
  t.regex(run.stderr(), /^cbt-harness: forced stop by a second SIGINT/m);
  await sleep(500);
  t.deepEqual(await qemuOf(run.runId), [], 'no QEMU of the run is left');
  for (const pid of pids) t.true(await goneOrZombie(pid), `QEMU ${pid} is gone`);
});
