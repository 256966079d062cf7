/**
 * Time for the scheduler: `now()` for start times and durations, `after()` for its one timer
 * (the cancel grace period). `realClock` is the wall clock; `VirtualClock` is time that moves
 * only when told to (tests, and bench:schedule's runs without the scheduler's own cost).
 */
import { MinHeap } from '../util/index.ts';

export interface Clock {
  /** Milliseconds (since the epoch for the real clock). */
  now(): number;
  /** Calls `fire` once `ms` have passed; the returned function cancels it. */
  after(ms: number, fire: () => void): () => void;
}

export const realClock: Clock = {
  now: Date.now,
  after(ms, fire) {
    const timer = setTimeout(fire, ms);
    return () => clearTimeout(timer);
  },
};

/** `options.clock` as a Clock: a bare `now()` keeps the real timers. */
export function toClock(clock: Clock | (() => number) | undefined): Clock {
  if (clock === undefined) return realClock;
  if (typeof clock === 'function') return { now: clock, after: realClock.after };
  return clock;
}

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
  done: boolean;
}

/** Lets every promise chain that can run do so (one macrotask: the microtask queue drains first). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Time that moves only when told to: `advance(ms)` runs the timers due in that window in order
 * (everything else that can run runs between two timers), `run(work)` jumps to the next timer
 * whenever nothing else can run until `work` settles. Code under it must wait only on this
 * clock's timers (`sleep`, `after`), never on real ones or I/O.
 */
export class VirtualClock implements Clock {
  #now = 0;
  #seq = 0;
  #live = 0;
  readonly #timers = new MinHeap<Timer>((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq));

  /** A bound function: pass `vc.now` where a `() => number` is wanted. */
  readonly now = (): number => this.#now;

  constructor(start = 0) {
    this.#now = start;
  }

  /** Timers not yet fired or cancelled. */
  get pending(): number {
    return this.#live;
  }

  /** When the next timer fires (undefined when none is pending). */
  get nextAt(): number | undefined {
    this.#dropDone();
    return this.#live > 0 ? this.#peek()?.at : undefined;
  }

  after(ms: number, fire: () => void): () => void {
    const timer: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, done: false, fire };
    this.#timers.push(timer);
    this.#live++;
    return () => this.#cancel(timer);
  }

  /** Resolves after `ms` of this clock; rejects with the signal's reason on abort (no new error, no stack trace). */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        cancel();
        reject(signal?.reason);
      };
      const cancel = this.after(ms, () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs what can run without moving time. */
  async flush(): Promise<void> {
    await settle();
  }

  /** Moves time `ms` forward, firing the timers due on the way in order, and lets everything they start run. */
  async advance(ms: number): Promise<void> {
    const until = this.#now + Math.max(0, ms);
    await settle();
    for (;;) {
      this.#dropDone();
      const next = this.#peek();
      if (next === undefined || next.at > until) break;
      this.#fire();
      await settle();
    }
    this.#now = until;
    await settle();
  }

  /** Settles `work`, moving the clock to the next timer whenever everything else has run. */
  async run<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    work.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (;;) {
      await settle();
      if (settled) return work;
      this.#dropDone();
      if (this.#peek() === undefined) throw new Error('virtual clock: nothing left to wait for, but the work has not settled');
      this.#fire();
    }
  }

  #fire(): void {
    const timer = this.#timers.pop() as Timer;
    this.#now = Math.max(this.#now, timer.at);
    timer.done = true;
    this.#live--;
    timer.fire();
  }

  #cancel(timer: Timer): void {
    if (timer.done) return;
    timer.done = true;
    this.#live--;
  }

  #peek(): Timer | undefined {
    return this.#timers.peek();
  }

  #dropDone(): void {
    while (this.#timers.peek()?.done) this.#timers.pop();
  }
}
