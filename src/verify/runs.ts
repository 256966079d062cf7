/** Operations on sorted, merged `[first, count]` runs (pure, linear in the number of runs). */
import type { BlockRun } from '../truth/index.ts';

export function totalOf(runs: readonly BlockRun[]): number {
  let n = 0;
  for (const [, c] of runs) n += c;
  return n;
}

/** Append [first, first+count) to sorted merged runs, merging with the last one. */
function push(out: BlockRun[], first: number, count: number): void {
  if (count <= 0) return;
  const last = out.at(-1);
  if (last && first <= last[0] + last[1]) {
    last[1] = Math.max(last[0] + last[1], first + count) - last[0];
  } else {
    out.push([first, count]);
  }
}

/** Normalise any runs (unsorted, overlapping) into sorted merged runs. */
export function normalize(runs: readonly BlockRun[]): BlockRun[] {
  const sorted = [...runs].filter(([, c]) => c > 0).sort((a, b) => a[0] - b[0]);
  const out: BlockRun[] = [];
  for (const [f, c] of sorted) push(out, f, c);
  return out;
}

/** Blocks in `a` and not in `b`. */
export function subtract(a: readonly BlockRun[], b: readonly BlockRun[]): BlockRun[] {
  const out: BlockRun[] = [];
  let j = 0;
  for (const [f, c] of a) {
    let s = f;
    const e = f + c;
    while (j < b.length && b[j][0] + b[j][1] <= s) j++;
    let k = j;
    while (s < e && k < b.length && b[k][0] < e) {
      if (b[k][0] > s) push(out, s, b[k][0] - s);
      s = Math.max(s, b[k][0] + b[k][1]);
      k++;
    }
    if (s < e) push(out, s, e - s);
  }
  return out;
}

/** Blocks in `runs` below `limit`. */
export function clamp(runs: readonly BlockRun[], limit: number): BlockRun[] {
  const out: BlockRun[] = [];
  for (const [f, c] of runs) {
    if (f >= limit) break;
    push(out, f, Math.min(c, limit - f));
  }
  return out;
}

/** Runs at a fine granularity → runs of the coarse blocks (factor fine blocks each) they touch. */
export function coarsen(runs: readonly BlockRun[], factor: number): BlockRun[] {
  const out: BlockRun[] = [];
  for (const [f, c] of runs) {
    const a = Math.floor(f / factor);
    const b = Math.floor((f + c - 1) / factor);
    push(out, a, b - a + 1);
  }
  return out;
}
