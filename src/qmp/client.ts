/**
 * QMP client: one connection to a QEMU monitor (unix or TCP socket, or any Duplex stream such as
 * an SSH-forwarded channel). Protocol: QEMU sends a greeting, the client negotiates with
 * `qmp_capabilities`, then commands go out as one JSON object per line with an `id` that QEMU
 * echoes in the reply; asynchronous events arrive interleaved. See docs/qmp-and-ssh.md.
 * Reference: qemu docs/interop/qmp-spec.txt (QEMU 7.2).
 */
import { createConnection, type Socket } from 'node:net';
import { type Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpError } from './errors.ts';
import { LineSplitter, LineTooLongError } from './line-splitter.ts';
import { createLogger } from '../util/index.ts';

const log = createLogger('cbt:qmp');

export type QmpTarget = { path: string } | { host: string; port: number };

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's clock when it emitted the event. */
  timestamp: { seconds: number; microseconds: number };
  /** `Date.now()` when this client parsed the event. */
  receivedAt: number;
}

export interface QmpGreeting {
  QMP: { version: unknown; capabilities: string[] };
}

export interface QmpConnectOptions {
  signal?: AbortSignal;
  /**
   * Time allowed for the connection attempt that succeeds: socket connect + greeting +
   * `qmp_capabilities`. Refused attempts retried under `retryUntil` do not count against it.
   * @default 10000
   */
  timeoutMs?: number;
  /** Epoch ms: keep retrying ECONNREFUSED/ENOENT (socket not there yet, QEMU starting) until then. @default no retry */
  retryUntil?: number;
  /** Timeout for `execute()` calls that do not pass their own; 0 = none. @default 60000 */
  commandTimeoutMs?: number;
  /** Events kept in `eventLog` (oldest dropped first). @default 10000 */
  eventLogLimit?: number;
  /** Longest accepted QMP line in bytes; longer is a protocol error that closes the connection. @default 256 MiB */
  maxLineBytes?: number;
  /** Label used in error messages and logs for `fromStream` (e.g. `vm1 via host2`). */
  label?: string;
}

export interface QmpCallOptions {
  signal?: AbortSignal;
  /** Overrides the client's `commandTimeoutMs`; 0 = no timeout. */
  timeoutMs?: number;
}

export interface WaitForEventOptions {
  signal?: AbortSignal;
  /** @default no timeout (still rejected when the connection closes) */
  timeoutMs?: number;
  predicate?: (e: QmpEvent) => boolean;
  /** Also accept an event already in `eventLog` whose `receivedAt` is at or after this `Date.now()` value. */
  since?: number;
}

interface Pending {
  command: string;
  error: QmpError;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

const RETRYABLE = new Set(['ECONNREFUSED', 'ENOENT', 'EAGAIN']);
const ABANDONED_IDS_KEPT = 1000;

function describeTarget(target: QmpTarget): string {
  return 'path' in target ? target.path : `${target.host}:${target.port}`;
}

function validateTarget(target: QmpTarget): void {
  if (target === null || typeof target !== 'object') throw new TypeError(`Expected a QMP target {path} or {host, port}, got \`${String(target)}\``);
  if ('path' in target) {
    if (typeof target.path !== 'string' || target.path === '') throw new TypeError(`Expected \`path\` to be a non-empty string, got \`${String(target.path)}\` (${typeof target.path})`);
    return;
  }
  if (typeof target.host !== 'string' || target.host === '') throw new TypeError(`Expected \`host\` to be a non-empty string, got \`${String(target.host)}\` (${typeof target.host})`);
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) throw new TypeError(`Expected \`port\` to be an integer in 1..65535, got \`${String(target.port)}\` (${typeof target.port})`);
}

function validateMs(name: string, v: number | undefined): void {
  if (v !== undefined && (typeof v !== 'number' || Number.isNaN(v) || v < 0)) throw new TypeError(`Expected \`${name}\` to be a non-negative number of milliseconds, got \`${String(v)}\` (${typeof v})`);
}

function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

/** Open the socket once; rejects with the raw socket error, or a QmpError on timeout/abort. */
function dial(target: QmpTarget, label: string, signal: AbortSignal | undefined, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const sock = 'path' in target ? createConnection({ path: target.path }) : createConnection({ host: target.host, port: target.port });
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.off('connect', onConnect);
      sock.off('error', onError);
      if (err) {
        sock.destroy();
        reject(err);
      } else resolve(sock);
    };
    const onConnect = (): void => finish(null);
    const onError = (e: Error): void => finish(e);
    const onAbort = (): void => finish(new QmpError('aborted', `QMP connect to ${label} aborted`, { target: label, cause: signal?.reason }));
    sock.once('connect', onConnect);
    sock.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs > 0) timer = setTimeout(() => finish(new QmpError('timeout', `QMP connect to ${label}: no connection within ${timeoutMs} ms`, { target: label })), timeoutMs);
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class QmpClient implements AsyncDisposable {
  /** Socket path, host:port or the stream's label: used in every message. */
  readonly target: string;
  #greeting: QmpGreeting | null = null;

  #stream: Duplex;
  #splitter: LineSplitter;
  #commandTimeoutMs: number;
  #eventLogLimit: number;
  #events: QmpEvent[] = [];
  #listeners = new Set<(e: QmpEvent) => void>();
  #closeListeners = new Set<(e: QmpError) => void>();
  #pending = new Map<number, Pending>();
  #abandoned = new Set<number>();
  #nextId = 1;
  #closeError: QmpError | null = null;
  #streamError: Error | null = null;
  #streamClosed: Promise<void>;
  #greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: Error) => void } | null = null;

  private constructor(stream: Duplex, label: string, opts: QmpConnectOptions) {
    this.target = label;
    this.#stream = stream;
    this.#splitter = new LineSplitter(opts.maxLineBytes ?? 256 * 1024 * 1024);
    this.#commandTimeoutMs = opts.commandTimeoutMs ?? 60_000;
    this.#eventLogLimit = opts.eventLogLimit ?? 10_000;
    this.#streamClosed = new Promise<void>((resolve) => {
      if (stream.destroyed) resolve();
      else stream.once('close', () => resolve());
    });
    stream.on('data', (chunk: Buffer | string) => this.#onData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    stream.on('error', (e: Error) => {
      this.#streamError ??= e;
      log.debug('stream error', { target: label, error: e });
    });
    stream.once('close', () => {
      const cause = this.#streamError;
      this.#shutdown(new QmpError('closed', `QMP connection to ${label} closed${cause ? ` (${cause.message})` : ''}`, { target: label, cause: cause ?? undefined }));
    });
    // The peer ending its side means no more replies can come.
    stream.once('end', () => {
      this.#shutdown(new QmpError('closed', `QMP connection to ${label} closed by the peer`, { target: label }));
    });
  }

  /** Connect to a monitor socket, read the greeting and negotiate capabilities. */
  static async connect(target: QmpTarget, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    validateTarget(target);
    validateMs('timeoutMs', opts.timeoutMs);
    validateMs('commandTimeoutMs', opts.commandTimeoutMs);
    if (opts.retryUntil !== undefined && !Number.isFinite(opts.retryUntil)) throw new TypeError(`Expected \`retryUntil\` to be an epoch time in ms, got \`${String(opts.retryUntil)}\``);
    const label = opts.label ?? describeTarget(target);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    let delay = 20;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw new QmpError('aborted', `QMP connect to ${label} aborted`, { target: label, cause: opts.signal.reason });
      const started = Date.now();
      let sock: Socket;
      try {
        sock = await dial(target, label, opts.signal, timeoutMs);
      } catch (e) {
        if (e instanceof QmpError) throw e;
        const code = errorCode(e);
        const now = Date.now();
        if (code !== undefined && RETRYABLE.has(code) && opts.retryUntil !== undefined && now < opts.retryUntil) {
          log.debug('connect retry', { target: label, attempt, code });
          try {
            await sleep(Math.min(delay, opts.retryUntil - now), undefined, { signal: opts.signal });
          } catch {
            throw new QmpError('aborted', `QMP connect to ${label} aborted`, { target: label, cause: opts.signal?.reason });
          }
          delay = Math.min(delay * 2, 250);
          continue;
        }
        const retried = opts.retryUntil === undefined ? '' : ` after ${attempt} attempt(s) until ${new Date(opts.retryUntil).toISOString()}`;
        throw new QmpError('connect', `QMP connect to ${label} failed${retried}: ${(e as Error).message}`, { target: label, cause: e });
      }
      const remaining = timeoutMs > 0 ? Math.max(1, timeoutMs - (Date.now() - started)) : 0;
      return QmpClient.#handshake(sock, label, opts, remaining);
    }
  }

  /**
   * Speak QMP over an already open stream (e.g. `SshClient.forwardOut()` to a remote monitor):
   * greeting + capabilities, same options as `connect` (`timeoutMs` bounds the handshake).
   */
  static async fromStream(stream: Duplex, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    validateMs('timeoutMs', opts.timeoutMs);
    validateMs('commandTimeoutMs', opts.commandTimeoutMs);
    return QmpClient.#handshake(stream, opts.label ?? 'stream', opts, opts.timeoutMs ?? 10_000);
  }

  static async #handshake(stream: Duplex, label: string, opts: QmpConnectOptions, timeoutMs: number): Promise<QmpClient> {
    const client = new QmpClient(stream, label, opts);
    const signal = opts.signal;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const greeting = new Promise<QmpGreeting>((resolve, reject) => {
        client.#greetingWaiter = { resolve, reject };
      });
      const limits = new Promise<never>((_, reject) => {
        onAbort = () => reject(new QmpError('aborted', `QMP handshake with ${label} aborted`, { target: label, cause: signal?.reason }));
        if (signal?.aborted) onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        if (timeoutMs > 0)
          timer = setTimeout(
            () => reject(new QmpError('timeout', `QMP handshake with ${label}: no greeting and capabilities within ${timeoutMs} ms (is another client connected? QEMU serves one QMP client per socket)`, { target: label })),
            timeoutMs,
          );
      });
      // Whichever loses a race below still settles later (rejected by the teardown): mark it handled.
      greeting.catch(() => {});
      client.#greeting = await Promise.race([greeting, limits]);
      const capabilities = client.execute('qmp_capabilities', undefined, { timeoutMs: 0 });
      capabilities.catch(() => {});
      await Promise.race([capabilities, limits]);
      log.debug('connected', { target: label, version: client.greeting.QMP.version });
      return client;
    } catch (e) {
      // Tear down, then rethrow the original error.
      try {
        await client.close();
      } catch (closeError) {
        log.debug('close after failed handshake', { target: label, error: closeError });
      }
      if (e instanceof QmpError && e.kind === 'closed') throw new QmpError('connect', `QMP connect to ${label}: connection closed during the handshake`, { target: label, cause: e });
      throw e;
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** What QEMU said on connect (version, capabilities it offered). */
  get greeting(): QmpGreeting {
    return this.#greeting as QmpGreeting;
  }

  /** True once the connection is closed (by either side); every later call rejects with kind `closed`. */
  get closed(): boolean {
    return this.#closeError !== null;
  }

  /** Why the connection closed, once it has. */
  get closeReason(): QmpError | null {
    return this.#closeError;
  }

  /** Every event received, in order, oldest dropped beyond `eventLogLimit`. A copy. */
  get eventLog(): QmpEvent[] {
    return this.#events.slice();
  }

  /**
   * Run a QMP command; resolves with its `return` value. Rejects with QmpError kind `command`
   * (QEMU's `class`/`desc`), `timeout`, `aborted` or `closed`. A command that timed out or was
   * aborted may still run in QEMU; its late reply is dropped.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: QmpCallOptions = {}): Promise<T> {
    // Created now so that its stack names the caller, whatever the outcome.
    const error = new QmpError('command', `QMP command \`${command}\` on ${this.target}`, { command, target: this.target });
    if (typeof command !== 'string' || command === '') return Promise.reject(new TypeError(`Expected \`command\` to be a non-empty string, got \`${String(command)}\` (${typeof command})`));
    if (args !== undefined && !isObject(args)) return Promise.reject(new TypeError(`Expected \`args\` of \`${command}\` to be an object, got \`${String(args)}\``));
    validateMs('timeoutMs', opts.timeoutMs);
    if (this.#closeError) return Promise.reject(error.settle('closed', `QMP command \`${command}\` on ${this.target}: connection already closed (${this.#closeError.message})`, { cause: this.#closeError }));
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(error.settle('aborted', `QMP command \`${command}\` on ${this.target} aborted before it was sent`, { cause: signal.reason }));
    const timeoutMs = opts.timeoutMs ?? this.#commandTimeoutMs;
    const id = this.#nextId++;
    let line: string;
    try {
      line = `${JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id })}\n`;
    } catch (e) {
      return Promise.reject(new TypeError(`QMP command \`${command}\`: arguments are not JSON-serializable: ${(e as Error).message}`, { cause: e }));
    }
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(id);
      };
      const abandon = (): void => {
        this.#abandoned.add(id);
        if (this.#abandoned.size > ABANDONED_IDS_KEPT) this.#abandoned.delete(this.#abandoned.values().next().value as number);
      };
      const onAbort = (): void => {
        cleanup();
        abandon();
        reject(error.settle('aborted', `QMP command \`${command}\` on ${this.target} aborted (it may still run in QEMU)`, { cause: signal?.reason }));
      };
      this.#pending.set(id, {
        command,
        error,
        resolve: (v) => {
          cleanup();
          resolve(v as T);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs > 0)
        timer = setTimeout(() => {
          cleanup();
          abandon();
          reject(error.settle('timeout', `QMP command \`${command}\` on ${this.target}: no reply within ${timeoutMs} ms (it may still run in QEMU)`));
        }, timeoutMs);
      log.debug('send', { target: this.target, id, command });
      this.#stream.write(line);
    });
  }

  /** Run a human-monitor (HMP) command line through `human-monitor-command`; resolves with its text output. */
  hmp(commandLine: string, opts: QmpCallOptions = {}): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine }, opts);
  }

  /** Call `listener` for every event from now on; returns the unsubscribe function. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Call `listener` once when the connection closes (immediately if it already has). */
  onClose(listener: (reason: QmpError) => void): () => void {
    if (this.#closeError) {
      listener(this.#closeError);
      return () => {};
    }
    this.#closeListeners.add(listener);
    return () => {
      this.#closeListeners.delete(listener);
    };
  }

  /**
   * Live event stream from the moment of this call. Ends (done) when the connection closes;
   * throws QmpError kind `aborted` when `signal` fires. Breaking out of `for await` unsubscribes.
   * An unread backlog beyond `eventLogLimit` drops its oldest events (logged).
   */
  events(opts: { signal?: AbortSignal } = {}): AsyncIterableIterator<QmpEvent> {
    const queue: QmpEvent[] = [];
    let waiter: { resolve: (r: IteratorResult<QmpEvent>) => void; reject: (e: Error) => void } | null = null;
    let failure: Error | null = null;
    let done = false;
    let dropped = 0;
    const signal = opts.signal;
    const limit = this.#eventLogLimit;
    const finish = (): void => {
      unsubscribe();
      unClose();
      signal?.removeEventListener('abort', onAbort);
    };
    const unsubscribe = this.onEvent((e) => {
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.resolve({ value: e, done: false });
        return;
      }
      queue.push(e);
      if (queue.length > limit) {
        queue.shift();
        if (dropped++ === 0) log.warn('event stream consumer fell behind; dropping the oldest events (eventLog still has them)', { target: this.target, limit });
      }
    });
    const unClose = this.onClose(() => {
      done = true;
      finish();
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.resolve({ value: undefined, done: true });
      }
    });
    const onAbort = (): void => {
      failure = new QmpError('aborted', `QMP event stream on ${this.target} aborted`, { target: this.target, cause: signal?.reason });
      finish();
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.reject(failure);
      }
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    const iterator: AsyncIterableIterator<QmpEvent> = {
      next: () => {
        if (queue.length > 0) return Promise.resolve({ value: queue.shift() as QmpEvent, done: false });
        if (failure) return Promise.reject(failure);
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          waiter = { resolve, reject };
        });
      },
      return: () => {
        done = true;
        queue.length = 0;
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /**
   * Resolve with the first event named `name` (or one of the names) that satisfies `predicate`:
   * from `eventLog` if `since` is given and a match was received at or after it, else the next
   * one to arrive. Rejects with kind `timeout`, `aborted` or `closed`.
   */
  waitForEvent(name: string | string[], opts: WaitForEventOptions = {}): Promise<QmpEvent> {
    const names = new Set(Array.isArray(name) ? name : [name]);
    const what = [...names].join('|');
    const error = new QmpError('timeout', `QMP event ${what} on ${this.target}`, { target: this.target });
    validateMs('timeoutMs', opts.timeoutMs);
    const matches = (e: QmpEvent): boolean => names.has(e.event) && (opts.predicate ? opts.predicate(e) : true);
    if (opts.since !== undefined) {
      for (const e of this.#events) if (e.receivedAt >= opts.since && matches(e)) return Promise.resolve(e);
    }
    if (this.#closeError) return Promise.reject(error.settle('closed', `waiting for QMP event ${what} on ${this.target}: connection already closed (${this.#closeError.message})`, { cause: this.#closeError }));
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(error.settle('aborted', `waiting for QMP event ${what} on ${this.target} aborted`, { cause: signal.reason }));
    return new Promise<QmpEvent>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        clearTimeout(timer);
        unsubscribe();
        unClose();
        signal?.removeEventListener('abort', onAbort);
      };
      const unsubscribe = this.onEvent((e) => {
        let ok: boolean;
        try {
          ok = matches(e);
        } catch (predicateError) {
          cleanup();
          reject(predicateError as Error);
          return;
        }
        if (ok) {
          cleanup();
          resolve(e);
        }
      });
      const unClose = this.onClose((reason) => {
        cleanup();
        reject(error.settle(reason.kind === 'protocol' ? 'protocol' : 'closed', `waiting for QMP event ${what} on ${this.target}: ${reason.message}`, { cause: reason }));
      });
      const onAbort = (): void => {
        cleanup();
        reject(error.settle('aborted', `waiting for QMP event ${what} on ${this.target} aborted`, { cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs !== undefined && opts.timeoutMs > 0)
        timer = setTimeout(() => {
          cleanup();
          reject(error.settle('timeout', `no QMP event ${what} on ${this.target} within ${opts.timeoutMs} ms`));
        }, opts.timeoutMs);
    });
  }

  /** Close the connection; pending commands and waiters reject with kind `closed`. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closeError) this.#shutdown(new QmpError('closed', `QMP connection to ${this.target} closed by the client`, { target: this.target }));
    await this.#streamClosed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #onData(chunk: Buffer): void {
    if (this.#closeError) return;
    let lines: string[];
    try {
      lines = this.#splitter.push(chunk);
    } catch (e) {
      if (e instanceof LineTooLongError) {
        this.#shutdown(new QmpError('protocol', `QMP connection to ${this.target}: ${e.message} (maxLineBytes)`, { target: this.target, cause: e }));
        return;
      }
      throw e;
    }
    for (const line of lines) {
      if (this.#closeError) return;
      if (line.trim() === '') continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch (e) {
        this.#shutdown(new QmpError('protocol', `QMP connection to ${this.target}: unparsable line ${JSON.stringify(line.slice(0, 200))}`, { target: this.target, cause: e }));
        return;
      }
      this.#onMessage(msg);
    }
  }

  #onMessage(msg: unknown): void {
    if (!isObject(msg)) {
      this.#shutdown(new QmpError('protocol', `QMP connection to ${this.target}: expected a JSON object, got ${JSON.stringify(msg)?.slice(0, 200)}`, { target: this.target }));
      return;
    }
    if (this.#greetingWaiter) {
      const w = this.#greetingWaiter;
      const qmp = msg.QMP;
      if (!isObject(qmp) || !Array.isArray(qmp.capabilities)) {
        const err = new QmpError('protocol', `${this.target} did not greet with QMP: ${JSON.stringify(msg).slice(0, 200)}`, { target: this.target });
        this.#shutdown(err);
        return;
      }
      this.#greetingWaiter = null;
      w.resolve({ QMP: { version: qmp.version, capabilities: qmp.capabilities.filter((c): c is string => typeof c === 'string') } });
      return;
    }
    if (typeof msg.event === 'string') {
      this.#onEvent(msg);
      return;
    }
    if ('return' in msg || 'error' in msg) {
      const id = msg.id;
      const pending = typeof id === 'number' ? this.#pending.get(id) : undefined;
      if (!pending) {
        if (typeof id === 'number' && this.#abandoned.delete(id)) log.debug('late reply dropped', { target: this.target, id });
        else log.warn('reply with unknown id dropped', { target: this.target, id, reply: JSON.stringify(msg).slice(0, 200) });
        return;
      }
      if ('error' in msg) {
        const err = isObject(msg.error) ? msg.error : {};
        const cls = typeof err.class === 'string' ? err.class : 'UnknownError';
        const desc = typeof err.desc === 'string' ? err.desc : JSON.stringify(msg.error);
        log.debug('error reply', { target: this.target, id, command: pending.command, class: cls, desc });
        pending.reject(pending.error.settle('command', `QMP command \`${pending.command}\` on ${this.target} failed: ${cls}: ${desc}`, { class: cls, desc }));
      } else {
        log.debug('reply', { target: this.target, id, command: pending.command });
        pending.resolve(msg.return);
      }
      return;
    }
    log.warn('unknown QMP message ignored', { target: this.target, message: JSON.stringify(msg).slice(0, 200) });
  }

  #onEvent(msg: Record<string, unknown>): void {
    const ts = isObject(msg.timestamp) ? msg.timestamp : {};
    const e: QmpEvent = {
      event: msg.event as string,
      data: isObject(msg.data) ? msg.data : {},
      timestamp: { seconds: typeof ts.seconds === 'number' ? ts.seconds : -1, microseconds: typeof ts.microseconds === 'number' ? ts.microseconds : -1 },
      receivedAt: Date.now(),
    };
    log.debug('event', { target: this.target, event: e.event });
    this.#events.push(e);
    if (this.#events.length > this.#eventLogLimit) this.#events.splice(0, this.#events.length - this.#eventLogLimit);
    for (const l of [...this.#listeners]) {
      try {
        l(e);
      } catch (listenerError) {
        log.warn('event listener threw', { target: this.target, event: e.event, error: listenerError });
      }
    }
  }

  /** First close wins: record why, reject everyone waiting, drop the stream. */
  #shutdown(reason: QmpError): void {
    if (this.#closeError) return;
    this.#closeError = reason;
    log.debug('closed', { target: this.target, reason: reason.message });
    const kind = reason.kind === 'protocol' ? 'protocol' : 'closed';
    if (this.#greetingWaiter) {
      this.#greetingWaiter.reject(reason);
      this.#greetingWaiter = null;
    }
    for (const p of [...this.#pending.values()]) {
      p.reject(p.error.settle(kind, `QMP command \`${p.command}\` on ${this.target}: no reply, ${reason.message}`, { cause: reason }));
    }
    this.#pending.clear();
    for (const l of [...this.#closeListeners]) {
      try {
        l(reason);
      } catch (listenerError) {
        log.warn('close listener threw', { target: this.target, error: listenerError });
      }
    }
    this.#closeListeners.clear();
    this.#stream.destroy();
  }
}
