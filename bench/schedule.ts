/**
 * bench:schedule — the real scheduler over simulated hosts whose "executor" only sleeps.
 * 10,000 jobs over 500 hosts (2 slots each), random infrastructure failures (2% of attempts,
 * plus 5 hosts that fail every attempt and must be marked down). Prints:
 *   - scheduling overhead per job: wall time of a run whose jobs take no time, divided by jobs;
 *   - makespan against the ideal (sum of all attempt durations / slots of the hosts that stayed
 *     up), for input order and for longest-first (`order: 'cost'`);
 *   - makespan against an oracle: the same attempts list-scheduled in the same order with zero
 *     overhead (an event simulation, retries ready when their failed attempt ends). The ideal
 *     is out of reach when jobs are coarse (10 jobs per slot here: the last wave leaves slots
 *     idle, and a late failure adds a whole retry, whatever the scheduler does); the gap to the
 *     oracle is what the scheduler itself costs;
 *   - the same with speculation (`speculate: true`): idle slots at the tail run backup copies, so
 *     a late failure no longer waits for its retry. The time of copies that lost the race is not
 *     work (it is not in the ideal) and is printed as a share of the slots' time. Next to it, the
 *     floor of that policy: an event simulation of it with zero overhead (speculativeFloor).
 * Targets: overhead < 1 ms per job, makespan within 5% of ideal.
 *
 *   node bench/schedule.ts [--jobs N] [--hosts N] [--slots N] [--mean-ms N] [--seed N]
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { InfrastructureError } from '../src/hosts/index.ts';
import { schedule, type Job, type SchedulerHost } from '../src/scheduler/index.ts';
import { mulberry32 as rng } from '../src/util/index.ts';
import { MinHeap } from './util.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '10000' },
    hosts: { type: 'string', default: '500' },
    slots: { type: 'string', default: '2' },
    'mean-ms': { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
    'flaky-rate': { type: 'string', default: '0.02' },
    'bad-hosts': { type: 'string', default: '5' },
  },
});
const JOBS = Number(values.jobs);
const HOSTS = Number(values.hosts);
const SLOTS = Number(values.slots);
const MEAN = Number(values['mean-ms']);


const hosts: SchedulerHost[] = Array.from({ length: HOSTS }, (_, i) => ({ name: `h${i}`, slots: SLOTS, tags: i % 10 === 0 ? ['kvm'] : [] }));
const FLAKY = Number(values['flaky-rate']);
// Spread over the range, off the `kvm` hosts (every 10th).
const badHosts = new Set(Array.from({ length: Number(values['bad-hosts']) }, (_, i) => `h${Math.floor(((i + 0.5) * HOSTS) / Number(values['bad-hosts'])) + 3}`));

/**
 * The reference: the same jobs with the same attempt durations, list-scheduled in the same order
 * on `slots` slots with zero overhead — an event simulation where a retry becomes ready when its
 * failed attempt ends and goes before fresh jobs (as in the scheduler). Returns the makespan.
 */
function oracle(jobs: number[][], slots: number): number {
  const free = new MinHeap<number>((a, b) => a < b); // slot free times
  for (let i = 0; i < slots; i++) free.push(0);
  const retries: Array<{ release: number; rest: number[] }> = [];
  let next = 0;
  let end = 0;
  while (next < jobs.length || retries.length > 0) {
    const t = free.pop() as number;
    retries.sort((a, b) => a.release - b.release);
    let attempts: number[];
    let start = t;
    if (retries.length > 0 && retries[0].release <= t) attempts = (retries.shift() as { rest: number[] }).rest;
    else if (next < jobs.length) attempts = jobs[next++];
    else {
      // Only retries left, none ready: this slot idles until the first one is.
      const r = retries.shift() as { release: number; rest: number[] };
      attempts = r.rest;
      start = r.release;
    }
    const finish = start + attempts[0];
    if (attempts.length > 1) retries.push({ release: finish, rest: attempts.slice(1) });
    free.push(finish);
    end = Math.max(end, finish);
  }
  return end;
}

/**
 * The floor for longest first + speculation: an event simulation of the same policy with zero
 * overhead — the same job durations, failures drawn the same way (2 % of attempts, after a
 * uniform fraction), retries before fresh jobs, and on an idle slot a backup of the single-copy
 * job expected to end last; the first copy to finish wins. Slots = the slots that stay up in the
 * real run (dead hosts cost nothing here, so the floor is if anything low). Returns the makespan
 * over the ideal (counted attempts / slots), as a ratio.
 */
function speculativeFloor(slots: number, seed: number): number {
  const dur = jobList(seed).map((j) => j.payload);
  const fail = rng(seed + 7);
  const queue = dur.map((_, i) => i).sort((a, b) => dur[b] - dur[a]);
  let next = 0;
  const retries: number[] = [];
  // Every attempt started; the heap orders the running ones by end time.
  const attempts: Array<{ job: number; start: number; end: number; failed: boolean; cancelled: boolean }> = [];
  const running = new MinHeap<number>((a, b) => attempts[a].end < attempts[b].end || (attempts[a].end === attempts[b].end && a < b));
  const live = new Map<number, number[]>(); // job → its running attempts
  let free = slots;
  let work = 0;
  let end = 0;
  const start = (job: number, now: number) => {
    const failed = fail() < FLAKY;
    const d = failed ? Math.round(dur[job] * fail()) : dur[job];
    attempts.push({ job, start: now, end: now + d, failed, cancelled: false });
    running.push(attempts.length - 1);
    live.set(job, [...(live.get(job) ?? []), attempts.length - 1]);
    free--;
  };
  const fill = (now: number) => {
    while (free > 0) {
      if (retries.length > 0) start(retries.shift() as number, now);
      else if (next < queue.length) start(queue[next++], now);
      else {
        let best = -1;
        let bestEnd = -Infinity;
        for (const [job, list] of live) {
          if (list.length !== 1) continue;
          const e = attempts[list[0]].start + dur[job];
          if (e > bestEnd) {
            best = job;
            bestEnd = e;
          }
        }
        if (best < 0) return;
        start(best, now);
      }
    }
  };
  fill(0);
  while (running.size > 0) {
    const i = running.pop() as number;
    const a = attempts[i];
    if (a.cancelled) continue;
    free++;
    const list = (live.get(a.job) ?? []).filter((x) => x !== i);
    work += a.end - a.start;
    if (a.failed) {
      if (list.length > 0) live.set(a.job, list);
      else {
        live.delete(a.job);
        retries.push(a.job);
      }
    } else {
      end = Math.max(end, a.end);
      for (const x of list) {
        attempts[x].cancelled = true;
        free++;
      }
      live.delete(a.job);
    }
    fill(a.end);
  }
  return end / (work / slots);
}

/** The jobs of a seed: durations between 0.5 and 1.5 × mean (payload = cost); 2% need a `kvm` host. */
function jobList(seed: number): Array<Job<number>> {
  const r = rng(seed);
  return Array.from({ length: JOBS }, (_, i) => {
    const d = Math.round(MEAN * (0.5 + r()));
    return { id: `j${i}`, payload: d, cost: d, requires: r() < 0.02 ? ['kvm'] : undefined };
  });
}

async function simulate(order: 'input' | 'cost', zeroWork: boolean, speculate = false) {
  const jobs = jobList(Number(values.seed));
  const attemptsOf = new Map<string, number[]>();
  const fail = rng(Number(values.seed) + 7);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const result = await schedule(
    jobs,
    hosts,
    async (job, host, signal) => {
      const bad = badHosts.has(host.name);
      const flaky = fail() < FLAKY;
      const ms = zeroWork ? 0 : bad || flaky ? Math.round(job.payload * fail()) : job.payload;
      const s = performance.now();
      if (ms > 0) await sleep(ms, undefined, { signal });
      else await Promise.resolve();
      const took = performance.now() - s;
      const list = attemptsOf.get(job.id) ?? [];
      list.push(took);
      attemptsOf.set(job.id, list);
      if (bad || flaky) throw new InfrastructureError(host.name, 'simulated: host unreachable');
      return host.name;
    },
    { order, maxAttempts: 4, speculate },
  );
  // Work: attempts that count (results and infrastructure failures); copies that lost the race are waste.
  let work = 0;
  let waste = 0;
  for (const o of result.outcomes) {
    for (const a of o.attempts) {
      if (a.outcome === 'superseded') waste += a.durationMs;
      else if (!zeroWork) work += a.durationMs;
    }
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const upSlots = result.hosts.filter((h) => !h.down).reduce((s, h) => s + h.slots, 0);
  const done = result.outcomes.filter((o) => o.status === 'done').length;
  const attempts = result.outcomes.reduce((s, o) => s + o.attempts.length, 0);
  const ordered = order === 'cost' ? [...jobs].sort((a, b) => (b.cost ?? 0) - (a.cost ?? 0)) : jobs;
  return { wall, waste, work, oracle: oracle(ordered.map((j) => attemptsOf.get(j.id) ?? []).filter((a) => a.length > 0), upSlots), cpuMs: (cpu.user + cpu.system) / 1000, ideal: work / upSlots, upSlots, done, attempts, down: result.hosts.filter((h) => h.down).map((h) => h.name), infra: result.outcomes.filter((o) => o.status === 'infrastructure').length };
}

const overhead = await simulate('input', true);
process.stderr.write(`scheduler overhead: ${JOBS} jobs of zero work over ${HOSTS} hosts in ${overhead.wall.toFixed(0)} ms wall, ${overhead.cpuMs.toFixed(0)} ms CPU\n`);
const perJob = overhead.wall / JOBS;
const lines = [`overhead per job: ${(perJob * 1000).toFixed(1)} µs (target < 1000 µs) ${perJob < 1 ? 'OK' : 'OVER'}`];
for (const speculate of [false, true]) {
  for (const order of ['input', 'cost'] as const) {
    const s = await simulate(order, false, speculate);
    const ratio = s.wall / s.ideal;
    const floor = speculate && order === 'cost' ? speculativeFloor(s.upSlots, Number(values.seed)) : null;
    lines.push(
      `order=${order}${speculate ? ' speculate' : ''}: makespan ${(s.wall / 1000).toFixed(2)} s vs ideal ${(s.ideal / 1000).toFixed(2)} s = ${(ratio * 100 - 100).toFixed(1)}% over (target < 5%) ${ratio < 1.05 ? 'OK' : 'OVER'}; ` +
        (speculate ? `backup copies that lost: ${((s.waste / (s.wall * s.upSlots)) * 100).toFixed(1)}% of slot time; ` : `vs zero-overhead oracle ${(s.oracle / 1000).toFixed(2)} s = ${((s.wall / s.oracle) * 100 - 100).toFixed(1)}% over; `) +
        (floor !== null ? `the same policy with zero overhead (event simulation): ${(floor * 100 - 100).toFixed(1)}% over ideal; ` : '') +
        `${s.done}/${JOBS} done, ${s.infra} gave up, ${s.attempts} attempts, hosts down: ${s.down.join(' ')} (${s.upSlots} slots up), scheduler+timers CPU ${(s.cpuMs / JOBS * 1000).toFixed(0)} µs/job`,
    );
  }
}
// The report is the bench's output (stdout is the script's result, like bench/diff.ts).
for (const l of lines) process.stdout.write(`${l}\n`);
