/**
 * The Windows adapter against an in-process fake guest that decodes each command and reads the
 * values back out of its literals (test/helpers/guest-fake-windows.ts). The same adapter runs
 * over a real OpenSSH server in windows-sshd.test.ts. Scripts are also syntax-checked with the
 * tree-sitter PowerShell grammar when it is installed.
 */
import test from 'ava';
import { GuestError, type GuestCommandRecord, type GuestShell, planWrites, psScriptOf, WindowsAdapter, type WindowsAdapterOptions } from '../../src/guest/index.ts';
import { disableScript, enableScript, flushScript, locateScript, nativeScript, powerButtonScript, powerScript, probeScript, setOfflineScript, writeScript } from '../../src/guest/windows-scripts.ts';
import { type FakeDisk, type FakeState, handleCommand, newFakeState } from '../helpers/guest-fake-windows.ts';
import { HOSTILE, loadPsParser } from '../helpers/guest-powershell.ts';

function disks(): FakeDisk[] {
  return [
    { serial: 'data0', number: 1, pnp: 'SCSI\\DISK&VEN_RED_HAT&PROD_VIRTIO\\4&1&0&000000', partitions: [{ number: 1, size: 16 << 20, letter: null, type: 'Reserved' }, { number: 2, size: 200 << 20, letter: 'E' }] },
    { serial: "we'ird’ser", number: 2, pnp: 'SCSI\\DISK&VEN_QEMU\\5&2', partitions: [{ number: 1, size: 100 << 20, letter: 'F' }] },
  ];
}

interface Harness {
  state: FakeState;
  adapter: WindowsAdapter;
  records: GuestCommandRecord[];
  connects: number;
  commands: string[];
  /** Drop the current connection (as a network failure would). */
  drop: () => void;
}

function harness(opts: Partial<WindowsAdapterOptions> = {}, fakeDisks = disks()): Harness {
  const state = newFakeState(fakeDisks);
  const h: Harness = { state, adapter: undefined as unknown as WindowsAdapter, records: [], connects: 0, commands: [], drop: () => {} };
  const connect: WindowsAdapterOptions['connect'] = async () => {
    h.connects++;
    let closed = false;
    h.drop = () => {
      closed = true;
    };
    const shell: GuestShell = {
      get closed() {
        return closed;
      },
      async exec(command, o = {}) {
        if (closed) throw Object.assign(new Error('connection already closed'), { kind: 'closed' });
        h.commands.push(command);
        const stdin = o.stdin === undefined ? '' : o.stdin.toString();
        const r = handleCommand(state, command, stdin);
        if (r.drop) {
          closed = true;
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
  h.adapter = new WindowsAdapter({ connect, serialRetryDelayMs: 0, checkpointCommand: 'C:\\cbt\\cbtctl.exe checkpoint --volume {volume} --serial {serial}', epochIdPattern: '^epoch: (\\d+)', ...opts });
  h.adapter.onCommand((r) => h.records.push(r));
  return h;
}

const data0 = { id: 'data0', serial: 'data0' };

test('supports: checkpoint only with a command, hibernate only with hibernation; unsupported calls are GuestError unsupported', async (t) => {
  const h = harness({ checkpointCommand: undefined });
  t.false(h.adapter.supports.has('checkpoint'));
  t.false(h.adapter.supports.has('hibernate'));
  t.true(h.adapter.supports.has('offline'));
  const e = await t.throwsAsync(h.adapter.checkpoint(data0), { instanceOf: GuestError });
  t.is(e?.kind, 'unsupported');
  t.regex(e?.message ?? '', /checkpointCommand/);
  const e2 = await t.throwsAsync(h.adapter.hibernate(), { instanceOf: GuestError });
  t.is(e2?.kind, 'unsupported');
  t.is(h.commands.length, 0, 'nothing reached the guest');
  t.true(harness({ hibernation: true }).adapter.supports.has('hibernate'));
});

test('offline/online act on the tracked partition (the largest data partition), or on the disk', async (t) => {
  const h = harness();
  await h.adapter.offline(data0);
  t.true(h.state.disks[0].partitions[1].offline);
  t.falsy(h.state.disks[0].partitions[0].offline);
  await h.adapter.online(data0);
  t.false(h.state.disks[0].partitions[1].offline);
  await h.adapter.offline(data0, { scope: 'disk' });
  t.true(h.state.disks[0].offline);
  const last = psScriptOf(h.commands.at(-1) as string);
  t.regex(last, /Set-Disk -Number \$d\.Number -IsOffline \$true/);
  const h2 = harness({ offlineScope: 'disk', partition: 1 });
  await h2.adapter.online(data0);
  t.regex(psScriptOf(h2.commands[0]), /Set-Disk -Number \$d\.Number -IsOffline \$false/);
  t.is(h.records.length, 3);
  t.true(h.records.every((r) => r.exitCode === 0 && r.command.includes('Find-CbtDisk') && typeof r.durationMs === 'number'));
  t.deepEqual(h.records.map((r) => r.operation), ['offline', 'online', 'offline']);
});

test('a serial with quotes of every kind reaches the guest intact; an unknown serial is GuestError not-found', async (t) => {
  const h = harness();
  await h.adapter.offline({ id: 'd2', serial: "we'ird’ser" });
  t.true(h.state.disks[1].partitions[0].offline);
  const e = await t.throwsAsync(h.adapter.offline({ id: 'x', serial: "nope'; Stop-Computer -Force; '" }), { instanceOf: GuestError });
  t.is(e?.kind, 'not-found');
  t.is(e?.exitCode, 3);
  t.regex(e?.message ?? '', /no disk with serial nope'; Stop-Computer -Force; ' after 10 tries/);
  t.false(h.state.log.some((l) => l.script.includes('Stop-Computer -Force') && !l.script.includes("'nope''; Stop-Computer -Force; '''")));
});

test('serial lookups retry while viostor reports serial "0"', async (t) => {
  const d = disks();
  d[0].serialZeroFor = 4;
  const h = harness({ serialTries: 5 }, d);
  await h.adapter.offline(data0);
  t.true(d[0].partitions[1].offline);
  d[0].serialZeroFor = 5;
  const e = await t.throwsAsync(h.adapter.online(data0), { instanceOf: GuestError });
  t.is(e?.kind, 'not-found');
  t.regex(e?.message ?? '', /serials seen: 0/);
});

test('disable remembers the PnP instance id; enable uses it, then finds the disk again', async (t) => {
  const h = harness();
  await h.adapter.disable(data0);
  t.true(h.state.disks[0].disabled);
  await h.adapter.enable(data0);
  t.false(h.state.disks[0].disabled);
  t.regex(psScriptOf(h.commands[1]), /\$id = 'SCSI\\DISK&VEN_RED_HAT&PROD_VIRTIO\\4&1&0&000000'/);
  t.regex(psScriptOf(h.commands[0]), /Disable-PnpDevice -InstanceId \$d\.Pnp -Confirm:\$false/);
  // A fresh adapter (no memory) falls back to the only disabled disk device.
  h.state.disks[0].disabled = true;
  const h2 = harness({}, h.state.disks);
  await h2.adapter.enable(data0);
  t.false(h.state.disks[0].disabled);
});

test('write streams the seeded plan on stdin; the guest receives every write; bad plans never reach the guest', async (t) => {
  const h = harness();
  const writes = planWrites({ seed: 3, count: 200, sizeMin: 4096, sizeMax: 65536, deviceSize: 128 << 20 });
  await h.adapter.write({ disk: 'data0', seed: 3, writes });
  t.is(h.state.writes.length, 200);
  t.deepEqual(h.state.writes, writes.map((w) => `data0:${w.offset}:${w.length}:${w.pattern}`));
  t.is(h.state.log[0].stdinLines, 202);
  const script = h.state.log[0].script;
  t.true(script.includes("$dir = $p.Letter + ':\\' + 'cbt'"));
  t.true(script.includes('[System.IO.FileOptions]::WriteThrough'));
  t.true(script.includes('$fs.SetLength(134217728)'));
  await t.throwsAsync(h.adapter.write({ disk: 'data0', seed: 0, writes: [{ offset: 128 << 20, length: 4096, pattern: 1 }] }), { instanceOf: TypeError, message: /ends past the write space/ });
  t.is(h.state.log.length, 1);
  t.deepEqual(await h.adapter.writeSpace(data0), { size: 128 << 20, align: 1 });
  // Volume mode: sector alignment is checked here, the size by the guest; the space comes from the partition.
  const hv = harness({ writeMode: 'volume' });
  await t.throwsAsync(hv.adapter.write({ disk: 'data0', seed: 0, writes: [{ offset: 100, length: 4096, pattern: 1 }] }), { message: /not aligned to 512/ });
  t.deepEqual(await hv.adapter.writeSpace(data0), { size: 200 << 20, align: 4096 });
  await hv.adapter.write({ disk: 'data0', seed: 0, writes: [{ offset: 4096, length: 4096, pattern: 7 }] });
  t.regex(hv.state.log.at(-1)?.script ?? '', /Open-CbtVolume \$path/);
});

test('a guest that reports fewer writes than sent is an error (a truncated stdin must not pass)', async (t) => {
  const h = harness();
  h.state.failNext = { exitCode: 3, stderr: 'CBT-ERROR command plan truncated: 5 of 10 writes received\r\n' };
  const e = await t.throwsAsync(h.adapter.write({ disk: 'data0', seed: 0, writes: planWrites({ seed: 0, count: 10, sizeMin: 4096, sizeMax: 4096, deviceSize: 1 << 20 }) }), { instanceOf: GuestError });
  t.is(e?.kind, 'command');
  t.regex(e?.message ?? '', /plan truncated: 5 of 10/);
});

test('checkpoint fills placeholders per argument, quotes them for the Windows command line and parses the epoch id', async (t) => {
  const h = harness();
  const r = await h.adapter.checkpoint({ id: 'd2', serial: "we'ird’ser" });
  t.deepEqual(r, { epochId: '1' });
  t.deepEqual(h.state.native[0], { exe: 'C:\\cbt\\cbtctl.exe', argv: ['checkpoint', '--volume', 'F:', '--serial', "we'ird’ser"] });
  // Without a pattern: the last non-empty line that is not the result line.
  const h2 = harness({ epochIdPattern: undefined, checkpointCommand: '"C:\\Program Files\\cbt\\cbtctl.exe" checkpoint "{id} x" {guid}' });
  t.deepEqual(await h2.adapter.checkpoint({ id: 'a b"c', serial: 'data0' }), { epochId: 'ok-1' });
  t.deepEqual(h2.state.native[0], { exe: 'C:\\Program Files\\cbt\\cbtctl.exe', argv: ['checkpoint', 'a b"c x', '\\\\?\\Volume{00000002-0000-0000-0000-000000000000}'] });
  t.throws(() => harness({ checkpointCommand: 'x {nope}' }), { instanceOf: TypeError, message: /unknown placeholder \{nope\}/ });
  t.throws(() => harness({ checkpointCommand: '"unclosed' }), { instanceOf: TypeError, message: /unclosed/ });
  t.throws(() => harness({ epochIdPattern: '(' }), { instanceOf: TypeError, message: /epochIdPattern/ });
});

test('fio runs diskspd on a file of the tracked volume with the seed; never a #N target', async (t) => {
  const h = harness();
  await h.adapter.fio({ disk: 'data0', rw: 'randwrite', bs: 4096, size: 64 << 20, runtimeSec: 10, seed: 42 });
  t.deepEqual(h.state.native[0], { exe: 'C:\\cbt\\diskspd.exe', argv: ['-c67108864', '-b4096', '-r4096', '-w100', '-t1', '-o1', '-d10', '-W0', '-Sh', '-z42', 'E:\\cbt\\diskspd.dat'] });
  t.regex(psScriptOf(h.commands.at(-1) as string), /New-Item -ItemType Directory -Force -Path 'E:\\cbt'/);
  t.deepEqual(WindowsAdapter.diskspdArgs({ disk: 'd', rw: 'write', bs: 65536, size: 1 << 20, runtimeSec: 1 }, 'X:\\f'), ['-c1048576', '-b65536', '-s65536', '-w100', '-t1', '-o1', '-d1', '-W0', '-Sh', 'X:\\f']);
  t.is(WindowsAdapter.diskspdArgs({ disk: 'd', rw: 'randrw', bs: 4096, size: 1 << 20, runtimeSec: 1 }, 'X:\\f')[3], '-w50');
  t.throws(() => WindowsAdapter.diskspdArgs({ disk: 'd', rw: 'write', bs: 4096, size: 1 << 20, runtimeSec: 1 }, '#1'), { message: /below the volume filter/ });
  await t.throwsAsync(h.adapter.fio({ disk: 'data0', rw: 'randwrite', bs: 0, size: 1, runtimeSec: 1 }), { instanceOf: TypeError, message: /`bs`/ });
});

test('reboot waits for a new boot; shutdown accepts the dropped connection; flush and power-button classification', async (t) => {
  const h = harness();
  await h.adapter.reboot();
  t.is(h.state.boot, 2);
  t.is(h.connects, 2, 'reconnected after the restart');
  await h.adapter.shutdown();
  t.true(h.state.log.at(-1)?.script.includes('Stop-Computer -Force'));
  await h.adapter.flush();
  h.state.hiberboot = 1;
  h.state.pbIndex = 2;
  t.deepEqual(await h.adapter.powerButtonAction(), { action: 'hibernate', fastStartup: true, raw: '2' });
  h.state.pbIndex = 3;
  h.state.hiberboot = 0;
  t.deepEqual(await h.adapter.powerButtonAction(), { action: 'shutdown', fastStartup: false, raw: '3' });
});

test('reboot gives up with GuestError timeout when the boot never changes', async (t) => {
  const h = harness({ rebootTimeoutMs: 300 });
  h.state.frozenBoot = true;
  const e = await t.throwsAsync(h.adapter.reboot(), { instanceOf: GuestError });
  t.is(e?.kind, 'timeout');
  t.regex(e?.message ?? '', /did not come back within 300 ms/);
});

test('exit codes, CLIXML stderr and lost connections become GuestErrors with the context kept', async (t) => {
  const h = harness();
  h.state.failNext = { exitCode: 1, stderr: '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">Set-Partition : Access denied_x000D__x000A_</S></Objs>' };
  const e = await t.throwsAsync(h.adapter.offline(data0), { instanceOf: GuestError });
  t.is(e?.kind, 'command');
  t.is(e?.exitCode, 1);
  t.regex(e?.message ?? '', /exited 1: Set-Partition : Access denied/);
  t.is(e?.operation, 'offline');
  t.regex(e?.command ?? '', /Set-Partition/);
  t.is(h.records.at(-1)?.exitCode, 1);
  t.is(h.records.at(-1)?.stderr, 'Set-Partition : Access denied');
  // A lost connection during a fault is a command error (not a silent success), and the next call reconnects.
  const h2 = harness();
  await h2.adapter.flush();
  t.is(h2.connects, 1);
  h2.drop();
  const lost = await t.throwsAsync(h2.adapter.offline(data0), { instanceOf: GuestError, message: /closed/ });
  t.is(lost?.kind, 'command');
  t.is(h2.records.at(-1)?.exitCode, null);
  await h2.adapter.flush();
  t.is(h2.connects, 2, 'reconnected');
  // A closed adapter refuses further calls.
  await h2.adapter.close();
  await t.throwsAsync(h2.adapter.flush(), { instanceOf: GuestError, message: /adapter is closed/ });
});

test('every script parses under the tree-sitter PowerShell grammar, with hostile values in every literal', async (t) => {
  const parser = await loadPsParser();
  // Both are devDependencies that `npm ci` installs: a missing grammar is a broken setup, not a skip.
  if (!parser) return t.fail('web-tree-sitter / tree-sitter-powershell cannot be loaded (run npm ci)');
  const values = HOSTILE.filter((v) => v.length < 1000);
  for (const v of values) {
    const l = { serial: v, tries: 3, delayMs: 10, partition: 0 };
    const scripts = [
      probeScript(),
      locateScript(l),
      setOfflineScript(l, 'volume', true),
      setOfflineScript(l, 'disk', false),
      disableScript(l),
      enableScript(l, v),
      enableScript(l, null),
      writeScript({ ...l, mode: 'file', dir: 'cbt', file: v || 'x', fileSize: 1 << 20, maxLength: 65536, count: 3 }),
      writeScript({ ...l, mode: 'volume', dir: 'cbt', file: 'x', fileSize: 1 << 20, maxLength: 65536, count: 3 }),
      nativeScript(v || 'x.exe', [v, 'a b', v]),
      nativeScript('x.exe', [], { ensureDir: v, expectExit: [0, 1] }),
      powerScript('restart'),
      powerScript('stop'),
      flushScript(),
      powerButtonScript(),
    ];
    for (const s of scripts) t.deepEqual(parser.errors(s), [], `${JSON.stringify(v.slice(0, 30))} in ${s.split('\n').at(-8)}`);
  }
});
