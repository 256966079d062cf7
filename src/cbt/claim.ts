/**
 * What a tracker claims changed, decoded offline from an image. Every decoder returns this one
 * shape (DESIGN.md "CLI contract", `cbt decode`).
 */
import type { BlockRun } from '../truth/index.ts';

export type ClaimState = 'valid' | 'lost';

export interface Claim {
  /** Decoder name: dm-era, qemu-bitmap, cbtf, or the plugin's name. */
  decoder: string;
  /** `lost`: the tracker itself declared (or the decoder detected) that tracking is not trustworthy. */
  state: ClaimState;
  /** Why the claim is lost (null when valid). */
  reason: string | null;
  /** Bytes per claim block. */
  granularity: number;
  /** The tracked byte range of the disk (disk-relative). Claim block i covers volume.offset + [i*g, (i+1)*g). */
  volume: { offset: number; length: number };
  /** Claimed blocks as sorted, merged `[firstBlock, count]` runs (volume-relative block numbers). */
  blocks: BlockRun[];
  /** Disk-relative `[offset, length]` byte ranges holding the tracker's own metadata (excluded from truth). */
  excluded: Array<[number, number]>;
  /** Decoder-specific facts for reports (eras, generation, sequence, flags…). */
  details?: Record<string, unknown>;
}

/** Checks a claim's shape (a plugin's result); returns a list of problems, empty when sound. */
export function claimProblems(value: unknown): string[] {
  const p: string[] = [];
  const c = value as Partial<Claim> | null;
  if (typeof c !== 'object' || c === null) return ['the claim is not an object'];
  const isInt = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (typeof c.decoder !== 'string' || c.decoder === '') p.push('`decoder` must be a non-empty string');
  if (c.state !== 'valid' && c.state !== 'lost') p.push('`state` must be "valid" or "lost"');
  if (c.reason !== null && typeof c.reason !== 'string') p.push('`reason` must be a string or null');
  if (c.state === 'lost' && !c.reason) p.push('a lost claim needs a `reason`');
  if (!isInt(c.granularity) || (c.granularity as number) === 0) p.push('`granularity` must be a positive integer');
  if (typeof c.volume !== 'object' || c.volume === null || !isInt(c.volume.offset) || !isInt(c.volume.length)) p.push('`volume` must be {offset, length} of non-negative integers');
  if (!Array.isArray(c.blocks)) p.push('`blocks` must be an array of [first, count]');
  else {
    let prevEnd = -1;
    for (const r of c.blocks) {
      if (!Array.isArray(r) || r.length !== 2 || !isInt(r[0]) || !isInt(r[1]) || r[1] === 0) {
        p.push(`\`blocks\` entry ${JSON.stringify(r)} is not [first, count>0]`);
        break;
      }
      if (r[0] < prevEnd) {
        p.push('`blocks` must be sorted and non-overlapping');
        break;
      }
      prevEnd = r[0] + r[1];
    }
  }
  if (!Array.isArray(c.excluded) || !c.excluded.every((r) => Array.isArray(r) && r.length === 2 && isInt(r[0]) && isInt(r[1]))) p.push('`excluded` must be an array of [offset, length]');
  return p;
}
