/** Parsing of option values shared by the commands. */
import { InvalidArgumentError } from 'commander';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/** "4096", "4k", "4KiB", "1.5GiB" → bytes (binary units). */
export function parseBytes(value: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new InvalidArgumentError(`Expected ${what} as bytes (e.g. 4096, 64KiB), got \`${value}\``);
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`Expected ${what} to be a whole number of bytes, got \`${value}\``);
  return n;
}

export function parsePositiveBytes(value: string, what: string): number {
  const n = parseBytes(value, what);
  if (n <= 0) throw new InvalidArgumentError(`Expected ${what} to be positive, got \`${value}\``);
  return n;
}

/** "offset:length" with byte units on either side. */
export function parseRange(value: string): { offset: number; length: number } {
  const i = value.indexOf(':');
  if (i < 0) throw new InvalidArgumentError(`Expected a range as <offset>:<length>, got \`${value}\``);
  return { offset: parseBytes(value.slice(0, i), 'range offset'), length: parseBytes(value.slice(i + 1), 'range length') };
}

export function parseFormat(value: string): 'qcow2' | 'raw' {
  if (value !== 'qcow2' && value !== 'raw') throw new InvalidArgumentError(`Expected a format of qcow2 or raw, got \`${value}\``);
  return value;
}
