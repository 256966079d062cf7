/**
 * VmSpec → argv per bus and machine (unit), and the same argv run by a real QEMU (no guest:
 * firmware idles) whose QMP view must show every node, device and serial the spec asked for.
 */
import { join } from 'node:path';
import test from 'ava';
import { buildQemuArgv, diskDevices, ejectTarget, validateSpec, VmError, type DiskSpec, type VmSpec } from '../../src/vm/index.ts';
import { qemuImg, tempDir } from '../helpers/tools.ts';
import { startTracked } from '../helpers/vm-guest.ts';

const ctx = { accel: 'tcg' as const, qmpSocket: '/run/x/qmp.sock', consoleLog: '/run/x/console-1.log', pidFile: '/run/x/qemu.pid', forwards: [{ guestPort: 22, hostPort: 2222 }], fwCfg: [] };

function jsonArgs(argv: string[], flag: string): Array<Record<string, unknown>> {
  return argv.flatMap((a, i) => (argv[i - 1] === flag && a.startsWith('{') ? [JSON.parse(a) as Record<string, unknown>] : []));
}

const disks: DiskSpec[] = [
  { id: 'vblk', path: '/img/a.qcow2', bus: 'virtio-blk' },
  { id: 'vscsi', path: '/img/b.qcow2', bus: 'virtio-scsi' },
  { id: 'nv', path: '/img/c.raw', bus: 'nvme', format: 'raw', readOnly: true },
];
const spec: VmSpec = { runId: 'r1', vmId: 'v1', disks, kernel: '/k/vmlinux', initrd: '/k/initrd', append: 'console=ttyS0', network: { forwards: [{ guestPort: 22 }] } };

test('q35: each disk on its own root port, nodes named disk-<id>, serial = id', (t) => {
  const argv = buildQemuArgv(spec, ctx);
  t.is(argv[argv.indexOf('-name') + 1], 'cbt-r1-v1,debug-threads=on');
  t.is(argv[argv.indexOf('-machine') + 1], 'q35');
  t.is(argv[argv.indexOf('-cpu') + 1], 'max');
  t.is(argv[argv.indexOf('-pidfile') + 1], '/run/x/qemu.pid');
  t.true(argv.includes('unix:/run/x/qmp.sock,server=on,wait=off'));
  t.true(argv.includes('user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22'));
  const blockdevs = jsonArgs(argv, '-blockdev');
  t.deepEqual(
    blockdevs.map((b) => [b['node-name'], b.driver, b.file ?? b.filename, b['read-only'] ?? false]),
    [
      ['disk-vblk-file', 'file', '/img/a.qcow2', false],
      ['disk-vblk', 'qcow2', 'disk-vblk-file', false],
      ['disk-vscsi-file', 'file', '/img/b.qcow2', false],
      ['disk-vscsi', 'qcow2', 'disk-vscsi-file', false],
      ['disk-nv-file', 'file', '/img/c.raw', true],
      ['disk-nv', 'raw', 'disk-nv-file', true],
    ],
  );
  const devices = jsonArgs(argv, '-device');
  t.deepEqual(
    devices.map((d) => [d.driver, d.id, d.bus ?? null, d.drive ?? null, d.serial ?? null]),
    [
      ['virtio-net-pci', 'net0-dev', null, null, null],
      ['pcie-root-port', 'rp-vblk', null, null, null],
      ['virtio-blk-pci', 'dev-vblk', 'rp-vblk', 'disk-vblk', 'vblk'],
      ['pcie-root-port', 'rp-vscsi', null, null, null],
      ['virtio-scsi-pci', 'scsi-vscsi', 'rp-vscsi', null, null],
      ['scsi-hd', 'dev-vscsi', 'scsi-vscsi.0', 'disk-vscsi', 'vscsi'],
      ['pcie-root-port', 'rp-nv', null, null, null],
      ['nvme', 'dev-nv', 'rp-nv', 'disk-nv', 'nv'],
    ],
  );
  t.deepEqual(new Set(devices.filter((d) => d.driver === 'pcie-root-port').map((d) => d.chassis)).size, 3);
  t.is(ejectTarget(disks[1]), 'scsi-vscsi');
  t.is(ejectTarget(disks[0]), 'dev-vblk');
});

test('pc: devices on the root bus, kvm uses the probed cpu, unplugged disks keep their nodes only', (t) => {
  const argv = buildQemuArgv({ ...spec, machine: 'pc' }, { ...ctx, accel: 'kvm', cpu: 'qemu64', unplugged: new Set(['vscsi']) });
  t.is(argv[argv.indexOf('-cpu') + 1], 'qemu64');
  const devices = jsonArgs(argv, '-device');
  t.false(devices.some((d) => d.driver === 'pcie-root-port' || ('bus' in d && String(d.bus).startsWith('rp-'))));
  t.false(devices.some((d) => d.id === 'dev-vscsi' || d.id === 'scsi-vscsi'));
  t.true(jsonArgs(argv, '-blockdev').some((b) => b['node-name'] === 'disk-vscsi'));
  t.deepEqual(diskDevices(disks[0], 'pc', 'disk-vblk-s2'), [{ driver: 'virtio-blk-pci', id: 'dev-vblk', drive: 'disk-vblk-s2', serial: 'vblk' }]);
});

test('commas in paths are doubled in option strings; JSON arguments need no escaping', (t) => {
  const argv = buildQemuArgv({ ...spec, disks: [{ id: 'd', path: '/img/a,b.qcow2', bus: 'virtio-blk' }] }, { ...ctx, consoleLog: '/run/a,b/c.log', fwCfg: [{ name: 'opt/cbt/x', file: '/k/a,b' }] });
  t.true(argv.includes('file,id=console0,path=/run/a,,b/c.log'));
  t.true(argv.includes('name=opt/cbt/x,file=/k/a,,b'));
  t.is(jsonArgs(argv, '-blockdev')[0].filename, '/img/a,b.qcow2');
});

test('invalid specs are typed errors naming the field', (t) => {
  const cases: Array<[Partial<VmSpec>, RegExp]> = [
    [{ runId: 'a b' }, /`runId`/],
    [{ disks: [{ id: 'x'.repeat(21), path: '/a', bus: 'virtio-blk' }] }, /`disks\[0\]\.id`/],
    [{ disks: [{ id: 'a', path: 'rel.qcow2', bus: 'virtio-blk' }] }, /`disks\[0\]\.path`/],
    [{ disks: [{ id: 'a', path: '/a', bus: 'ide' as never }] }, /`disks\[0\]\.bus`/],
    [{ disks: [{ id: 'a', path: '/a', bus: 'nvme' }, { id: 'a', path: '/b', bus: 'nvme' }] }, /used by another disk/],
    [{ memoryMiB: 0 }, /`memoryMiB`/],
    [{ fwCfg: [{ name: 'etc/x', string: 'y' }] }, /`fwCfg\[0\]\.name`/],
    [{ fwCfg: [{ name: 'opt/x', string: 'a,b' }] }, /`fwCfg\[0\]\.string`/],
    [{ network: { forwards: [{ guestPort: 22 }, { guestPort: 22 }] } }, /forwarded twice/],
    [{ kernel: undefined, initrd: '/i' }, /need `kernel`/],
  ];
  for (const [patch, re] of cases) {
    const e = t.throws(() => validateSpec({ ...spec, ...patch } as VmSpec), { instanceOf: VmError });
    t.is(e?.kind, 'spec');
    t.regex(e?.message ?? '', re);
  }
});

test('a real QEMU accepts the argv: nodes, devices and serials as specified, for every bus', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-vm-argv-');
  t.teardown(cleanup);
  const paths = { vblk: join(dir, 'a.qcow2'), vscsi: join(dir, 'b.qcow2'), nv: join(dir, 'c.raw') };
  await qemuImg(['create', '-q', '-f', 'qcow2', paths.vblk, '16M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', paths.vscsi, '16M']);
  await qemuImg(['create', '-q', '-f', 'raw', paths.nv, '16M']);
  // No kernel: the firmware finds nothing to boot and idles; enough to inspect the machine.
  const vm = await startTracked(t, { runId: 'argv', vmId: 'q35', accel: 'tcg', memoryMiB: 128, network: false, disks: disks.map((d) => ({ ...d, path: paths[d.id as keyof typeof paths] })) });
  const nodes = await vm.execute<Array<{ 'node-name': string; 'ro': boolean; image: { filename: string } }>>('query-named-block-nodes', { flat: true });
  for (const d of disks) {
    const n = nodes.find((x) => x['node-name'] === `disk-${d.id}`);
    t.truthy(n, `node disk-${d.id}`);
    t.is(n?.image.filename, paths[d.id as keyof typeof paths]);
    t.is(n?.ro, d.readOnly === true);
    t.is(await vm.execute('qom-get', { path: `/machine/peripheral/dev-${d.id}`, property: 'serial' }), d.id);
  }
  t.is(await vm.execute('qom-get', { path: '/machine/peripheral/scsi-vscsi', property: 'type' }), 'virtio-scsi-pci');
  const r = await vm.stop({ graceful: 'none' });
  t.is(r.shutdown, 'forced');
  t.is(r.via, 'quit');
});

test('uefi: OVMF code as read-only pflash unit 0, the VM\'s own variable store as unit 1, no -bios; exclusive with firmware', (t) => {
  const u: VmSpec = { runId: 'r1', vmId: 'v1', uefi: { code: '/fw/OVMF_CODE_4M.fd', vars: '/job/OVMF,VARS.fd' } };
  const argv = buildQemuArgv(u, { ...ctx, bios: '/usr/share/qemu/qboot.rom' });
  const drives = argv.flatMap((a, i) => (argv[i - 1] === '-drive' ? [a] : []));
  t.deepEqual(drives, ['if=pflash,format=raw,unit=0,readonly=on,file=/fw/OVMF_CODE_4M.fd', 'if=pflash,format=raw,unit=1,file=/job/OVMF,,VARS.fd']);
  t.false(argv.includes('-bios'));
  t.notThrows(() => validateSpec(u));
  t.throws(() => validateSpec({ ...u, firmware: 'seabios' }), { instanceOf: VmError, message: '`uefi` and `firmware` exclude each other' });
  t.throws(() => validateSpec({ ...u, uefi: { code: 'rel.fd', vars: '/v' } }), { instanceOf: VmError, message: /`uefi.code`/ });
});
