/**
 * A virtual clock for bench:schedule: the real scheduler runs with `clock: vc.now` and the
 * executor sleeps with `vc.sleep`; time moves only when nothing else can run (every promise
 * chain settled), straight to the next timer. So the scheduler's own code decides everything
 * and its cost is zero: the makespan is what the policy alone gives, reproducible for a seed.
 */
import { MinHeap } from '../src/util/index.ts';

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
  done: boolean;
}

export class VirtualClock {
  #now = 0;
  #seq = 0;
  readonly #timers = new MinHeap<Timer>((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq));

  readonly now = (): number => this.#now;

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const timer: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, done: false, fire: () => {} };
      const onAbort = () => {
        if (timer.done) return;
        timer.done = true;
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      timer.fire = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#timers.push(timer);
    });
  }

  /** Settles `work`, moving the clock to the next timer whenever everything else has run. */
  async run<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    work.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (;;) {
      // A macrotask: every microtask queued so far (and those they queue) runs first.
      await new Promise((resolve) => setImmediate(resolve));
      if (settled) return work;
      let next = this.#timers.pop();
      while (next?.done) next = this.#timers.pop();
      if (!next) throw new Error('virtual clock: nothing left to wait for, but the work has not settled');
      this.#now = next.at;
      next.done = true;
      next.fire();
    }
  }
}
