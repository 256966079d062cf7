/**
 * The plan behind order 'cost' (src/scheduler/plan.ts), judged by replaying its order with list
 * scheduling on exact costs — the model the plan is made for — and the scheduler following it,
 * on bench:schedule's virtual clock (deterministic: no wall time in the assertions).
 */
import test from 'ava';
import { balancedOrder, listSchedule, longestFirst, schedule, REPLAN, VirtualClock } from '../../src/scheduler/index.ts';
import { mulberry32 } from '../../src/util/index.ts';

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const isPermutation = (order: readonly number[], n: number) => order.length === n && new Set(order).size === n && order.every((j) => Number.isInteger(j) && j >= 0 && j < n);

test('listSchedule: each job to the slot that frees first; the end of the last job', (t) => {
  t.is(listSchedule([3, 3, 2, 2, 2], [0, 0], [0, 1, 2, 3, 4]), 7);
  t.is(listSchedule([3, 3, 2, 2, 2], [0, 0], [0, 2, 3, 1, 4]), 6);
  t.is(listSchedule([1], [0, 5], [0]), 1, 'a slot busy until 5 is not where the job goes, nor its end');
  t.is(listSchedule([1, 1], [2, 5], [0, 1]), 4, 'both to the slot free at 2');
  t.is(listSchedule([], [], []), 0);
  t.is(listSchedule([1], [], [0]), Infinity, 'jobs and no slot never end');
});

test('the textbook case LPT gets wrong: 3,3,2,2,2 on two slots ends at 6, not 7', (t) => {
  const costs = [3, 3, 2, 2, 2];
  t.deepEqual(longestFirst(costs), [0, 1, 2, 3, 4]);
  t.is(listSchedule(costs, [0, 0], longestFirst(costs)), 7);
  const order = balancedOrder(costs, [0, 0]);
  t.true(isPermutation(order, 5));
  t.is(listSchedule(costs, [0, 0], order), 6);
});

test('the partial last wave: 10,000 jobs on 990 slots, LPT ends ~4.5 % over the ideal, the plan within 0.5 %', (t) => {
  const r = mulberry32(11);
  const costs = Array.from({ length: 10_000 }, () => Math.round(200 * (0.5 + r())));
  const ready = new Array<number>(990).fill(0);
  const ideal = sum(costs) / ready.length;
  const lpt = listSchedule(costs, ready, longestFirst(costs)) / ideal - 1;
  const order = balancedOrder(costs, ready);
  t.true(isPermutation(order, costs.length));
  const plan = listSchedule(costs, ready, order) / ideal - 1;
  t.true(lpt > 0.04, `LPT ${(lpt * 100).toFixed(2)} %`);
  t.true(plan < 0.005, `plan ${(plan * 100).toFixed(2)} %`);
});

test('slots busy for a while (the re-plan of a running schedule) are filled up to the same end', (t) => {
  const r = mulberry32(5);
  const costs = Array.from({ length: 2_000 }, () => 50 + Math.round(100 * r()));
  const ready = Array.from({ length: 100 }, (_, i) => (i % 4) * 40);
  const ideal = (sum(costs) + sum(ready)) / ready.length;
  const end = listSchedule(costs, ready, balancedOrder(costs, ready));
  t.true(end / ideal - 1 < 0.01, `${end} vs ideal ${ideal.toFixed(1)}`);
  // A slot busy past the common end takes nothing and does not drag the others.
  const late = [...ready.slice(0, 99), 1e6];
  t.deepEqual(balancedOrder(costs, late), balancedOrder(costs, ready.slice(0, 99)), 'the same order as without the busy slot');
  const alone = listSchedule(costs, ready.slice(0, 99), balancedOrder(costs, ready.slice(0, 99)));
  t.true(alone / ((sum(costs) + sum(ready.slice(0, 99))) / 99) - 1 < 0.01);
});

test('never worse than longest first on its own model (random instances, a few jobs to many per slot)', (t) => {
  const r = mulberry32(3);
  let better = 0;
  for (let k = 0; k < 400; k++) {
    const n = 1 + Math.floor(r() * 120);
    const m = 1 + Math.floor(r() * 12);
    const spread = r() < 0.5 ? 3 : 100;
    const costs = Array.from({ length: n }, () => Math.round(1 + r() * spread));
    const ready = Array.from({ length: m }, () => (r() < 0.3 ? Math.round(r() * 50) : 0));
    const order = balancedOrder(costs, ready);
    t.true(isPermutation(order, n));
    const plan = listSchedule(costs, ready, order);
    const lpt = listSchedule(costs, ready, longestFirst(costs));
    t.true(plan <= lpt, `instance ${k}: plan ${plan} > LPT ${lpt}`);
    if (plan < lpt) better++;
  }
  t.true(better > 40, `the plan beat LPT on ${better} of 400`);
});

test('tail: the shortest jobs go last, longest first, outside the plan', (t) => {
  const r = mulberry32(9);
  const costs = Array.from({ length: 1_000 }, () => Math.round(100 + 200 * r()));
  const ready = new Array<number>(40).fill(0);
  const tail = 58;
  const order = balancedOrder(costs, ready, { tail });
  t.true(isPermutation(order, costs.length));
  const shortest = longestFirst(costs).slice(-tail);
  t.deepEqual(order.slice(-tail), shortest);
  // The rest is still evened out: everything before the tail ends together.
  const ideal = sum(order.slice(0, -tail).map((j) => costs[j])) / ready.length;
  t.true(listSchedule(costs, ready, order.slice(0, -tail)) / ideal - 1 < 0.02);
  // A tail of everything (or more) is longest first.
  t.deepEqual(balancedOrder(costs.slice(0, 30), ready, { tail: 100 }), longestFirst(costs.slice(0, 30)));
});

test('degenerate input: no jobs, no slots, zero and bad costs', (t) => {
  t.deepEqual(balancedOrder([], [0, 0]), []);
  t.deepEqual(balancedOrder([1, 3, 2], []), [1, 2, 0], 'no slot: longest first');
  t.deepEqual(balancedOrder([0, 0, 0], [0, 0]), [0, 1, 2], 'nothing to plan: input order');
  const odd = [Number.NaN, -5, Infinity, 4, 2, 0];
  const order = balancedOrder(odd, [0, Number.NaN]);
  t.true(isPermutation(order, odd.length));
  t.deepEqual(longestFirst(odd), [3, 4, 0, 1, 2, 5], 'a cost that is not a positive number counts as 0');
  t.deepEqual(balancedOrder([5, 1, 3], [0]), [0, 2, 1], 'one slot: every order ends together, longest first is kept');
});

test("the scheduler follows the plan: order 'cost' runs 3,3,2,2,2 on one host with two slots in 6 units, LPT's order would take 7", async (t) => {
  const unit = 100;
  const list = [3, 3, 2, 2, 2].map((c, i) => ({ id: `c${i}`, payload: c, cost: c * unit }));
  const vc = new VirtualClock();
  const started: string[] = [];
  const result = await vc.run(
    schedule(
      list,
      [{ name: 'h', slots: 2 }],
      async (job, _host, signal) => {
        started.push(job.id);
        await vc.sleep(job.payload * unit, signal);
        return job.payload;
      },
      { order: 'cost', clock: vc },
    ),
  );
  t.true(result.outcomes.every((o) => o.status === 'done'));
  t.is(result.durationMs, 6 * unit);
  t.deepEqual(started, ['c0', 'c2', 'c3', 'c1', 'c4']);
  // The same jobs in input order (3,3 first, as LPT would) take 7.
  const vc2 = new VirtualClock();
  const input = await vc2.run(schedule(list, [{ name: 'h', slots: 2 }], async (job, _h, signal) => vc2.sleep(job.payload * unit, signal), { clock: vc2 }));
  t.is(input.durationMs, 7 * unit);
});

test('a large run plans while its first wave runs, and still ends near the ideal (virtual clock)', async (t) => {
  const r = mulberry32(21);
  const n = REPLAN.planFirstUpTo + 1_000;
  const list = Array.from({ length: n }, (_, i) => {
    const c = Math.round(100 + 200 * r());
    return { id: `j${i}`, payload: c, cost: c };
  });
  const hosts = Array.from({ length: 150 }, (_, i) => ({ name: `h${i}`, slots: 2 }));
  const run = async (order: 'cost' | 'input') => {
    const vc = new VirtualClock();
    const out = await vc.run(schedule(list, hosts, async (job, _h, signal) => vc.sleep(job.payload, signal), { order, clock: vc }));
    return out.durationMs / (sum(list.map((j) => j.payload)) / 300) - 1;
  };
  const planned = await run('cost');
  const input = await run('input');
  t.true(planned < 0.01, `order cost: ${(planned * 100).toFixed(2)} % over the ideal`);
  t.true(input > planned, `input order: ${(input * 100).toFixed(2)} %`);
});
