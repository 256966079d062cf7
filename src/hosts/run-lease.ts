/**
 * Run ids and leases. Every folder, container and process a run creates carries its run id; the
 * lease (who runs it: controller machine, pid and the pid's start time) lets a later run decide
 * whether that run is still alive or crashed, so the sweeper removes only leftovers.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface RunLease {
  runId: string;
  /** Host name of the machine running the harness. */
  controller: string;
  pid: number;
  /** Start time of that pid (clock ticks since boot, /proc/PID/stat field 22): guards against pid reuse. */
  pidStart: string;
  startedAt: string;
}

export const RUN_ID_PATTERN = /^r\d{8}T\d{6}-[a-z0-9]{6}$/;

/** `r20260102T030405-k3j9x2`: sortable, safe in paths, labels and environment values. */
export function newRunId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  const rand = [...randomBytes(6)].map((b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('');
  return `r${t}-${rand}`;
}

export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

export function currentLease(runId: string): RunLease {
  return { runId, controller: hostname(), pid: process.pid, pidStart: processStartTime(process.pid) ?? '?', startedAt: new Date().toISOString() };
}

export interface LivenessOptions {
  /** The run in progress (never stale). */
  currentRunId?: string;
  /**
   * A run started on another controller machine cannot be checked; it counts as stale after this
   * long. @default 24 hours
   */
  foreignMaxAgeMs?: number;
  now?: number;
}

/** Is the run of this lease still going? Unknown or unreadable leases count as alive (never remove what you cannot judge). */
export function isLeaseLive(lease: Partial<RunLease> | null, options: LivenessOptions = {}): boolean {
  if (!lease || typeof lease.runId !== 'string') return true;
  if (lease.runId === options.currentRunId) return true;
  if (lease.controller === hostname() && typeof lease.pid === 'number') {
    return processStartTime(lease.pid) === lease.pidStart;
  }
  const started = Date.parse(lease.startedAt ?? '');
  if (Number.isNaN(started)) return true;
  return (options.now ?? Date.now()) - started < (options.foreignMaxAgeMs ?? 24 * 3600 * 1000);
}
