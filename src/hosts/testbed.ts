/**
 * A local testbed of real engines: a private `dockerd` (own socket, data root, exec root, pid
 * file and bridge, no iptables, no global sysctl changes) with the worker image imported, and
 * SSH hosts — each an `sshd` inside its own network namespace reached over a veth pair with
 * private addresses (or on loopback ports when namespaces are unavailable). `testbedUp` writes
 * an inventory with pinned host keys and a generated client identity; `testbedDown` removes
 * everything the state file lists. The state file is written after each step, so `down` also
 * cleans a half-finished `up`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { dockerClient } from './docker-engine.ts';
import { TestbedError } from './errors.ts';
import { buildWorkerImage } from './worker-image.ts';
import { processAlive } from '../util/index.ts';

export interface TestbedOptions {
  /** @default /tmp/cbt-testbed (short: unix socket paths are limited to 108 bytes) */
  stateDir?: string;
  /** @default 2 */
  sshHosts?: number;
  /** Start a dockerd with the worker image. @default true */
  docker?: boolean;
  /** Build/import the worker image into the testbed's engine. @default true */
  workerImage?: boolean;
  /** `auto` uses network namespaces when `ip netns` works, else loopback ports. @default 'auto' */
  namespaces?: 'auto' | 'always' | 'never';
  /** Slots per host in the inventory. @default 2 */
  slots?: number;
  /** Include the local machine as host `local`. @default true */
  local?: boolean;
  log?: (message: string) => void;
  signal?: AbortSignal;
}

export interface TestbedSshHost {
  name: string;
  /** sshd's pid (inside the namespace when there is one). */
  pid: number | null;
  address: string;
  port: number;
  netns: string | null;
  /** Host-side veth (deleted with the namespace; listed for a forced cleanup). */
  veth: string | null;
  workdir: string;
  hostKeyFingerprint: string;
}

export interface TestbedState {
  version: 1;
  id: string;
  stateDir: string;
  createdAt: string;
  clientKey: string;
  sshHosts: TestbedSshHost[];
  docker: { pid: number | null; socket: string; dataRoot: string; execRoot: string; bridge: string | null; image: string | null } | null;
  localWorkdir: string | null;
  inventory: string | null;
  /** Set once every step of `up` finished. */
  ready: boolean;
}

const STATE_FILE = 'testbed.json';

export async function readTestbedState(stateDir: string): Promise<TestbedState | null> {
  try {
    return JSON.parse(await readFile(join(stateDir, STATE_FILE), 'utf8')) as TestbedState;
  } catch {
    return null;
  }
}

async function saveState(state: TestbedState): Promise<void> {
  await writeFile(join(state.stateDir, `${STATE_FILE}.tmp`), JSON.stringify(state, null, 2));
  await execa('mv', [join(state.stateDir, `${STATE_FILE}.tmp`), join(state.stateDir, STATE_FILE)]);
}

async function run(cmd: string, args: string[], what: string): Promise<string> {
  const r = await execa(cmd, args, { reject: false });
  if (r.exitCode !== 0) throw new TestbedError(`${what}: ${cmd} ${args.join(' ')} failed: ${String(r.stderr || r.stdout).trim()}`);
  return String(r.stdout);
}

/** Starts a daemon detached from us (it outlives `testbed up`), output to a log file. */
function daemon(cmd: string, args: string[], logFile: string): number {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd] });
    child.unref();
    if (child.pid === undefined) throw new TestbedError(`could not start ${cmd}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function cmdlineOf(pid: number): Promise<string[] | null> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

/** Kills a pid only if its command line still mentions `marker` (pid reuse). Waits for it to go. */
async function killChecked(pid: number | null, marker: string, graceMs: number): Promise<boolean> {
  if (!pid) return false;
  const argv = await cmdlineOf(pid);
  if (!argv || !argv.join(' ').includes(marker)) return false;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return false;
  }
  const until = Date.now() + graceMs;
  while (processAlive(pid) && Date.now() < until) await sleep(100);
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    while (processAlive(pid)) await sleep(50);
  }
  return true;
}

async function waitTcp(host: string, port: number, timeoutMs: number, what: string, signal?: AbortSignal): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new TestbedError(`${what} did not listen on ${host}:${port} within ${timeoutMs} ms`);
    await sleep(100, undefined, { signal });
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.once('error', reject);
  });
}

async function namespacesWork(): Promise<boolean> {
  const probe = `cbt-probe-${randomBytes(3).toString('hex')}`;
  const r = await execa('ip', ['netns', 'add', probe], { reject: false });
  if (r.exitCode !== 0) return false;
  await execa('ip', ['netns', 'del', probe], { reject: false });
  return true;
}

/** A 10.X.0.0/16 no local route or address uses. */
async function pickSubnet(): Promise<number> {
  const routes = String((await execa('ip', ['-4', 'route', 'show', 'table', 'all'], { reject: false })).stdout) + String((await execa('ip', ['-4', '-o', 'addr'], { reject: false })).stdout);
  for (let i = 0; i < 50; i++) {
    const x = 200 + Math.floor(Math.random() * 54);
    if (!routes.includes(`10.${x}.`)) return x;
  }
  throw new TestbedError('no free 10.X.0.0/16 subnet for the testbed');
}

async function fingerprint(pubKey: string): Promise<string> {
  const out = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubKey], 'reading a host key fingerprint');
  const m = /SHA256:[A-Za-z0-9+/]{43}/.exec(out);
  if (!m) throw new TestbedError(`unexpected ssh-keygen output: ${out}`);
  return m[0];
}

function sshdConfig(dir: string, listen: string, clientPub: string): string {
  return [
    `ListenAddress ${listen}`,
    `HostKey ${dir}/ssh_host_ed25519_key`,
    `PidFile ${dir}/sshd.pid`,
    `AuthorizedKeysFile ${clientPub}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    // Every job holds a connection with a few channels; the defaults (10, 10:30:100) are too tight for a farm.
    'MaxSessions 64',
    'MaxStartups 64:30:128',
    'PrintMotd no',
    'Subsystem sftp internal-sftp',
    'LogLevel ERROR',
    '',
  ].join('\n');
}

export async function testbedUp(options: TestbedOptions = {}): Promise<{ state: TestbedState; inventoryYaml: string }> {
  const stateDir = options.stateDir ?? '/tmp/cbt-testbed';
  const log = options.log ?? (() => {});
  const existing = await readTestbedState(stateDir);
  if (existing) throw new TestbedError(`a testbed is already set up in ${stateDir} (run \`cbt-harness testbed down --state ${stateDir}\` first)`);
  await mkdir(stateDir, { recursive: true });
  const id = randomBytes(2).toString('hex');
  const state: TestbedState = { version: 1, id, stateDir, createdAt: new Date().toISOString(), clientKey: join(stateDir, 'client_key'), sshHosts: [], docker: null, localWorkdir: null, inventory: null, ready: false };
  await saveState(state);
  try {
    const useNs = options.namespaces === 'never' ? false : options.namespaces === 'always' ? true : await namespacesWork();
    if (options.namespaces === 'always' && !(await namespacesWork())) throw new TestbedError('network namespaces are unavailable (`ip netns add` failed)');
    const subnet = useNs || options.docker !== false ? await pickSubnet() : 0;
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `cbt-testbed-${id}`, '-f', state.clientKey], 'generating the client key');
    await mkdir('/run/sshd', { recursive: true });
    const sshd = '/usr/sbin/sshd';
    if (!existsSync(sshd)) throw new TestbedError('sshd not found at /usr/sbin/sshd (apt-get install openssh-server)');
    const count = options.sshHosts ?? 2;
    for (let i = 1; i <= count; i++) {
      options.signal?.throwIfAborted();
      const name = `ssh-${i}`;
      const dir = join(stateDir, `h${i}`);
      await mkdir(join(dir, 'work'), { recursive: true });
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `cbt-testbed-${id}-${name}`, '-f', join(dir, 'ssh_host_ed25519_key')], 'generating a host key');
      const host: TestbedSshHost = { name, pid: null, address: '127.0.0.1', port: 22, netns: null, veth: null, workdir: join(dir, 'work'), hostKeyFingerprint: await fingerprint(join(dir, 'ssh_host_ed25519_key.pub')) };
      state.sshHosts.push(host);
      if (useNs) {
        host.netns = `cbt-tb${id}-h${i}`;
        host.veth = `cbt${id}h${i}`;
        const inner = `cbt${id}n${i}`;
        await saveState(state);
        const hostIp = `10.${subnet}.0.${4 * i + 1}`;
        host.address = `10.${subnet}.0.${4 * i + 2}`;
        await run('ip', ['netns', 'add', host.netns], 'creating a network namespace');
        await run('ip', ['link', 'add', host.veth, 'type', 'veth', 'peer', 'name', inner], 'creating a veth pair');
        await run('ip', ['link', 'set', inner, 'netns', host.netns], 'moving the veth into the namespace');
        await run('ip', ['addr', 'add', `${hostIp}/30`, 'dev', host.veth], 'addressing the veth');
        await run('ip', ['link', 'set', host.veth, 'up'], 'raising the veth');
        await run('ip', ['-n', host.netns, 'addr', 'add', `${host.address}/30`, 'dev', inner], 'addressing the veth in the namespace');
        await run('ip', ['-n', host.netns, 'link', 'set', inner, 'up'], 'raising the veth in the namespace');
        await run('ip', ['-n', host.netns, 'link', 'set', 'lo', 'up'], 'raising loopback in the namespace');
      } else {
        host.port = await freePort();
      }
      await writeFile(join(dir, 'sshd_config'), sshdConfig(dir, `${host.address}:${host.port}`, `${state.clientKey}.pub`));
      // Each host gets its own empty home folder, bind-mounted over ours in sshd's private mount
      // namespace (`ip netns exec` makes one; `unshare -m` without namespaces): like a fresh
      // machine, and this machine's shell start-up files (run by bash for every SSH command)
      // stay out of the way. sh and sshd are exec'd in place, so the pid is sshd's.
      await mkdir(join(dir, 'home'), { recursive: true, mode: 0o700 });
      const inner = `mount --bind ${join(dir, 'home')} ${homedir()} && exec ${sshd} -D -e -f ${join(dir, 'sshd_config')}`;
      host.pid = host.netns ? daemon('ip', ['netns', 'exec', host.netns, 'sh', '-c', inner], join(dir, 'sshd.log')) : daemon('unshare', ['-m', '--propagation', 'private', 'sh', '-c', inner], join(dir, 'sshd.log'));
      await saveState(state);
      await waitTcp(host.address, host.port, 10_000, `sshd of ${name}`, options.signal).catch(async (error: unknown) => {
        const logText = await readFile(join(dir, 'sshd.log'), 'utf8').catch(() => '');
        throw new TestbedError(`${(error as Error).message}${logText ? `; sshd.log: ${logText.trim().slice(-500)}` : ''}`);
      });
      log(`testbed: ${name} sshd pid ${host.pid} on ${host.address}:${host.port}${host.netns ? ` in netns ${host.netns}` : ''}`);
    }
    if (options.local !== false) {
      state.localWorkdir = join(stateDir, 'local-work');
      await mkdir(state.localWorkdir, { recursive: true });
    }
    if (options.docker !== false) {
      const ddir = join(stateDir, 'docker');
      await mkdir(ddir, { recursive: true });
      const bridge = `cbt${id}br`;
      state.docker = { pid: null, socket: join(stateDir, 'docker.sock'), dataRoot: join(ddir, 'data'), execRoot: join(ddir, 'exec'), bridge, image: null };
      await saveState(state);
      await run('ip', ['link', 'add', bridge, 'type', 'bridge'], 'creating the docker bridge');
      await run('ip', ['addr', 'add', `10.${subnet}.1.1/24`, 'dev', bridge], 'addressing the docker bridge');
      await run('ip', ['link', 'set', bridge, 'up'], 'raising the docker bridge');
      await writeFile(join(ddir, 'daemon.json'), '{}\n');
      // No iptables rules, no ip_forward sysctl: the testbed must not change the machine's networking.
      state.docker.pid = daemon('dockerd', [
        '--host', `unix://${state.docker.socket}`,
        '--data-root', state.docker.dataRoot,
        '--exec-root', state.docker.execRoot,
        '--pidfile', join(ddir, 'docker.pid'),
        '--config-file', join(ddir, 'daemon.json'),
        '--bridge', bridge,
        '--iptables=false', '--ip6tables=false', '--ip-masq=false', '--ip-forward=false',
      ], join(ddir, 'dockerd.log'));
      await saveState(state);
      const docker = dockerClient({ socketPath: state.docker.socket });
      const until = Date.now() + 60_000;
      for (;;) {
        options.signal?.throwIfAborted();
        try {
          await docker.ping();
          break;
        } catch {
          if (!processAlive(state.docker.pid)) throw new TestbedError(`dockerd exited: ${(await readFile(join(ddir, 'dockerd.log'), 'utf8').catch(() => '')).trim().slice(-800)}`);
          if (Date.now() > until) throw new TestbedError('dockerd did not answer within 60 s');
          await sleep(200);
        }
      }
      log(`testbed: dockerd pid ${state.docker.pid} on ${state.docker.socket}`);
      if (options.workerImage !== false) {
        const img = await buildWorkerImage({ docker, signal: options.signal, log });
        state.docker.image = img.name;
        log(`testbed: worker image ${img.name} imported`);
      }
      await saveState(state);
    }
    const slots = options.slots ?? 2;
    const hosts: Array<Record<string, unknown>> = [];
    if (state.localWorkdir) hosts.push({ name: 'local', type: 'local', slots, workdir: state.localWorkdir });
    for (const h of state.sshHosts) hosts.push({ name: h.name, type: 'ssh', address: h.address, port: h.port, user: 'root', identity: state.clientKey, hostKey: h.hostKeyFingerprint, workdir: h.workdir, slots, tags: ['ssh'] });
    if (state.docker) hosts.push({ name: 'docker-1', type: 'docker', docker: { socketPath: state.docker.socket }, image: 'cbt-harness-worker:latest', slots, tags: ['docker'] });
    const inventoryYaml = `# cbt-harness testbed ${id} (${state.createdAt}); remove with: cbt-harness testbed down --state ${stateDir}\n${stringify({ hosts })}`;
    state.inventory = join(stateDir, 'hosts.yaml');
    await writeFile(state.inventory, inventoryYaml);
    state.ready = true;
    await saveState(state);
    return { state, inventoryYaml };
  } catch (error) {
    log(`testbed: up failed (${(error as Error).message}); removing what was made`);
    await testbedDown({ stateDir, log }).catch((e: unknown) => log(`testbed: cleanup after failure: ${(e as Error).message}`));
    throw error instanceof TestbedError ? error : new TestbedError(`testbed up failed: ${(error as Error).message}`, { cause: error });
  }
}

/** Processes inside a namespace (`ip netns pids`). */
async function netnsPids(ns: string): Promise<number[]> {
  const r = await execa('ip', ['netns', 'pids', ns], { reject: false });
  return String(r.stdout).split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
}

/** Descendants of a pid (by parent links in /proc). */
async function descendants(root: number): Promise<number[]> {
  const r = await execa('sh', ['-c', 'for d in /proc/[0-9]*; do echo "${d#/proc/} $(cut -d" " -f4 "$d/stat" 2>/dev/null)"; done'], { reject: false });
  const children = new Map<number, number[]>();
  for (const line of String(r.stdout).split('\n')) {
    const [pid, ppid] = line.split(' ').map(Number);
    if (!pid || !ppid) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) for (const c of children.get(stack.pop() as number) ?? []) {
    out.push(c);
    stack.push(c);
  }
  return out;
}

/**
 * Simulates a host dying: SIGKILL to every process of the SSH host (everything in its namespace,
 * or sshd and its descendants on loopback). Connections to it drop at once.
 */
export async function testbedKillHost(state: TestbedState, name: string): Promise<number[]> {
  const host = state.sshHosts.find((h) => h.name === name);
  if (!host) throw new TestbedError(`no SSH host ${name} in the testbed (${state.sshHosts.map((h) => h.name).join(', ')})`);
  let pids: number[];
  if (host.netns) pids = await netnsPids(host.netns);
  else {
    const argv = host.pid ? await cmdlineOf(host.pid) : null;
    pids = argv?.join(' ').includes('sshd') && host.pid ? [host.pid, ...(await descendants(host.pid))] : [];
  }
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids;
}

export interface TestbedDownReport {
  killed: number[];
  removedContainers: number;
  namespaces: string[];
}

export async function testbedDown(options: { stateDir?: string; log?: (m: string) => void } = {}): Promise<TestbedDownReport> {
  const stateDir = options.stateDir ?? '/tmp/cbt-testbed';
  const log = options.log ?? (() => {});
  const state = await readTestbedState(stateDir);
  const report: TestbedDownReport = { killed: [], removedContainers: 0, namespaces: [] };
  if (!state) {
    if (existsSync(stateDir)) throw new TestbedError(`${stateDir} holds no testbed state file (${STATE_FILE}); not removing it`);
    return report;
  }
  // 1. Docker: containers first (their shims outlive dockerd otherwise), then the daemon.
  if (state.docker) {
    const d = state.docker;
    if (d.pid && processAlive(d.pid)) {
      try {
        const docker = dockerClient({ socketPath: d.socket }, { timeoutMs: 30_000 });
        for (const c of await docker.listContainers({ all: true })) {
          await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
          report.removedContainers++;
        }
      } catch (error) {
        log(`testbed: cannot list containers (${(error as Error).message}); stopping dockerd anyway`);
      }
    }
    if (await killChecked(d.pid, d.socket, 20_000)) report.killed.push(d.pid as number);
    // Shims and containerd whose addresses point into our exec root (dockerd gone or killed).
    const r = await execa('sh', ['-c', 'for d in /proc/[0-9]*; do printf "%s " "${d#/proc/}"; tr "\\000" " " < "$d/cmdline" 2>/dev/null; echo; done'], { reject: false });
    for (const line of String(r.stdout).split('\n')) {
      const m = /^(\d+) (.*)$/.exec(line);
      if (m && m[2].includes(d.execRoot) && /containerd/.test(m[2]) && (await killChecked(Number(m[1]), d.execRoot, 5000))) report.killed.push(Number(m[1]));
    }
    if (d.bridge) await execa('ip', ['link', 'del', d.bridge], { reject: false });
  }
  // 2. SSH hosts: everything in each namespace, then the namespace (its veth end goes with it).
  for (const h of state.sshHosts) {
    if (h.netns) {
      for (const p of await netnsPids(h.netns)) {
        try {
          process.kill(p, 'SIGKILL');
          report.killed.push(p);
        } catch {
          // gone
        }
      }
      const r = await execa('ip', ['netns', 'del', h.netns], { reject: false });
      if (r.exitCode === 0) report.namespaces.push(h.netns);
    } else if (h.pid) {
      const argv = await cmdlineOf(h.pid);
      if (argv?.join(' ').includes(join(stateDir, ''))) {
        for (const p of [h.pid, ...(await descendants(h.pid))]) {
          try {
            process.kill(p, 'SIGKILL');
            report.killed.push(p);
          } catch {
            // gone
          }
        }
      }
    }
    if (h.veth) await execa('ip', ['link', 'del', h.veth], { reject: false });
  }
  // 3. Mounts a killed dockerd left (overlay, shm), deepest first, then the files.
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1]).filter((m): m is string => Boolean(m) && m.startsWith(`${stateDir}/`));
  for (const m of mounts.sort((a, b) => b.length - a.length)) await execa('umount', ['-l', m], { reject: false });
  // Never follow a symlinked state dir somewhere else.
  if (await readlink(stateDir).catch(() => null)) throw new TestbedError(`${stateDir} is a symlink; remove it by hand`);
  await rm(stateDir, { recursive: true, force: true });
  return report;
}
