/**
 * The one owner of SIGINT, SIGTERM and SIGHUP for commands that stop gracefully (`run`,
 * `job run`). The first signal aborts the command's AbortController — the run finishes the
 * current step's clean-up, marks the remaining jobs cancelled and writes its record — and prints
 * one line; a second one kills every live VM at once (src/vm/live.ts) and exits. While installed,
 * src/vm/live.ts leaves the signals to it.
 */
import { killLiveVms, leaveSignalsToApplication } from '../vm/index.ts';
import { Interrupted, SIGNAL_EXIT_CODES, type StopSignal } from './errors.ts';
import { log } from './output.ts';

export const STOP_SIGNALS: readonly StopSignal[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** What the owner listens on: `process`, or a fake emitter in tests. */
export interface SignalSource {
  on(event: StopSignal, listener: () => void): unknown;
  off(event: StopSignal, listener: () => void): unknown;
}

export interface SignalOwnerOptions {
  /** Aborted (with an `Interrupted` reason) at the first signal. */
  controller: AbortController;
  /** @default process */
  source?: SignalSource;
  /** One line to stderr. */
  log?: (line: string) => void;
  /** The forced stop at the second signal: kill every live VM now. @default killLiveVms */
  kill?: () => string[];
  /** Leave at once with this code (the second signal). @default process.exit */
  exit?: (code: number) => void;
  /** Tell src/vm/live.ts whether the application owns the signals. @default leaveSignalsToApplication */
  own?: (owned: boolean) => void;
}

export class SignalOwner implements Disposable {
  #received: StopSignal | null = null;
  readonly #o: Required<SignalOwnerOptions>;
  readonly #listeners = new Map<StopSignal, () => void>();

  constructor(options: SignalOwnerOptions) {
    this.#o = { source: process, log, kill: killLiveVms, exit: (code) => process.exit(code), own: leaveSignalsToApplication, ...options };
    for (const s of STOP_SIGNALS) {
      const l = () => this.#on(s);
      this.#listeners.set(s, l);
      this.#o.source.on(s, l);
    }
    this.#o.own(true);
  }

  /** The first signal received, or null. */
  get received(): StopSignal | null {
    return this.#received;
  }

  /** Throws `Interrupted` (exit 128 + signal) when a signal stopped the command. */
  throwIfInterrupted(): void {
    if (this.#received) throw new Interrupted(this.#received);
  }

  #on(signal: StopSignal): void {
    if (this.#received === null) {
      this.#received = signal;
      this.#o.log(`cbt-harness: stopping (press Ctrl-C again to force)`);
      this.#o.controller.abort(new Interrupted(signal, `interrupted by ${signal}`));
      return;
    }
    const killed = this.#o.kill();
    this.#o.log(`cbt-harness: forced stop by a second ${signal}${killed.length ? `: killed ${killed.join(', ')}` : ''}`);
    this.#o.exit(SIGNAL_EXIT_CODES[this.#received]);
  }

  /** Stop listening; src/vm/live.ts handles signals again. */
  dispose(): void {
    for (const [s, l] of this.#listeners) this.#o.source.off(s, l);
    this.#listeners.clear();
    this.#o.own(false);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

export function ownSignals(options: SignalOwnerOptions): SignalOwner {
  return new SignalOwner(options);
}
