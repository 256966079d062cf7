/**
 * How an executor reaches a host: run `sh -c SCRIPT`, copy a file there, open a TCP connection
 * to a port there. One implementation per host type (local, ssh, docker container).
 */
import type { Readable, Duplex } from 'node:stream';

export interface TransportRunOptions {
  stdin?: string | Uint8Array | Readable;
  signal?: AbortSignal;
  /** Bytes kept of stdout and of stderr each; the rest is dropped and `truncated` set. @default 16 MiB */
  maxOutputBytes?: number;
}

export interface TransportResult {
  /** null when the process ended by a signal (or the transport could not tell). */
  exitCode: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  truncated: boolean;
}

export interface Transport {
  /** For messages: `local`, `ssh root@10.0.0.2:22`, `docker container cbt-…`. */
  readonly description: string;
  /**
   * Runs `sh -c script` on the host. Rejects with InfrastructureError when the transport itself
   * fails (connection lost, container gone), with the signal's reason when aborted.
   */
  run(script: string, options?: TransportRunOptions): Promise<TransportResult>;
  /** Copies a local file (path) or bytes to an absolute path on the host; the parent exists. */
  upload(source: string | Uint8Array, remotePath: string, signal?: AbortSignal): Promise<void>;
  /** A TCP connection to `127.0.0.1:port` as seen from the host (or container). */
  connectTcp(port: number, signal?: AbortSignal): Promise<Duplex>;
  close(): Promise<void>;
}

export const DEFAULT_MAX_OUTPUT = 16 * 2 ** 20;

/** Collects a stream's bytes up to a limit (no unbounded allocation from a chatty command). */
export class BoundedSink {
  readonly limit: number;
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  push(chunk: Buffer): void {
    const room = this.limit - this.size;
    if (room <= 0) {
      if (chunk.length > 0) this.truncated = true;
      return;
    }
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (part.length < chunk.length) this.truncated = true;
    this.chunks.push(Buffer.from(part));
    this.size += part.length;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}
