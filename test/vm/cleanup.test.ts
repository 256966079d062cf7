/**
 * No QEMU outlives the harness: SIGTERM/SIGINT to a harness process stop its VMs and remove their
 * runtime folders; even SIGKILL takes QEMU along (parent-death signal); the sweeper finds and
 * removes what a dead harness left, and never touches a live harness's VMs.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { findLeftoverVms, sweepLeftoverVms } from '../../src/vm/index.ts';
import { processAlive as alive, ROOT } from '../helpers/tools.ts';

async function gone(pid: number, ms = 15_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // A zombie still answers kill(0): look at its state too.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (!alive(pid) || / Z /.test(stat)) return true;
    await sleep(100);
  }
  return false;
}

async function harness(t: ExecutionContext, runId: string): Promise<{ child: ReturnType<typeof spawn>; vm: { pid: number; runtimeDir: string; label: string }; exited: Promise<{ code: number | null; signal: string | null }> }> {
  const child = spawn(process.execPath, [join(ROOT, 'test/helpers/vm-child.ts'), runId], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    void exited.then((x) => reject(new Error(`harness child exited (${x.code ?? x.signal}) before starting its VM: ${err}`)));
  });
  const vm = JSON.parse(line) as { pid: number; runtimeDir: string; label: string };
  t.teardown(async () => {
    for (const pid of [child.pid, vm.pid]) {
      if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await rm(vm.runtimeDir, { recursive: true, force: true });
  });
  return { child, vm, exited };
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} to a harness process stops its VMs and removes their runtime folders`, async (t) => {
    const { child, vm, exited } = await harness(t, `sig-${signal.toLowerCase()}`);
    t.true(alive(vm.pid));
    t.true(existsSync(join(vm.runtimeDir, 'qmp.sock')));
    child.kill(signal);
    const x = await exited;
    // The handler re-raises the signal once the VMs are gone: the harness dies of it.
    t.is(x.signal, signal);
    t.true(await gone(vm.pid), `QEMU ${vm.pid} still running`);
    t.false(existsSync(vm.runtimeDir));
  });
}

test('SIGKILL of the harness takes QEMU along; the sweeper removes the folder left behind', async (t) => {
  const { child, vm, exited } = await harness(t, 'sig-kill');
  child.kill('SIGKILL');
  await exited;
  t.true(await gone(vm.pid), `QEMU ${vm.pid} outlived its harness`);
  t.true(existsSync(vm.runtimeDir));
  const found = await findLeftoverVms({ runId: 'sig-kill' });
  t.deepEqual(found.map((l) => [l.label, l.dir, l.alive]), [[vm.label, vm.runtimeDir, false]]);
  await sweepLeftoverVms({ runId: 'sig-kill' });
  t.false(existsSync(vm.runtimeDir));
});

test("the sweeper leaves a live harness's VMs alone and never kills a pid without the label", async (t) => {
  const { vm } = await harness(t, 'sweep-live');
  t.deepEqual(await findLeftoverVms({ runId: 'sweep-live' }), []);
  t.true(alive(vm.pid));
  // A folder whose owner is dead and whose pid is some other process (ourselves) is removed, no kill.
  const root = await mkdtemp(join(tmpdir(), 'cbt-sweep-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'cbt-vm-fake');
  await mkdir(dir);
  await writeFile(join(dir, 'cbt-vm.json'), JSON.stringify({ label: 'cbt-x-y', runId: 'x', pid: process.pid, ownerPid: 999_999_999 }));
  const swept = await sweepLeftoverVms({ root });
  t.deepEqual(swept.map((l) => [l.label, l.alive]), [['cbt-x-y', false]]);
  t.false(existsSync(dir));
});
