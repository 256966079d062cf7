/**
 * `schedule(jobs, hosts, run, options)`: runs every job on the hosts and returns each job's
 * outcome and each host's summary. One Dispatcher per call (dispatcher.ts has the policy).
 */
import { Dispatcher } from './dispatcher.ts';
import type { Job, RunJob, ScheduleOptions, ScheduleResult, SchedulerHost } from './types.ts';

export async function schedule<J, R, H extends SchedulerHost>(jobs: Iterable<Job<J>>, hosts: readonly H[], run: RunJob<J, R, H>, options: ScheduleOptions<J, H> = {}): Promise<ScheduleResult<J, R>> {
  return new Dispatcher(jobs, hosts, run, options).run();
}
