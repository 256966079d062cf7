/**
 * Test helper: a real OpenSSH sshd on a loopback port, everything in a temp dir (config, host
 * key, client key, authorized_keys, pid). Keys are made by ssh-keygen and the host key's
 * fingerprint is what `ssh-keygen -lf` prints, so tests compare the SSH module against the
 * reference tool. sshd runs in the foreground (-D -e); each connection's sshd calls setsid(), so
 * `kill()`/`stop()` signal the listener and every process descended from it (per-connection
 * sshd processes and the commands they run), found through /proc before signalling.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { processAlive, tempDir } from './tools.ts';

export interface SshdOptions {
  /** Serve the SFTP subsystem (internal-sftp). @default true */
  sftp?: boolean;
  /** Listen on this port (e.g. one a client is already retrying). @default a free port */
  port?: number;
  /** Extra sshd_config lines, placed first (sshd keeps the first value of a keyword). */
  config?: string[];
  /** Reuse keys from an earlier start (a "restarted" server with the same identity). */
  reuse?: Pick<StartedSshd, 'dir'>;
}

export interface StartedSshd {
  host: '127.0.0.1';
  port: number;
  username: string;
  /** `SHA256:…` of the server's ed25519 host key, from `ssh-keygen -lf`. */
  hostKeyFingerprint: string;
  hostPublicKey: string;
  /** An authorized client key pair (OpenSSH formats), made by ssh-keygen. */
  clientKey: { privateKey: string; publicKey: string };
  dir: string;
  pid: number;
  /** sshd's stderr so far (LogLevel VERBOSE). */
  log: () => string;
  /** SIGKILL the listener and all its descendants (a crash); resolves when they are gone. */
  kill: () => Promise<void>;
  /** SIGSTOP the listener and its descendants (a frozen host); the returned function resumes them. */
  freeze: () => Promise<() => Promise<void>>;
  /** SIGTERM the listener and its descendants, SIGKILL after 5 s; removes the temp dir. Idempotent. */
  stop: () => Promise<void>;
}

export const SSHD = '/usr/sbin/sshd';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res, rej) => srv.listen(0, '127.0.0.1', () => res()).once('error', rej));
  const addr = srv.address();
  await new Promise<void>((res) => srv.close(() => res()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

async function keygen(path: string, comment: string): Promise<void> {
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
}

/** `root` and all its descendants (by /proc parent links), root first. */
async function processTree(root: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // Fields after the parenthesised command: state ppid …
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(name), ppid);
    } catch {
      /* exited meanwhile */
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of parent) if (ppid === tree[i]) tree.push(pid);
  return tree;
}

export async function startSshd(opts: SshdOptions = {}): Promise<StartedSshd> {
  const owned = opts.reuse ? null : await tempDir('cbt-sshd-');
  const dir = opts.reuse?.dir ?? (owned as { dir: string }).dir;
  // Privilege separation needs its empty chroot directory when sshd runs as root.
  if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  if (!opts.reuse) {
    await keygen(hostKey, 'cbt-test-host');
    await keygen(clientKey, 'cbt-test-client');
    await writeFile(join(dir, 'authorized_keys'), await readFile(`${clientKey}.pub`), { mode: 0o600 });
  }
  const fp = (await execa('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`])).stdout.split(/\s+/)[1];
  const port = opts.port ?? (await freePort());
  const config = [
    // sshd takes the first value of a keyword: caller's lines go first to override ours.
    ...(opts.config ?? []),
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    // The temp dir is not root-owned 0755 all the way up; the keys are ours anyway.
    'StrictModes no',
    'UsePAM no',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'AllowTcpForwarding yes',
    'AcceptEnv CBT_*',
    'LogLevel VERBOSE',
    // Tests open many connections at once; the default (10:30:100) randomly drops some.
    'MaxStartups 200',
    // Sessions get a HOME of their own: bash sources ~/.bashrc for commands run over SSH, and the
    // invoking user's rc files are not this test's business (one here blocks 60 s on a lock).
    `SetEnv HOME=${dir}`,
    ...(opts.sftp === false ? [] : ['Subsystem sftp internal-sftp']),
  ];
  const configPath = join(dir, `sshd_config.${port}`);
  await writeFile(configPath, `${config.join('\n')}\n`);
  const proc: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd on port ${port} not listening after 10 s:\n${log}`)), 10_000);
    proc.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
      if (/Server listening on 127\.0\.0\.1 port/.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`sshd exited (${code ?? sig}) before listening on port ${port}:\n${log}`));
    });
  });
  const pid = proc.pid as number;
  // Every pid ever seen under the listener: a killed per-connection sshd orphans its command.
  const seen = new Set<number>();
  const signalAll = async (sig: NodeJS.Signals): Promise<void> => {
    if (processAlive(pid)) for (const p of await processTree(pid)) seen.add(p);
    for (const p of seen) {
      try {
        process.kill(p, sig);
      } catch {
        seen.delete(p); // already gone
      }
    }
  };
  const waitAllGone = async (ms: number): Promise<boolean> => {
    for (let waited = 0; waited < ms; waited += 20) {
      if (![...seen].some(processAlive)) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return ![...seen].some(processAlive);
  };
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await signalAll('SIGCONT');
      await signalAll('SIGTERM');
      if (!(await waitAllGone(5000))) await signalAll('SIGKILL');
      await exited;
      await waitAllGone(5000);
      await owned?.cleanup();
    })());
  try {
    await listening;
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    host: '127.0.0.1',
    port,
    username: userInfo().username,
    hostKeyFingerprint: fp,
    hostPublicKey: (await readFile(`${hostKey}.pub`, 'utf8')).trim(),
    clientKey: { privateKey: await readFile(clientKey, 'utf8'), publicKey: (await readFile(`${clientKey}.pub`, 'utf8')).trim() },
    dir,
    pid,
    log: () => log,
    freeze: async () => {
      await signalAll('SIGSTOP');
      return () => signalAll('SIGCONT');
    },
    kill: async () => {
      await signalAll('SIGKILL');
      await exited;
      await waitAllGone(5000);
    },
    stop,
  };
}
