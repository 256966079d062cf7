/**
 * bench:schedule — the real scheduler over simulated hosts whose "executor" only sleeps.
 * 10,000 jobs over 500 hosts (2 slots each), random infrastructure failures (2% of attempts, after
 * a uniform share of the job's time, plus 5 hosts that fail every attempt and must be marked
 * down). For each seed it prints:
 *   - scheduling overhead per job: wall time of a run whose jobs take no time, divided by jobs
 *     (input order, and order 'cost' with speculation, which plans);
 *   - makespan against the ideal (sum of all attempt durations but those of backup copies that
 *     lost / slots of the hosts that stayed up), for input order and `order: 'cost'` (a plan that
 *     evens out the slots, src/scheduler/plan.ts), without and with speculation (backup copies on
 *     idle slots; the time of copies that lost is printed as a share of the slots' time);
 *   - next to each, the same scheduler on a virtual clock (VirtualClock, src/scheduler/clock.ts):
 *     the same code and random draws, time moving only when nothing can run, so the scheduler's
 *     own cost is zero: what the policy gives. The gap between the two is the cost of one process running a
 *     thousand 200 ms jobs at once (timers firing late, garbage collection, planning).
 * and, over the seeds, the spread for order 'cost' with speculation, the configuration the
 * target is for. Targets: overhead < 1 ms per job, makespan within 5% of ideal.
 *
 *   node bench/schedule.ts [--seeds 1,2,3] [--jobs N] [--hosts N] [--slots N] [--mean-ms N] [--flaky-rate R] [--bad-hosts N]
 */
import { parseArgs } from 'node:util';
import { InfrastructureError } from '../src/hosts/index.ts';
import { schedule, VirtualClock, type Job, type SchedulerHost } from '../src/scheduler/index.ts';
import { mulberry32 as rng } from '../src/util/index.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '10000' },
    hosts: { type: 'string', default: '500' },
    slots: { type: 'string', default: '2' },
    'mean-ms': { type: 'string', default: '200' },
    seeds: { type: 'string', default: '1,2,3' },
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

async function simulate(seed: number, order: 'input' | 'cost', zeroWork: boolean, speculate = false, virtual = false) {
  const jobs = jobList(seed);
  const fail = rng(seed + 7);
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
    { order, maxAttempts: 4, speculate, ...(virtual ? { clock: vc } : {}) },
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

const pct = (x: number) => `${(x * 100 - 100).toFixed(1)}%`;
const lines: string[] = [];
const spread: Array<{ seed: number; real: number; virtual: number }> = [];
for (const seed of values.seeds.split(',').map(Number)) {
  lines.push(`seed ${seed}:`);
  for (const [order, speculate] of [['input', false], ['cost', true]] as const) {
    const o = await simulate(seed, order, true, speculate);
    const perJob = o.wall / JOBS;
    lines.push(`  overhead per job (order=${order}${speculate ? ' speculate' : ''}): ${(perJob * 1000).toFixed(1)} µs (target < 1000 µs) ${perJob < 1 ? 'OK' : 'OVER'}; ${JOBS} jobs of zero work in ${o.wall.toFixed(0)} ms wall, ${o.cpuMs.toFixed(0)} ms CPU`);
  }
  for (const speculate of [false, true]) {
    for (const order of ['input', 'cost'] as const) {
      const s = await simulate(seed, order, false, speculate);
      const v = await simulate(seed, order, false, speculate, true);
      const ratio = s.wall / s.ideal;
      if (order === 'cost' && speculate) spread.push({ seed, real: ratio, virtual: v.wall / v.ideal });
      lines.push(
        `  order=${order}${speculate ? ' speculate' : ''}: makespan ${(s.wall / 1000).toFixed(2)} s vs ideal ${(s.ideal / 1000).toFixed(2)} s = ${pct(ratio)} over (target < 5%) ${ratio < 1.05 ? 'OK' : 'OVER'}; ` +
          `on a virtual clock (the policy, no overhead): ${pct(v.wall / v.ideal)}; ` +
          (speculate ? `backup copies that lost: ${((s.waste / (s.wall * s.upSlots)) * 100).toFixed(1)}% of slot time; ` : '') +
          `${s.done}/${JOBS} done, ${s.infra} gave up, ${s.attempts} attempts, hosts down: ${s.down.join(' ')} (${s.upSlots} slots up), CPU ${((s.cpuMs / JOBS) * 1000).toFixed(0)} µs/job`,
      );
    }
  }
}
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const real = sorted(spread.map((x) => x.real));
const virt = sorted(spread.map((x) => x.virtual));
const met = real.filter((x) => x < 1.05).length;
lines.push(
  `order=cost speculate over ${spread.length} seed(s): makespan over ideal ${pct(real[0])} … ${pct(real[real.length - 1])} (median ${pct(real[Math.floor(real.length / 2)])}), within 5% on ${met} of ${spread.length}; ` +
    `on a virtual clock ${pct(virt[0])} … ${pct(virt[virt.length - 1])}`,
);
// The report is the bench's output (stdout is the script's result, like bench/diff.ts).
for (const l of lines) process.stdout.write(`${l}\n`);
