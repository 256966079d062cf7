/** Typed errors of the scheduler, and its checks of numeric input. */
import { HarnessError } from '../util/index.ts';

/** Bad schedule input (duplicate ids, bad options) or a job no host can take. */
export class SchedulerError extends HarnessError {
  override name = 'SchedulerError';
}

/** `v`, or `fallback` when undefined; a SchedulerError naming `name` unless a positive safe integer. */
export function positiveInt(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new SchedulerError(`Expected \`${name}\` to be a positive integer, got \`${String(v)}\` (${typeof v})`);
  return v;
}
