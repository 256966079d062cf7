/**
 * Typed errors of the SSH module. `SshError.kind` says what failed, so callers branch on it:
 * - `connect`   — TCP connect / SSH handshake could not complete (refused, reset, lost, no
 *                 matching algorithms), including a refused port forward;
 * - `auth`      — the server refused our key (or the key could not be parsed);
 * - `host-key`  — the server's host key is not the pinned one (message names both fingerprints);
 * - `timeout`   — handshake or command did not finish in time;
 * - `aborted`   — the caller's AbortSignal fired (its reason is the `cause`);
 * - `exec`      — the command could not be started, or `check` was set and it exited non-zero;
 * - `closed`    — the connection closed while a command or transfer was running, or before a call;
 * - `transfer`  — an upload failed (local read, remote write, `cat` exit status).
 */
import { HarnessError, InfrastructureHarnessError } from '../util/index.ts';

export type SshErrorKind = 'connect' | 'auth' | 'host-key' | 'timeout' | 'aborted' | 'exec' | 'closed' | 'transfer';

export interface SshErrorOptions {
  host: string;
  port: number;
  command?: string | undefined;
  offeredFingerprint?: string | undefined;
  expectedFingerprints?: string[] | undefined;
  stdout?: string | undefined;
  stderr?: string | undefined;
  cause?: unknown;
}

export class SshError extends InfrastructureHarnessError {
  override name = 'SshError';
  kind: SshErrorKind;
  readonly host: string;
  readonly port: number;
  /** The remote command (exec, and the `cat` of an exec upload). */
  command: string | undefined;
  /** Host-key errors: what the server offered and what was pinned. */
  offeredFingerprint: string | undefined;
  expectedFingerprints: string[] | undefined;
  /** Output captured before a timeout, abort or close (bounded like exec output). */
  stdout: string | undefined;
  stderr: string | undefined;

  constructor(kind: SshErrorKind, message: string, options: SshErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.host = options.host;
    this.port = options.port;
    this.command = options.command;
    this.offeredFingerprint = options.offeredFingerprint;
    this.expectedFingerprints = options.expectedFingerprints;
    this.stdout = options.stdout;
    this.stderr = options.stderr;
  }

  /** Give an error created at call time (stack at the caller) its final kind and message. Internal. */
  settle(kind: SshErrorKind, message: string, extra: { cause?: unknown; stdout?: string; stderr?: string } = {}): this {
    const frames = this.stack?.split('\n').slice(1).join('\n');
    this.kind = kind;
    this.message = message;
    if (extra.cause !== undefined) Object.defineProperty(this, 'cause', { value: extra.cause, writable: true, configurable: true, enumerable: false });
    if (extra.stdout !== undefined) this.stdout = extra.stdout;
    if (extra.stderr !== undefined) this.stderr = extra.stderr;
    this.stack = frames ? `${this.name}: ${message}\n${frames}` : `${this.name}: ${message}`;
    return this;
  }
}

/** A public or private key that cannot be parsed. */
export class SshKeyError extends HarnessError {
  override name = 'SshKeyError';
}
