/** Transport over one SSH connection (src/ssh): exec through `sh -c`, SFTP upload, direct-tcpip. */
import { readFile } from 'node:fs/promises';
import { Readable, type Duplex } from 'node:stream';
import { SshClient, SshError } from '../ssh/index.ts';
import { expandHome } from './docker-engine.ts';
import { HostError, InfrastructureError } from './errors.ts';
import { shq } from './shell.ts';
import { DEFAULT_MAX_OUTPUT, type Transport, type TransportResult, type TransportRunOptions } from './transport.ts';
import type { SshHostSpec } from './types.ts';

/** SshError → InfrastructureError (the host or the network failed), except aborts (the caller's reason). */
export function fromSshError(host: string, error: unknown, signal?: AbortSignal): unknown {
  if (error instanceof SshError) {
    if (error.kind === 'aborted') return signal?.reason ?? error;
    return new InfrastructureError(host, error.message, { cause: error });
  }
  return error;
}

export async function connectSsh(spec: SshHostSpec, signal?: AbortSignal): Promise<SshClient> {
  let key: Buffer;
  try {
    key = await readFile(expandHome(spec.identity));
  } catch (error) {
    throw new HostError(spec.name, `cannot read identity ${spec.identity}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return await SshClient.connect(
      { host: spec.address, port: spec.port, username: spec.user, privateKey: key, hostKey: { kind: 'pinned', fingerprints: spec.hostKey } },
      { signal, readyTimeoutMs: spec.connectTimeoutMs, retryUntil: Date.now() + Math.min(spec.connectTimeoutMs, 5000) },
    );
  } catch (error) {
    throw fromSshError(spec.name, error, signal);
  }
}

export class SshTransport implements Transport {
  readonly description: string;
  readonly client: SshClient;
  private readonly host: string;

  constructor(host: string, client: SshClient) {
    this.host = host;
    this.client = client;
    this.description = `ssh ${client.username}@${client.host}:${client.port}`;
  }

  async run(script: string, options: TransportRunOptions = {}): Promise<TransportResult> {
    let stdin: string | Buffer | Readable | undefined;
    if (options.stdin instanceof Readable || typeof options.stdin === 'string') stdin = options.stdin;
    else if (options.stdin !== undefined) stdin = Buffer.from(options.stdin);
    try {
      // The login shell runs `sh -c …`: the script sees a POSIX sh whatever the user's shell is.
      const r = await this.client.exec(`sh -c ${shq(script)}`, { stdin, signal: options.signal, maxOutputBytes: options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT });
      return { exitCode: r.exitCode, signal: r.signal, stdout: Buffer.from(r.stdout), stderr: Buffer.from(r.stderr), truncated: r.stdoutDropped > 0 || r.stderrDropped > 0 };
    } catch (error) {
      throw fromSshError(this.host, error, options.signal);
    }
  }

  async upload(source: string | Uint8Array, remotePath: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.upload(typeof source === 'string' ? source : Buffer.from(source), remotePath, { signal });
    } catch (error) {
      throw fromSshError(this.host, error, signal);
    }
  }

  async connectTcp(port: number, signal?: AbortSignal): Promise<Duplex> {
    try {
      return await this.client.forwardOut('127.0.0.1', port, { signal });
    } catch (error) {
      // A refused port is the caller's business (nothing listens); a lost connection is not.
      if (error instanceof SshError && error.kind === 'connect') throw new HostError(this.host, error.message, { cause: error });
      throw fromSshError(this.host, error, signal);
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
