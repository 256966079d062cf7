export { schedule } from './schedule.ts';
export { jobMatrix } from './matrix.ts';
export type { Job, JobStatus, JobOutcome, AttemptRecord, AttemptContext, HostSummary, ScheduleResult, ScheduleOptions, SchedulerEvent, SchedulerHost, RunJob } from './types.ts';
export { realClock, VirtualClock, type Clock } from './clock.ts';
export { openHostPool, onJobSession, type HostPool, type HostPoolOptions } from './host-pool.ts';
export { SchedulerError } from './errors.ts';
export { balancedOrder, listSchedule, longestFirst, REPLAN, type PlanOptions } from './plan.ts';
