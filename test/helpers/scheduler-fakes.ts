/**
 * Hosts for scheduler tests that only wait on a VirtualClock: each attempt does what `behave`
 * says (wait, then succeed, fail on infrastructure or with a verdict; honour or ignore the abort;
 * take a while to clean up), and every start and abort is recorded with its virtual time.
 */
import { InfrastructureError } from '../../src/hosts/index.ts';
import type { AttemptContext, Job, RunJob, SchedulerHost, VirtualClock } from '../../src/scheduler/index.ts';
import type { LogFields, Logger } from '../../src/util/index.ts';

export interface Behaviour<R> {
  /** How long the attempt works (virtual ms). @default 10 */
  ms?: number;
  /** How it ends after `ms`. @default 'ok' */
  end?: 'ok' | 'infra' | 'verdict';
  /** Keeps working through an abort (a run function that ignores its signal). */
  ignoreSignal?: boolean;
  /** After an abort, cleanup takes this long before the attempt rejects. @default 0 */
  cleanupMs?: number;
  result?: R;
}

export interface Call {
  at: number;
  job: string;
  host: string;
  attempt: number;
  speculative: boolean;
}

export interface Aborted {
  at: number;
  job: string;
  host: string;
  reason: unknown;
}

export function fakeHosts<J, R = string, H extends SchedulerHost = SchedulerHost>(vc: VirtualClock, behave: (job: Job<J>, host: H, context: AttemptContext) => Behaviour<R> = () => ({})) {
  const calls: Call[] = [];
  const aborts: Aborted[] = [];
  const live = new Map<string, number>();
  let over = 0;
  const run: RunJob<J, R | string, H> = async (job, host, signal, context) => {
    calls.push({ at: vc.now(), job: job.id, host: host.name, attempt: context.attempt, speculative: context.speculative });
    live.set(host.name, (live.get(host.name) ?? 0) + 1);
    over = Math.max(over, (live.get(host.name) ?? 0) - host.slots);
    const b = behave(job, host, context);
    try {
      try {
        await vc.sleep(b.ms ?? 10, b.ignoreSignal ? undefined : signal);
      } catch (error) {
        aborts.push({ at: vc.now(), job: job.id, host: host.name, reason: error });
        if (b.cleanupMs) await vc.sleep(b.cleanupMs);
        throw error;
      }
    } finally {
      live.set(host.name, (live.get(host.name) ?? 0) - 1);
    }
    if (b.end === 'infra') throw new InfrastructureError(host.name, 'connection lost');
    if (b.end === 'verdict') throw new Error(`MISSED: 3 blocks (${job.id})`);
    return b.result ?? `${job.id}@${host.name}`;
  };
  /** Starts as [at job@host#attempt] strings, `s` for a backup copy. */
  const starts = () => calls.map((c) => `${c.at} ${c.job}@${c.host}#${c.attempt}${c.speculative ? 's' : ''}`);
  return { run, calls, aborts, starts, overSlots: () => over };
}

/** A logger that keeps what it is told. */
export function recordingLogger(): Logger & { lines: Array<{ message: string } & LogFields> } {
  const lines: Array<{ message: string } & LogFields> = [];
  return {
    name: 'cbt:scheduler',
    enabled: true,
    lines,
    debug: (message, fields) => void lines.push({ message, ...fields }),
    warn: (message, fields) => void lines.push({ message, level: 'warn', ...fields }),
  };
}

/** Has `p` settled yet? (Check after `vc.advance` / `vc.flush`.) */
export function tracked<T>(p: Promise<T>): { readonly settled: boolean; promise: Promise<T> } {
  const state = { settled: false, promise: p };
  p.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

export const jobs = (n: number, requires?: string[], prefix = 'j'): Array<Job<number>> => Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, payload: i, requires }));
