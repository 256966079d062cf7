/**
 * The Windows adapter over a real OpenSSH server (test/helpers/sshd.ts) whose ForceCommand plays
 * the guest (guest-fake-windows-shell.ts). What this proves: the command line the adapter builds
 * reaches the far side byte for byte through a real SSH exec (sshd hands it to the shell verbatim
 * in SSH_ORIGINAL_COMMAND), the encoded script and the stdin write plan arrive intact, exit codes
 * and stderr come back, and a dropped connection during a restart is followed by a reconnect.
 * What it does not prove: that Windows' sshd and powershell.exe run the scripts as intended —
 * no Windows guest can run here.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { GuestError, type GuestCommandRecord, planWrites, psCommandLine, sshConnector, WindowsAdapter } from '../../src/guest/index.ts';
import { type FakeState, newFakeState } from '../helpers/guest-fake-windows.ts';
import { startSshd, type StartedSshd } from '../helpers/sshd.ts';
import { ROOT, tempDir } from '../helpers/tools.ts';

async function setup(t: ExecutionContext): Promise<{ sshd: StartedSshd; statePath: string; adapter: WindowsAdapter; records: GuestCommandRecord[]; read: () => Promise<FakeState & { received: string[] }> }> {
  const fake = join(ROOT, 'test/helpers/guest-fake-windows-shell.ts');
  const tmp = await tempDir('cbt-fakewin-');
  t.teardown(tmp.cleanup);
  const statePath = join(tmp.dir, 'fake-state.json');
  const sshd = await startSshd({ config: [`ForceCommand ${process.execPath} ${fake} ${statePath}`] });
  t.teardown(() => sshd.stop());
  await writeFile(
    statePath,
    JSON.stringify(
      newFakeState([
        { serial: 'data0', number: 1, pnp: 'SCSI\\DISK&VEN_RED_HAT&PROD_VIRTIO\\4&1&0&000000', partitions: [{ number: 2, size: 200 << 20, letter: 'E' }] },
        { serial: "q'‘’‚‛\"`$(x);%a%", number: 2, pnp: 'SCSI\\DISK\\2', partitions: [{ number: 1, size: 100 << 20, letter: 'F' }] },
      ]),
    ),
  );
  const adapter = new WindowsAdapter({
    connect: sshConnector({ host: sshd.host, port: sshd.port, username: sshd.username, privateKey: sshd.clientKey.privateKey, hostKey: { kind: 'pinned', fingerprints: [sshd.hostKeyFingerprint] } }),
    serialRetryDelayMs: 0,
    checkpointCommand: 'C:\\cbt\\cbtctl.exe checkpoint --volume {volume} --serial {serial}',
    epochIdPattern: '^epoch: (\\d+)',
    rebootTimeoutMs: 60_000,
  });
  t.teardown(() => adapter.close());
  const records: GuestCommandRecord[] = [];
  adapter.onCommand((r) => records.push(r));
  return { sshd, statePath, adapter, records, read: async () => JSON.parse(await readFile(statePath, 'utf8')) as FakeState & { received: string[] } };
}

test('commands, hostile literals and a 5000-write stdin plan reach the far side of a real sshd intact', async (t) => {
  const { sshd, adapter, records, read } = await setup(t);
  t.log(`sshd pid ${sshd.pid}`);
  const hostile = { id: 'h', serial: "q'‘’‚‛\"`$(x);%a%" };
  await adapter.offline(hostile);
  await adapter.online(hostile);
  const writes = planWrites({ seed: 77, count: 5000, sizeMin: 512, sizeMax: 65536, deviceSize: 128 << 20, align: 512 });
  await adapter.write({ disk: 'data0', seed: 77, writes });
  const epoch = await adapter.checkpoint(hostile);
  t.deepEqual(epoch, { epochId: '1' });
  const s = await read();
  // Byte for byte: what sshd saw is what the adapter built from the recorded script.
  t.is(s.received.length, records.length);
  for (const [i, r] of records.entries()) t.is(s.received[i], psCommandLine(r.command));
  t.deepEqual(s.writes, writes.map((w) => `data0:${w.offset}:${w.length}:${w.pattern}`));
  t.deepEqual(s.native[0].argv, ['checkpoint', '--volume', 'F:', '--serial', hostile.serial]);
  t.false(s.disks[1].partitions[0].offline);
  t.true(records.every((r) => r.exitCode === 0));
});

test('exit status and classified stderr come back through sshd as GuestErrors', async (t) => {
  const { adapter, statePath, read } = await setup(t);
  const e = await t.throwsAsync(adapter.offline({ id: 'x', serial: 'missing' }), { instanceOf: GuestError });
  t.is(e?.kind, 'not-found');
  t.is(e?.exitCode, 3);
  const s = await read();
  s.failNext = { exitCode: 7, stderr: 'Set-Disk : The disk is the system disk (41009)\r\n' };
  await writeFile(statePath, JSON.stringify(s));
  const e2 = await t.throwsAsync(adapter.offline({ id: 'data0', serial: 'data0' }, { scope: 'disk' }), { instanceOf: GuestError });
  t.is(e2?.kind, 'command');
  t.is(e2?.exitCode, 7);
  t.regex(e2?.message ?? '', /41009/);
});

test('reboot over sshd: the session drops at Restart-Computer, the adapter reconnects and sees the new boot', async (t) => {
  const { adapter, records, read } = await setup(t);
  await adapter.reboot();
  const s = await read();
  t.is(s.boot, 2);
  const ops = records.map((r) => `${r.operation}:${r.exitCode}`);
  t.deepEqual(ops, ['probe:0', 'reboot:null', 'probe:0']);
  // Still usable afterwards.
  await adapter.flush();
});
