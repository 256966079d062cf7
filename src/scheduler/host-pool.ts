/**
 * The scheduler over real hosts: executors for an inventory, connected and swept at start (a
 * host that cannot be reached starts down), and a run-function adapter that gives each attempt
 * its own job session (work folder or container), closed whatever happens.
 */
import { createExecutor, isInfrastructureError, newRunId, safeId, type ExecutorOptions, type HostExecutor, type HostSpec, type JobSession, type Logger, type SweepReport } from '../hosts/index.ts';
import type { AttemptContext, Job, RunJob } from './types.ts';

export interface HostPool {
  runId: string;
  hosts: HostSpec[];
  executors: Map<string, HostExecutor>;
  /** Hosts unusable from the start: name → reason. Pass as `downHosts` to schedule(). */
  down: Map<string, string>;
  sweeps: SweepReport[];
  close(): Promise<void>;
}

export interface HostPoolOptions {
  /** @default newRunId() */
  runId?: string;
  /** Remove leftovers of crashed runs on each host first. @default true */
  sweep?: boolean;
  signal?: AbortSignal;
  log?: Logger;
  /** For tests: build executors another way. */
  createExecutor?: (spec: HostSpec, options: ExecutorOptions) => HostExecutor;
}

export async function openHostPool(hosts: readonly HostSpec[], options: HostPoolOptions = {}): Promise<HostPool> {
  const runId = options.runId ?? newRunId();
  const make = options.createExecutor ?? createExecutor;
  const executors = new Map<string, HostExecutor>();
  const down = new Map<string, string>();
  const sweeps: SweepReport[] = [];
  await Promise.all(
    hosts.map(async (spec) => {
      const ex = make(spec, { runId, log: options.log });
      executors.set(spec.name, ex);
      try {
        await ex.connect(options.signal);
        if (options.sweep !== false) sweeps.push(await ex.sweep({ signal: options.signal }));
      } catch (error) {
        if (options.signal?.aborted) throw error;
        down.set(spec.name, `${(error as Error).name}: ${(error as Error).message}`);
      }
    }),
  );
  return {
    runId,
    hosts: [...hosts],
    executors,
    down,
    sweeps,
    close: async () => {
      await Promise.allSettled([...executors.values()].map((e) => e.close()));
    },
  };
}

/**
 * Adapts `fn(job, session, signal)` to the scheduler: each attempt opens a job session on the
 * chosen host (id `<job id>-a<attempt>`) and closes it afterwards — killing what it started and
 * removing its folder or container — also when the attempt throws or is cancelled.
 */
export function onJobSession<J, R>(pool: HostPool, fn: (job: Job<J>, session: JobSession, signal: AbortSignal, context: AttemptContext) => Promise<R>): RunJob<J, R, HostSpec> {
  return async (job, host, signal, context) => {
    const ex = pool.executors.get(host.name);
    if (!ex) throw new Error(`no executor for host ${host.name}`);
    const session = await ex.openJob(safeId(`${job.id}-a${context.attempt}`), { signal });
    let failed: unknown;
    try {
      return await fn(job, session, signal, context);
    } catch (error) {
      failed = error;
      throw error;
    } finally {
      // Closing a session on a dead host fails quietly (the sweeper removes its leftovers later);
      // never let that mask the attempt's own error.
      await session.close().catch((error: unknown) => {
        if (failed === undefined && isInfrastructureError(error)) throw error;
      });
    }
  };
}
