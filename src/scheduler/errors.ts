/** Typed errors of the scheduler. */

/** Bad schedule input (duplicate ids, bad options) or a job no host can take. */
export class SchedulerError extends Error {
  override name = 'SchedulerError';
}
