/** The CLI's own errors. Every one is a HarnessError: main.ts prints it as one line. */
import { HarnessError } from '../util/index.ts';

/** Raised by commands whose check failed (a verdict, a comparison): exit code 1. */
export class CheckFailed extends HarnessError {
  override name = 'CheckFailed';
}

/** An option or argument a command's action refused (a bad value, a conflict): exit code 2. */
export class UsageError extends HarnessError {
  override name = 'UsageError';
}

/** Exit codes of a command stopped by a signal: 128 + the signal number, as shells report it. */
export const SIGNAL_EXIT_CODES = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

/** A command stopped gracefully after a signal (the run record is written): exit 128 + signal. */
export class Interrupted extends HarnessError {
  override name = 'Interrupted';
  readonly signal: StopSignal;
  readonly exitCode: number;

  constructor(signal: StopSignal, message = `stopped by ${signal}`) {
    super(message);
    this.signal = signal;
    this.exitCode = SIGNAL_EXIT_CODES[signal];
  }
}
