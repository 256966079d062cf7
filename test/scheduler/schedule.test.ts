/**
 * The scheduler against in-memory hosts (run functions that record and sleep). The same paths on
 * real hosts (local, sshd, dockerd) are in test/hosts/testbed.test.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { InfrastructureError } from '../../src/hosts/index.ts';
import { jobMatrix, schedule, SchedulerError, type Job, type SchedulerHost } from '../../src/scheduler/index.ts';

const jobs = (n: number, requires?: string[]): Array<Job<number>> => Array.from({ length: n }, (_, i) => ({ id: `j${i}`, payload: i, requires }));

test('respects slots per host and tags; every job runs once and reports its host', async (t) => {
  const hosts: SchedulerHost[] = [{ name: 'a', slots: 2, tags: ['kvm'] }, { name: 'b', slots: 1 }, { name: 'c', slots: 3 }];
  const running = new Map<string, number>();
  let maxOver = 0;
  const list = [...jobs(20), ...jobs(6, ['kvm']).map((j) => ({ ...j, id: `k${j.payload}` }))];
  const r = await schedule(list, hosts, async (job, host) => {
    running.set(host.name, (running.get(host.name) ?? 0) + 1);
    maxOver = Math.max(maxOver, (running.get(host.name) ?? 0) - host.slots);
    await sleep(5 + (job.payload % 3) * 3);
    running.set(host.name, (running.get(host.name) ?? 0) - 1);
    return `${job.id}@${host.name}`;
  });
  t.is(maxOver, 0, 'never more jobs on a host than its slots');
  t.false(r.cancelled);
  t.true(r.outcomes.every((o) => o.status === 'done' && o.attempts.length === 1 && o.result === `${o.job.id}@${o.host}`));
  t.true(r.outcomes.filter((o) => o.job.id.startsWith('k')).every((o) => o.host === 'a'), 'kvm jobs only on the kvm host');
  t.deepEqual([...new Set(r.outcomes.map((o) => o.host))].sort(), ['a', 'b', 'c']);
  t.deepEqual(r.outcomes.map((o) => o.job.id), list.map((j) => j.id), 'outcomes in input order');
});

test('least load first: idle hosts get the first jobs', async (t) => {
  const hosts = [{ name: 'a', slots: 4 }, { name: 'b', slots: 4 }, { name: 'c', slots: 4 }];
  const first: string[] = [];
  await schedule(jobs(3), hosts, async (_j, h) => {
    first.push(h.name);
    await sleep(20);
  });
  t.deepEqual(first.sort(), ['a', 'b', 'c']);
});

test('infrastructure failures are retried on another host and recorded; verdict failures are not retried', async (t) => {
  const hosts = [{ name: 'flaky', slots: 1 }, { name: 'good', slots: 1 }];
  let calls = 0;
  const r = await schedule([{ id: 'infra', payload: 0 }, { id: 'verdict', payload: 1 }], hosts, async (job, host, _signal, ctx) => {
    calls++;
    if (job.id === 'infra' && host.name === 'flaky') throw new InfrastructureError('flaky', 'connection lost');
    if (job.id === 'infra') t.is(ctx.previous[0]?.host, 'flaky');
    if (job.id === 'verdict') throw new Error('MISSED: 3 blocks');
    return 'ok';
  });
  const [infra, verdict] = r.outcomes;
  t.is(infra.status, 'done');
  t.is(infra.host, 'good');
  t.deepEqual(infra.attempts.map((a) => [a.host, a.outcome]), [['flaky', 'infrastructure'], ['good', 'ok']]);
  t.regex(infra.attempts[0].error ?? '', /InfrastructureError: host flaky: connection lost/);
  t.is(verdict.status, 'error');
  t.is(verdict.attempts.length, 1, 'never retried');
  t.regex(String((verdict.error as Error).message), /MISSED/);
  t.is(calls, 3);
});

test('errors marked `infrastructure: true` by other modules count as infrastructure', async (t) => {
  const hosts = [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }];
  const r = await schedule([{ id: 'x', payload: 0 }], hosts, async (_j, h) => {
    if (h.name === 'a') throw Object.assign(new Error('VM did not boot'), { infrastructure: true });
    return 1;
  });
  t.is(r.outcomes[0].status, 'done');
  t.is(r.outcomes[0].attempts.length, 2);
});

test('a host failing repeatedly is marked down; its work finishes elsewhere', async (t) => {
  const hosts = [{ name: 'dead', slots: 2 }, { name: 'ok', slots: 1 }];
  const events: string[] = [];
  const r = await schedule(jobs(12), hosts, async (_j, h) => {
    await sleep(2);
    if (h.name === 'dead') throw new InfrastructureError('dead', 'unreachable');
    return h.name;
  }, { hostFailureLimit: 3, maxAttempts: 5, onEvent: (e) => e.type === 'host-down' && events.push(`${e.host.name}: ${e.reason}`) });
  t.true(r.outcomes.every((o) => o.status === 'done' && o.host === 'ok'));
  const dead = r.hosts.find((h) => h.name === 'dead');
  t.true(dead?.down);
  t.true((dead?.attempts ?? 0) <= 4, `at most limit + running slots attempts on the dead host, got ${dead?.attempts}`);
  t.is(events.length, 1);
  t.regex(events[0], /dead: 3 infrastructure failures in a row/);
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
  t.true(calls <= 4 + 2, `few calls once hosts are down, got ${calls}`);
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
  t.true(r.hosts[0].down);
});

test('cancel via signal stops the run cleanly', async (t) => {
  const ac = new AbortController();
  const started: string[] = [];
  const stopped: string[] = [];
  const p = schedule(jobs(10), [{ name: 'a', slots: 2 }], async (job, _h, signal) => {
    started.push(job.id);
    try {
      await sleep(10_000, undefined, { signal });
    } finally {
      await sleep(50);
      stopped.push(job.id);
    }
  }, { signal: ac.signal });
  await sleep(50);
  ac.abort(new Error('SIGINT'));
  const r = await p;
  t.true(r.cancelled);
  t.deepEqual(started, ['j0', 'j1']);
  t.deepEqual(stopped.sort(), ['j0', 'j1'], 'both running jobs finished their cleanup before schedule() returned');
  t.deepEqual(r.outcomes.map((o) => o.status), Array(10).fill('cancelled'));
  t.deepEqual(r.outcomes[0].attempts.map((a) => a.outcome), ['cancelled']);
  t.is(r.outcomes[5].attempts.length, 0);
});

test('cancel: a job ignoring its signal is abandoned after the grace period', async (t) => {
  const ac = new AbortController();
  let release!: () => void;
  const stuck = new Promise<void>((r) => (release = r));
  t.teardown(() => release());
  const p = schedule(jobs(1), [{ name: 'a', slots: 1 }], async () => stuck, { signal: ac.signal, cancelGraceMs: 100 });
  await sleep(20);
  ac.abort();
  const r = await p;
  t.is(r.outcomes[0].status, 'cancelled');
  t.regex((r.outcomes[0].error as Error).message, /did not stop within 100 ms/);
});

test('an already aborted signal runs nothing', async (t) => {
  let ran = 0;
  const r = await schedule(jobs(3), [{ name: 'a', slots: 1 }], async () => ran++, { signal: AbortSignal.abort() });
  t.is(ran, 0);
  t.true(r.cancelled);
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

test('speculation: an idle slot starts a backup of a straggler on another host; the first to finish wins, the other is stopped', async (t) => {
  const hosts = [{ name: 'slow', slots: 1 }, { name: 'fast', slots: 1 }];
  const aborted: string[] = [];
  const run = async (job: Job<number>, host: SchedulerHost, signal: AbortSignal) => {
    try {
      await sleep(host.name === 'slow' ? 5_000 : 30, undefined, { signal });
    } catch (e) {
      aborted.push(`${job.id}@${host.name}`);
      throw e;
    }
    return `${job.id}@${host.name}`;
  };
  const t0 = Date.now();
  const r = await schedule(jobs(2), hosts, run, { speculate: true });
  t.true(Date.now() - t0 < 2_000, 'did not wait for the straggler');
  const onSlow = r.outcomes.find((o) => o.attempts.some((a) => a.host === 'slow'))!;
  t.is(onSlow.status, 'done');
  t.is(onSlow.host, 'fast', 'the outcome names the host of the winning copy');
  t.is(onSlow.result, `${onSlow.job.id}@fast`);
  t.deepEqual(onSlow.attempts.map((a) => [a.host, a.outcome, a.speculative === true]), [['fast', 'ok', true], ['slow', 'superseded', false]]);
  t.deepEqual(aborted, [`${onSlow.job.id}@slow`], 'the losing copy got the abort through its signal');
  const other = r.outcomes.find((o) => o !== onSlow)!;
  t.deepEqual(other.attempts.map((a) => [a.host, a.outcome]), [['fast', 'ok']]);
  t.is(r.hosts.find((h) => h.name === 'slow')!.infrastructureFailures, 0, 'a superseded copy is not the host failing');

  // The same run without speculation waits for the straggler.
  const plain = await schedule(jobs(2), [{ name: 'slow', slots: 1 }, { name: 'fast', slots: 1 }], async (job, host) => {
    await sleep(host.name === 'slow' ? 150 : 30);
    return host.name;
  });
  t.true(plain.outcomes.every((o) => o.attempts.length === 1 && !o.attempts[0].speculative));
});

test('speculation: a copy failing on infrastructure while the backup runs is not retried; the backup is the outcome', async (t) => {
  const hosts = [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }];
  let calls = 0;
  const r = await schedule([{ id: 'late', payload: 0 }, { id: 'short', payload: 1 }], hosts, async (job, host, signal, ctx) => {
    calls++;
    if (job.id === 'short') return 'short';
    if (!ctx.speculative) {
      await sleep(120, undefined, { signal });
      throw new InfrastructureError(host.name, 'connection lost');
    }
    await sleep(150, undefined, { signal });
    return `late@${host.name}`;
  }, { speculate: true, maxAttempts: 1 });
  const late = r.outcomes[0];
  t.is(late.status, 'done', 'maxAttempts 1, yet the job is done: the backup carried it');
  t.deepEqual(late.attempts.map((a) => [a.outcome, a.speculative === true]), [['infrastructure', false], ['ok', true]]);
  t.is(late.result, `late@${late.host}`);
  t.not(late.host, late.attempts[0].host);
  t.is(calls, 3, 'no retry was queued');
});

test('speculation: a verdict failure that ends first is the outcome; a pass of the other copy never replaces it', async (t) => {
  const hosts = [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }];
  const r = await schedule([{ id: 'v', payload: 0 }], hosts, async (_job, _host, signal, ctx) => {
    if (!ctx.speculative) {
      await sleep(80, undefined, { signal });
      throw new Error('MISSED: 3 blocks');
    }
    await sleep(60_000, undefined, { signal });
    return 'EXACT';
  }, { speculate: true });
  const v = r.outcomes[0];
  t.is(v.status, 'error');
  t.regex(String((v.error as Error).message), /MISSED/);
  t.is(v.result, undefined);
  t.deepEqual(v.attempts.map((a) => [a.outcome, a.speculative === true]), [['error', false], ['superseded', true]]);
});

test('speculation: when both copies complete, the first result is kept and the other is superseded', async (t) => {
  const hosts = [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }];
  // Copies that ignore their signal: both return a result.
  const r = await schedule([{ id: 'x', payload: 0 }], hosts, async (_job, host, _signal, ctx) => {
    await sleep(ctx.speculative ? 100 : 60);
    return host.name;
  }, { speculate: true });
  const x = r.outcomes[0];
  t.is(x.status, 'done');
  t.is(x.result, x.attempts.find((a) => !a.speculative)?.host);
  t.deepEqual(x.attempts.map((a) => [a.outcome, a.speculative === true]), [['ok', false], ['superseded', true]]);
  t.is(x.host, x.result ?? null);
});

test('speculation: never on the same host, a host without the tags, or past the slots', async (t) => {
  const hosts = [{ name: 'kvm-1', slots: 1, tags: ['kvm'] }, { name: 'plain', slots: 3 }, { name: 'kvm-2', slots: 1, tags: ['kvm'] }];
  const live = new Map<string, number>();
  const copies = new Map<string, string[]>();
  let over = 0;
  const r = await schedule([{ id: 'k', payload: 0, requires: ['kvm'], cost: 100 }, { id: 'p', payload: 1, cost: 60 }], hosts, async (job, host, signal) => {
    live.set(host.name, (live.get(host.name) ?? 0) + 1);
    over = Math.max(over, (live.get(host.name) ?? 0) - host.slots);
    copies.set(job.id, [...(copies.get(job.id) ?? []), host.name]);
    try {
      await sleep(job.id === 'k' ? 100 : 60, undefined, { signal });
    } finally {
      live.set(host.name, (live.get(host.name) ?? 0) - 1);
    }
    return host.name;
  }, { speculate: true });
  t.is(over, 0);
  t.deepEqual(copies.get('k')?.sort(), ['kvm-1', 'kvm-2'], 'the kvm job has its backup on the other kvm host only');
  t.is(new Set(copies.get('p')).size, copies.get('p')!.length, 'never two copies on one host');
  t.true(r.outcomes.every((o) => o.status === 'done'));
});

test('speculation: cancel stops every copy', async (t) => {
  const ac = new AbortController();
  const stopped: string[] = [];
  const p = schedule(jobs(1), [{ name: 'a', slots: 1 }, { name: 'b', slots: 1 }], async (job, host, signal) => {
    try {
      await sleep(10_000, undefined, { signal });
    } finally {
      stopped.push(host.name);
    }
  }, { signal: ac.signal, speculate: true });
  await sleep(50);
  ac.abort(new Error('SIGINT'));
  const r = await p;
  t.true(r.cancelled);
  t.deepEqual(stopped.sort(), ['a', 'b']);
  t.is(r.outcomes[0].status, 'cancelled');
  t.deepEqual(r.outcomes[0].attempts.map((a) => a.outcome), ['cancelled', 'cancelled']);
});
