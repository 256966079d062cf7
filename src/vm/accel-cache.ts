/**
 * The accelerator probe's answers kept across runs (pure: the document and its rules; the file
 * is read and written in accel.ts). A probe costs a stalled boot (20 s under nested KVM here),
 * and its answer only changes when what it depends on changes: the QEMU binary and its version,
 * the host kernel, the /dev/kvm device, the probe kernel and initramfs, the machine and CPU
 * model. All of that is the entry's key; an entry is trusted for a day (`maxAgeMs`), or until
 * a forced probe replaces it. Only real answers are kept (the probe booted, stalled or QEMU
 * died), never an aborted probe or a missing /dev/kvm (instant to learn again).
 */
import { createHash } from 'node:crypto';

export const ACCEL_CACHE_VERSION = 1;
export const ACCEL_CACHE_MAX_AGE_MS = 24 * 3600 * 1000;
/** Entries kept in the file: the newest ones (a host rarely has more than a few). */
export const ACCEL_CACHE_MAX_ENTRIES = 32;

/** Everything a probe's answer depends on. */
export interface ProbeIdentity {
  /** The QEMU binary, resolved to a real path, and the first line of its `--version`. */
  qemu: { path: string; version: string };
  /** `uname -r` of the host kernel. */
  hostKernel: string;
  /** /dev/kvm's device number and inode: a different device (or none) is a different answer. */
  kvm: { rdev: number; ino: number };
  /** Probe kernel and initramfs: path, size and modification time. */
  files: Array<{ path: string; size: number; mtimeMs: number }>;
  append: string;
  marker: string;
  machine: string;
  cpu: string;
  timeoutMs: number;
}

export interface CachedProbe {
  key: string;
  /** When the probe ran (ISO time). */
  at: string;
  ok: boolean;
  reason: string;
  ms: number;
  cpu?: string;
  /** What the key was made of, for people reading the file. */
  identity: ProbeIdentity;
}

export interface AccelCacheDoc {
  version: number;
  entries: CachedProbe[];
}

export function emptyAccelCache(): AccelCacheDoc {
  return { version: ACCEL_CACHE_VERSION, entries: [] };
}

export function probeKey(identity: ProbeIdentity): string {
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 32);
}

/**
 * The document in `text`, or an empty one with the reason when it is not one this version
 * wrote (a corrupt or foreign file is never an error: the probe just runs again).
 */
export function parseAccelCache(text: string): { doc: AccelCacheDoc; problem?: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { doc: emptyAccelCache(), problem: `not JSON (${(e as Error).message})` };
  }
  const r = raw as { version?: unknown; entries?: unknown };
  if (typeof raw !== 'object' || raw === null || r.version !== ACCEL_CACHE_VERSION || !Array.isArray(r.entries)) {
    return { doc: emptyAccelCache(), problem: `not an accel cache of version ${ACCEL_CACHE_VERSION}` };
  }
  const entries = r.entries.filter(isEntry).slice(0, ACCEL_CACHE_MAX_ENTRIES);
  return { doc: { version: ACCEL_CACHE_VERSION, entries }, ...(entries.length !== r.entries.length ? { problem: `${r.entries.length - entries.length} malformed entries dropped` } : {}) };
}

function isEntry(e: unknown): e is CachedProbe {
  const x = e as Partial<CachedProbe>;
  return (
    typeof e === 'object' && e !== null &&
    typeof x.key === 'string' && typeof x.at === 'string' && Number.isFinite(Date.parse(x.at)) &&
    typeof x.ok === 'boolean' && typeof x.reason === 'string' && typeof x.ms === 'number' &&
    (x.cpu === undefined || typeof x.cpu === 'string') && typeof x.identity === 'object' && x.identity !== null
  );
}

/** The entry for `key` when it is younger than `maxAgeMs` (and not from the future), else null. */
export function lookupProbe(doc: AccelCacheDoc, key: string, now: number, maxAgeMs = ACCEL_CACHE_MAX_AGE_MS): CachedProbe | null {
  const e = doc.entries.find((x) => x.key === key);
  if (!e) return null;
  const age = now - Date.parse(e.at);
  return age >= 0 && age <= maxAgeMs ? e : null;
}

/** `doc` with `entry` in place of any entry of the same key, newest first, bounded. */
export function storeProbe(doc: AccelCacheDoc, entry: CachedProbe): AccelCacheDoc {
  const entries = [entry, ...doc.entries.filter((e) => e.key !== entry.key)].sort((a, b) => Date.parse(b.at) - Date.parse(a.at)).slice(0, ACCEL_CACHE_MAX_ENTRIES);
  return { version: ACCEL_CACHE_VERSION, entries };
}

/** "3 h 12 min" / "41 s": an entry's age for people. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
