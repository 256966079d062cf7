/**
 * Test fixture: a guest-less QEMU (`-machine none`) with its QMP monitor on a unix or TCP socket,
 * killed by pid in teardown. The VM launcher proper lives in src/vm/; this is only what the QMP
 * client tests need.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { tempDir } from '../helpers/tools.ts';

export interface QemuFixture {
  dir: string;
  proc: ChildProcess;
  /** unix socket path, or undefined for TCP */
  path?: string;
  port?: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: () => string;
  stderr: () => string;
}

/** A free loopback TCP port (bound then released: a small race we accept in tests). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res, rej) => srv.listen(0, '127.0.0.1', () => res()).once('error', rej));
  const addr = srv.address();
  await new Promise<void>((res) => srv.close(() => res()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** Start QEMU; its socket may not exist yet when this returns (connect with `retryUntil`). */
export async function startQemu(t: ExecutionContext, opts: { tcp?: boolean; delayMs?: number } = {}): Promise<QemuFixture> {
  const { dir, cleanup } = await tempDir('cbt-qmp-');
  const path = join(dir, 'qmp.sock');
  const port = opts.tcp ? await freePort() : undefined;
  const qmpArg = opts.tcp ? `tcp:127.0.0.1:${port},server=on,wait=off` : `unix:${path},server=on,wait=off`;
  const argv = ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', qmpArg];
  let stderr = '';
  let stdout = '';
  // With delayMs, a shell sleeps first so the client provably starts before the socket exists.
  const proc = opts.delayMs
    ? spawn('sh', ['-c', `sleep ${opts.delayMs / 1000}; exec qemu-system-x86_64 "$@"`, 'sh', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  // HMP `qemu-io` prints its report on QEMU's stdout (QEMU 7.2), not in the HMP reply.
  proc.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => proc.once('close', (code, signal) => res({ code, signal })));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL'); // also ends a SIGSTOPped QEMU
    }
    await exited;
    await cleanup();
  });
  return { dir, proc, path: opts.tcp ? undefined : path, port, exited, stdout: () => stdout, stderr: () => stderr };
}

export function targetOf(q: QemuFixture): { path: string } | { host: string; port: number } {
  return q.path ? { path: q.path } : { host: '127.0.0.1', port: q.port as number };
}
