/**
 * The local executor against real processes, files, qemu-img images and QEMU: commands, limits,
 * kills of whole process trees, file transfer, image staging by content hash, the harness's own
 * CLI run next to the images, TCP, and the sweeper on leftovers of a "crashed" run.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { CommandTimeoutError, HostOperationError, LocalExecutor, newRunId, type LocalHostSpec } from '../../src/hosts/index.ts';
import { processAlive as alive, qemuImg, tempDir } from '../helpers/tools.ts';

async function waitGone(pid: number, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  while (alive(pid) && Date.now() < until) await sleep(50);
  return !alive(pid);
}

async function setup(t: ExecutionContext) {
  const { dir, cleanup } = await tempDir('cbt-local-exec-');
  const spec: LocalHostSpec = { name: 'local', type: 'local', slots: 2, tags: [], workdir: join(dir, 'work') };
  const ex = new LocalExecutor(spec, { runId: newRunId() });
  t.teardown(async () => {
    await ex.close();
    await cleanup();
  });
  return { dir, spec, ex };
}

test('exec: exit code, output, labels in the environment, cwd inside the job folder', async (t) => {
  const { ex } = await setup(t);
  const job = await ex.openJob('job-1');
  const r = await job.exec(['sh', '-c', 'echo out; echo err >&2; echo "$CBT_HARNESS_RUN $CBT_HARNESS_JOB $FOO"; pwd; exit 7'], { env: { FOO: 'b a r' } });
  t.is(r.exitCode, 7);
  const [out, labels, pwd] = r.stdout.trim().split('\n');
  t.is(out, 'out');
  t.is(r.stderr, 'err\n');
  t.is(labels, `${ex.runId} job-1 b a r`);
  t.is(pwd, job.workdir);
  t.true(job.workdir.startsWith(join(ex.spec.workdir, 'runs', ex.runId)));
  const stdin = await job.exec(['cat'], { stdin: 'piped\0bytes' });
  t.is(stdin.stdout, 'piped\0bytes');
});

test('timeout and abort kill the command and everything it started', async (t) => {
  const { ex } = await setup(t);
  const job = await ex.openJob('job-2');
  const err = await t.throwsAsync(job.exec(['sh', '-c', 'sleep 300 & echo $! > bg.pid; sleep 300'], { timeoutMs: 300 }), { instanceOf: CommandTimeoutError });
  t.regex(err.message, /host local: command timed out after 300 ms and was killed/);
  const bg = Number((await job.getFile('bg.pid')).toString());
  t.true(await waitGone(bg), 'the background child is gone too');
  const ac = new AbortController();
  const p = job.exec(['sh', '-c', 'sleep 300 & echo $! > bg2.pid; wait'], { signal: ac.signal });
  for (let i = 0; i < 100 && (await job.exec(['test', '-s', 'bg2.pid'])).exitCode !== 0; i++) await sleep(20);
  ac.abort(new Error('stop now'));
  await t.throwsAsync(p, { message: 'stop now' });
  t.true(await waitGone(Number((await job.getFile('bg2.pid')).toString())));
});

test('output beyond the limit is dropped, not buffered', async (t) => {
  const { ex } = await setup(t);
  const job = await ex.openJob('job-3');
  const r = await job.exec(['sh', '-c', 'head -c 5000000 /dev/zero'], { maxOutputBytes: 1 << 16 });
  t.is(r.stdout.length, 1 << 16);
  t.true(r.truncated);
});

test('close kills spawned processes (even daemonized ones) and removes the job folder', async (t) => {
  const { ex } = await setup(t);
  const job = await ex.openJob('job-4');
  const vm = await job.spawn(['sh', '-c', 'setsid sleep 300 & echo $! > d.pid; exec sleep 300']);
  for (let i = 0; i < 100 && (await job.exec(['test', '-s', 'd.pid'])).exitCode !== 0; i++) await sleep(20);
  const daemon = Number((await job.getFile('d.pid')).toString());
  t.true(alive(daemon));
  await job.close();
  const r = await vm.done;
  t.is(r.signal, 'SIGTERM');
  t.true(await waitGone(daemon));
  await t.throwsAsync(stat(job.workdir));
  await t.throwsAsync(job.exec(['true']), { instanceOf: HostOperationError, message: /closed/ });
});

test('files: binary round trip, size limit, no escape from the job folder', async (t) => {
  const { ex } = await setup(t);
  const job = await ex.openJob('job-5');
  const bytes = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 7) & 255));
  const path = await job.putFile('sub/data.bin', bytes, { mode: 0o600 });
  t.is(path, join(job.workdir, 'sub/data.bin'));
  t.deepEqual(await job.getFile('sub/data.bin'), bytes);
  t.is((await stat(path)).mode & 0o777, 0o600);
  await t.throwsAsync(job.getFile('sub/data.bin', { maxBytes: 1000 }), { instanceOf: HostOperationError, message: /70000 bytes, more than the limit of 1000/ });
  await t.throwsAsync(job.getFile('../../x'), { instanceOf: HostOperationError, message: /leaves the job folder/ });
  await t.throwsAsync(job.getFile('missing'), { message: /no such file/ });
});

test('images are staged once per host by content hash, read-only, and listed in facts', async (t) => {
  const { dir, ex } = await setup(t);
  await qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '4M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', join(dir, 'top.qcow2')]);
  const first = await ex.stageImage([join(dir, 'top.qcow2'), join(dir, 'base.qcow2')]);
  t.true(first.copied);
  const again = await ex.stageImage([join(dir, 'base.qcow2'), join(dir, 'top.qcow2')]);
  t.false(again.copied);
  t.is(again.hash, first.hash);
  const staged = await readFile(first.files['base.qcow2']);
  t.is(createHash('sha256').update(staged).digest('hex'), createHash('sha256').update(await readFile(join(dir, 'base.qcow2'))).digest('hex'));
  t.is((await stat(first.files['base.qcow2'])).mode & 0o222, 0, 'staged files are read-only');
  const facts = await ex.facts();
  t.deepEqual(facts.images.map((i) => i.hash), [first.hash]);
  t.deepEqual(facts.images[0].files.map((f) => f.name), ['base.qcow2', 'top.qcow2']);
  t.truthy(facts.qemuImg);
  // A changed file is another image.
  await qemuImg(['resize', '-q', join(dir, 'top.qcow2'), '8M']);
  const changed = await ex.stageImage([join(dir, 'top.qcow2'), join(dir, 'base.qcow2')]);
  t.true(changed.copied);
  t.not(changed.hash, first.hash);
});

test('the harness CLI runs on the host next to the staged images and returns its JSON', async (t) => {
  const { dir, ex } = await setup(t);
  await qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '4M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', join(dir, 'top.qcow2')]);
  const img = await ex.stageImage([join(dir, 'base.qcow2'), join(dir, 'top.qcow2')]);
  const job = await ex.openJob('job-6');
  const r = await job.runHarness(['image', 'info', img.files['top.qcow2'], '--json']);
  t.is(r.exitCode, 0, r.stderr);
  // The backing file resolves inside the staged folder: the chain travelled intact.
  t.like(r.json as object, { format: 'qcow2', virtualSize: 4 * 2 ** 20, backingChain: [join(img.dir, 'base.qcow2')] });
});

test('connectTcp reaches a port on the host', async (t) => {
  const { ex } = await setup(t);
  const server = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const job = await ex.openJob('job-7');
  const sock = await job.connectTcp((server.address() as { port: number }).port);
  sock.write('ping');
  const [data] = (await new Promise((r) => sock.once('data', (d) => r([d])))) as [Buffer];
  t.is(data.toString(), 'ping');
  sock.destroy();
});

test('sweep removes a crashed run (processes by label, QEMU by -name, its folder) and leaves live runs alone', async (t) => {
  const { spec, ex } = await setup(t);
  // A crashed run of this machine: its lease names a pid that is gone.
  const dead = spawn('true');
  await new Promise((r) => dead.once('exit', r));
  const crashed = newRunId(new Date(Date.now() - 60_000));
  const crashedDir = join(spec.workdir, 'runs', crashed);
  await mkdir(join(crashedDir, 'job-x'), { recursive: true });
  await writeFile(join(crashedDir, 'run.json'), JSON.stringify({ runId: crashed, controller: hostname(), pid: dead.pid, pidStart: '1', startedAt: new Date().toISOString() }));
  const labelled = spawn('sleep', ['300'], { env: { ...process.env, CBT_HARNESS_RUN: crashed }, detached: true, stdio: 'ignore' });
  const qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-name', `cbt-${crashed}-job-x`], { detached: true, stdio: 'ignore' });
  // A VM named after an old run nobody has a lease for, but started just now: someone's live work.
  const unknown = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-name', `cbt-${newRunId(new Date(0))}-job-y`], { detached: true, stdio: 'ignore' });
  // A live run (this test process) with its own labelled process.
  const live = newRunId();
  const liveEx = new LocalExecutor(spec, { runId: live });
  const liveJob = await liveEx.openJob('job-live');
  const liveProc = await liveJob.spawn(['sleep', '300']);
  t.teardown(async () => {
    for (const p of [labelled.pid, qemu.pid, unknown.pid]) if (p && alive(p)) process.kill(p, 'SIGKILL');
    await liveEx.close();
  });
  await sleep(300);
  t.true(alive(labelled.pid as number) && alive(qemu.pid as number));
  const report = await ex.sweep();
  t.deepEqual(report.staleRuns, [crashed]);
  t.true(report.killedPids.includes(labelled.pid as number));
  t.true(report.killedPids.includes(qemu.pid as number));
  t.deepEqual(report.removedDirs, [crashedDir]);
  t.true(await waitGone(labelled.pid as number));
  t.true(await waitGone(qemu.pid as number));
  await t.throwsAsync(stat(crashedDir));
  t.true(alive(unknown.pid as number), 'a fresh VM without a lease is left alone');
  // The live run is untouched.
  t.truthy(await stat(liveJob.workdir));
  t.is((await liveJob.exec(['true'])).exitCode, 0);
  await liveJob.close();
  t.is((await liveProc.done).signal, 'SIGTERM');
});

test('closing a job kills only its own processes, not a same-named job of another run', async (t) => {
  const { spec, ex } = await setup(t);
  const other = new LocalExecutor(spec, { runId: newRunId() });
  t.teardown(() => other.close());
  const a = await ex.openJob('same-name');
  const b = await other.openJob('same-name');
  const pa = await a.spawn(['sleep', '300']);
  const pb = await b.spawn(['sleep', '300']);
  await sleep(100);
  await a.close();
  t.is((await pa.done).signal, 'SIGTERM');
  const still = await b.exec(['sh', '-c', 'echo alive']);
  t.is(still.stdout, 'alive\n');
  let settled = false;
  void pb.done.then(() => (settled = true));
  await sleep(200);
  t.false(settled, 'the other run\'s process still runs');
  await b.close();
  t.is((await pb.done).signal, 'SIGTERM');
});
