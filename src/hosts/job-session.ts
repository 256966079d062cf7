/** A job's session on a host over any transport: commands, files, TCP, the harness CLI, cleanup. */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import type { Duplex } from 'node:stream';
import { CommandTimeoutError, HostOperationError } from './errors.ts';
import type { ExecOptions, ExecResult, HarnessResult, JobSession, RunningCommand } from './executor.ts';
import type { Logger } from '../util/log.ts';
import { ENV_EXEC, ENV_JOB, ENV_RUN, ENV_SESSION, KILL_FN, shJoin, shq } from './shell.ts';
import type { Transport, TransportResult } from './transport.ts';

function toResult(command: string, r: TransportResult, started: number): ExecResult {
  return { command, exitCode: r.exitCode, signal: r.signal, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), truncated: r.truncated, durationMs: Date.now() - started };
}

export interface JobSessionInit {
  host: string;
  runId: string;
  jobId: string;
  workdir: string;
  transport: Transport;
  harnessPath: (signal?: AbortSignal) => Promise<string>;
  /** Frees what holds the job (closes its connection, removes its container). */
  release: () => Promise<void>;
  log: Logger;
}

export class ShellJobSession implements JobSession {
  readonly host: string;
  readonly jobId: string;
  readonly workdir: string;
  private readonly init: JobSessionInit;
  private closed: Promise<void> | null = null;
  private readonly running = new Set<Promise<unknown>>();
  private readonly session = `s${randomBytes(8).toString('hex')}`;

  constructor(init: JobSessionInit) {
    this.init = init;
    this.host = init.host;
    this.jobId = init.jobId;
    this.workdir = init.workdir;
  }

  private resolve(path: string): string {
    if (path.startsWith('/')) return posix.normalize(path);
    const abs = posix.normalize(posix.join(this.workdir, path));
    if (abs !== this.workdir && !abs.startsWith(`${this.workdir}/`)) throw new HostOperationError(this.host, `path ${path} leaves the job folder ${this.workdir}`);
    return abs;
  }

  private checkOpen(): void {
    if (this.closed) throw new HostOperationError(this.host, `job ${this.jobId} is closed`);
  }

  /** Runs a host-side script without labels (bookkeeping, kills). */
  private async admin(script: string, signal?: AbortSignal): Promise<TransportResult> {
    return this.init.transport.run(script, { signal, maxOutputBytes: 1 << 20 });
  }

  private async killExec(id: string): Promise<{ forced: boolean }> {
    const script = `${KILL_FN}
cd ${shq(this.workdir)} 2>/dev/null && mkdir -p .cbt/cancel && : > .cbt/cancel/${id}
cbt_killall ${shq(`${ENV_EXEC}=${id}`)}
sleep 0.1; cbt_kill KILL ${shq(`${ENV_EXEC}=${id}`)} >/dev/null`;
    const r = await this.admin(script);
    return { forced: r.stdout.toString().includes('forced:') };
  }

  async spawn(argv: readonly string[], options: Omit<ExecOptions, 'timeoutMs'> = {}): Promise<RunningCommand> {
    return this.start(argv, options);
  }

  private async start(argv: readonly string[], options: ExecOptions): Promise<RunningCommand> {
    this.checkOpen();
    if (argv.length === 0) throw new HostOperationError(this.host, 'empty command');
    options.signal?.throwIfAborted();
    const id = `x${randomBytes(6).toString('hex')}`;
    const command = shJoin(argv);
    const env: Record<string, string> = { ...options.env, [ENV_RUN]: this.init.runId, [ENV_JOB]: this.jobId, [ENV_SESSION]: this.session, [ENV_EXEC]: id };
    for (const k of Object.keys(env)) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new HostOperationError(this.host, `not an environment variable name: ${JSON.stringify(k)}`);
    const cwd = options.cwd === undefined ? this.workdir : this.resolve(options.cwd);
    // `exec` replaces the shell, so the command itself carries the labels in /proc/PID/environ.
    const script = [
      `cd ${shq(this.workdir)} || exit 125`,
      `[ -e .cbt/cancel/${id} ] && exit 130`,
      `export ${Object.entries(env).map(([k, v]) => `${k}=${shq(v)}`).join(' ')}`,
      `cd ${shq(cwd)} || exit 125`,
      `exec ${command}`,
    ].join('\n');
    const started = Date.now();
    // The transport's own abort is a last resort (after the kill): closing a channel first would
    // leave the remote process running.
    const hard = new AbortController();
    let killing: Promise<{ forced: boolean }> | null = null;
    const kill = () => {
      killing ??= this.killExec(id).catch((error: unknown) => {
        this.init.log.warn('kill failed', { host: this.host, job: this.jobId, exec: id, error: (error as Error).message });
        return { forced: true };
      }).finally(() => setTimeout(() => hard.abort(new Error('killed')), 5000).unref());
      return killing;
    };
    let timedOut = false;
    const timer = options.timeoutMs !== undefined ? setTimeout(() => {
      timedOut = true;
      void kill();
    }, options.timeoutMs) : undefined;
    const onAbort = () => void kill();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.init.log.debug('exec', { host: this.host, job: this.jobId, exec: id, command });
    const done = (async () => {
      try {
        const r = await this.init.transport.run(script, { stdin: options.stdin, signal: hard.signal, maxOutputBytes: options.maxOutputBytes });
        if (killing) await killing;
        if (timedOut) throw new CommandTimeoutError(this.host, command, options.timeoutMs ?? 0);
        if (options.signal?.aborted) throw options.signal.reason;
        return toResult(command, r, started);
      } catch (error) {
        if (timedOut && !(error instanceof CommandTimeoutError)) throw new CommandTimeoutError(this.host, command, options.timeoutMs ?? 0);
        if (options.signal?.aborted) throw options.signal.reason;
        throw error;
      } finally {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      }
    })();
    const tracked = done.catch(() => {});
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
    return { id, command, done, kill };
  }

  async exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return (await this.start(argv, options)).done;
  }

  async putFile(path: string, data: string | Uint8Array, options: { mode?: number; signal?: AbortSignal } = {}): Promise<string> {
    this.checkOpen();
    const abs = this.resolve(path);
    const mode = options.mode === undefined ? '' : ` && chmod ${(options.mode & 0o7777).toString(8)} ${shq(abs)}`;
    const r = await this.init.transport.run(`mkdir -p ${shq(posix.dirname(abs))} && cat > ${shq(abs)}${mode}`, { stdin: typeof data === 'string' ? Buffer.from(data) : data, signal: options.signal, maxOutputBytes: 65536 });
    if (r.exitCode !== 0) throw new HostOperationError(this.host, `cannot write ${abs}: ${r.stderr.toString().trim()}`);
    return abs;
  }

  async getFile(path: string, options: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<Buffer> {
    this.checkOpen();
    const abs = this.resolve(path);
    const max = options.maxBytes ?? 16 * 2 ** 20;
    // base64: text-safe through every transport; the size check first bounds what we accept.
    const r = await this.init.transport.run(`f=${shq(abs)}; [ -f "$f" ] || { echo "no such file" >&2; exit 3; }; n=$(wc -c < "$f"); [ "$n" -le ${max} ] || { echo "$n bytes, more than the limit of ${max}" >&2; exit 4; }; base64 < "$f"`, { signal: options.signal, maxOutputBytes: Math.ceil(max / 3) * 4 + Math.ceil(max / 57) + 1024 });
    if (r.exitCode !== 0) throw new HostOperationError(this.host, `cannot read ${abs}: ${r.stderr.toString().trim()}`);
    return Buffer.from(r.stdout.toString('latin1').replace(/\s+/g, ''), 'base64');
  }

  connectTcp(port: number, signal?: AbortSignal): Promise<Duplex> {
    this.checkOpen();
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new HostOperationError(this.host, `Expected \`port\` to be an integer from 1 to 65535, got \`${port}\``);
    return this.init.transport.connectTcp(port, signal);
  }

  async runHarness(args: readonly string[], options: Omit<ExecOptions, 'stdin'> = {}): Promise<HarnessResult> {
    const bin = await this.init.harnessPath(options.signal);
    const r = await this.exec([bin, ...args], { maxOutputBytes: 64 * 2 ** 20, ...options });
    let json: unknown;
    const text = r.stdout.trim();
    if (text.startsWith('{') || text.startsWith('[')) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    return { exitCode: r.exitCode, signal: r.signal, json, stdout: r.stdout, stderr: r.stderr, durationMs: r.durationMs };
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      try {
        const r = await this.admin(`${KILL_FN}\ncbt_killall ${shq(`${ENV_SESSION}=${this.session}`)}\nrm -rf ${shq(this.workdir)}`);
        if (r.stdout.toString().includes('forced:')) this.init.log.debug('job processes needed SIGKILL', { host: this.host, job: this.jobId });
      } catch (error) {
        // The host may be gone (that is often why a job ends early); the sweeper covers it.
        this.init.log.warn('job cleanup failed', { host: this.host, job: this.jobId, error: (error as Error).message });
      }
      await Promise.allSettled([...this.running]);
      await this.init.release().catch((error: unknown) => this.init.log.warn('release failed', { host: this.host, job: this.jobId, error: (error as Error).message }));
    })();
    return this.closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
