/** Transport to this machine: execa, fs copies, loopback TCP. */
import { copyFile, constants, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { execa } from 'execa';
import { HostError, InfrastructureError } from './errors.ts';
import { BoundedSink, DEFAULT_MAX_OUTPUT, type Transport, type TransportResult, type TransportRunOptions } from './transport.ts';

export function tcpConnect(host: string, port: number, hostName: string, signal?: AbortSignal): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const socket = connect({ host, port });
    const onAbort = () => {
      socket.destroy();
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new HostError(hostName, `cannot connect to ${host}:${port}: ${error.message}`, { cause: error }));
    });
  });
}

export class LocalTransport implements Transport {
  readonly description = 'local';
  readonly hostName: string;

  constructor(hostName: string) {
    this.hostName = hostName;
  }

  async run(script: string, options: TransportRunOptions = {}): Promise<TransportResult> {
    options.signal?.throwIfAborted();
    const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const out = new BoundedSink(limit);
    const err = new BoundedSink(limit);
    let child;
    try {
      child = execa('sh', ['-c', script], { buffer: false, reject: false, stdin: options.stdin === undefined ? 'ignore' : 'pipe', cancelSignal: options.signal, forceKillAfterDelay: 2000 });
    } catch (error) {
      throw new InfrastructureError(this.hostName, `cannot start sh: ${(error as Error).message}`, { cause: error });
    }
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    if (options.stdin !== undefined && child.stdin) {
      const input = options.stdin;
      const src = input instanceof Readable ? input : Readable.from([typeof input === 'string' ? Buffer.from(input) : Buffer.from(input)]);
      // A command that does not read its input closes the pipe: not an error of ours.
      child.stdin.on('error', () => {});
      src.pipe(child.stdin);
    }
    const r = await child;
    if (r.isCanceled) throw options.signal?.reason ?? new Error('aborted');
    if (r.failed && r.exitCode === undefined && !r.signal) throw new InfrastructureError(this.hostName, `sh failed to run: ${r.message}`, { cause: r });
    return { exitCode: r.exitCode ?? null, signal: r.signal ?? null, stdout: out.bytes(), stderr: err.bytes(), truncated: out.truncated || err.truncated };
  }

  async upload(source: string | Uint8Array, remotePath: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    // A reflink where the file system can; a copy otherwise.
    if (typeof source === 'string') await copyFile(source, remotePath, constants.COPYFILE_FICLONE);
    else await writeFile(remotePath, source, { signal });
  }

  connectTcp(port: number, signal?: AbortSignal): Promise<Duplex> {
    return tcpConnect('127.0.0.1', port, this.hostName, signal);
  }

  async close(): Promise<void> {}
}
