/**
 * The QMP client's one error class. `kind` says what went wrong, so callers branch on it rather
 * than on message text:
 * - `connect`  — the socket could not be opened (and retrying, if asked, ran out of time);
 * - `protocol` — the peer is not speaking QMP (bad greeting, unparsable or oversized line);
 * - `command`  — QEMU answered the command with an error: see `class` and `desc`;
 * - `timeout`  — no answer (or no event) within the time limit;
 * - `aborted`  — the caller's AbortSignal fired (its reason is the `cause`);
 * - `closed`   — the connection closed (QEMU exited or `close()` was called) before the answer.
 */
import { InfrastructureHarnessError } from '../util/index.ts';

export type QmpErrorKind = 'closed' | 'timeout' | 'aborted' | 'command' | 'protocol' | 'connect';

export interface QmpErrorOptions {
  command?: string | undefined;
  class?: string | undefined;
  desc?: string | undefined;
  target?: string | undefined;
  cause?: unknown;
}

export class QmpError extends InfrastructureHarnessError {
  override name = 'QmpError';
  kind: QmpErrorKind;
  /** The QMP command this error is about, when there is one. */
  command: string | undefined;
  /** QMP error class from QEMU (`GenericError`, `CommandNotFound`, `DeviceNotFound`, …), kind `command` only. */
  class: string | undefined;
  /** QMP error description from QEMU, kind `command` only. */
  desc: string | undefined;
  /** The monitor: socket path or host:port. */
  target: string | undefined;

  constructor(kind: QmpErrorKind, message: string, options: QmpErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.command = options.command;
    this.class = options.class;
    this.desc = options.desc;
    this.target = options.target;
  }

  /**
   * Give an error created earlier (at send time, so its stack points at the caller) its final
   * kind and message. Internal to the client.
   */
  settle(kind: QmpErrorKind, message: string, options: QmpErrorOptions = {}): this {
    const frames = this.stack?.split('\n').slice(1).join('\n');
    this.kind = kind;
    this.message = message;
    if (options.class !== undefined) this.class = options.class;
    if (options.desc !== undefined) this.desc = options.desc;
    if (options.cause !== undefined) Object.defineProperty(this, 'cause', { value: options.cause, writable: true, configurable: true, enumerable: false });
    this.stack = frames ? `${this.name}: ${message}\n${frames}` : `${this.name}: ${message}`;
    return this;
  }
}
