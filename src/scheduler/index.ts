export { schedule, jobMatrix, type Job, type JobStatus, type JobOutcome, type AttemptRecord, type AttemptContext, type HostSummary, type ScheduleResult, type ScheduleOptions, type SchedulerEvent, type SchedulerHost, type RunJob } from './schedule.ts';
export { openHostPool, onJobSession, type HostPool, type HostPoolOptions } from './host-pool.ts';
export { SchedulerError } from './errors.ts';
export { balancedOrder, listSchedule, longestFirst, REPLAN, type PlanOptions } from './plan.ts';
