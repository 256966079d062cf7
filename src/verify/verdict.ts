/**
 * Claim × truth → verdict (DESIGN.md "The question every run answers"). Pure.
 *
 * 1. A lost claim is RESYNC: the tracker declared (or the decoder detected) that tracking broke.
 * 2. The truth comes at a fine granularity that divides the claim's; truth blocks lying wholly in
 *    the tracker's own metadata extents are dropped (so a real change beside the metadata, in the
 *    same claim block, still counts).
 * 3. A truth block is covered when the claim block containing it is set. Counts and ranges are in
 *    claim blocks: changed = claim blocks holding a changed truth block; missed = changed and not
 *    claimed; extra = claimed and not changed.
 * 4. MISSED if anything is missed; else SUPERSET if anything is extra; else EXACT.
 */
import type { Claim } from '../cbt/index.ts';
import type { BlockRun } from '../truth/index.ts';
import { clamp, coarsen, normalize, subtract, totalOf } from './runs.ts';
import { HarnessError } from '../util/index.ts';

export type Verdict = 'EXACT' | 'SUPERSET' | 'RESYNC' | 'MISSED';
export const VERDICTS: readonly Verdict[] = ['EXACT', 'SUPERSET', 'RESYNC', 'MISSED'];

/** What changed in the tracked volume: runs of `granularity`-byte blocks from `claim.volume.offset`. */
export interface Truth {
  granularity: number;
  changed: readonly BlockRun[];
  /** Optional: blocks written (allocated), for reports. */
  written?: readonly BlockRun[];
}

export interface VerifyResult {
  verdict: Verdict;
  missedBlocks: number;
  extraBlocks: number;
  changedBlocks: number;
  claimedBlocks: number;
  /** The claim's granularity: every count and range above is in these blocks. */
  granularity: number;
  missed: BlockRun[];
  /** Claimed and unchanged runs (claim blocks), for block maps. */
  extra: BlockRun[];
  /** Changed runs (claim blocks), for block maps. */
  changed: BlockRun[];
  /** claimed / changed (Infinity when nothing changed but something is claimed; 1 when both 0). */
  overReportRatio: number;
  reason: string | null;
  /** Truth blocks dropped because they lie in the tracker's metadata. */
  excludedTruthBlocks: number;
}

export class VerifyInputError extends HarnessError {
  override name = 'VerifyInputError';
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * The truth granularity to compute for a claim: divides the claim granularity, at most
 * `preferred`, and aligned with the excluded extents relative to the volume when possible
 * (never below 512 bytes, the sector).
 */
export function truthGranularityFor(claim: Pick<Claim, 'granularity' | 'volume' | 'excluded'>, preferred = 4096): number {
  let g = gcd(claim.granularity, preferred);
  for (const [off, len] of claim.excluded) {
    const rel = off - claim.volume.offset;
    if (rel + len <= 0 || rel >= claim.volume.length) continue;
    const aligned = gcd(gcd(g, Math.abs(rel)), len);
    // Below a sector, keep g: blocks only partly covered by metadata then still count as truth.
    if (aligned >= 512) g = aligned;
  }
  return g;
}

/** Truth block runs lying wholly inside `excluded` (disk-relative [offset, length] ranges). */
export function excludedTruthRuns(claim: Pick<Claim, 'volume' | 'excluded'>, g: number): BlockRun[] {
  const runs: BlockRun[] = [];
  for (const [off, len] of claim.excluded) {
    const rel = off - claim.volume.offset;
    const first = Math.ceil(Math.max(0, rel) / g);
    // The last block may be partial: it is wholly excluded when the range reaches the volume end.
    const end = rel + len >= claim.volume.length ? Math.ceil(claim.volume.length / g) : Math.floor((rel + len) / g);
    if (end > first) runs.push([first, end - first]);
  }
  return normalize(runs);
}

export function judge(claim: Claim, truth: Truth): VerifyResult {
  const gc = claim.granularity;
  const gt = truth.granularity;
  if (!Number.isSafeInteger(gc) || gc <= 0 || !Number.isSafeInteger(gt) || gt <= 0) throw new VerifyInputError(`granularities must be positive integers (claim ${gc}, truth ${gt})`);
  if (gc % gt !== 0) throw new VerifyInputError(`the truth granularity ${gt} must divide the claim granularity ${gc}`);
  const factor = gc / gt;
  const nClaim = Math.ceil(claim.volume.length / gc);
  const nTruth = Math.ceil(claim.volume.length / gt);
  const truthRuns = clamp(normalize([...truth.changed]), nTruth);
  const excluded = excludedTruthRuns(claim, gt);
  const kept = subtract(truthRuns, excluded);
  const excludedTruthBlocks = totalOf(truthRuns) - totalOf(kept);
  const changed = coarsen(kept, factor);
  const changedBlocks = totalOf(changed);
  if (claim.state === 'lost') {
    return { verdict: 'RESYNC', missedBlocks: 0, extraBlocks: 0, changedBlocks, claimedBlocks: 0, granularity: gc, missed: [], extra: [], changed, overReportRatio: changedBlocks ? 0 : 1, reason: claim.reason, excludedTruthBlocks };
  }
  const claimed = clamp(normalize(claim.blocks), nClaim);
  const missed = subtract(changed, claimed);
  const extra = subtract(claimed, changed);
  const claimedBlocks = totalOf(claimed);
  const missedBlocks = totalOf(missed);
  const extraBlocks = totalOf(extra);
  const verdict: Verdict = missedBlocks > 0 ? 'MISSED' : extraBlocks > 0 ? 'SUPERSET' : 'EXACT';
  const overReportRatio = changedBlocks === 0 ? (claimedBlocks === 0 ? 1 : Infinity) : claimedBlocks / changedBlocks;
  return { verdict, missedBlocks, extraBlocks, changedBlocks, claimedBlocks, granularity: gc, missed, extra, changed, overReportRatio, reason: null, excludedTruthBlocks };
}

/** Whether a verdict is acceptable under `expect` (default: anything but MISSED). */
export function acceptable(verdict: Verdict, expect?: readonly Verdict[]): boolean {
  return expect && expect.length ? expect.includes(verdict) : verdict !== 'MISSED';
}
