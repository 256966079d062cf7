/**
 * A scenario on a Windows guest through the same job runner as linux-ref: the guest catalogue
 * names a built Windows image folder (manifest.json, system disk, UEFI variable store), the
 * runner boots it under a real QEMU with OVMF, and talks to "Windows" through the Windows
 * adapter. Windows itself cannot run here, so the adapter's connection goes to the fake guest
 * (test/helpers/guest-fake-windows.ts) that answers the PowerShell protocol; the real Linux path
 * of the same runner is the scenario suite's. What is proven: the VM starts from the catalogue's
 * image with UEFI, the tracker's checkpoint command and the steps reach the guest adapter, the
 * record says which Windows and which driver.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { GuestShell } from '../../src/guest/index.ts';
import { runJob, type JobSpec } from '../../src/scenario/job.ts';
import type { RunningVm } from '../../src/vm/index.ts';
import { handleCommand, newFakeState, type FakeState } from '../helpers/guest-fake-windows.ts';
import { qemuImg } from '../helpers/tools.ts';

const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

async function windowsImage(dir: string): Promise<string> {
  const image = join(dir, 'win-image');
  await rm(image, { recursive: true, force: true });
  await (await import('node:fs/promises')).mkdir(image);
  await qemuImg(['create', '-q', '-f', 'qcow2', join(image, 'system.qcow2'), '1G']);
  await copyFile(OVMF_VARS, join(image, 'OVMF_VARS.fd'));
  const manifest = {
    format: 'cbt-harness/windows-image/1',
    createdAt: new Date().toISOString(),
    durationMs: 0,
    images: { system: 'system.qcow2', data: 'data.qcow2', ovmfVars: 'OVMF_VARS.fd', ovmfCode: OVMF_CODE },
    inputs: { iso: { path: '/x.iso', size: 1 }, virtioIso: { path: '/v.iso', size: 1 }, driverDir: '/d', toolsDir: null },
    options: { edition: 'Windows Server 2022 SERVERSTANDARD', win11Checks: 'none', virtioOs: '2k22', fastStartup: false, hibernation: false, dataSerial: 'data0', dataLetter: 'E', dataBus: 'virtio-blk', accel: 'tcg', answerMedia: 'iso' },
    account: { username: 'cbt', password: 'x' },
    ssh: { authorizedKey: 'ssh-ed25519 AAAA test', hostPublicKey: null, verified: false },
    guest: { caption: 'Microsoft Windows Server 2022 Standard', build: '20348' },
    qemuArgv: [],
    forcedStop: false,
  };
  await writeFile(join(image, 'manifest.json'), JSON.stringify(manifest));
  return image;
}

function scenario(extra = ''): string {
  return `name: windows-fake
guest: winsrv2022
tracker: cbtf
trackerOptions: { checkpoint: 'C:\\cbt\\cbtctl.exe checkpoint --volume {volume}', epochIdPattern: '^epoch: (\\d+)', volume: 2, path: /cbt/cbt.bin }
disks:
  - { id: data0, size: 256MiB }
steps:
  - checkpoint: {}
  - write: { disk: data0, count: 5, size: 4KiB..64KiB, seed: 7 }
  - offline: { disk: data0 }
  - online: { disk: data0 }
${extra}  - shutdown: {}
`;
}

/** The fake guest as a GuestShell; on Stop-Computer it drops the session and QEMU is told to quit, as Windows would power off. */
function fakeConnector(state: FakeState, seen: { argv?: string[]; connects: number }) {
  return (vm: () => RunningVm | null) => async () => {
    seen.connects++;
    seen.argv ??= vm()?.argv;
    let closed = false;
    const shell: GuestShell = {
      get closed() {
        return closed;
      },
      async exec(command, o = {}) {
        if (closed) throw Object.assign(new Error('connection already closed'), { kind: 'closed' });
        const r = handleCommand(state, command, o.stdin === undefined ? '' : o.stdin.toString());
        if (r.drop) {
          closed = true;
          await vm()?.qmp.execute('quit').catch(() => undefined);
          throw Object.assign(new Error('connection lost'), { kind: 'closed' });
        }
        return { exitCode: r.exitCode, signal: null, stdout: r.stdout, stderr: r.stderr, durationMs: 1 };
      },
      async close() {
        closed = true;
      },
    };
    return shell;
  };
}

function fakeState(): FakeState {
  return newFakeState([{ serial: 'data0', number: 1, pnp: 'SCSI\\DISK&VEN_RED_HAT&PROD_VIRTIO\\4&1&0&000000', partitions: [{ number: 1, size: 16 << 20, letter: null, type: 'Reserved' }, { number: 2, size: 200 << 20, letter: 'E' }] }]);
}

test('a cbtf scenario on a Windows image from the catalogue boots under OVMF and drives the guest through the Windows adapter', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cbt-winjob-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const image = await windowsImage(dir);
  const state = fakeState();
  const seen: { argv?: string[]; connects: number } = { connects: 0 };
  const spec: JobSpec = { jobId: 'winjob', runId: 'wintest', scenarioFile: 'windows-fake.yaml', scenarioText: scenario(), seed: 1, repeat: 1, workDir: join(dir, 'job'), accel: 'tcg', guests: { winsrv2022: { kind: 'windows', image, privateKeyFile: join(dir, 'absent-key'), memoryMiB: 256, smp: 1 } } };
  const out = await runJob(spec, {}, undefined, { connectWindows: fakeConnector(state, seen) });
  t.is(out.status, 'passed', out.error);
  t.deepEqual(out.steps.map((s) => [s.kind, s.ok]), [['checkpoint', true], ['write', true], ['offline', true], ['online', true], ['shutdown', true]]);
  // The VM: UEFI code read-only, the job's own copy of the variable store, the system disk an overlay of the image's.
  const argv = seen.argv ?? [];
  t.true(argv.includes(`if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`), argv.join(' '));
  t.true(argv.includes(`if=pflash,format=raw,unit=1,file=${join(dir, 'job', 'OVMF_VARS.fd')}`));
  const system = argv.find((a) => a.includes('"node-name":"disk-system-file"'));
  t.truthy(system, 'the system disk is attached');
  t.regex(system!, new RegExp(`"filename":"${join(dir, 'job', 'system.qcow2')}"`));
  const overlay = JSON.parse(await qemuImg(['info', '--output=json', '-U', join(dir, 'job', 'system.qcow2')]).catch(() => 'null')) as null;
  t.is(overlay, null, 'the job removed its system overlay at the end');
  const img = JSON.parse(await qemuImg(['info', '--output=json', join(image, 'system.qcow2')])) as { 'backing-filename'?: string; 'dirty-flag': boolean };
  t.is(img['backing-filename'], undefined, 'the image itself is left as it was');
  // The tracker's checkpoint ran in the guest with the volume filled in.
  t.is(state.native.length, 1);
  t.regex(state.native[0].exe, /cbtctl\.exe$/);
  t.deepEqual(state.native[0].argv.slice(0, 2), ['checkpoint', '--volume']);
  t.is(state.writes.length, 5, 'the 5-write plan reached the guest');
  t.true(state.writes.every((w) => w.startsWith('data0:')), state.writes.join(' '));
  t.deepEqual(state.log.map((l) => /-IsOffline \$(true|false)/.exec(l.script)?.[1]).filter(Boolean), ['true', 'false'], 'offline, then online');
  t.is(state.disks[0].partitions[1].offline ?? false, false);
  t.true(state.log.some((l) => /Stop-Computer -Force/.test(l.script)), 'the shutdown went to the guest');
  // The record: which Windows, which driver.
  t.deepEqual(out.guest.os, { family: 'windows', build: 'Microsoft Windows Server 2022 Standard 20348' });
  t.deepEqual(out.guest.tracker, { name: 'cbtf', decoder: 'cbtf', version: 'CBTF filter driver (Microsoft Windows Server 2022 Standard 20348)' });
  const timeline = JSON.parse(await readFile(join(dir, 'job', 'timeline.json'), 'utf8')) as Array<{ kind: string; phase?: string }>;
  t.true(timeline.some((e) => e.kind === 'epoch' && e.phase === 'snapshot'), 'the epoch protocol snapshotted the data disk');
});

test('a Windows guest that is not in the catalogue, and trackers on the wrong guest, fail before any VM starts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cbt-winjob-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const base = { jobId: 'j', runId: 'wintest', scenarioFile: 's.yaml', seed: 1, repeat: 1, workDir: join(dir, 'job'), accel: 'tcg' as const };
  const state = fakeState();
  const seen = { connects: 0 };
  const missing = await runJob({ ...base, scenarioText: scenario() }, {}, undefined, { connectWindows: fakeConnector(state, seen) });
  t.is(missing.status, 'failed');
  t.regex(missing.error ?? '', /guest `winsrv2022` is not in this host's guest catalogue \(known: linux-ref;/);
  const cbtfOnLinux = await runJob({ ...base, scenarioText: scenario().replace('guest: winsrv2022', 'guest: linux-ref') });
  t.regex(cbtfOnLinux.error ?? '', /tracker `cbtf` cannot run on the linux-ref guest `linux-ref` \(it runs on: windows\)/);
  const image = await windowsImage(dir);
  const dmEraOnWindows = await runJob({
    ...base,
    guests: { winsrv2022: { kind: 'windows', image, privateKeyFile: '/none' } },
    scenarioText: 'name: x\nguest: winsrv2022\ntracker: dm-era\ndisks: [{ id: data0, size: 256MiB }]\nsteps:\n  - checkpoint: {}\n',
  });
  t.regex(dmEraOnWindows.error ?? '', /tracker `dm-era` cannot run on the windows guest `winsrv2022` \(it runs on: linux-ref\)/);
  const noCheckpoint = await runJob({
    ...base,
    guests: { winsrv2022: { kind: 'windows', image, privateKeyFile: '/none' } },
    scenarioText: scenario().replace(/checkpoint: 'C:[^']*', /, ''),
  });
  t.regex(noCheckpoint.error ?? '', /The windows guest adapter does not support `checkpoint`/, 'a cbtf tracker without its checkpoint command');
  t.is(seen.connects, 0, 'no guest was ever contacted');
  t.deepEqual(missing.timeline.filter((e) => e.kind === 'qmp'), [], 'no QEMU ran');
});
