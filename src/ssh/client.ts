/**
 * SSH client on `ssh2`: connect with pinned host keys and retries (a booting guest refuses, resets
 * or stalls for a while), exec with exit status, bounded output, timeout and abort, upload by
 * SFTP or by `cat` over exec (dropbear ships no sftp-server), and direct-tcpip forwarding for
 * tunnelling QMP or a guest's SSH through a remote host. See docs/qmp-and-ssh.md.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { type Duplex, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import ssh2, { type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { SshError, type SshErrorKind } from './errors.ts';
import { fingerprintOf, normalizeFingerprint } from './keys.ts';
import { createLogger } from '../util/index.ts';
import { exportPrefix, shQuote } from './shell.ts';
import { TailBuffer } from './tail-buffer.ts';

const log = createLogger('cbt:ssh');

export type HostKeyPolicy =
  | { kind: 'pinned'; /** `SHA256:…` as `ssh-keygen -lf` prints; any one may match. */ fingerprints: string[] }
  | { kind: 'accept-any' /** tests only: logs a warning naming the offered key */ };

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  privateKey: Buffer | string;
  hostKey: HostKeyPolicy;
  /** An existing connected stream to speak SSH over (e.g. `forwardOut()` of another client); `host`/`port` then only label errors. */
  sock?: Duplex;
}

export interface SshConnectOptions {
  signal?: AbortSignal;
  /** Epoch ms: retry refused/reset/lost/timed-out attempts until then (a booting guest). Never retries auth or host-key failures. @default no retry */
  retryUntil?: number;
  /** Per attempt: TCP connect + SSH handshake + auth. @default 20000 */
  readyTimeoutMs?: number;
  /** SSH keepalive period; a peer silent for `keepaliveCountMax` periods is declared gone (kind `closed`). 0 disables. @default 10000 */
  keepaliveIntervalMs?: number;
  /** @default 3 */
  keepaliveCountMax?: number;
}

export interface ExecOptions {
  signal?: AbortSignal;
  /** Kill (SSH `signal KILL`, best effort) and close the channel after this long; 0 = none. @default 0 */
  timeoutMs?: number;
  /** Written (or piped, for a stream) to the command's stdin, then EOF. Without it stdin is closed at once. */
  stdin?: string | Buffer | Readable;
  env?: Record<string, string>;
  /**
   * How `env` reaches the command: `export` prefixes `export K='v'; ` (any POSIX shell, the
   * default: OpenSSH accepts SSH env requests only for names in its AcceptEnv, and dropbear
   * none); `request` sends SSH `env` requests (the server may silently ignore them).
   * @default 'export'
   */
  envMode?: 'export' | 'request';
  /** Per stream: keep only the last this many bytes of stdout and of stderr. @default 16 MiB */
  maxOutputBytes?: number;
  /** Reject with kind `exec` when the command does not exit 0. @default false */
  check?: boolean;
}

export interface ExecResult {
  /** null when the command was killed by a signal (or the server sent no status). */
  exitCode: number | null;
  /** `SIGTERM`-style name when killed by a signal, else null. */
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** Bytes dropped from the front of stdout/stderr beyond `maxOutputBytes` (0 = complete). */
  stdoutDropped: number;
  stderrDropped: number;
}

export interface UploadOptions {
  /** File mode set after the write (e.g. 0o755). @default server default for new files */
  mode?: number;
  signal?: AbortSignal;
  /** `auto`: SFTP when the server has the subsystem, else `cat > path` over exec. @default 'auto' */
  method?: 'auto' | 'sftp' | 'exec';
  /** 0 = none. @default 0 */
  timeoutMs?: number;
}

const RETRYABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE']);
const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

function validateMs(name: string, v: number | undefined): void {
  if (v !== undefined && (typeof v !== 'number' || Number.isNaN(v) || v < 0)) throw new TypeError(`Expected \`${name}\` to be a non-negative number of milliseconds, got \`${String(v)}\` (${typeof v})`);
}

function validateTarget(t: SshTarget): void {
  if (t === null || typeof t !== 'object') throw new TypeError(`Expected an SSH target object, got \`${String(t)}\``);
  if (typeof t.host !== 'string' || t.host === '') throw new TypeError(`Expected \`host\` to be a non-empty string, got \`${String(t.host)}\` (${typeof t.host})`);
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw new TypeError(`Expected \`port\` to be an integer in 1..65535, got \`${String(t.port)}\` (${typeof t.port})`);
  if (typeof t.username !== 'string' || t.username === '') throw new TypeError(`Expected \`username\` to be a non-empty string, got \`${String(t.username)}\``);
  if (typeof t.privateKey !== 'string' && !Buffer.isBuffer(t.privateKey)) throw new TypeError('Expected `privateKey` to be a string or Buffer (OpenSSH or PEM private key)');
  const hk = t.hostKey;
  if (!hk || (hk.kind !== 'pinned' && hk.kind !== 'accept-any')) throw new TypeError(`Expected \`hostKey\` to be {kind: 'pinned', fingerprints} or {kind: 'accept-any'}, got \`${JSON.stringify(hk)}\``);
  if (hk.kind === 'pinned' && (!Array.isArray(hk.fingerprints) || hk.fingerprints.length === 0)) throw new TypeError('Expected `hostKey.fingerprints` to be a non-empty array of `SHA256:…` fingerprints');
}

/**
 * Send an SSH `signal` request (RFC 4254 §6.9). ssh2's `Channel.signal()` silently does nothing
 * once our side sent EOF (`writable` false), which exec always does after stdin; the request is
 * still valid on an open channel, so go to the protocol object then. Best effort: OpenSSH ≥ 7.9
 * honours it for non-pty sessions, dropbear ignores it.
 */
function signalChannel(ch: ClientChannel, name: string): void {
  try {
    if (ch.writable) {
      ch.signal(name);
      return;
    }
    const internal = ch as unknown as { _client?: { _protocol?: { signal?: (id: number, sig: string) => void } }; outgoing?: { id?: number; state?: string } };
    const proto = internal._client?._protocol;
    if (typeof proto?.signal === 'function' && (internal.outgoing?.state === 'open' || internal.outgoing?.state === 'eof') && typeof internal.outgoing.id === 'number') proto.signal(internal.outgoing.id, name);
  } catch (e) {
    log.debug('signal request not sent', { signal: name, error: e });
  }
}

interface Attempt {
  error: SshError;
  retryable: boolean;
}

/** One connection attempt; resolves with a ready ssh2 client or rejects with an Attempt. */
function attempt(target: SshTarget, opts: SshConnectOptions, hp: string): Promise<ssh2.Client> {
  const conn = new ssh2.Client();
  const { host, port } = target;
  const pinned = target.hostKey.kind === 'pinned' ? target.hostKey.fingerprints.map(normalizeFingerprint) : null;
  let offered: string | undefined;
  let hostKeyRefused = false;
  const config: ConnectConfig = {
    host,
    port,
    username: target.username,
    privateKey: target.privateKey,
    readyTimeout: opts.readyTimeoutMs ?? 20_000,
    keepaliveInterval: opts.keepaliveIntervalMs ?? 10_000,
    keepaliveCountMax: opts.keepaliveCountMax ?? 3,
    hostVerifier: (key: Buffer): boolean => {
      offered = fingerprintOf(key);
      if (pinned === null) {
        log.warn('host key accepted without check (accept-any policy: tests only)', { host: hp, fingerprint: offered });
        return true;
      }
      if (pinned.includes(offered)) return true;
      hostKeyRefused = true;
      return false;
    },
  };
  if (target.sock) config.sock = target.sock;
  return new Promise<ssh2.Client>((resolve, reject) => {
    let done = false;
    const signal = opts.signal;
    const fail = (kind: SshErrorKind, message: string, retryable: boolean, cause?: unknown): void => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      conn.removeAllListeners('ready');
      conn.on('error', () => {}); // late errors of a dropped attempt
      conn.destroy();
      reject({ error: new SshError(kind, message, { host, port, cause, offeredFingerprint: kind === 'host-key' ? offered : undefined, expectedFingerprints: kind === 'host-key' ? (pinned ?? undefined) : undefined }), retryable } satisfies Attempt);
    };
    const onAbort = (): void => fail('aborted', `SSH connect to ${hp} aborted`, false, signal?.reason);
    conn.once('ready', () => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      resolve(conn);
    });
    conn.on('error', (e: Error & { level?: string; code?: string }) => {
      if (hostKeyRefused) {
        fail('host-key', `SSH host key of ${hp} is not the pinned one: offered ${offered}, expected ${pinned?.join(' or ')} (refusing to connect)`, false, e);
      } else if (e.level === 'client-authentication') {
        fail('auth', `SSH authentication as ${target.username} on ${hp} failed: the server refused the key (${e.message})`, false, e);
      } else if (e.level === 'client-timeout') {
        fail('timeout', `SSH connect to ${hp}: no handshake within ${config.readyTimeout} ms`, true, e);
      } else if (e.level === 'client-socket' || e.message === 'Connection lost before handshake') {
        fail('connect', `SSH connect to ${hp} failed: ${e.message}`, e.code === undefined || RETRYABLE_CODES.has(e.code), e);
      } else {
        fail('connect', `SSH connect to ${hp} failed: ${e.message}${e.level ? ` (${e.level})` : ''}`, false, e);
      }
    });
    conn.once('close', () => fail('connect', `SSH connect to ${hp}: connection closed before the handshake completed`, true));
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      conn.connect(config);
    } catch (e) {
      // ssh2 throws synchronously on an unparsable private key.
      fail('auth', `SSH connect to ${hp}: private key for ${target.username} cannot be used: ${(e as Error).message}`, false, e);
    }
  });
}

export class SshClient implements AsyncDisposable {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  #conn: ssh2.Client;
  #hp: string;
  #closeError: SshError | null = null;
  #closeListeners = new Set<(reason: SshError) => void>();
  #closedPromise: Promise<void>;
  #sftpAvailable: boolean | undefined;

  private constructor(conn: ssh2.Client, target: SshTarget) {
    this.#conn = conn;
    this.host = target.host;
    this.port = target.port;
    this.username = target.username;
    this.#hp = `${target.host}:${target.port}`;
    let lastError: Error | undefined;
    conn.on('error', (e: Error) => {
      lastError ??= e;
      log.debug('connection error', { host: this.#hp, error: e });
    });
    this.#closedPromise = new Promise<void>((resolve) => {
      conn.once('close', () => {
        this.#markClosed(new SshError('closed', `SSH connection to ${this.#hp} closed${lastError ? ` (${lastError.message})` : ''}`, { host: this.host, port: this.port, cause: lastError }));
        resolve();
      });
    });
  }

  /** Connect and authenticate by public key; see `SshConnectOptions` for retries and timeouts. */
  static async connect(target: SshTarget, opts: SshConnectOptions = {}): Promise<SshClient> {
    validateTarget(target);
    validateMs('readyTimeoutMs', opts.readyTimeoutMs);
    validateMs('keepaliveIntervalMs', opts.keepaliveIntervalMs);
    if (target.hostKey.kind === 'pinned') for (const fp of target.hostKey.fingerprints) normalizeFingerprint(fp);
    if (opts.retryUntil !== undefined && !Number.isFinite(opts.retryUntil)) throw new TypeError(`Expected \`retryUntil\` to be an epoch time in ms, got \`${String(opts.retryUntil)}\``);
    const hp = `${target.host}:${target.port}`;
    let delay = 100;
    for (let n = 1; ; n++) {
      try {
        const conn = await attempt(target, opts, hp);
        log.debug('connected', { host: hp, user: target.username, attempts: n });
        return new SshClient(conn, target);
      } catch (e) {
        const a = e as Attempt;
        const now = Date.now();
        // A caller-provided stream cannot be reconnected.
        if (a.retryable && !target.sock && opts.retryUntil !== undefined && now < opts.retryUntil) {
          log.debug('connect retry', { host: hp, attempt: n, error: a.error.message });
          try {
            await sleep(Math.min(delay, opts.retryUntil - now), undefined, { signal: opts.signal });
          } catch {
            throw new SshError('aborted', `SSH connect to ${hp} aborted`, { host: target.host, port: target.port, cause: opts.signal?.reason });
          }
          delay = Math.min(delay * 2, 1000);
          continue;
        }
        if (a.retryable && opts.retryUntil !== undefined) a.error.message += ` (gave up after ${n} attempt(s), retryUntil ${new Date(opts.retryUntil).toISOString()})`;
        throw a.error;
      }
    }
  }

  get closed(): boolean {
    return this.#closeError !== null;
  }

  /** Why the connection closed, once it has. */
  get closeReason(): SshError | null {
    return this.#closeError;
  }

  /**
   * Run `command` (through the server's shell) and collect its exit status and output.
   * Resolves for any exit status (unless `check`); rejects with kind `timeout`, `aborted`,
   * `closed` (connection lost before the exit status) or `exec` (could not start).
   */
  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const error = new SshError('exec', `SSH exec on ${this.#hp}`, { host: this.host, port: this.port, command });
    if (typeof command !== 'string' || command === '') return Promise.reject(new TypeError(`Expected \`command\` to be a non-empty string, got \`${String(command)}\``));
    let remote = command;
    try {
      validateMs('timeoutMs', opts.timeoutMs);
      if (opts.maxOutputBytes !== undefined && (!Number.isSafeInteger(opts.maxOutputBytes) || opts.maxOutputBytes < 0)) throw new TypeError(`Expected \`maxOutputBytes\` to be a non-negative integer, got \`${String(opts.maxOutputBytes)}\``);
      if (opts.stdin !== undefined && typeof opts.stdin !== 'string' && !Buffer.isBuffer(opts.stdin) && !(opts.stdin instanceof Readable)) throw new TypeError('Expected `stdin` to be a string, Buffer or Readable');
      if (opts.env && (opts.envMode ?? 'export') === 'export') remote = exportPrefix(opts.env) + command;
      else if (opts.env) exportPrefix(opts.env); // same name checks
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.#run(error, remote, command, opts.stdin, opts).then((r) => {
      if (opts.check && r.exitCode !== 0) {
        const status = r.exitCode === null ? `was killed by ${r.signal ?? 'an unknown signal'}` : `exited ${r.exitCode}`;
        throw error.settle('exec', `SSH exec on ${this.#hp}: \`${command}\` ${status}: ${r.stderr.slice(-2000).trim()}`, { stdout: r.stdout, stderr: r.stderr });
      }
      return r;
    });
  }

  /** Core of exec and the exec upload: `stdin` may be a stream (piped, then EOF). */
  #run(error: SshError, remote: string, shown: string, stdin: string | Buffer | Readable | undefined, opts: ExecOptions): Promise<ExecResult> {
    if (this.#closeError) return Promise.reject(error.settle('closed', `SSH exec on ${this.#hp}: connection already closed (${this.#closeError.message}): ${shown}`, { cause: this.#closeError }));
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(error.settle('aborted', `SSH exec on ${this.#hp} aborted before start: ${shown}`, { cause: signal.reason }));
    const max = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const timeoutMs = opts.timeoutMs ?? 0;
    return new Promise<ExecResult>((resolve, reject) => {
      const started = performance.now();
      const out = new TailBuffer(max);
      const err = new TailBuffer(max);
      let channel: ClientChannel | null = null;
      let exit: { code: number | null; signal: string | null } | null = null;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        unClose();
        return true;
      };
      const stop = (kind: SshErrorKind, message: string, cause?: unknown): void => {
        if (!finish()) return;
        if (channel) {
          if (stdin instanceof Readable) stdin.unpipe(channel);
          signalChannel(channel, 'KILL');
          channel.close();
        }
        reject(error.settle(kind, message, { cause, stdout: out.toString(), stderr: err.toString() }));
      };
      const onAbort = (): void => stop('aborted', `SSH exec on ${this.#hp} aborted: ${shown}`, signal?.reason);
      const unClose = this.#onClose((reason) => stop('closed', `SSH exec on ${this.#hp}: connection lost before \`${shown}\` exited (${reason.message})`, reason));
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs > 0) timer = setTimeout(() => stop('timeout', `SSH exec on ${this.#hp} timed out after ${timeoutMs} ms (channel closed): ${shown}`), timeoutMs);
      log.debug('exec', { host: this.#hp, command: shown });
      const env = opts.env && opts.envMode === 'request' ? { env: opts.env } : {};
      try {
        this.#conn.exec(remote, env, (e, ch) => {
          if (e) {
            if (this.#closeError) stop('closed', `SSH exec on ${this.#hp}: connection lost before \`${shown}\` started (${this.#closeError.message})`, e);
            else stop('exec', `SSH exec on ${this.#hp}: could not start \`${shown}\`: ${e.message}`, e);
            return;
          }
          if (settled) {
            ch.close();
            return;
          }
          channel = ch;
          ch.on('data', (d: Buffer) => out.push(d));
          ch.stderr.on('data', (d: Buffer) => err.push(d));
          ch.on('exit', (code: number | null, sig?: string) => {
            exit = { code: typeof code === 'number' ? code : null, signal: typeof sig === 'string' ? sig : null };
          });
          ch.on('close', () => {
            if (settled) return;
            // ssh2 emits the connection's 'close' before closing its channels, so a lost
            // connection has already rejected through #onClose by now.
            if (!finish()) return;
            const durationMs = performance.now() - started;
            if (exit === null) log.debug('channel closed without exit status', { host: this.#hp, command: shown });
            resolve({ exitCode: exit?.code ?? null, signal: exit?.signal ?? null, stdout: out.toString(), stderr: err.toString(), durationMs, stdoutDropped: out.dropped, stderrDropped: err.dropped });
          });
          if (stdin === undefined || typeof stdin === 'string' || Buffer.isBuffer(stdin)) ch.end(stdin);
          else {
            stdin.once('error', (readError) => stop('transfer', `SSH exec on ${this.#hp}: reading the input of \`${shown}\` failed: ${readError.message}`, readError));
            stdin.pipe(ch);
          }
        });
      } catch (e) {
        stop(this.#closeError ? 'closed' : 'exec', `SSH exec on ${this.#hp}: could not start \`${shown}\`: ${(e as Error).message}`, e);
      }
    });
  }

  /**
   * Copy a local file (path) or bytes to `remotePath`, replacing it. SFTP when available, else
   * (or with `method: 'exec'`) `cat > path` over exec, which needs only a POSIX shell.
   */
  async upload(local: string | Buffer, remotePath: string, opts: UploadOptions = {}): Promise<void> {
    const error = new SshError('transfer', `SSH upload to ${this.#hp}:${remotePath}`, { host: this.host, port: this.port });
    if (typeof remotePath !== 'string' || remotePath === '') throw new TypeError(`Expected \`remotePath\` to be a non-empty string, got \`${String(remotePath)}\``);
    if (opts.mode !== undefined && (!Number.isInteger(opts.mode) || opts.mode < 0 || opts.mode > 0o7777)) throw new TypeError(`Expected \`mode\` to be an integer in 0..0o7777, got \`${String(opts.mode)}\``);
    const method = opts.method ?? 'auto';
    if (!['auto', 'sftp', 'exec'].includes(method)) throw new TypeError(`Expected \`method\` to be 'auto', 'sftp' or 'exec', got \`${String(method)}\``);
    const what = typeof local === 'string' ? local : `${local.length} bytes`;
    if (typeof local === 'string') {
      try {
        const s = await stat(local);
        if (!s.isFile()) throw new Error('not a regular file');
      } catch (e) {
        throw error.settle('transfer', `SSH upload to ${this.#hp}:${remotePath}: cannot read local ${local}: ${(e as Error).message}`, { cause: e });
      }
    } else if (!Buffer.isBuffer(local)) throw new TypeError('Expected `local` to be a file path or a Buffer');
    if (this.#closeError) throw error.settle('closed', `SSH upload to ${this.#hp}:${remotePath}: connection already closed (${this.#closeError.message})`, { cause: this.#closeError });

    if (method !== 'exec' && this.#sftpAvailable !== false) {
      let sftp: SFTPWrapper | null = null;
      try {
        sftp = await this.#openSftp(opts.signal);
      } catch (e) {
        if (e instanceof SshError) throw e;
        if (method === 'sftp') throw error.settle('transfer', `SSH upload to ${this.#hp}:${remotePath}: no SFTP: ${(e as Error).message}`, { cause: e });
        this.#sftpAvailable = false;
        log.debug('no sftp subsystem; uploading with cat over exec', { host: this.#hp, reason: (e as Error).message });
      }
      if (sftp) {
        this.#sftpAvailable = true;
        await this.#sftpPut(error, sftp, local, remotePath, what, opts);
        return;
      }
    } else if (method === 'sftp') {
      throw error.settle('transfer', `SSH upload to ${this.#hp}:${remotePath}: the server has no SFTP subsystem`);
    }
    const chmod = opts.mode === undefined ? '' : ` && chmod ${opts.mode.toString(8).padStart(4, '0')} ${shQuote(remotePath)}`;
    const command = `cat > ${shQuote(remotePath)}${chmod}`;
    const input = typeof local === 'string' ? createReadStream(local) : local;
    error.command = command;
    let r: ExecResult;
    try {
      r = await this.#run(error, command, command, input, { signal: opts.signal, timeoutMs: opts.timeoutMs, maxOutputBytes: 64 * 1024 });
    } catch (e) {
      if (typeof input !== 'string' && !Buffer.isBuffer(input)) input.destroy();
      throw e;
    }
    if (r.exitCode !== 0) throw error.settle('transfer', `SSH upload of ${what} to ${this.#hp}:${remotePath} by exec failed: \`${command}\` ${r.exitCode === null ? `killed by ${r.signal}` : `exited ${r.exitCode}`}: ${r.stderr.trim()}`, { stderr: r.stderr });
  }

  #openSftp(signal: AbortSignal | undefined): Promise<SFTPWrapper> {
    return new Promise<SFTPWrapper>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new SshError('aborted', `SSH upload to ${this.#hp} aborted`, { host: this.host, port: this.port, cause: signal.reason }));
        return;
      }
      this.#conn.sftp((e, sftp) => {
        if (e) {
          if (this.#closeError) reject(new SshError('closed', `SSH upload to ${this.#hp}: connection closed (${this.#closeError.message})`, { host: this.host, port: this.port, cause: e }));
          else reject(e);
        } else resolve(sftp);
      });
    });
  }

  #sftpPut(error: SshError, sftp: SFTPWrapper, local: string | Buffer, remotePath: string, what: string, opts: UploadOptions): Promise<void> {
    const signal = opts.signal;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (kind: SshErrorKind | null, message = '', cause?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        unClose();
        sftp.end();
        if (kind === null) resolve();
        else reject(error.settle(kind, message, { cause }));
      };
      const onAbort = (): void => finish('aborted', `SSH upload of ${what} to ${this.#hp}:${remotePath} aborted (the remote file may be partial)`, signal?.reason);
      const unClose = this.#onClose((reason) => finish('closed', `SSH upload of ${what} to ${this.#hp}:${remotePath}: connection lost (${reason.message})`, reason));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs) timer = setTimeout(() => finish('timeout', `SSH upload of ${what} to ${this.#hp}:${remotePath} timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
      const done = (e: Error | null | undefined): void => {
        if (e) return finish('transfer', `SSH upload of ${what} to ${this.#hp}:${remotePath} by SFTP failed: ${e.message}`, e);
        if (opts.mode === undefined) return finish(null);
        sftp.chmod(remotePath, opts.mode, (ce) => (ce ? finish('transfer', `SSH upload to ${this.#hp}:${remotePath}: chmod ${opts.mode?.toString(8)} failed: ${ce.message}`, ce) : finish(null)));
      };
      log.debug('upload sftp', { host: this.#hp, local: what, remote: remotePath });
      if (typeof local === 'string') sftp.fastPut(local, remotePath, done);
      else sftp.writeFile(remotePath, local, done);
    });
  }

  /**
   * Open a direct-tcpip channel to `host:port` as seen from the SSH server: a Duplex to speak
   * any TCP protocol through (QMP on a remote host, a guest's SSH behind it).
   */
  forwardOut(host: string, port: number, opts: { signal?: AbortSignal } = {}): Promise<Duplex> {
    const error = new SshError('connect', `SSH forward via ${this.#hp} to ${host}:${port}`, { host: this.host, port: this.port });
    if (typeof host !== 'string' || host === '') return Promise.reject(new TypeError(`Expected \`host\` to be a non-empty string, got \`${String(host)}\``));
    if (!Number.isInteger(port) || port < 1 || port > 65535) return Promise.reject(new TypeError(`Expected \`port\` to be an integer in 1..65535, got \`${String(port)}\``));
    if (this.#closeError) return Promise.reject(error.settle('closed', `SSH forward via ${this.#hp} to ${host}:${port}: connection already closed`, { cause: this.#closeError }));
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(error.settle('aborted', `SSH forward via ${this.#hp} to ${host}:${port} aborted`, { cause: signal.reason }));
    return new Promise<Duplex>((resolve, reject) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        reject(error.settle('aborted', `SSH forward via ${this.#hp} to ${host}:${port} aborted`, { cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#conn.forwardOut('127.0.0.1', 0, host, port, (e, ch) => {
        signal?.removeEventListener('abort', onAbort);
        if (settled) {
          ch?.close();
          return;
        }
        settled = true;
        if (e) reject(error.settle(this.#closeError ? 'closed' : 'connect', `SSH forward via ${this.#hp} to ${host}:${port} refused: ${e.message}`, { cause: e }));
        else resolve(ch);
      });
    });
  }

  /** Close the connection; running commands reject with kind `closed`. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closeError) {
      this.#markClosed(new SshError('closed', `SSH connection to ${this.#hp} closed by the client`, { host: this.host, port: this.port }));
      this.#conn.end();
      const fallback = setTimeout(() => this.#conn.destroy(), 2000);
      try {
        await this.#closedPromise;
      } finally {
        clearTimeout(fallback);
      }
      return;
    }
    await this.#closedPromise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #onClose(listener: (reason: SshError) => void): () => void {
    this.#closeListeners.add(listener);
    return () => {
      this.#closeListeners.delete(listener);
    };
  }

  #markClosed(reason: SshError): void {
    if (this.#closeError) return;
    this.#closeError = reason;
    log.debug('closed', { host: this.#hp, reason: reason.message });
    for (const l of [...this.#closeListeners]) l(reason);
    this.#closeListeners.clear();
  }
}
