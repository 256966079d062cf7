/**
 * VmSpec → QEMU argv. Pure: everything that depends on the host (accel, ports, paths of the
 * runtime folder) comes in `QemuArgvContext`. Block nodes and devices are built as objects and
 * passed to QEMU as JSON (`-blockdev {…}`, `-device {…}`, QEMU ≥ 6.2), so the very same objects
 * serve `device_add` when a disk is plugged back, and no path needs comma escaping.
 */
import type { Accel, DiskSpec, VmSpec } from './spec.ts';
import { vmLabel } from './spec.ts';

export type QemuValue = string | number | boolean;
/** A `-device`/`device_add` argument set. */
export interface QemuDevice {
  driver: string;
  id: string;
  [prop: string]: QemuValue;
}
/** A `-blockdev`/`blockdev-add` argument set (flat: children referenced by node name). */
export type QemuBlockdev = Record<string, QemuValue>;

export interface QemuArgvContext {
  accel: Accel;
  /** CPU model the accel probe proved (KVM); `spec.cpu` wins over it. */
  cpu?: string;
  /** Kernel file for this accel (already chosen from `spec.kernel`). */
  kernel?: string;
  /** Firmware image for `-bios`, or undefined for QEMU's default (SeaBIOS). */
  bios?: string;
  qmpSocket: string;
  consoleLog: string;
  pidFile: string;
  /** Resolved forwards (every host port known). */
  forwards: Array<{ guestPort: number; hostPort: number }>;
  /** fw_cfg entries as files (inline data already written out by the caller). */
  fwCfg: Array<{ name: string; file: string } | { name: string; string: string }>;
  /** Disks whose devices are left out (unplugged before a restart); their nodes are still added. */
  unplugged?: ReadonlySet<string>;
}

/** Node name of the disk's format node (the top of its chain at start). */
export const diskNode = (id: string): string => `disk-${id}`;
export const fileNode = (id: string): string => `disk-${id}-file`;
export const deviceId = (id: string): string => `dev-${id}`;
export const controllerId = (id: string): string => `scsi-${id}`;
export const rootPortId = (id: string): string => `rp-${id}`;

/** `-chardev`/`-fw_cfg` option values: a comma inside a value is written twice. */
export function escapeOptValue(v: string): string {
  return v.replaceAll(',', ',,');
}

export function diskBlockdevs(disk: DiskSpec): [QemuBlockdev, QemuBlockdev] {
  const ro = disk.readOnly === true;
  const file: QemuBlockdev = { driver: 'file', 'node-name': fileNode(disk.id), filename: disk.path, discard: 'unmap' };
  const format: QemuBlockdev = { driver: disk.format ?? 'qcow2', 'node-name': diskNode(disk.id), file: fileNode(disk.id), discard: 'unmap' };
  if (ro) {
    file['read-only'] = true;
    format['read-only'] = true;
  }
  return [file, format];
}

/** The PCIe root port a q35 disk sits on (hot-plug on q35 needs one per device). */
export function rootPort(disk: DiskSpec, index: number): QemuDevice {
  // chassis numbers must be unique among root ports; 1-based, the network has none.
  return { driver: 'pcie-root-port', id: rootPortId(disk.id), chassis: index + 1 };
}

/**
 * The pluggable devices of a disk, in plug order. `node` is the block node the device uses (the
 * chain's top, which moves with external snapshots).
 */
export function diskDevices(disk: DiskSpec, machine: 'q35' | 'pc', node: string = diskNode(disk.id)): QemuDevice[] {
  const bus: Record<string, string> = machine === 'q35' ? { bus: rootPortId(disk.id) } : {};
  switch (disk.bus) {
    case 'virtio-blk':
      return [{ driver: 'virtio-blk-pci', id: deviceId(disk.id), drive: node, serial: disk.id, ...bus }];
    case 'nvme':
      return [{ driver: 'nvme', id: deviceId(disk.id), drive: node, serial: disk.id, ...bus }];
    case 'virtio-scsi':
      return [
        { driver: 'virtio-scsi-pci', id: controllerId(disk.id), ...bus },
        { driver: 'scsi-hd', id: deviceId(disk.id), drive: node, serial: disk.id, bus: `${controllerId(disk.id)}.0`, channel: 0, 'scsi-id': 0, lun: 0 },
      ];
  }
}

/** The device whose `device_del` is an orderly PCI eject (the guest must agree). */
export function ejectTarget(disk: DiskSpec): string {
  return disk.bus === 'virtio-scsi' ? controllerId(disk.id) : deviceId(disk.id);
}

export function buildQemuArgv(spec: VmSpec, ctx: QemuArgvContext): string[] {
  const machine = spec.machine ?? 'q35';
  const a: string[] = [
    '-name', `${vmLabel(spec)},debug-threads=on`,
    '-machine', machine,
    '-accel', ctx.accel,
    '-cpu', spec.cpu ?? ctx.cpu ?? (ctx.accel === 'kvm' ? 'host' : 'max'),
    '-smp', String(spec.smp ?? 1),
    '-m', String(spec.memoryMiB ?? 512),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-qmp', `unix:${escapeOptValue(ctx.qmpSocket)},server=on,wait=off`,
    '-chardev', `file,id=console0,path=${escapeOptValue(ctx.consoleLog)}`,
    '-serial', 'chardev:console0',
    '-pidfile', ctx.pidFile,
  ];
  if (spec.uefi) {
    a.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${escapeOptValue(spec.uefi.code)}`);
    a.push('-drive', `if=pflash,format=raw,unit=1,file=${escapeOptValue(spec.uefi.vars)}`);
  } else if (ctx.bios) a.push('-bios', ctx.bios);
  if (ctx.kernel) {
    a.push('-kernel', ctx.kernel);
    if (spec.initrd) a.push('-initrd', spec.initrd);
    if (spec.append) a.push('-append', spec.append);
  }
  for (const e of ctx.fwCfg) {
    a.push('-fw_cfg', 'file' in e ? `name=${e.name},file=${escapeOptValue(e.file)}` : `name=${e.name},string=${e.string}`);
  }
  if (spec.network !== false) {
    const fwd = ctx.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join('');
    a.push('-netdev', `user,id=net0${fwd}`);
    // romfile= : no iPXE option ROM (nothing boots from the network; it costs boot time).
    a.push('-device', JSON.stringify({ driver: 'virtio-net-pci', id: 'net0-dev', netdev: 'net0', romfile: '' }));
  }
  for (const [i, disk] of (spec.disks ?? []).entries()) {
    if (machine === 'q35') a.push('-device', JSON.stringify(rootPort(disk, i)));
    for (const node of diskBlockdevs(disk)) a.push('-blockdev', JSON.stringify(node));
    if (ctx.unplugged?.has(disk.id)) continue;
    for (const dev of diskDevices(disk, machine)) a.push('-device', JSON.stringify(dev));
  }
  a.push(...(spec.extraArgs ?? []));
  return a;
}
