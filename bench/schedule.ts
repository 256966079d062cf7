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
import { parseArgs } from 'node:util';
import { InfrastructureError } from '../src/hosts/index.ts';
import { schedule, type Job, type SchedulerHost } from '../src/scheduler/index.ts';
import { mulberry32 as rng } from '../src/util/index.ts';
import { VirtualClock } from './virtual-clock.ts';

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
 * The executor's wait: a timer that ends early, rejecting with the signal's reason, when the
 * scheduler aborts the attempt. (timers/promises' sleep does the same but builds an AbortError
 * with a stack trace per abort: hundreds at the tail, when the losing backup copies stop.)
 */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The jobs of a seed: durations between 0.5 and 1.5 × mean (payload = cost); 2% need a `kvm` host. */
function jobList(seed: number): Array<Job<number>> {
  const r = rng(seed);
  return Array.from({ length: JOBS }, (_, i) => {
    const d = Math.round(MEAN * (0.5 + r()));
    return { id: `j${i}`, payload: d, cost: d, requires: r() < 0.02 ? ['kvm'] : undefined };
  });
}

async function simulate(order: 'input' | 'cost', zeroWork: boolean, speculate = false, virtual = false) {
  const jobs = jobList(Number(values.seed));
  const fail = rng(Number(values.seed) + 7);
  const vc = new VirtualClock();
  const now = virtual ? vc.now : () => performance.now();
  const t0 = now();
  const cpu0 = process.cpuUsage();
  const run = schedule(
    jobs,
    hosts,
    async (job, host, signal) => {
      const bad = badHosts.has(host.name);
      const flaky = fail() < FLAKY;
      const ms = zeroWork ? 0 : bad || flaky ? Math.round(job.payload * fail()) : job.payload;
      if (virtual) await vc.sleep(ms, signal);
      else if (ms > 0) await sleep(ms, signal);
      else await Promise.resolve();
      if (bad || flaky) throw new InfrastructureError(host.name, 'simulated: host unreachable');
      return host.name;
    },
    { order, maxAttempts: 4, speculate, ...(virtual ? { clock: vc.now } : {}) },
  );
  const result = virtual ? await vc.run(run) : await run;
  const wall = now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // Work: attempts that count (results and infrastructure failures); copies that lost the race are waste.
  let work = 0;
  let waste = 0;
  for (const o of result.outcomes) {
    for (const a of o.attempts) {
      if (a.outcome === 'superseded') waste += a.durationMs;
      else if (!zeroWork) work += a.durationMs;
    }
  }
  const upSlots = result.hosts.filter((h) => !h.down).reduce((s, h) => s + h.slots, 0);
  const done = result.outcomes.filter((o) => o.status === 'done').length;
  const attempts = result.outcomes.reduce((s, o) => s + o.attempts.length, 0);
  return { wall, waste, work, cpuMs: (cpu.user + cpu.system) / 1000, ideal: work / upSlots, upSlots, done, attempts, down: result.hosts.filter((h) => h.down).map((h) => h.name), infra: result.outcomes.filter((o) => o.status === 'infrastructure').length };
}

const overhead = await simulate('input', true);
process.stderr.write(`scheduler overhead: ${JOBS} jobs of zero work over ${HOSTS} hosts in ${overhead.wall.toFixed(0)} ms wall, ${overhead.cpuMs.toFixed(0)} ms CPU\n`);
const perJob = overhead.wall / JOBS;
const lines = [`overhead per job: ${(perJob * 1000).toFixed(1)} µs (target < 1000 µs) ${perJob < 1 ? 'OK' : 'OVER'}`];
const pct = (x: number) => `${(x * 100 - 100).toFixed(1)}%`;
for (const speculate of [false, true]) {
  for (const order of ['input', 'cost'] as const) {
    const s = await simulate(order, false, speculate);
    const v = await simulate(order, false, speculate, true);
    const ratio = s.wall / s.ideal;
    lines.push(
      `order=${order}${speculate ? ' speculate' : ''}: makespan ${(s.wall / 1000).toFixed(2)} s vs ideal ${(s.ideal / 1000).toFixed(2)} s = ${pct(ratio)} over (target < 5%) ${ratio < 1.05 ? 'OK' : 'OVER'}; ` +
        `the same scheduler on a virtual clock (no overhead): ${pct(v.wall / v.ideal)} over; ` +
        (speculate ? `backup copies that lost: ${((s.waste / (s.wall * s.upSlots)) * 100).toFixed(1)}% of slot time; ` : '') +
        `${s.done}/${JOBS} done, ${s.infra} gave up, ${s.attempts} attempts, hosts down: ${s.down.join(' ')} (${s.upSlots} slots up), scheduler+timers CPU ${(s.cpuMs / JOBS * 1000).toFixed(0)} µs/job`,
    );
  }
}
// The report is the bench's output (stdout is the script's result, like bench/diff.ts).
for (const l of lines) process.stdout.write(`${l}\n`);
