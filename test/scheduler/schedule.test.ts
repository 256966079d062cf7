/**
 * schedule() against in-memory hosts on a VirtualClock: every wait is on the clock, so times,
 * orders and windows are exact (no wall-clock sleeps, no races). The same paths on real hosts
 * (local, sshd, dockerd) are in test/hosts/testbed.test.ts; the named steps of the Dispatcher
 * one by one in dispatcher.test.ts.
 */
import test from 'ava';
import { InfrastructureError } from '../../src/hosts/index.ts';
import { jobMatrix, schedule, SchedulerError, VirtualClock, type SchedulerEvent, type SchedulerHost } from '../../src/scheduler/index.ts';
import { fakeHosts, jobs, tracked } from '../helpers/scheduler-fakes.ts';

test('respects slots per host and tags; every job runs once and reports its host', async (t) => {
  const vc = new VirtualClock();
  const hosts: SchedulerHost[] = [{ name: 'a', slots: 2, tags: ['kvm'] }, { name: 'b', slots: 1 }, { name: 'c', slots: 3 }];
  const fake = fakeHosts<number>(vc, (job) => ({ ms: 5 + (job.payload % 3) * 3 }));
  const list = [...jobs(20), ...jobs(6, ['kvm'], 'k')];
  const r = await vc.run(schedule(list, hosts, fake.run, { clock: vc }));
  t.is(fake.overSlots(), 0, 'never more jobs on a host than its slots');
  t.false(r.cancelled);
  t.true(r.outcomes.every((o) => o.status === 'done' && o.attempts.length === 1 && o.result === `${o.job.id}@${o.host}`));
  t.true(r.outcomes.filter((o) => o.job.id.startsWith('k')).every((o) => o.host === 'a'), 'kvm jobs only on the kvm host');
  t.deepEqual([...new Set(r.outcomes.map((o) => o.host))].sort(), ['a', 'b', 'c']);
  t.deepEqual(r.outcomes.map((o) => o.job.id), list.map((j) => j.id), 'outcomes in input order');
  t.is(r.durationMs, vc.now(), 'the run lasted until the last attempt ended, on the clock');
  t.deepEqual(r.hosts.map((h) => h.busyMs), ['a', 'b', 'c'].map((name) => r.outcomes.filter((o) => o.host === name).reduce((s, o) => s + o.attempts[0].durationMs, 0)));
});

test('least load first: idle hosts get the first jobs, all at once', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, () => ({ ms: 20 }));
  const r = await vc.run(schedule(jobs(3), [{ name: 'a', slots: 4 }, { name: 'b', slots: 4 }, { name: 'c', slots: 4 }], fake.run, { clock: vc }));
  t.deepEqual(fake.starts(), ['0 j0@a#1', '0 j1@b#1', '0 j2@c#1']);
  t.is(r.durationMs, 20);
});

test('an infrastructure failure is retried at once, before fresh jobs, on another host (no backoff); a verdict failure is never retried', async (t) => {
  const vc = new VirtualClock();
  const hosts = [{ name: 'flaky', slots: 1 }, { name: 'good', slots: 1 }];
  const previous: string[] = [];
  const fake = fakeHosts<number>(vc, (job, host, ctx) => {
    if (job.id === 'infra') previous.push(ctx.previous.map((a) => `${a.host}:${a.outcome}`).join(','));
    if (job.id === 'infra' && host.name === 'flaky') return { ms: 10, end: 'infra' };
    if (job.id === 'verdict') return { ms: 5, end: 'verdict' };
    return { ms: 100 };
  });
  const list = ['infra', 'f1', 'f2', 'f3', 'verdict'].map((id, i) => ({ id, payload: i }));
  const r = await vc.run(schedule(list, hosts, fake.run, { clock: vc }));
  // flaky frees at 10, but the retry avoids it while `good` may take it: a fresh job goes there;
  // `good` frees at 100 and takes the retry before f3.
  t.deepEqual(fake.starts(), ['0 infra@flaky#1', '0 f1@good#1', '10 f2@flaky#1', '100 infra@good#2', '110 f3@flaky#1', '200 verdict@good#1']);
  t.deepEqual(previous, ['', 'flaky:infrastructure'], 'the retry knows the attempt before it');
  const infra = r.outcomes[0];
  t.is(infra.status, 'done');
  t.is(infra.host, 'good');
  t.deepEqual(infra.attempts.map((a) => [a.host, a.outcome, a.startedAt, a.durationMs]), [['flaky', 'infrastructure', new Date(0).toISOString(), 10], ['good', 'ok', new Date(100).toISOString(), 100]]);
  t.regex(infra.attempts[0].error ?? '', /InfrastructureError: host flaky: connection lost/);
  const verdict = r.outcomes[4];
  t.is(verdict.status, 'error');
  t.is(verdict.attempts.length, 1, 'never retried');
  t.regex(String((verdict.error as Error).message), /MISSED/);
  t.is(r.durationMs, 210, 'f3 on flaky from 110 ends last');
});

test('errors marked `infrastructure: true` by other modules count as infrastructure', async (t) => {
  const hosts = [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }];
  const r = await schedule([{ id: 'x', payload: 0 }], hosts, async (_j, h) => {
    if (h.name === 'a') throw Object.assign(new Error('VM did not boot'), { infrastructure: true });
    return 1;
  });
  t.is(r.outcomes[0].status, 'done');
  t.deepEqual(r.outcomes[0].attempts.map((a) => [a.host, a.outcome]), [['a', 'infrastructure'], ['b', 'ok']]);
});

test('a host with `hostFailureLimit` infrastructure failures in a row is marked down then; its work finishes elsewhere', async (t) => {
  const vc = new VirtualClock();
  const hosts = [{ name: 'dead', slots: 2 }, { name: 'ok', slots: 1 }];
  const downAt: Array<[number, string]> = [];
  const fake = fakeHosts<number>(vc, (_j, h) => (h.name === 'dead' ? { ms: 2, end: 'infra' } : { ms: 10 }));
  const r = await vc.run(schedule(jobs(12), hosts, fake.run, { clock: vc, hostFailureLimit: 3, maxAttempts: 5, onEvent: (e) => e.type === 'host-down' && downAt.push([vc.now(), `${e.host.name}: ${e.reason}`]) }));
  t.true(r.outcomes.every((o) => o.status === 'done' && o.host === 'ok'));
  // 0: j0, j2 on dead; 2: both fail (2 in a row), j3, j4 take the freed slots; 4: j3 fails: the third.
  t.deepEqual(fake.calls.filter((c) => c.host === 'dead').map((c) => `${c.at} ${c.job}`), ['0 j0', '0 j2', '2 j3', '2 j4']);
  t.deepEqual(downAt, [[4, 'dead: 3 infrastructure failures in a row, the last: InfrastructureError: host dead: connection lost']]);
  const dead = r.hosts.find((h) => h.name === 'dead');
  t.like(dead, { down: true, attempts: 4, infrastructureFailures: 4, completed: 0 });
  t.is(r.durationMs, 120, 'twelve 10 ms jobs on the one slot left');
});

test('a success resets the count of failures in a row', async (t) => {
  // The host fails, fails, succeeds, fails, fails, succeeds…: two in a row at most.
  const run = async (limit: number) => {
    const vc = new VirtualClock();
    let n = 0;
    const fake = fakeHosts<number>(vc, () => (n++ % 3 === 2 ? { ms: 10 } : { ms: 10, end: 'infra' }));
    return vc.run(schedule(jobs(4), [{ name: 'only', slots: 1 }], fake.run, { clock: vc, hostFailureLimit: limit, maxAttempts: 10 }));
  };
  const three = await run(3);
  t.false(three.hosts[0].down);
  t.true(three.outcomes.every((o) => o.status === 'done'));
  t.is(three.durationMs, 120, 'twelve attempts of 10 ms, one after the other');
  const two = await run(2);
  t.true(two.hosts[0].down, 'with a limit of 2 the same host goes down');
  t.is(two.hosts[0].attempts, 2);
  t.deepEqual(two.outcomes.map((o) => o.status), Array(4).fill('infrastructure'));
});

test('attempts are bounded; when every host is down the rest fail as infrastructure', async (t) => {
  const hosts = [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }];
  let calls = 0;
  const r = await schedule(jobs(5), hosts, async (_j, h) => {
    calls++;
    throw new InfrastructureError(h.name, 'no route');
  }, { maxAttempts: 2, hostFailureLimit: 2 });
  t.deepEqual(r.outcomes.map((o) => o.status), Array(5).fill('infrastructure'));
  t.true(r.outcomes.every((o) => o.attempts.length <= 2));
  t.true(r.outcomes.some((o) => o.attempts.length === 0 && /every host is down \(a: 2 infrastructure failures in a row/.test((o.error as Error).message)));
  t.true(r.hosts.every((h) => h.down));
  t.is(calls, 4, 'two per host, then both are down');
});

test('jobs needing a tag no host has are unschedulable and never run; known-down hosts are skipped', async (t) => {
  let ran = 0;
  const r = await schedule([{ id: 'w', payload: 0, requires: ['windows'] }, { id: 'x', payload: 1 }], [{ name: 'a', slots: 1, tags: ['kvm'] }, { name: 'b', slots: 1 }], async (_j, h) => {
    ran++;
    return h.name;
  }, { downHosts: new Map([['a', 'failed hosts check']]) });
  t.is(r.outcomes[0].status, 'unschedulable');
  t.regex((r.outcomes[0].error as Error).message, /no host with the tags windows in the inventory/);
  t.is(r.outcomes[1].status, 'done');
  t.is(r.outcomes[1].host, 'b');
  t.is(ran, 1);
  t.like(r.hosts[0], { down: true, downReason: 'failed hosts check', attempts: 0 });
});

test('cancel: running attempts get the abort through their signal and schedule() waits for their cleanup', async (t) => {
  const vc = new VirtualClock();
  const ac = new AbortController();
  const fake = fakeHosts<number>(vc, () => ({ ms: 10_000, cleanupMs: 50 }));
  const p = tracked(schedule(jobs(10), [{ name: 'a', slots: 2 }], fake.run, { clock: vc, signal: ac.signal }));
  await vc.advance(30);
  const reason = new Error('SIGINT');
  ac.abort(reason);
  await vc.advance(49);
  t.deepEqual(fake.aborts.map((a) => [a.at, a.job, a.reason]), [[30, 'j0', reason], [30, 'j1', reason]], 'both running attempts got the signal at once');
  t.false(p.settled, 'still cleaning up');
  await vc.advance(1);
  t.true(p.settled, 'returned when the cleanups ended');
  const r = await p.promise;
  t.true(r.cancelled);
  t.is(r.durationMs, 80);
  t.deepEqual(fake.starts(), ['0 j0@a#1', '0 j1@a#1'], 'nothing new started');
  t.deepEqual(r.outcomes.map((o) => o.status), Array(10).fill('cancelled'));
  t.deepEqual(r.outcomes[0].attempts.map((a) => [a.outcome, a.durationMs]), [['cancelled', 80]]);
  t.is(r.outcomes[5].attempts.length, 0);
  t.is(r.outcomes[5].error, reason, 'a pending job ends with the reason of the cancel');
  t.is(vc.pending, 0, 'the grace timer was cleared');
});

test('cancel: an attempt ignoring its signal is abandoned when the grace period ends, not before', async (t) => {
  const vc = new VirtualClock();
  const ac = new AbortController();
  const fake = fakeHosts<number>(vc, () => ({ ms: 1e9, ignoreSignal: true }));
  const p = tracked(schedule(jobs(1), [{ name: 'a', slots: 1 }], fake.run, { clock: vc, signal: ac.signal, cancelGraceMs: 100 }));
  await vc.advance(20);
  ac.abort();
  await vc.advance(99);
  t.false(p.settled, 'within the grace period');
  await vc.advance(1);
  t.true(p.settled, 'abandoned at 20 + 100');
  const r = await p.promise;
  t.is(r.durationMs, 120);
  t.is(r.outcomes[0].status, 'cancelled');
  t.regex((r.outcomes[0].error as Error).message, /job j0 did not stop within 100 ms of the cancel/);
});

test('an already aborted signal runs nothing', async (t) => {
  let ran = 0;
  const r = await schedule(jobs(3), [{ name: 'a', slots: 1 }], async () => ran++, { signal: AbortSignal.abort() });
  t.is(ran, 0);
  t.true(r.cancelled);
  t.deepEqual(r.outcomes.map((o) => o.status), Array(3).fill('cancelled'));
});

test('events: in the order things happen, each at its time', async (t) => {
  const vc = new VirtualClock();
  const events: string[] = [];
  const log = (e: SchedulerEvent<number, SchedulerHost>) => {
    const at = `${vc.now()} ${e.type}`;
    if (e.type === 'host-down') events.push(`${at} ${e.host.name}`);
    else if (e.type === 'attempt-start') events.push(`${at} ${e.job.id}@${e.host.name}#${e.attempt}${e.speculative ? 's' : ''}`);
    else if (e.type === 'attempt-end') events.push(`${at} ${e.job.id}@${e.host.name}#${e.record.attempt} ${e.record.outcome}`);
    else events.push(`${at} ${e.job.id} ${e.status} ${e.host}`);
  };
  const fake = fakeHosts<number>(vc, (job, host) => (job.id === 'x' && host.name === 'a' ? { ms: 10, end: 'infra' } : { ms: 20 }));
  await vc.run(schedule([{ id: 'x', payload: 0 }, { id: 'y', payload: 1 }], [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, hostFailureLimit: 1, onEvent: log }));
  t.deepEqual(events, [
    '0 attempt-start x@a#1',
    '0 attempt-start y@b#1',
    '10 attempt-end x@a#1 infrastructure',
    '10 host-down a',
    '20 attempt-end y@b#1 ok',
    '20 job-end y done b',
    '20 attempt-start x@b#2',
    '40 attempt-end x@b#2 ok',
    '40 job-end x done b',
  ]);
});

test('a listener that throws does not break the schedule', async (t) => {
  const r = await schedule(jobs(3), [{ name: 'a', slots: 1 }], async () => 1, {
    onEvent: () => {
      throw new Error('broken listener');
    },
  });
  t.deepEqual(r.outcomes.map((o) => o.status), ['done', 'done', 'done']);
});

test('order "cost" starts the longest jobs first', async (t) => {
  const order: string[] = [];
  const list = [5, 50, 20, 1, 30].map((c, i) => ({ id: `c${c}`, payload: i, cost: c }));
  await schedule(list, [{ name: 'a', slots: 1 }], async (job) => {
    order.push(job.id);
  }, { order: 'cost' });
  t.deepEqual(order, ['c50', 'c30', 'c20', 'c5', 'c1']);
});

test('bad input is a SchedulerError with a clear message', async (t) => {
  await t.throwsAsync(schedule([{ id: 'a', payload: 0 }, { id: 'a', payload: 1 }], [{ name: 'h', slots: 1 }], async () => 0), { instanceOf: SchedulerError, message: /two jobs with id a/ });
  await t.throwsAsync(schedule(jobs(1), [{ name: 'h', slots: 0 }], async () => 0), { instanceOf: SchedulerError, message: /Expected `slots` of host `h` to be a positive integer, got `0` \(number\)/ });
  await t.throwsAsync(schedule(jobs(1), [{ name: 'h', slots: 1 }, { name: 'h', slots: 1 }], async () => 0), { instanceOf: SchedulerError, message: /two hosts named h/ });
  await t.throwsAsync(schedule([{ id: '', payload: 0 }], [{ name: 'h', slots: 1 }], async () => 0), { instanceOf: SchedulerError, message: /non-empty string `id`/ });
  await t.throwsAsync(schedule(jobs(1), [{ name: 'h', slots: 1 }], async () => 0, { maxAttempts: 0 }), { instanceOf: SchedulerError, message: /maxAttempts/ });
});

test('jobMatrix is scenarios × guests × repeats', (t) => {
  const m = jobMatrix({ scenarios: ['reboot', 'power-cut'], guests: ['linux', 'win11'], repeats: 3, requires: (_s, g) => (g === 'win11' ? ['windows'] : []) });
  t.is(m.length, 12);
  t.is(new Set(m.map((j) => j.id)).size, 12);
  t.deepEqual(m[0], { id: 'reboot/linux/1', payload: { scenario: 'reboot', guest: 'linux', repeat: 1 }, requires: [], cost: undefined });
  t.deepEqual(m.find((j) => j.id === 'power-cut/win11/3')?.requires, ['windows']);
});

// Speculation: backup copies on idle slots at the tail.

test('speculation: an idle slot starts a backup of a straggler on another host; the first to finish wins, the other is aborted', async (t) => {
  const vc = new VirtualClock();
  const hosts = [{ name: 'slow', slots: 1 }, { name: 'fast', slots: 1 }];
  const fake = fakeHosts<number>(vc, (_j, host) => ({ ms: host.name === 'slow' ? 5_000 : 30 }));
  const r = await vc.run(schedule(jobs(2), hosts, fake.run, { clock: vc, speculate: true }));
  t.deepEqual(fake.starts(), ['0 j0@slow#1', '0 j1@fast#1', '30 j0@fast#2s'], 'the backup starts the moment `fast` has nothing left');
  t.is(r.durationMs, 60, 'did not wait for the straggler');
  const j0 = r.outcomes[0];
  t.is(j0.status, 'done');
  t.is(j0.host, 'fast', 'the outcome names the host of the winning copy');
  t.is(j0.result, 'j0@fast');
  t.deepEqual(j0.attempts.map((a) => [a.host, a.outcome, a.speculative === true, a.durationMs]), [['fast', 'ok', true, 30], ['slow', 'superseded', false, 60]]);
  t.deepEqual(fake.aborts.map((a) => [a.at, `${a.job}@${a.host}`]), [[60, 'j0@slow']], 'the losing copy got the abort through its signal when the winner ended');
  t.true(fake.aborts[0].reason instanceof SchedulerError);
  t.regex((fake.aborts[0].reason as Error).message, /superseded by another attempt of the same job/);
  t.deepEqual(r.outcomes[1].attempts.map((a) => [a.host, a.outcome]), [['fast', 'ok']]);
  t.is(r.hosts.find((h) => h.name === 'slow')!.infrastructureFailures, 0, 'a superseded copy is not the host failing');

  // The same run without speculation waits for the straggler.
  const vc2 = new VirtualClock();
  const plain = fakeHosts<number>(vc2, (_j, host) => ({ ms: host.name === 'slow' ? 5_000 : 30 }));
  const p = await vc2.run(schedule(jobs(2), hosts, plain.run, { clock: vc2 }));
  t.is(p.durationMs, 5_000);
  t.true(p.outcomes.every((o) => o.attempts.length === 1 && !o.attempts[0].speculative));
});

test('speculation: a copy failing on infrastructure while the backup runs is not retried; the backup is the outcome', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, (job, _h, ctx) => (job.id === 'short' ? { ms: 0 } : ctx.speculative ? { ms: 150 } : { ms: 120, end: 'infra' }));
  const r = await vc.run(schedule([{ id: 'late', payload: 0 }, { id: 'short', payload: 1 }], [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, speculate: true, maxAttempts: 1 }));
  t.deepEqual(fake.starts(), ['0 late@a#1', '0 short@b#1', '0 late@b#2s'], 'no retry was started; `a`, where it failed, backs up nothing');
  const late = r.outcomes[0];
  t.is(late.status, 'done', 'maxAttempts 1, yet the job is done: the backup carried it');
  t.deepEqual(late.attempts.map((a) => [a.host, a.outcome, a.speculative === true]), [['a', 'infrastructure', false], ['b', 'ok', true]]);
  t.is(late.result, 'late@b');
  t.is(r.durationMs, 150);
});

test('speculation: a verdict failure that ends first is the outcome; a pass of the other copy never replaces it', async (t) => {
  const vc = new VirtualClock();
  const fake = fakeHosts<number>(vc, (_j, _h, ctx) => (ctx.speculative ? { ms: 60_000, result: 'EXACT' } : { ms: 80, end: 'verdict' }));
  const r = await vc.run(schedule([{ id: 'v', payload: 0 }], [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, speculate: true }));
  const v = r.outcomes[0];
  t.is(v.status, 'error');
  t.regex(String((v.error as Error).message), /MISSED/);
  t.is(v.result, undefined);
  t.deepEqual(v.attempts.map((a) => [a.outcome, a.speculative === true]), [['error', false], ['superseded', true]]);
  t.deepEqual(fake.aborts.map((a) => [a.at, a.host]), [[80, 'b']]);
  t.is(r.durationMs, 80);
});

test('speculation: when both copies complete, the first result is kept, the other is superseded, and schedule() waits for both', async (t) => {
  const vc = new VirtualClock();
  // Copies that ignore their signal: both return a result.
  const fake = fakeHosts<number>(vc, (_j, host, ctx) => ({ ms: ctx.speculative ? 100 : 60, ignoreSignal: true, result: host.name }));
  const r = await vc.run(schedule([{ id: 'x', payload: 0 }], [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, speculate: true }));
  const x = r.outcomes[0];
  t.is(x.status, 'done');
  t.is(x.result, 'a');
  t.is(x.host, 'a');
  t.deepEqual(x.attempts.map((a) => [a.host, a.outcome, a.speculative === true]), [['a', 'ok', false], ['b', 'superseded', true]]);
  t.is(r.durationMs, 100);
});

test('speculation: never on the same host, a host without the tags, or past the slots', async (t) => {
  const vc = new VirtualClock();
  const hosts = [{ name: 'kvm-1', slots: 1, tags: ['kvm'] }, { name: 'plain', slots: 3 }, { name: 'kvm-2', slots: 1, tags: ['kvm'] }];
  const fake = fakeHosts<number>(vc, (job) => ({ ms: job.id === 'k' ? 100 : 60 }));
  const r = await vc.run(schedule([{ id: 'k', payload: 0, requires: ['kvm'], cost: 100 }, { id: 'p', payload: 1, cost: 60 }], hosts, fake.run, { clock: vc, speculate: true }));
  t.is(fake.overSlots(), 0);
  t.deepEqual(fake.calls.filter((c) => c.job === 'k').map((c) => c.host).sort(), ['kvm-1', 'kvm-2'], 'the kvm job has its backup on the other kvm host only');
  const p = fake.calls.filter((c) => c.job === 'p').map((c) => c.host);
  t.is(new Set(p).size, p.length, 'never two copies on one host');
  t.true(r.outcomes.every((o) => o.status === 'done'));
});

test('speculation: cancel stops every copy', async (t) => {
  const vc = new VirtualClock();
  const ac = new AbortController();
  const fake = fakeHosts<number>(vc, () => ({ ms: 10_000 }));
  const p = tracked(schedule(jobs(1), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], fake.run, { clock: vc, signal: ac.signal, speculate: true }));
  await vc.advance(50);
  t.deepEqual(fake.starts(), ['0 j0@a#1', '0 j0@b#2s']);
  ac.abort(new Error('SIGINT'));
  await vc.flush();
  t.true(p.settled);
  const r = await p.promise;
  t.true(r.cancelled);
  t.deepEqual(fake.aborts.map((a) => [a.at, a.host]).sort(), [[50, 'a'], [50, 'b']]);
  t.is(r.outcomes[0].status, 'cancelled');
  t.deepEqual(r.outcomes[0].attempts.map((a) => a.outcome), ['cancelled', 'cancelled']);
});
