/**
 * The Dispatcher's named steps, one at a time, on a VirtualClock: each test sets up the state a
 * step decides on and checks the decision (where and when attempts start, what the log says).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { Dispatcher } from '../../src/scheduler/dispatcher.ts';
import { VirtualClock, type Job, type SchedulerHost } from '../../src/scheduler/index.ts';
import { fakeHosts, jobs, recordingLogger, tracked } from '../helpers/scheduler-fakes.ts';

test('#pickHost: the least loaded free host (running / slots), searching on from the host taken last', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, () => ({ ms: 10 }));
  await vc.run(new Dispatcher(jobs(6), [{ name: 'a', slots: 4 }, { name: 'b', slots: 2 }], fake.run, { clock: vc }).run());
  // a 0 → b 0 → a ¼ (b ½) → b ½ (a ½: a tie goes to the next host in turn) → a ½ (b full) → a ¾.
  t.deepEqual(fake.calls.filter((c) => c.at === 0).map((c) => c.host), ['a', 'b', 'a', 'b', 'a', 'a']);
});

test('#dispatch: the most constrained group is served first', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, () => ({ ms: 10 }));
  const list: Array<Job<number>> = [...jobs(3, undefined, 'g'), ...jobs(2, ['kvm'], 'k')];
  await vc.run(new Dispatcher(list, [{ name: 'kvm', slots: 1, tags: ['kvm'] }, { name: 'plain', slots: 1 }], fake.run, { clock: vc }).run());
  // Input order would give the kvm host a general job first; kvm jobs, which only it can run, go first.
  t.deepEqual(fake.starts(), ['0 k0@kvm#1', '0 g0@plain#1', '10 k1@kvm#1', '10 g1@plain#1', '20 g2@kvm#1']);
});

test('#fill: a freed slot takes the next job of its host at once', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, (job) => ({ ms: 10 * (job.payload + 1) }));
  const r = await vc.run(new Dispatcher(jobs(4), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc }).run());
  t.deepEqual(fake.starts(), ['0 j0@a#1', '0 j1@b#1', '10 j2@a#1', '20 j3@b#1']);
  t.is(r.durationMs, 60);
  t.deepEqual(r.hosts.map((h) => [h.name, h.busyMs, h.attempts, h.completed]), [['a', 40, 2, 2], ['b', 60, 2, 2]]);
});

test('#speculate / #pickBackup: an idle slot backs up the job expected to end last (start + cost)', async (t) => {
  const vc = new VirtualClock();
  const list = [{ id: 'long', payload: 0, cost: 100 }, { id: 'mid', payload: 1, cost: 50 }, { id: 'short', payload: 2, cost: 10 }];
  const fake = fakeHosts<number>(vc, (job) => ({ ms: job.cost }));
  const r = await vc.run(new Dispatcher(list, [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }, { name: 'c', slots: 1 }], fake.run, { clock: vc, speculate: true }).run());
  // At 10 `c` is idle: `long` (ends at 100) is backed up, not `mid` (50). At 50 `b` frees: `long`
  // already has two copies, so nothing more starts.
  t.deepEqual(fake.starts(), ['0 long@a#1', '0 mid@b#1', '0 short@c#1', '10 long@c#2s']);
  t.is(r.durationMs, 100);
  t.deepEqual(r.outcomes[0].attempts.map((a) => [a.host, a.outcome]), [['a', 'ok'], ['c', 'superseded']], 'the first copy ended first (at 100, the backup would at 110)');
});

test('#speculate: nothing while a pending job could take the slot, and never without `speculate`', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, (job) => ({ ms: job.id === 'j0' ? 100 : 10 }));
  await vc.run(new Dispatcher(jobs(3), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, speculate: true }).run());
  t.deepEqual(fake.starts(), ['0 j0@a#1', '0 j1@b#1', '10 j2@b#1', '20 j0@b#2s'], 'the backup waits until the pending j2 has started');
  const vc2 = new VirtualClock();
  const plain = fakeHosts<number>(vc2, (job) => ({ ms: job.id === 'j0' ? 100 : 10 }));
  await vc2.run(new Dispatcher(jobs(3), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], plain.run, { clock: vc2 }).run());
  t.false(plain.calls.some((c) => c.speculative));
});

test('#retry: another host while one may take the job; the same host once it failed on all; gives up after maxAttempts', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, () => ({ ms: 10, end: 'infra' }));
  const log = recordingLogger();
  const r = await vc.run(new Dispatcher(jobs(1), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, maxAttempts: 3, hostFailureLimit: 10, log }).run());
  t.deepEqual(fake.starts(), ['0 j0@a#1', '10 j0@b#2', '20 j0@a#3']);
  t.is(r.outcomes[0].status, 'infrastructure');
  t.regex(String((r.outcomes[0].error as Error).message), /host a: connection lost/);
  t.deepEqual(log.lines.filter((l) => l.message === 'retried' || l.message === 'gave up').map((l) => [l.message, l.job, l.host, l.attempt]), [['retried', 'j0', 'a', 1], ['retried', 'j0', 'b', 2], ['gave up', 'j0', 'a', 3]]);
  t.regex(String(log.lines.find((l) => l.message === 'gave up')?.reason), /3 infrastructure failures \(maxAttempts 3\)/);
});

test('#markHostDown / #failOrphans: pending jobs only the down host could run end `infrastructure`, naming it', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, (_j, host) => (host.name === 'k' ? { ms: 5, end: 'infra' } : { ms: 10 }));
  const list: Array<Job<number>> = [...jobs(3, ['kvm'], 'k'), ...jobs(2)];
  const r = await vc.run(new Dispatcher(list, [{ name: 'k', slots: 1, tags: ['kvm'] }, { name: 'p', slots: 1 }], fake.run, { clock: vc, hostFailureLimit: 1 }).run());
  t.deepEqual(r.outcomes.map((o) => [o.job.id, o.status, o.attempts.length]), [['k0', 'infrastructure', 1], ['k1', 'infrastructure', 0], ['k2', 'infrastructure', 0], ['j0', 'done', 1], ['j1', 'done', 1]]);
  t.regex((r.outcomes[1].error as Error).message, /job k1: every host with the tags kvm is down \(k: 1 infrastructure failures in a row, the last: InfrastructureError: host k: connection lost\)/);
  t.deepEqual(fake.starts(), ['0 k0@k#1', '0 j0@p#1', '10 j1@p#1'], 'the general jobs never went to the down host');
});

test('#replan: order "cost" plans again when the pending jobs have halved, and early after a host goes down near the end', async (t) => {
  const plans = async (hosts: SchedulerHost[], n: number) => {
    const vc = new VirtualClock();
    const log = recordingLogger();
    const fake = fakeHosts<number>(vc, (job, host) => (host.name === 'bad' ? { ms: 1, end: 'infra' } : { ms: job.cost }));
    const list = Array.from({ length: n }, (_, i) => ({ id: `c${i}`, payload: i, cost: 10 + i }));
    const r = await vc.run(new Dispatcher(list, hosts, fake.run, { clock: vc, order: 'cost', hostFailureLimit: 1, log }).run());
    t.true(r.outcomes.every((o) => o.status === 'done'));
    return log.lines.filter((l) => l.message === 'planned').map((l) => `${l.pending}/${l.slots}`);
  };
  // One slot: planned at the start (8 pending), then at 4, 2, 1.
  t.deepEqual(await plans([{ name: 'a', slots: 1 }], 8), ['8/1', '4/1', '2/1', '1/1']);
  // 12 jobs, 4 slots; `bad` goes down at 1 with 8 pending (< 3 per slot left): planned again at
  // once for the 3 slots left, not at the halving (6).
  t.deepEqual((await plans([{ name: 'a', slots: 3 }, { name: 'bad', slots: 1 }], 12)).slice(0, 2), ['12/4', '8/3']);
});

test('#finish: the result of the first complete copy; the other is aborted with one shared reason', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, (_j, _h, ctx) => ({ ms: ctx.speculative ? 10 : 100 }));
  const r = await vc.run(new Dispatcher(jobs(2), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }, { name: 'c', slots: 1 }], fake.run, { clock: vc, speculate: true }).run());
  // c backs up j0 at 0 and wins at 10, then backs up j1 and wins at 20.
  t.deepEqual(fake.starts(), ['0 j0@a#1', '0 j1@b#1', '0 j0@c#2s', '10 j1@c#2s']);
  t.deepEqual(fake.aborts.map((a) => [a.at, a.job, a.host]), [[10, 'j0', 'a'], [20, 'j1', 'b']]);
  t.is(fake.aborts[0].reason, fake.aborts[1].reason, 'no new error (and stack trace) per lost copy');
  t.true(r.outcomes.every((o) => o.status === 'done' && o.result === `${o.job.id}@c`));
});

test('#cancel: a job waiting for its retry ends cancelled; nothing starts after the abort', async (t) => {
  const vc = new VirtualClock();
  const ac = new AbortController();
  const fake = fakeHosts<number>(vc, (job, host) => (job.id === 'j0' && host.name === 'a' ? { ms: 5, end: 'infra' } : { ms: 100 }));
  const log = recordingLogger();
  const p = tracked(new Dispatcher(jobs(2), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, signal: ac.signal, log }).run());
  await vc.advance(5);
  // j0 failed on `a` and waits for `b` (busy until 100); `a` has nothing it may take.
  t.deepEqual(fake.starts(), ['0 j0@a#1', '0 j1@b#1']);
  ac.abort(new Error('SIGINT'));
  await vc.flush();
  t.true(p.settled);
  const r = await p.promise;
  t.deepEqual(r.outcomes.map((o) => [o.status, o.attempts.map((a) => a.outcome).join(',')]), [['cancelled', 'infrastructure'], ['cancelled', 'cancelled']]);
  t.like(log.lines.find((l) => l.message === 'cancelled'), { pending: 1, running: 1, reason: 'Error: SIGINT', graceMs: 120_000 });
  t.is(fake.calls.length, 2);
});

test('a Dispatcher runs once', async (t) => {
  const d = new Dispatcher(jobs(1), [{ name: 'a', slots: 1 }], async () => 1);
  await d.run();
  await t.throwsAsync(d.run(), { message: /runs once/ });
});

test('logging: each decision with job, host, attempt and reason', async (t) => {
  const vc = new VirtualClock();
  const ac = new AbortController();
  const log = recordingLogger();
  const fake = fakeHosts<number>(vc, (job, host) => (host.name === 'bad' ? { ms: 5, end: 'infra' } : { ms: job.id === 'j0' ? 1_000 : 10 }));
  const p = tracked(new Dispatcher(jobs(3), [{ name: 'bad', slots: 1 }, { name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, signal: ac.signal, speculate: true, hostFailureLimit: 1, log }).run());
  await vc.advance(100);
  ac.abort(new Error('SIGINT'));
  await vc.flush();
  t.true(p.settled);
  const said = log.lines.map(({ message, job, host, attempt }) => [message, job, host, attempt].filter((x) => x !== undefined).join(' '));
  t.deepEqual(said, [
    'placed j0 bad 1',
    'placed j1 a 1',
    'placed j2 b 1',
    'host down bad',
    'retried j0 bad 1',
    'placed j0 a 2',
    'speculated j0 b 3',
    'cancelled',
  ]);
  t.like(log.lines[3], { reason: '1 infrastructure failures in a row, the last: InfrastructureError: host bad: connection lost' });
  t.like(log.lines[4], { reason: 'InfrastructureError: host bad: connection lost' });
  t.like(log.lines[5], { reason: 'retry' });
  t.like(log.lines[6], { reason: 'backup of the copy on a' });
});

test('logging: DEBUG=cbt:scheduler prints the decisions on stderr (the default logger)', (t) => {
  const script = `
    import { schedule } from './src/scheduler/index.ts';
    await schedule([{ id: 'x', payload: 0 }], [{ name: 'h', slots: 1 }], async () => 1);
  `;
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const on = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env: { ...process.env, DEBUG: 'cbt:*' }, encoding: 'utf8' });
  t.is(on.status, 0, on.stderr);
  t.regex(on.stderr, /cbt:scheduler debug placed job=x host=h attempt=1\n/);
  const off = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env: { ...process.env, DEBUG: '' }, encoding: 'utf8' });
  t.is(off.status, 0, off.stderr);
  t.notRegex(off.stderr, /cbt:scheduler/);
});
