/**
 * One interface for what a job needs on a host, whatever the host type:
 *   - `HostExecutor` (one per inventory host): connect, probe facts, stage guest images and the
 *     harness once per host, open job sessions, sweep leftovers of crashed runs;
 *   - `JobSession` (one per job): a work folder, commands with exit code / output / timeout /
 *     abort, small files in and out, TCP to a port on the host, the harness's own CLI run there,
 *     and cleanup that kills every process the job started and removes its folder.
 *
 * Layout on a host (W = workdir):
 *   W/images/<hash>/{files…, manifest.json, .complete}   guest images, by content hash
 *   W/images/.tmp/                                        uploads in flight
 *   W/harness/<sha256>/                                   the harness (ssh hosts)
 *   W/runs/<runId>/run.json                               the run's lease (who, pid, since when)
 *   W/runs/<runId>/<jobId>/                               a job's folder (.cbt/ holds bookkeeping)
 *
 * Every process a job starts carries CBT_HARNESS_RUN / CBT_HARNESS_JOB / CBT_HARNESS_SESSION /
 * CBT_HARNESS_EXEC in its environment (see shell.ts): killing a command (EXEC), a job (SESSION, a
 * random id per session) or a crashed run (RUN) finds them all, and nothing else.
 */
import type { Duplex, Readable } from 'node:stream';
import type { FactLimits, HostFacts } from './facts.ts';
import type { Logger } from '../util/log.ts';
import type { LivenessOptions, RunLease } from './run-lease.ts';
import { ID_PATTERN } from './shell.ts';
import type { HostSpec } from './types.ts';

export interface ExecOptions {
  /** Folder to run in: relative to the job folder, or absolute. @default the job folder */
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string | Uint8Array | Readable;
  /** Kill the command (and everything it started) after this long and reject with CommandTimeoutError. */
  timeoutMs?: number;
  /** Kill the command on abort and reject with the signal's reason. */
  signal?: AbortSignal;
  /** @default 16 MiB per stream */
  maxOutputBytes?: number;
}

export interface ExecResult {
  /** The command as one shell line (for messages). */
  command: string;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Output beyond maxOutputBytes was dropped. */
  truncated: boolean;
  durationMs: number;
}

/** A command left running (a VM): wait for it or kill it and everything it started. */
export interface RunningCommand {
  readonly id: string;
  readonly command: string;
  /** Settles when it ends; rejects only on infrastructure failure, timeout or abort. */
  readonly done: Promise<ExecResult>;
  /** TERM, then KILL after 2 s, to the command and all its descendants. Resolves once they are gone. */
  kill(): Promise<{ forced: boolean }>;
}

export interface HarnessResult {
  exitCode: number | null;
  signal: string | null;
  /** stdout parsed as JSON, when it is JSON. */
  json: unknown;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface JobSession extends AsyncDisposable {
  readonly host: string;
  readonly jobId: string;
  /** Absolute path of the job folder on the host (inside the container for docker hosts). */
  readonly workdir: string;
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  spawn(argv: readonly string[], options?: Omit<ExecOptions, 'timeoutMs'>): Promise<RunningCommand>;
  /** Writes a small file (relative to the job folder, or absolute); returns its absolute path. */
  putFile(path: string, data: string | Uint8Array, options?: { mode?: number; signal?: AbortSignal }): Promise<string>;
  /** Reads a small file. @default maxBytes 16 MiB; larger files are refused. */
  getFile(path: string, options?: { maxBytes?: number; signal?: AbortSignal }): Promise<Buffer>;
  /** A TCP connection to 127.0.0.1:port on the host (in the container for docker hosts). */
  connectTcp(port: number, signal?: AbortSignal): Promise<Duplex>;
  /** Runs `cbt-harness ARGS…` on the host, in the job folder (the harness is staged if needed). */
  runHarness(args: readonly string[], options?: Omit<ExecOptions, 'stdin'>): Promise<HarnessResult>;
  /** Kills what the job started and removes its folder (or container). Idempotent. */
  close(): Promise<void>;
}

export interface StagedImage {
  hash: string;
  /** Folder on the host holding the files. */
  dir: string;
  /** name → absolute path on the host. */
  files: Record<string, string>;
  /** False when the host already had it. */
  copied: boolean;
  bytes: number;
}

export interface SweepOptions extends LivenessOptions {
  signal?: AbortSignal;
  /** Leases known from elsewhere (the local run registry), for QEMU processes whose run has no folder here. */
  knownLeases?: Map<string, Partial<RunLease>>;
}

export interface SweepReport {
  host: string;
  /** Runs judged crashed (their leftovers were removed). */
  staleRuns: string[];
  killedPids: number[];
  removedDirs: string[];
  removedContainers: string[];
}

export interface HostExecutor extends AsyncDisposable {
  readonly spec: HostSpec;
  readonly name: string;
  readonly runId: string;
  /** Reaches the host (idempotent). Rejects with InfrastructureError when it cannot. */
  connect(signal?: AbortSignal): Promise<void>;
  facts(signal?: AbortSignal): Promise<HostFacts>;
  /** Copies the files to the host's image cache unless it holds them already (by content hash). */
  stageImage(paths: readonly string[], options?: { signal?: AbortSignal; verify?: boolean }): Promise<StagedImage>;
  /** Path of `cbt-harness` on the host (stages the harness on ssh hosts, once per content hash). */
  harnessPath(signal?: AbortSignal): Promise<string>;
  openJob(jobId: string, options?: { signal?: AbortSignal }): Promise<JobSession>;
  /** Removes leftovers of crashed runs: processes, job folders, containers (only what carries a stale run id). */
  sweep(options?: SweepOptions): Promise<SweepReport>;
  /** Closes job sessions still open, then the connection. Idempotent. */
  close(): Promise<void>;
}

export interface ExecutorOptions {
  runId: string;
  /** @default currentLease(runId) */
  lease?: RunLease;
  log?: Logger;
  limits?: FactLimits;
}

/** Makes an arbitrary string usable as a job id (paths, labels, container names). */
export function safeId(text: string): string {
  if (ID_PATTERN.test(text) && text.length <= 64) return text;
  const cleaned = text.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 48);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return `${cleaned || 'job'}-${h.toString(36)}`;
}
