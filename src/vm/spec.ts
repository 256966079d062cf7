/**
 * What a VM is made of: the typed spec the caller writes, and its validation (the launcher owns
 * the spec, so it checks it here, naming the field and the value). See docs/vm-and-guest.md.
 */
import { isAbsolute } from 'node:path';
import { VmError } from './errors.ts';

export type DiskBus = 'virtio-blk' | 'virtio-scsi' | 'nvme';
export type Accel = 'kvm' | 'tcg';

export interface DiskSpec {
  /**
   * Names everything of this disk: the block nodes (`disk-<id>`, file node `disk-<id>-file`), the
   * device (`dev-<id>`), its `serial=<id>` as the guest sees it, its controller (`scsi-<id>`) and
   * PCIe root port (`rp-<id>`). 1–20 characters of `[A-Za-z0-9_-]` (virtio-blk and NVMe serials
   * hold 20 bytes).
   */
  id: string;
  /** Image file (absolute path). For qcow2 its backing chain is opened as the file says. */
  path: string;
  /** @default 'qcow2' */
  format?: 'qcow2' | 'raw';
  /**
   * virtio-blk: one PCI device. virtio-scsi: a `scsi-hd` on its own virtio-scsi controller (one
   * controller per disk, so that the controller can be ejected as a whole while removing only
   * the LUN is the surprise removal). nvme: one NVMe controller with the disk as namespace 1.
   */
  bus: DiskBus;
  /** @default false */
  readOnly?: boolean;
}

/** An fw_cfg item: a host file, a short string, or bytes the VM writes to its private folder (0600). */
export type FwCfgEntry = { name: string; file: string } | { name: string; string: string } | { name: string; data: string | Buffer };

export interface PortForward {
  guestPort: number;
  /** Host port on 127.0.0.1; a free one is picked when absent. */
  hostPort?: number;
}

/** A boot that proves an accelerator: kernel + initramfs printing `marker` once in userspace. */
export interface AccelProbeSpec {
  kernel: string;
  initrd?: string;
  /** Kernel command line; must make the guest print `marker` on ttyS0 and power off. */
  append: string;
  marker: string;
  /** @default 20000 */
  timeoutMs?: number;
}

export interface VmSpec {
  /** Labels every process, directory and socket this VM creates (the sweeper matches on it). */
  runId: string;
  vmId: string;
  /** @default 'q35' */
  machine?: 'q35' | 'pc';
  /**
   * `auto` uses KVM only when the accel probe booted a kernel to userspace under it (needs
   * `probe`), else TCG.
   * @default 'auto'
   */
  accel?: 'auto' | Accel;
  /** @default 'max' under TCG; under KVM the model the probe booted ('host', else QEMU's default) */
  cpu?: string;
  /** @default 1 */
  smp?: number;
  /** @default 512 */
  memoryMiB?: number;
  /** Direct kernel boot; per accel when the best kernel format differs (PVH ELF vs bzImage). */
  kernel?: string | Record<Accel, string>;
  initrd?: string;
  append?: string;
  /**
   * `qboot` (QEMU's minimal firmware, faster to a direct kernel boot than SeaBIOS; still provides
   * QEMU's ACPI tables, so ACPI hotplug and the power button work) or `seabios`.
   * @default 'qboot' when a kernel is given and qboot.rom is installed, else 'seabios'
   */
  firmware?: 'qboot' | 'seabios';
  /**
   * UEFI firmware as two pflash units (OVMF: the read-only code, and this VM's own copy of the
   * variable store, which the guest writes). Replaces `firmware`.
   */
  uefi?: { code: string; vars: string };
  disks?: DiskSpec[];
  /** User-mode networking with port forwards to 127.0.0.1, or none. @default { forwards: [] } */
  network?: { forwards: PortForward[] } | false;
  /** `-fw_cfg name=…,file=…|string=…`; names must start with `opt/`. */
  fwCfg?: FwCfgEntry[];
  /** Accel probe for `auto`. Without it `auto` means TCG (reason recorded). */
  probe?: AccelProbeSpec;
  /**
   * Where console logs are kept (`console-<boot>.log`); they outlive the VM. Without it they live
   * in the private runtime folder and go with it when the VM stops.
   */
  logDir?: string;
  /** @default 'qemu-system-x86_64' */
  qemuBinary?: string;
  /** @default 'qemu-img' */
  qemuImgBinary?: string;
  /** Appended verbatim (tests, experiments). */
  extraArgs?: string[];
}

const ID_RE = /^[A-Za-z0-9_-]{1,20}$/;
const LABEL_RE = /^[A-Za-z0-9_.-]{1,64}$/;

function bad(field: string, expected: string, value: unknown): VmError {
  return new VmError('spec', `Expected \`${field}\` to be ${expected}, got \`${typeof value === 'string' ? value : JSON.stringify(value)}\` (${typeof value})`);
}

function posInt(field: string, v: unknown, max: number): void {
  if (v !== undefined && (!Number.isInteger(v) || (v as number) < 1 || (v as number) > max)) throw bad(field, `an integer in 1..${max}`, v);
}

function absPath(field: string, v: unknown): void {
  if (typeof v !== 'string' || !isAbsolute(v) || v.includes('\0')) throw bad(field, 'an absolute path', v);
}

/** Throws a VmError (kind `spec`) naming the first invalid field. */
export function validateSpec(spec: VmSpec): void {
  if (spec === null || typeof spec !== 'object') throw bad('spec', 'an object', spec);
  if (typeof spec.runId !== 'string' || !LABEL_RE.test(spec.runId)) throw bad('runId', '1–64 characters of [A-Za-z0-9_.-]', spec.runId);
  if (typeof spec.vmId !== 'string' || !LABEL_RE.test(spec.vmId)) throw bad('vmId', '1–64 characters of [A-Za-z0-9_.-]', spec.vmId);
  if (spec.machine !== undefined && spec.machine !== 'q35' && spec.machine !== 'pc') throw bad('machine', "'q35' or 'pc'", spec.machine);
  if (spec.accel !== undefined && !['auto', 'kvm', 'tcg'].includes(spec.accel)) throw bad('accel', "'auto', 'kvm' or 'tcg'", spec.accel);
  if (spec.cpu !== undefined && (typeof spec.cpu !== 'string' || !/^[A-Za-z0-9_.,=+-]+$/.test(spec.cpu))) throw bad('cpu', 'a QEMU CPU model', spec.cpu);
  posInt('smp', spec.smp, 64);
  posInt('memoryMiB', spec.memoryMiB, 1 << 20);
  if (spec.kernel !== undefined) {
    if (typeof spec.kernel === 'string') absPath('kernel', spec.kernel);
    else {
      absPath('kernel.kvm', spec.kernel?.kvm);
      absPath('kernel.tcg', spec.kernel?.tcg);
    }
  }
  if (spec.initrd !== undefined) absPath('initrd', spec.initrd);
  if (spec.append !== undefined && (typeof spec.append !== 'string' || spec.append.length > 4096 || /[\n\0]/.test(spec.append))) throw bad('append', 'a one-line kernel command line of at most 4096 characters', spec.append);
  if ((spec.initrd !== undefined || spec.append !== undefined) && spec.kernel === undefined) throw new VmError('spec', '`initrd` and `append` need `kernel`');
  if (spec.firmware !== undefined && spec.firmware !== 'qboot' && spec.firmware !== 'seabios') throw bad('firmware', "'qboot' or 'seabios'", spec.firmware);
  if (spec.uefi !== undefined) {
    if (spec.firmware !== undefined) throw new VmError('spec', '`uefi` and `firmware` exclude each other');
    absPath('uefi.code', spec.uefi?.code);
    absPath('uefi.vars', spec.uefi.vars);
  }
  const ids = new Set<string>();
  for (const [i, d] of (spec.disks ?? []).entries()) {
    const f = `disks[${i}]`;
    if (d === null || typeof d !== 'object') throw bad(f, 'a disk object', d);
    if (typeof d.id !== 'string' || !ID_RE.test(d.id)) throw bad(`${f}.id`, '1–20 characters of [A-Za-z0-9_-]', d.id);
    if (ids.has(d.id)) throw new VmError('spec', `\`${f}.id\` \`${d.id}\` is used by another disk`);
    ids.add(d.id);
    absPath(`${f}.path`, d.path);
    if (d.format !== undefined && d.format !== 'qcow2' && d.format !== 'raw') throw bad(`${f}.format`, "'qcow2' or 'raw'", d.format);
    if (!['virtio-blk', 'virtio-scsi', 'nvme'].includes(d.bus)) throw bad(`${f}.bus`, "'virtio-blk', 'virtio-scsi' or 'nvme'", d.bus);
    if (d.readOnly !== undefined && typeof d.readOnly !== 'boolean') throw bad(`${f}.readOnly`, 'a boolean', d.readOnly);
  }
  if (spec.network !== undefined && spec.network !== false) {
    if (!Array.isArray(spec.network?.forwards)) throw bad('network.forwards', 'an array', spec.network?.forwards);
    const guestPorts = new Set<number>();
    for (const [i, fw] of spec.network.forwards.entries()) {
      posInt(`network.forwards[${i}].guestPort`, fw?.guestPort ?? 0, 65535);
      posInt(`network.forwards[${i}].hostPort`, fw.hostPort, 65535);
      if (guestPorts.has(fw.guestPort)) throw new VmError('spec', `\`network.forwards[${i}].guestPort\` ${fw.guestPort} is forwarded twice`);
      guestPorts.add(fw.guestPort);
    }
  }
  for (const [i, e] of (spec.fwCfg ?? []).entries()) {
    const f = `fwCfg[${i}]`;
    // QEMU: names up to 55 characters; user entries belong under opt/.
    if (typeof e?.name !== 'string' || !/^opt\/[A-Za-z0-9_./-]{1,51}$/.test(e.name)) throw bad(`${f}.name`, 'opt/<name> (at most 55 characters of [A-Za-z0-9_./-])', e?.name);
    if ('file' in e) absPath(`${f}.file`, e.file);
    else if ('data' in e) {
      if (typeof e.data !== 'string' && !Buffer.isBuffer(e.data)) throw bad(`${f}.data`, 'a string or Buffer', e.data);
    } else if (typeof e.string !== 'string' || e.string.includes(',')) throw bad(`${f}.string`, 'a string without commas (use `file` for anything else)', e.string);
  }
  if (spec.probe !== undefined) {
    absPath('probe.kernel', spec.probe.kernel);
    if (spec.probe.initrd !== undefined) absPath('probe.initrd', spec.probe.initrd);
    if (typeof spec.probe.marker !== 'string' || spec.probe.marker === '') throw bad('probe.marker', 'a non-empty string', spec.probe.marker);
    if (typeof spec.probe.append !== 'string') throw bad('probe.append', 'a string', spec.probe.append);
    posInt('probe.timeoutMs', spec.probe.timeoutMs, 600_000);
  }
  if (spec.logDir !== undefined) absPath('logDir', spec.logDir);
  if (spec.extraArgs !== undefined && (!Array.isArray(spec.extraArgs) || spec.extraArgs.some((a) => typeof a !== 'string'))) throw bad('extraArgs', 'an array of strings', spec.extraArgs);
}

/** `cbt-<runId>-<vmId>`: QEMU's `-name`, the label the sweeper looks for. */
export function vmLabel(spec: Pick<VmSpec, 'runId' | 'vmId'>): string {
  return `cbt-${spec.runId}-${spec.vmId}`;
}
