/**
 * Mapping pairs (runlists) of non-resident attributes, as described in ntfs-3g's runlist.c and
 * the Linux NTFS documentation: a header byte whose low nibble is the byte count of the run
 * length and high nibble the byte count of the LCN delta (signed, relative to the previous run's
 * LCN; 0 bytes = a sparse run), a 0x00 header ends the list.
 */
import { NtfsFormatError } from './errors.ts';

/** One run: `clusters` clusters from `vcn` stored at `lcn` (null: a sparse hole). */
export interface Run {
  vcn: number;
  lcn: number | null;
  clusters: number;
}

export interface RunlistContext {
  volume: string;
  /** Volume offset of the mapping pairs (for errors). */
  offset: number;
  totalClusters: number;
  /** VCNs must stay below this so byte offsets (VCN × cluster size) fit a JS number. */
  maxVcn: number;
}

/** Little-endian `n`-byte integer at `off`, sign-extended when `signed`. */
function readVar(b: Buffer, off: number, n: number, signed: boolean): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[off + i]);
  if (signed && n > 0 && b[off + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
  return v;
}

/**
 * Decode the mapping pairs in `b[start, end)` of one attribute extent starting at `lowestVcn`.
 * Every run must lie inside the volume, and the runs must end exactly at `highestVcn + 1`.
 */
export function decodeRunlist(b: Buffer, start: number, end: number, lowestVcn: number, highestVcn: number, ctx: RunlistContext): Run[] {
  const bad = (what: string, at: number): never => {
    throw new NtfsFormatError(`runlist: ${what}`, { volume: ctx.volume, offset: ctx.offset + (at - start) });
  };
  const runs: Run[] = [];
  let vcn = lowestVcn;
  let lcn = 0n;
  let p = start;
  while (true) {
    if (p >= end) bad('no terminating 0x00 byte', p);
    const h = b[p];
    if (h === 0) break;
    const lenSize = h & 0x0f;
    const offSize = h >> 4;
    if (lenSize === 0 || lenSize > 8 || offSize > 8) bad(`header byte 0x${h.toString(16)} has field sizes ${lenSize}/${offSize}`, p);
    if (p + 1 + lenSize + offSize > end) bad('a run runs past the end of the attribute', p);
    const len = readVar(b, p + 1, lenSize, true);
    if (len <= 0n || len > BigInt(ctx.maxVcn - vcn)) bad(`run length ${len} is out of range`, p);
    const clusters = Number(len);
    let runLcn: number | null = null;
    if (offSize > 0) {
      lcn += readVar(b, p + 1 + lenSize, offSize, true);
      if (lcn < 0n || lcn + len > BigInt(ctx.totalClusters)) bad(`run at LCN ${lcn} of ${len} clusters lies outside the volume's ${ctx.totalClusters} clusters`, p);
      runLcn = Number(lcn);
    }
    runs.push({ vcn, lcn: runLcn, clusters });
    vcn += clusters;
    p += 1 + lenSize + offSize;
  }
  // An empty extent may say highest VCN 0 instead of -1 (ntfs-3g accepts both).
  if (vcn !== highestVcn + 1 && !(highestVcn === 0 && vcn === lowestVcn)) bad(`runs end at VCN ${vcn - 1}, the attribute says its highest VCN is ${highestVcn}`, p);
  return runs;
}

/** Index of the run holding `vcn` (runs sorted and contiguous from VCN 0), or -1. */
export function findRun(runs: Run[], vcn: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid];
    if (vcn < r.vcn) hi = mid - 1;
    else if (vcn >= r.vcn + r.clusters) lo = mid + 1;
    else return mid;
  }
  return -1;
}
