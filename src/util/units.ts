/** Sizes (B/KiB/MiB/GiB/TiB), size ranges ("4KiB..1MiB") and durations ("10s") of scenario files. */
const UNIT: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };
const DUR: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export interface SizeRange {
  min: number;
  max: number;
}

/** Bytes of "4KiB" (or a plain integer); null when not a size. */
export function parseSize(v: string | number): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$/.exec(v);
  if (!m) return null;
  const n = Number(m[1]) * UNIT[m[2] ?? ''];
  return Number.isSafeInteger(n) ? n : null;
}

export function parseSizeRange(v: string | number): SizeRange | null {
  if (typeof v === 'string' && v.includes('..')) {
    const [a, b] = v.split('..');
    const min = parseSize(a);
    const max = parseSize(b);
    return min === null || max === null ? null : { min, max };
  }
  const s = parseSize(v);
  return s === null ? null : { min: s, max: s };
}

export function parseDuration(v: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(v);
  return m ? Math.round(Number(m[1]) * DUR[m[2]]) : null;
}

