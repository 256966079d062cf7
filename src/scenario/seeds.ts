/** Reproducible seeds: the run seed and a path of names/indices always give the same seed. */
import { createHash } from 'node:crypto';

/** Seeds are unsigned 32-bit: what the PRNG (mulberry32) takes, and the run record's range. */
export const MAX_SEED = 0xffff_ffff;

/** A seed derived from `base` and `parts` (sha256; stable across hosts and versions). */
export function deriveSeed(base: number, ...parts: Array<string | number>): number {
  const h = createHash('sha256').update(String(base));
  for (const p of parts) h.update(`\0${p}`);
  return h.digest().readUInt32BE(0);
}

/** A fresh run seed when none is given. */
export function randomSeed(): number {
  return createHash('sha256').update(`${process.pid}:${process.hrtime.bigint()}:${Math.random()}`).digest().readUInt32BE(0);
}
