/**
 * The order of pending jobs for `order: 'cost'`: a plan that makes every slot finish at the same
 * time, flattened into a dispatch order.
 *
 * Why not plain longest-first (LPT, Graham 1969): with many jobs of similar size, LPT keeps the
 * slots in step, wave after wave, and when the job count is not a multiple of the slot count the
 * last wave is partial: 10,000 jobs on 990 slots leave 100 jobs for the end while 890 slots
 * idle, about 4.5 % of the makespan. The plan instead decides how many jobs each slot takes so
 * that the counts add up, and which ones, so that the loads come out even:
 *
 *   1. H, the common finish time: (sum of the slots' ready times + sum of the costs) / slots,
 *      leaving out slots that are busy past H.
 *   2. Slot i takes k_i jobs, k_i ≈ (H - ready_i) / mean cost: the floors, and one more for the
 *      slots with the largest remainders until the counts add up to the number of jobs.
 *   3. Jobs longest first, each to the slot with the most room left per job it still has to take
 *      ((H - its load) / its remaining count): a slot that must take more jobs gets shorter ones.
 *   4. Each job's planned start is its slot's load when it was placed (longest first within a
 *      slot); the dispatch order is by planned start. Slots are alike, so list scheduling in that
 *      order (the earliest free slot takes the next job) replays the plan while costs are right;
 *      when they are not, or an attempt fails, it is still a list schedule, and the scheduler plans
 *      the rest again (see dispatcher.ts).
 *
 * Tail (with speculation, when attempts fail): the `tail` shortest jobs are held out of the plan
 * and go last, longest first. With every slot ending together, an attempt that fails near the end
 * adds its whole retry after everything else, and no slot is free to have run a backup of it. A
 * tail of about one and a half waves of the shortest jobs puts a full wave of short jobs after the
 * plan (a late failure of a longer job is retried in its place) and then a partial wave that
 * leaves the other slots free for backup copies of the last jobs. Its price is that partial
 * wave's idle part.
 *
 * The plan is checked against plain longest-first by replaying both on the slots (list
 * scheduling with the costs as given); the plan is used only when it ends sooner, so it is never
 * worse than LPT on its own model (with few jobs per slot LPT is often already as good).
 *
 * Pure and deterministic (ties by input index): O(n log n + n log slots).
 */
import { MinHeap } from '../util/index.ts';

export interface PlanOptions {
  /** How many of the shortest jobs go last, outside the plan (longest first). @default 0 */
  tail?: number;
}

/**
 * Returns the indexes of `costs` in dispatch order, for slots that are free at `ready[i]` (same
 * unit as the costs; a free slot is `now`, a busy one the expected end of its job).
 */
export function balancedOrder(costs: readonly number[], ready: readonly number[], options: PlanOptions = {}): number[] {
  const n = costs.length;
  const c = costArray(costs);
  const byCost = longestFirstOf(c);
  if (n === 0 || ready.length === 0) return byCost;
  const slots = Float64Array.from(ready, (r) => (Number.isFinite(r) ? r : 0)).sort();
  const plan = evenOut(byCost, c, slots, 0);
  if (plan === null || listSchedule(c, slots, plan) >= listSchedule(c, slots, byCost)) return byCost;
  const tail = Math.min(n, Math.max(0, Math.floor(options.tail ?? 0)));
  return tail > 0 ? (evenOut(byCost, c, slots, tail) ?? byCost) : plan;
}

/** Longest first (LPT), ties by index; a cost that is not a positive number counts as 0. */
export function longestFirst(costs: readonly number[]): number[] {
  return longestFirstOf(costArray(costs));
}

function costArray(costs: readonly number[]): Float64Array {
  return Float64Array.from(costs, (x) => (Number.isFinite(x) && x > 0 ? x : 0));
}

function longestFirstOf(c: Float64Array): number[] {
  return Array.from({ length: c.length }, (_, j) => j).sort((a, b) => c[b] - c[a] || a - b);
}

/**
 * Steps 1–4 for the jobs `byCost` (longest first) but the `tail` last ones, which follow in
 * that order. `slots`: ready times, ascending. Null when there is nothing to plan.
 */
function evenOut(byCost: readonly number[], c: Float64Array, slots: Float64Array, tail: number): number[] | null {
  const bulk = byCost.slice(0, byCost.length - tail);
  let work = 0;
  for (const j of bulk) work += c[j];
  if (bulk.length === 0 || work === 0) return null;

  // 1. The common finish time, over the slots free before it.
  let active = slots.length;
  let sum = 0;
  for (const r of slots) sum += r;
  let finish = (sum + work) / active;
  while (active > 1 && slots[active - 1] >= finish) {
    sum -= slots[--active];
    finish = (sum + work) / active;
  }

  // 2. How many jobs each slot takes: the floors, then one more for the largest remainders
  // (the floors never add up to more than the jobs, and the rest is fewer than the slots).
  const mean = work / bulk.length;
  const count = new Int32Array(active);
  const remainder = new Float64Array(active);
  let counted = 0;
  for (let i = 0; i < active; i++) {
    const x = Math.max(0, (finish - slots[i]) / mean);
    count[i] = Math.floor(x);
    remainder[i] = x - count[i];
    counted += count[i];
  }
  const byRemainder = Array.from({ length: active }, (_, i) => i).sort((a, b) => remainder[b] - remainder[a] || a - b);
  for (let q = 0; counted < bulk.length; q++, counted++) count[byRemainder[q % active]]++;

  // 3. Longest first, to the slot with the most room per job still to take. Only the slot just
  // served changes its key, and it is out of the heap while it does.
  const load = slots.slice(0, active);
  const key = new Float64Array(active);
  const heap = new MinHeap<number>((a, b) => key[a] > key[b] || (key[a] === key[b] && a < b));
  for (let i = 0; i < active; i++) {
    if (count[i] === 0) continue;
    key[i] = (finish - load[i]) / count[i];
    heap.push(i);
  }
  const start = new Float64Array(c.length);
  for (const j of bulk) {
    const i = heap.pop() as number;
    start[j] = load[i];
    load[i] += c[j];
    if (--count[i] > 0) {
      key[i] = (finish - load[i]) / count[i];
      heap.push(i);
    }
  }

  // 4. By planned start, then the tail.
  bulk.sort((a, b) => start[a] - start[b] || c[b] - c[a] || a - b);
  for (let k = byCost.length - tail; k < byCost.length; k++) bulk.push(byCost[k]);
  return bulk;
}

/**
 * Replays `order` by list scheduling on slots free at `ready`: each job goes to the slot that
 * frees first. Returns when the last of the jobs ends (what runs on the slots before counts
 * only through their ready times). For tests and the plan's check against longest-first: what
 * an order is worth when the costs are exact.
 */
export function listSchedule(costs: ArrayLike<number>, ready: ArrayLike<number>, order: readonly number[]): number {
  const free = new MinHeap<number>((a, b) => a < b);
  let end = 0;
  for (let i = 0; i < ready.length; i++) free.push(ready[i]);
  if (free.size === 0) return order.length === 0 ? 0 : Infinity;
  for (const j of order) {
    const t = (free.pop() as number) + costs[j];
    free.push(t);
    end = Math.max(end, t);
  }
  return end;
}

/**
 * When the scheduler plans again (dispatcher.ts) and how long a tail it holds out. Chosen with
 * bench:schedule's virtual clock (the real scheduler, no overhead; 10 jobs per slot, 2 %
 * failures, dead hosts, 10–20 seeds): planning more often chases noise in the expected end
 * times and did worse; tails of 0.4, 1.0, 1.2, 1.3, 1.5, 2.45 and 3.45 waves did worse than 1.45.
 */
export const REPLAN = {
  /** Up to this many jobs, plan before the first dispatch; above, the first wave starts longest first. */
  planFirstUpTo: 2000,
  /** Plan again once the pending jobs are down to this share of the last plan. */
  shrink: 0.5,
  /** After a retry or a host going down, plan again when fewer than this many jobs per slot are pending… */
  endgameWaves: 3,
  /** …and the pending jobs are down to this share of the last plan (each plan costs milliseconds of a busy event loop). */
  endgameStep: 0.9,
  /**
   * The tail, in waves (× the slots), with speculation, once the up hosts' attempts fail often
   * enough to expect a failure per wave (failure rate × slots ≥ 1); none otherwise.
   */
  tailWaves: 1.45,
} as const;
