/** Typed errors of the scheduler. */
import { HarnessError } from '../util/index.ts';

/** Bad schedule input (duplicate ids, bad options) or a job no host can take. */
export class SchedulerError extends HarnessError {
  override name = 'SchedulerError';
}
