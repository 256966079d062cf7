/**
 * Multi-host runs on real engines: the local testbed (a private dockerd with the worker image,
 * two sshd hosts in their own network namespaces) plus this machine. Jobs run real commands on
 * each kind of host through the executors and the scheduler; an SSH host is killed mid-run; a
 * wrong host key is refused; nothing is left behind.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { execa } from 'execa';
import {
  createExecutor,
  dockerClient,
  DockerExecutor,
  InfrastructureError,
  LABEL_RUN,
  newRunId,
  NODE_IN_REPO,
  SshExecutor,
  testbedKillHost,
  type DockerHostSpec,
  type HostSpec,
  type SshHostSpec,
} from '../../src/hosts/index.ts';
import { jobMatrix, onJobSession, openHostPool, schedule, type HostPool } from '../../src/scheduler/index.ts';
import { runHostsCli } from '../helpers/testbed-cli.ts';
import { startTestbed, type Testbed } from '../helpers/testbed-setup.ts';
import { CLI, qemuImg, qemuIo, tempDir } from '../helpers/tools.ts';

let tb: Testbed;

test.before(async () => {
  tb = await startTestbed();
});

test.after.always(async () => {
  await tb?.down();
});

const host = (name: string): HostSpec => {
  const h = tb.inventory.hosts.find((x) => x.name === name);
  if (!h) throw new Error(`no host ${name}`);
  return h;
};

/** Evidence of where a command ran: its folder and the network addresses it sees. */
const WHERE = ['sh', '-c', 'echo "pwd=$(pwd)"; ip -o -4 addr show | awk \'{print "addr=" $4}\''];

interface Where {
  pwd: string;
  addrs: string[];
}

function parseWhere(out: string): Where {
  const lines = out.trim().split('\n');
  return { pwd: lines.find((l) => l.startsWith('pwd='))?.slice(4) ?? '', addrs: lines.filter((l) => l.startsWith('addr=')).map((l) => l.slice(5)).sort() };
}

/**
 * The evidence matches the host the scheduler says ran the job: an SSH host sees only loopback
 * and its own veth address (its namespace); a worker container only loopback and one address on
 * the testbed's docker bridge; this machine sees all of them.
 */
function ranOn(w: Where, name: string, runId: string): boolean {
  const spec = host(name);
  const bridge = `10.${tb.state.sshHosts[0].address.split('.')[1]}.1.`;
  if (spec.type === 'docker') return w.pwd.startsWith(`/var/lib/cbt-harness/runs/${runId}/`) && w.addrs.length === 2 && w.addrs[0].startsWith(bridge) && !w.addrs[0].startsWith(`${bridge}1/`);
  if (spec.type === 'ssh') return w.pwd.startsWith(join(spec.workdir, 'runs', runId)) && w.addrs.join(' ') === ['127.0.0.1/8', `${spec.address}/30`].sort().join(' ');
  return w.pwd.startsWith(join(spec.workdir, 'runs', runId)) && w.addrs.some((a) => a.startsWith(`${bridge}1/`)) && w.addrs.length > 3;
}

/** Processes, containers and job folders of a run that are still around. */
async function leftovers(runId: string, skipHosts: string[] = []): Promise<string[]> {
  const found: string[] = [];
  const r = await execa('sh', ['-c', `grep -lzxF CBT_HARNESS_RUN=${runId} /proc/[0-9]*/environ 2>/dev/null || true`]);
  for (const f of String(r.stdout).split('\n').filter(Boolean)) found.push(`process ${f.split('/')[2]}`);
  const docker = dockerClient({ socketPath: tb.state.docker?.socket ?? '' });
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABEL_RUN}=${runId}`] } })) found.push(`container ${c.Names[0]}`);
  for (const spec of tb.inventory.hosts) {
    if (spec.type === 'docker' || skipHosts.includes(spec.name)) continue;
    if (existsSync(join(spec.workdir, 'runs', runId))) found.push(`folder ${join(spec.workdir, 'runs', runId)} on ${spec.name}`);
  }
  return found;
}

async function withPool<T>(fn: (pool: HostPool) => Promise<T>): Promise<T> {
  const pool = await openHostPool(tb.inventory.hosts);
  try {
    return await fn(pool);
  } finally {
    await pool.close();
  }
}

test.serial('a matrix of jobs spreads over local, ssh and docker hosts; each reports where it ran; nothing is left', async (t) => {
  const jobs = jobMatrix({
    scenarios: ['reboot', 'power-cut', 'offline', 'hot-unplug'],
    guests: ['linux-ref', 'linux-ref-2'],
    repeats: 2,
    requires: (s) => (s === 'offline' ? ['ssh'] : s === 'hot-unplug' ? ['docker'] : []),
  });
  const { result, runId } = await withPool(async (pool) => {
    t.deepEqual([...pool.down], [], 'every testbed host is reachable');
    const result = await schedule(jobs, pool.hosts, onJobSession(pool, async (_job, session) => {
      const r = await session.exec(WHERE);
      t.is(r.exitCode, 0, r.stderr);
      // Hold the slot a little so jobs overlap and spread.
      await session.exec(['sleep', '0.3']);
      return parseWhere(r.stdout);
    }), { downHosts: pool.down });
    return { result, runId: pool.runId };
  });
  t.is(result.outcomes.length, 16);
  for (const o of result.outcomes) {
    t.is(o.status, 'done', `${o.job.id}: ${String(o.error)}`);
    t.true(ranOn(o.result as Where, o.host as string, runId), `${o.job.id} says ${o.host} but ran at ${JSON.stringify(o.result)}`);
    if (o.job.payload.scenario === 'offline') t.regex(o.host as string, /^ssh-/);
    if (o.job.payload.scenario === 'hot-unplug') t.is(o.host, 'docker-1');
  }
  t.deepEqual([...new Set(result.outcomes.map((o) => o.host))].sort(), ['docker-1', 'local', 'ssh-1', 'ssh-2']);
  t.deepEqual(await leftovers(runId), []);
});

test.serial('images are staged once per host and verified there by the harness CLI; hosts check reports them', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-tb-img-');
  t.teardown(cleanup);
  const base = join(dir, 'base.qcow2');
  const top = join(dir, 'top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '8M']);
  await qemuIo(base, ['write -P 0x11 0 1M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', top]);
  // Written but unchanged (same bytes as the base) at 512k: written 4 blocks, changed 3.
  await qemuIo(top, ['write -P 0x22 64k 64k', 'write -P 0x11 512k 64k', 'write -P 0x33 5M 128k']);
  // The reference answer: the CLI on this machine, on the original files.
  const local = await execa(CLI, ['image', 'diff', base, top, '--granularity', '65536', '--json']);
  const expected = JSON.parse(String(local.stdout)) as { changedBlocks: number; writtenBlocks: number };
  t.is(expected.changedBlocks, 3);
  t.is(expected.writtenBlocks, 4);
  await withPool(async (pool) => {
    await Promise.all(
      [...pool.executors.values()].map(async (ex) => {
        const staged = await ex.stageImage([base, top]);
        t.true(staged.copied, ex.name);
        t.false((await ex.stageImage([top, base])).copied, `${ex.name}: second stage reuses the cache`);
        const job = await ex.openJob('verify');
        try {
          const r = await job.runHarness(['image', 'diff', staged.files['base.qcow2'], staged.files['top.qcow2'], '--granularity', '65536', '--json'], { timeoutMs: 120_000 });
          t.is(r.exitCode, 0, `${ex.name}: ${JSON.stringify(r)}`);
          t.deepEqual(r.json, expected, `${ex.name} computes the same diff next to its images`);
        } finally {
          await job.close();
        }
      }),
    );
  });
  const check = await runHostsCli(['hosts', 'check', '--hosts', tb.hostsFile, '--json']);
  t.is(check.exitCode, 0, check.stderr);
  const doc = JSON.parse(check.stdout) as { usable: boolean; hosts: Array<{ name: string; usable: boolean; facts: { qemu: string; images: Array<{ files: Array<{ name: string }> }>; disk: { freeBytes: number }; memory: { availableBytes: number } } }> };
  t.true(doc.usable);
  t.deepEqual(doc.hosts.map((h) => h.name), ['local', 'ssh-1', 'ssh-2', 'docker-1']);
  for (const h of doc.hosts) {
    t.true(h.usable, h.name);
    t.regex(h.facts.qemu, /QEMU emulator version/);
    t.true(h.facts.disk.freeBytes > 0 && h.facts.memory.availableBytes > 0);
    t.true(h.facts.images.some((i) => i.files.map((f) => f.name).join() === 'base.qcow2,top.qcow2'), `${h.name} lists the staged image`);
  }
});

test.serial('TCP to a port on each host: loopback, SSH forward, exec tunnel into a container, container address', async (t) => {
  const runId = newRunId();
  const echo = `require('net').createServer(s=>s.pipe(s)).listen(+process.argv[1],process.argv[2],()=>require('fs').writeFileSync('up',''))`;
  // Services bound to loopback (as QEMU's hostfwd and QMP are), except for the container-address path.
  const executors = [...tb.inventory.hosts.map((h) => createExecutor(h, { runId })), new DockerExecutor(host('docker-1') as DockerHostSpec, { runId, tcp: 'address' })];
  const bind = (i: number) => (i === executors.length - 1 ? '0.0.0.0' : '127.0.0.1');
  t.teardown(() => Promise.all(executors.map((e) => e.close())).then(() => undefined));
  for (const [n, ex] of executors.entries()) {
    const job = await ex.openJob(`tcp-${n}`);
    // Streamed input reaches the command on every transport.
    t.is((await job.exec(['cat'], { stdin: Readable.from([Buffer.from('str'), Buffer.from('eam')]) })).stdout, 'stream', ex.name);
    const bin = await ex.harnessPath();
    const node = bin.replace(/bin\/cbt-harness$/, NODE_IN_REPO);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = await job.spawn([node, '-e', echo, String(port), bind(n)]);
    for (let i = 0; i < 200 && (await job.exec(['test', '-e', 'up'])).exitCode !== 0; i++) await sleep(50);
    const sock = await job.connectTcp(port);
    const got = new Promise<string>((resolve) => {
      let s = '';
      sock.on('data', (d: Buffer) => {
        s += d.toString();
        if (s.length >= 9) resolve(s);
      });
    });
    sock.write(`ping-${ex.name.padEnd(4, '-').slice(0, 4)}`);
    t.is(await got, `ping-${ex.name.padEnd(4, '-').slice(0, 4)}`, ex.name);
    sock.destroy();
    await job.close();
    // Closing the job stopped the server (Docker reports a signal death as exit code 128 + 15).
    const end = await server.done;
    t.true(end.signal === 'SIGTERM' || end.exitCode === 143, `${ex.name}: ${JSON.stringify(end)}`);
  }
  // A refused port is a clear error.
  const job = await executors[0].openJob('tcp-refused');
  await t.throwsAsync(job.connectTcp(1), { message: /cannot connect to 127\.0\.0\.1:1/ });
  await job.close();
});

test.serial('a wrong pinned host key is refused with both fingerprints named', async (t) => {
  const ssh1 = host('ssh-1') as SshHostSpec;
  const ssh2 = host('ssh-2') as SshHostSpec;
  const wrong: SshHostSpec = { ...ssh2, hostKey: ssh1.hostKey };
  const ex = new SshExecutor(wrong, { runId: newRunId() });
  t.teardown(() => ex.close());
  const err = await t.throwsAsync(ex.connect(), { instanceOf: InfrastructureError });
  t.regex(err.message, /host ssh-2: SSH host key of .* is not the pinned one/);
  t.true(err.message.includes(ssh2.hostKey[0]), 'names the key the host offered');
  t.true(err.message.includes(ssh1.hostKey[0]), 'names the pinned key');
  // The same through the CLI: the host is unusable (exit 1) and says why.
  const text = (await readFile(tb.hostsFile, 'utf8')).replace(ssh2.hostKey[0], ssh1.hostKey[0]);
  const file = join(tb.state.stateDir, 'hosts.wrong-key.yaml');
  await writeFile(file, text);
  const r = await runHostsCli(['hosts', 'check', '--hosts', file]);
  t.is(r.exitCode, 1, r.stderr);
  t.regex(r.stdout, /ssh-2\s+ssh\s+UNREACHABLE/);
  t.regex(r.stdout, /ssh-2: InfrastructureError: .*not the pinned one/);
  t.regex(r.stdout, /ssh-1\s+ssh\s+ok/);
});

test.serial('worker containers get /dev/kvm when the engine has it (kvm auto), none with kvm never', async (t) => {
  const runId = newRunId();
  const spec = host('docker-1') as DockerHostSpec;
  const hasKvm = existsSync('/dev/kvm');
  for (const kvm of ['auto', 'never'] as const) {
    const ex = new DockerExecutor({ ...spec, kvm }, { runId });
    try {
      const job = await ex.openJob(`kvm-${kvm}`);
      const r = await job.exec(['sh', '-c', 'test -c /dev/kvm && echo yes || echo no']);
      t.is(r.stdout.trim(), kvm === 'auto' && hasKvm ? 'yes' : 'no', kvm);
      await job.close();
    } finally {
      await ex.close();
    }
  }
});

test.serial('image build worker reuses the cached rootfs and the imported base', async (t) => {
  const r = await runHostsCli(['image', 'build', 'worker', '--docker-socket', tb.state.docker?.socket ?? '', '--json']);
  t.is(r.exitCode, 0, r.stderr);
  const img = JSON.parse(r.stdout) as { name: string; built: { rootfs: boolean; base: boolean; image: boolean } };
  t.regex(img.name, /^cbt-harness-worker:[0-9a-f]{16}$/);
  t.false(img.built.rootfs);
  t.false(img.built.base);
  // The tag follows the harness sources: the same image unless the checkout changed meanwhile.
  if (img.name === tb.state.docker?.image) t.false(img.built.image);
  const tagged = await dockerClient({ socketPath: tb.state.docker?.socket ?? '' }).getImage('cbt-harness-worker:latest').inspect();
  t.true(tagged.RepoTags?.includes(img.name));
});

test.serial('a worker container dying under a job is an infrastructure failure: the job moves to another host', async (t) => {
  const docker = dockerClient({ socketPath: tb.state.docker?.socket ?? '' });
  const { result, runId } = await withPool(async (pool) => {
    const result = await schedule([{ id: 'victim', payload: 0 }], [host('docker-1'), host('local')], onJobSession(pool, async (_job, session) => {
      if (session.host === 'docker-1') {
        const [c] = await docker.listContainers({ filters: { label: [`${LABEL_RUN}=${pool.runId}`, 'org.cbt-harness.role=job'] } });
        setTimeout(() => void docker.getContainer(c.Id).kill().catch(() => {}), 500);
      }
      const r = await session.exec(['sleep', '3']);
      return `${session.host}: exit ${r.exitCode}`;
    }));
    return { result, runId: pool.runId };
  });
  const [o] = result.outcomes;
  t.is(o.status, 'done');
  t.is(o.result, 'local: exit 0');
  t.deepEqual(o.attempts.map((a) => [a.host, a.outcome]), [['docker-1', 'infrastructure'], ['local', 'ok']]);
  t.regex(o.attempts[0].error ?? '', /InfrastructureError: host docker-1: .*(stopped while a command ran|not running|gone)/);
  t.deepEqual(await leftovers(runId), []);
});

test.serial('the sweeper removes what a crashed run left: a labelled process on an ssh host, containers on docker', async (t) => {
  // A crashed run: its lease names this machine and a pid that no longer exists.
  const dead = spawn('true');
  await new Promise((r) => dead.once('exit', r));
  const crashed = newRunId(new Date(Date.now() - 3600_000));
  const lease = { runId: crashed, controller: hostname(), pid: dead.pid as number, pidStart: '1', startedAt: new Date(Date.now() - 3600_000).toISOString() };
  const ssh = new SshExecutor(host('ssh-2') as SshHostSpec, { runId: crashed, lease });
  const dock = new DockerExecutor(host('docker-1') as DockerHostSpec, { runId: crashed, lease });
  t.teardown(async () => {
    await ssh.close();
    await dock.close();
  });
  const sshJob = await ssh.openJob('left-behind');
  const bg = await sshJob.exec(['sh', '-c', 'setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!']);
  const orphan = Number(bg.stdout.trim());
  await dock.openJob('left-behind');
  // A live run on the same hosts must survive the sweep.
  const liveRun = newRunId();
  const liveDock = new DockerExecutor(host('docker-1') as DockerHostSpec, { runId: liveRun });
  t.teardown(() => liveDock.close());
  const liveJob = await liveDock.openJob('alive');
  const sweeperRun = newRunId();
  const sweepSsh = await new SshExecutor(host('ssh-2') as SshHostSpec, { runId: sweeperRun }).sweep();
  t.deepEqual(sweepSsh.staleRuns, [crashed]);
  t.true(sweepSsh.killedPids.includes(orphan), `killed ${sweepSsh.killedPids.join(',')}, expected ${orphan}`);
  t.deepEqual(sweepSsh.removedDirs, [join((host('ssh-2') as SshHostSpec).workdir, 'runs', crashed)]);
  const sweeper = new DockerExecutor(host('docker-1') as DockerHostSpec, { runId: sweeperRun });
  t.teardown(() => sweeper.close());
  const sweepDock = await sweeper.sweep();
  t.deepEqual(sweepDock.staleRuns, [crashed]);
  t.is(sweepDock.removedContainers.length, 2, 'the crashed run\'s service and job containers');
  t.deepEqual(await leftovers(crashed), []);
  t.is((await liveJob.exec(['true'])).exitCode, 0, 'the live run\'s container is untouched');
});

test.serial('cancel stops running jobs on every kind of host and leaves nothing behind', async (t) => {
  const ac = new AbortController();
  let execs = 0;
  const { result, runId } = await withPool(async (pool) => {
    const p = schedule(jobMatrix({ scenarios: ['a', 'b', 'c', 'd'], guests: ['g'], repeats: 2 }), pool.hosts, onJobSession(pool, async (_job, session, signal) => {
      execs++;
      await session.spawn(['sh', '-c', 'sleep 300 & sleep 300']);
      return session.exec(['sleep', '300'], { signal });
    }), { signal: ac.signal });
    const until = Date.now() + 60_000;
    while (execs < 8 && Date.now() < until) await sleep(50);
    await sleep(300);
    ac.abort(new Error('SIGINT'));
    return { result: await p, runId: pool.runId };
  });
  t.true(result.cancelled);
  t.is(execs, 8);
  t.deepEqual(result.outcomes.map((o) => o.status), Array(8).fill('cancelled'));
  t.deepEqual(await leftovers(runId), []);
});

test.serial('an SSH host killed mid-run: its jobs finish elsewhere, the run completes, nothing is left', async (t) => {
  let killed: number[] = [];
  let killing: Promise<void> | null = null;
  const { result, runId } = await withPool(async (pool) => {
    const result = await schedule(jobMatrix({ scenarios: ['s1', 's2', 's3', 's4', 's5', 's6'], guests: ['g'], repeats: 2 }), pool.hosts, onJobSession(pool, async (_job, session) => {
      const r = await session.exec(WHERE);
      await session.exec(['sleep', '2']);
      return parseWhere(r.stdout);
    }), {
      downHosts: pool.down,
      onEvent: (e) => {
        // Once ssh-1 has work in flight, pull the plug on it.
        if (e.type === 'attempt-start' && e.host.name === 'ssh-1' && !killing) {
          killing = sleep(1500).then(async () => {
            killed = await testbedKillHost(tb.state, 'ssh-1');
          });
        }
      },
    });
    await killing;
    return { result, runId: pool.runId };
  });
  t.true(killed.length > 0, 'ssh-1 processes were killed');
  for (const o of result.outcomes) {
    t.is(o.status, 'done', `${o.job.id}: ${String(o.error)}`);
    t.not(o.host, 'ssh-1', `${o.job.id} finished on a live host`);
    t.true(ranOn(o.result as Where, o.host as string, runId));
  }
  const moved = result.outcomes.filter((o) => o.attempts.length > 1);
  t.true(moved.length >= 1, 'some job was moved off the dead host');
  for (const o of moved) {
    t.is(o.attempts[0].host, 'ssh-1');
    t.is(o.attempts[0].outcome, 'infrastructure');
    t.regex(o.attempts[0].error ?? '', /InfrastructureError: host ssh-1/);
  }
  t.true((result.hosts.find((h) => h.name === 'ssh-1')?.infrastructureFailures ?? 0) >= 1);
  // The dead host cannot clean its folder (the next run's sweep does); nothing else may remain.
  t.deepEqual(await leftovers(runId, ['ssh-1']), []);
  t.deepEqual((await execa('ip', ['netns', 'pids', tb.state.sshHosts[0].netns as string])).stdout, '', 'nothing runs on the dead host');
});

test.serial('testbed down removes processes, namespaces, links and the state folder', async (t) => {
  const { state } = tb;
  const pids = [state.docker?.pid, ...state.sshHosts.map((h) => h.pid)].filter((p): p is number => typeof p === 'number');
  await tb.down();
  for (const p of pids) t.false(existsSync(`/proc/${p}`) && (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).includes(state.stateDir), `pid ${p} is gone`);
  const ns = String((await execa('ip', ['netns', 'list'])).stdout);
  for (const h of state.sshHosts) t.false(ns.includes(h.netns as string));
  const links = String((await execa('ip', ['-o', 'link'])).stdout);
  t.false(links.includes(`cbt${state.id}`), 'no veth or bridge left');
  t.false(existsSync(state.stateDir));
  const mounts = await readFile('/proc/mounts', 'utf8');
  t.false(mounts.includes(state.stateDir));
});
