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
