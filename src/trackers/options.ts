/** Option checks the trackers share. */
import { parseSize } from '../util/units.ts';
import type { OptionCheck } from './tracker.ts';

/** A power of two of at least `min` bytes ("64KiB" or an integer). */
export function powerOfTwoSize(min: number): OptionCheck {
  return (v) => {
    const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
    return n !== null && n >= min && (n & (n - 1)) === 0 ? null : `a power of two of at least ${min}`;
  };
}

/** One of the given strings. */
export function oneOf(...values: string[]): OptionCheck {
  return (v) => (typeof v === 'string' && values.includes(v) ? null : `one of ${values.map((x) => `\`${x}\``).join(', ')}`);
}

/** A non-empty string. */
export const text: OptionCheck = (v) => (typeof v === 'string' && v.trim() !== '' ? null : 'a non-empty string');

/** Bytes of an option that its check accepted, or the default. */
export function sizeOption(options: Readonly<Record<string, unknown>>, key: string, dflt: number): number {
  const v = options[key];
  if (v === undefined) return dflt;
  const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
  if (n === null) throw new TypeError(`tracker option \`${key}\` was not checked: ${String(v)}`);
  return n;
}
