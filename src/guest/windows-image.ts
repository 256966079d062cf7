/**
 * The Windows image recipe, pure parts: options and their validation, the answer file rendered
 * from images/windows/autounattend.xml.template, the setup configuration, the answer media
 * layout, and the QEMU argv of the unattended install. The build itself (packing, swtpm, QEMU,
 * COM1) is in windows-image-build.ts. See images/windows/README.md and docs/windows-guest.md.
 */
import { isAbsolute, join } from 'node:path';
import { HarnessError } from '../util/index.ts';

export class WindowsImageError extends HarnessError {
  override name = 'WindowsImageError';
}

export type Win11Checks = 'labconfig' | 'tpm' | 'none';

export interface WindowsImageOptions {
  /** Windows installation ISO (the user's own media). */
  iso: string;
  /** virtio-win ISO (viostor, vioscsi, NetKVM drivers). */
  virtioIso: string;
  /** The tracker driver folder (.inf/.sys/.cat); installed with `pnputil /add-driver x.inf /install`. */
  driverDir: string;
  /** Output folder: system.qcow2, data.qcow2, OVMF_VARS.fd, com1.log, manifest.json. */
  out: string;
  /** Image in install.wim: by `/IMAGE/NAME` or `/IMAGE/INDEX`. @default { index: 1 } */
  edition?: { name: string } | { index: number };
  /** A KMS client setup key or other product key; none for evaluation media. */
  productKey?: string;
  /**
   * Windows 11 hardware checks: `labconfig` writes BypassTPMCheck/BypassSecureBootCheck/
   * BypassRAMCheck under HKLM\SYSTEM\Setup\LabConfig in windowsPE; `tpm` gives the VM a TPM 2.0
   * (swtpm + tpm-tis) instead; `none` for Windows 10 / Server. @default 'labconfig'
   */
  win11Checks?: Win11Checks;
  /** virtio-win folder name of the guest OS: w10, w11, 2k16, 2k19, 2k22, 2k25. @default 'w11' */
  virtioOs?: string;
  /** Fast startup (HiberbootEnabled) on or off in the image. @default false */
  fastStartup?: boolean;
  /** Hibernation available (`powercfg /h on`). @default false (on when fastStartup) */
  hibernation?: boolean;
  /** Extra tools copied to C:\cbt (diskspd.exe, cbtctl.exe, OpenSSH-Win64.msi). */
  toolsDir?: string;
  /** Public key authorized for the administrator (one OpenSSH line). */
  authorizedKey: string;
  /** Local administrator created by Setup. @default 'cbt' */
  username?: string;
  /** Its password (random when absent; recorded in the manifest). */
  password: string;
  /** @default 'CBT-WIN' */
  computerName?: string;
  /** @default 'en-US' */
  locale?: string;
  /** @default 64 */
  systemDiskGiB?: number;
  /** @default 8 */
  dataDiskGiB?: number;
  /** QEMU serial of the data disk (what the adapter looks up). @default 'data0' */
  dataSerial?: string;
  /** @default 'E' */
  dataLetter?: string;
  /** @default 'virtio-blk' */
  dataBus?: 'virtio-blk' | 'virtio-scsi';
  /** How the answer files reach Setup. @default 'iso' */
  answerMedia?: 'iso' | 'floppy';
  /** @default 4096 */
  memoryMiB?: number;
  /** @default 2 */
  smp?: number;
  /** @default 'kvm' */
  accel?: 'kvm' | 'tcg';
  /** @default '/usr/share/OVMF/OVMF_CODE_4M.fd' (Debian `ovmf`, no Secure Boot: test signing needs it off) */
  ovmfCode?: string;
  /** @default '/usr/share/OVMF/OVMF_VARS_4M.fd' */
  ovmfVars?: string;
  /** Whole install, until the done marker on COM1. @default 4 h */
  timeoutMs?: number;
  /** @default 'qemu-system-x86_64' */
  qemuBinary?: string;
  /** VNC display on 127.0.0.1 to watch the install (e.g. 5 → port 5905). @default none */
  vnc?: number;
}

export type ResolvedWindowsImageOptions = Required<Omit<WindowsImageOptions, 'productKey' | 'toolsDir' | 'vnc'>> & Pick<WindowsImageOptions, 'productKey' | 'toolsDir' | 'vnc'>;

const VIRTIO_OS = /^(?:w7|w8|w8\.1|w10|w11|2k8|2k8R2|2k12|2k12R2|2k16|2k19|2k22|2k25)$/;
const SERIAL_RE = /^[A-Za-z0-9_-]{1,20}$/;

function bad(field: string, expected: string, value: unknown): WindowsImageError {
  return new WindowsImageError(`Expected \`${field}\` to be ${expected}, got \`${typeof value === 'string' ? value : JSON.stringify(value)}\``);
}

function absPath(field: string, v: unknown): string {
  if (typeof v !== 'string' || !isAbsolute(v) || v.includes('\0')) throw bad(field, 'an absolute path', v);
  return v;
}

function intIn(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(field, `an integer in ${min}..${max}`, v);
  return v;
}

/** Defaults applied, every field checked; throws WindowsImageError naming the field. */
export function resolveImageOptions(o: WindowsImageOptions): ResolvedWindowsImageOptions {
  if (o === null || typeof o !== 'object') throw new WindowsImageError('Expected Windows image options');
  const edition = o.edition ?? { index: 1 };
  if ('name' in edition) {
    if (typeof edition.name !== 'string' || edition.name.trim() === '' || edition.name.length > 256) throw bad('edition.name', 'an image name such as "Windows 11 Pro"', edition.name);
  } else intIn('edition.index', edition.index, 1, 64);
  const win11Checks = o.win11Checks ?? 'labconfig';
  if (!['labconfig', 'tpm', 'none'].includes(win11Checks)) throw bad('win11Checks', "'labconfig', 'tpm' or 'none'", win11Checks);
  const virtioOs = o.virtioOs ?? 'w11';
  if (!VIRTIO_OS.test(virtioOs)) throw bad('virtioOs', 'a virtio-win OS folder (w10, w11, 2k19, 2k22, 2k25…)', virtioOs);
  if (o.productKey !== undefined && !/^[A-Z0-9]{5}(?:-[A-Z0-9]{5}){4}$/i.test(o.productKey)) throw bad('productKey', 'a key like XXXXX-XXXXX-XXXXX-XXXXX-XXXXX', o.productKey);
  if (typeof o.authorizedKey !== 'string' || !/^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/]+=* ?[^\r\n]*$/.test(o.authorizedKey.trim())) throw bad('authorizedKey', 'one OpenSSH public key line', o.authorizedKey);
  const username = o.username ?? 'cbt';
  if (!/^[A-Za-z0-9_.-]{1,20}$/.test(username) || /^\.+$/.test(username)) throw bad('username', '1–20 characters of [A-Za-z0-9_.-]', username);
  if (typeof o.password !== 'string' || o.password.length < 8 || o.password.length > 127 || /[\0\r\n]/.test(o.password)) throw bad('password', '8–127 characters on one line', o.password);
  const computerName = o.computerName ?? 'CBT-WIN';
  if (!/^[A-Za-z0-9-]{1,15}$/.test(computerName) || /^\d+$/.test(computerName)) throw bad('computerName', 'a NetBIOS name (1–15 of [A-Za-z0-9-], not all digits)', computerName);
  const locale = o.locale ?? 'en-US';
  if (!/^[a-z]{2,3}-[A-Z]{2}$/.test(locale)) throw bad('locale', 'a locale such as en-US', locale);
  const dataSerial = o.dataSerial ?? 'data0';
  if (!SERIAL_RE.test(dataSerial)) throw bad('dataSerial', '1–20 characters of [A-Za-z0-9_-]', dataSerial);
  const dataLetter = o.dataLetter ?? 'E';
  if (!/^[D-Z]$/.test(dataLetter)) throw bad('dataLetter', 'a drive letter D..Z', dataLetter);
  const dataBus = o.dataBus ?? 'virtio-blk';
  if (dataBus !== 'virtio-blk' && dataBus !== 'virtio-scsi') throw bad('dataBus', "'virtio-blk' or 'virtio-scsi'", dataBus);
  const answerMedia = o.answerMedia ?? 'iso';
  if (answerMedia !== 'iso' && answerMedia !== 'floppy') throw bad('answerMedia', "'iso' or 'floppy'", answerMedia);
  const accel = o.accel ?? 'kvm';
  if (accel !== 'kvm' && accel !== 'tcg') throw bad('accel', "'kvm' or 'tcg'", accel);
  const qemuBinary = o.qemuBinary ?? 'qemu-system-x86_64';
  if (typeof qemuBinary !== 'string' || qemuBinary === '' || qemuBinary.includes('\0')) throw bad('qemuBinary', 'a program name or path', qemuBinary);
  if (o.vnc !== undefined) intIn('vnc', o.vnc, 0, 99);
  return {
    iso: absPath('iso', o.iso),
    virtioIso: absPath('virtioIso', o.virtioIso),
    driverDir: absPath('driverDir', o.driverDir),
    out: absPath('out', o.out),
    edition,
    productKey: o.productKey,
    win11Checks,
    virtioOs,
    fastStartup: o.fastStartup ?? false,
    hibernation: o.hibernation ?? o.fastStartup ?? false,
    toolsDir: o.toolsDir === undefined ? undefined : absPath('toolsDir', o.toolsDir),
    authorizedKey: o.authorizedKey.trim(),
    username,
    password: o.password,
    computerName,
    locale,
    systemDiskGiB: intIn('systemDiskGiB', o.systemDiskGiB ?? 64, 32, 4096),
    dataDiskGiB: intIn('dataDiskGiB', o.dataDiskGiB ?? 8, 1, 65536),
    dataSerial,
    dataLetter,
    dataBus,
    answerMedia,
    memoryMiB: intIn('memoryMiB', o.memoryMiB ?? 4096, 2048, 1 << 20),
    smp: intIn('smp', o.smp ?? 2, 1, 64),
    accel,
    ovmfCode: absPath('ovmfCode', o.ovmfCode ?? '/usr/share/OVMF/OVMF_CODE_4M.fd'),
    ovmfVars: absPath('ovmfVars', o.ovmfVars ?? '/usr/share/OVMF/OVMF_VARS_4M.fd'),
    timeoutMs: intIn('timeoutMs', o.timeoutMs ?? 4 * 3600 * 1000, 1000, 48 * 3600 * 1000),
    qemuBinary,
    vnc: o.vnc,
  };
}

// ---------------------------------------------------------------------------------------------
// Answer file

/** XML 1.0 text/attribute escaping; characters XML 1.0 cannot hold at all are refused. */
export function xmlEscape(value: string): string {
  // XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
  const forbidden = [...value].some((ch) => {
    const c = ch.codePointAt(0) as number;
    return (c < 0x20 && c !== 0x9 && c !== 0xa && c !== 0xd) || c === 0xfffe || c === 0xffff || (c >= 0xd800 && c <= 0xdfff);
  });
  if (forbidden) {
    throw new WindowsImageError(`a value for the answer file holds a character XML 1.0 cannot represent: ${JSON.stringify(value.slice(0, 60))}`);
  }
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\r/g, '&#13;');
}

export type TemplateValue = string | boolean | { raw: string } | undefined;

/**
 * A small logic-less template: `{{name}}` escaped value, `{{{name}}}` raw fragment,
 * `{{#name}}…{{/name}}` kept when truthy, `{{^name}}…{{/name}}` kept when falsy. Unknown names
 * and leftover braces are errors (a typo must not ship an answer file with `{{x}}` in it).
 */
export function renderTemplate(template: string, values: Record<string, TemplateValue>): string {
  const known = (name: string): TemplateValue => {
    if (!Object.hasOwn(values, name)) throw new WindowsImageError(`template uses {{${name}}}, which has no value`);
    return values[name];
  };
  let out = template.replace(/\{\{([#^])([A-Za-z0-9_]+)\}\}\n?([\s\S]*?)\{\{\/\2\}\}\n?/g, (_, kind: string, name: string, body: string) => {
    const v = known(name);
    const on = typeof v === 'object' ? v.raw !== '' : Boolean(v);
    return (kind === '#') === on ? body : '';
  });
  out = out.replace(/\{\{\{([A-Za-z0-9_]+)\}\}\}/g, (_, name: string) => {
    const v = known(name);
    if (typeof v !== 'object') throw new WindowsImageError(`template uses {{{${name}}}} for a value that is not a fragment`);
    return v.raw;
  });
  out = out.replace(/\{\{([A-Za-z0-9_]+)\}\}/g, (_, name: string) => {
    const v = known(name);
    if (typeof v !== 'string') throw new WindowsImageError(`template uses {{${name}}} for a value that is not a string`);
    return xmlEscape(v);
  });
  const left = /.{0,20}(?:\{\{|\}\}).{0,20}/.exec(out);
  if (left) throw new WindowsImageError(`template has an unrendered tag near ${JSON.stringify(left[0])}`);
  return out;
}

/** Drive letters Setup may give the virtio-win ISO (WinPE: X: is itself; CD drives follow the disks). */
export const VIRTIO_DRIVE_CANDIDATES = ['D', 'E', 'F', 'G', 'H', 'I'];
export const WINPE_DRIVERS = ['viostor', 'vioscsi', 'NetKVM'];

export function driverPathsFragment(virtioOs: string): string {
  const lines: string[] = [];
  let key = 1;
  for (const drv of WINPE_DRIVERS) {
    for (const letter of VIRTIO_DRIVE_CANDIDATES) {
      lines.push(`        <PathAndCredentials wcm:action="add" wcm:keyValue="${key++}">\n          <Path>${xmlEscape(`${letter}:\\${drv}\\${virtioOs}\\amd64`)}</Path>\n        </PathAndCredentials>`);
    }
  }
  return lines.join('\n');
}

/** Folder of the setup files on the answer media. */
export const SETUP_DIR = 'cbt-setup';

/**
 * FirstLogonCommands line: find the answer media by its setup script (drive letters vary) and
 * run it. `%D` is cmd's `for` variable on a command line (single percent).
 */
export function firstLogonCommand(): string {
  const letters = 'D E F G H I J K L M N O P Q R S T U V W Y Z A B';
  return `cmd.exe /c "for %D in (${letters}) do @if exist %D:\\${SETUP_DIR}\\setup.ps1 powershell.exe -NoProfile -ExecutionPolicy Bypass -File %D:\\${SETUP_DIR}\\setup.ps1 -Media %D:\\"`;
}

/** The answer file for `o`, from the template text. */
export function renderAutounattend(template: string, o: ResolvedWindowsImageOptions): string {
  const byName = 'name' in o.edition;
  return renderTemplate(template, {
    locale: o.locale,
    driverPaths: { raw: driverPathsFragment(o.virtioOs) },
    labConfig: o.win11Checks === 'labconfig',
    imageKey: byName ? '/IMAGE/NAME' : '/IMAGE/INDEX',
    imageValue: 'name' in o.edition ? o.edition.name : String(o.edition.index),
    productKey: o.productKey,
    computerName: o.computerName,
    username: o.username,
    password: o.password,
    firstLogonCommand: firstLogonCommand(),
  });
}

/** cbt-setup.json, read by setup.ps1. */
export interface SetupConfig {
  comPort: 'COM1';
  authorizedKey: string;
  dataSerial: string;
  dataLetter: string;
  dataLabel: string;
  fastStartup: boolean;
  hibernation: boolean;
  testSigning: boolean;
  virtioOs: string;
}

export function setupConfig(o: ResolvedWindowsImageOptions): SetupConfig {
  return { comPort: 'COM1', authorizedKey: o.authorizedKey, dataSerial: o.dataSerial, dataLetter: o.dataLetter, dataLabel: 'CBTDATA', fastStartup: o.fastStartup, hibernation: o.hibernation, testSigning: true, virtioOs: o.virtioOs };
}

// ---------------------------------------------------------------------------------------------
// QEMU

export interface BuildPaths {
  systemDisk: string;
  dataDisk: string;
  ovmfVars: string;
  answer: string;
  com1Log: string;
  qmpSocket: string;
  /** swtpm control socket (win11Checks 'tpm'). */
  tpmSocket: string;
  manifest: string;
}

export function buildPaths(out: string): BuildPaths {
  return {
    systemDisk: join(out, 'system.qcow2'),
    dataDisk: join(out, 'data.qcow2'),
    ovmfVars: join(out, 'OVMF_VARS.fd'),
    answer: join(out, 'answer.img'),
    com1Log: join(out, 'com1.log'),
    qmpSocket: join(out, 'qmp.sock'),
    tpmSocket: join(out, 'swtpm.sock'),
    manifest: join(out, 'manifest.json'),
  };
}

/** QEMU's `-opt a=b,c=d` value with commas in values doubled. */
function opts(o: Record<string, string | number | boolean>): string {
  return Object.entries(o)
    .map(([k, v]) => `${k}=${String(typeof v === 'boolean' ? (v ? 'on' : 'off') : v).replace(/,/g, ',,')}`)
    .join(',');
}

/**
 * argv of the install VM: q35 + OVMF (pflash code read-only, a private copy of the vars), the
 * system disk on virtio-blk (boot index 1) and the data disk with its serial, the Windows ISO
 * (boot index 0), the virtio-win ISO and the answer media on AHCI, user networking restricted to
 * the host with SSH forwarded to `sshPort`, COM1 to a file, QMP on a socket, an optional TPM.
 */
export function installArgv(o: ResolvedWindowsImageOptions, p: BuildPaths, sshPort: number, label: string): string[] {
  const a: string[] = [o.qemuBinary, '-name', `${label},debug-threads=on`, '-machine', opts({ type: 'q35', accel: o.accel }), '-cpu', o.accel === 'kvm' ? 'host' : 'max', '-smp', String(o.smp), '-m', String(o.memoryMiB), '-nodefaults', '-no-user-config'];
  a.push('-drive', opts({ if: 'pflash', format: 'raw', unit: 0, readonly: true, file: o.ovmfCode }));
  a.push('-drive', opts({ if: 'pflash', format: 'raw', unit: 1, file: p.ovmfVars }));
  a.push('-blockdev', opts({ driver: 'file', filename: p.systemDisk, 'node-name': 'system-file' }), '-blockdev', opts({ driver: 'qcow2', file: 'system-file', 'node-name': 'system' }));
  a.push('-device', opts({ driver: 'virtio-blk-pci', id: 'system-disk', drive: 'system', serial: 'system', bootindex: 1 }));
  a.push('-blockdev', opts({ driver: 'file', filename: p.dataDisk, 'node-name': 'data-file' }), '-blockdev', opts({ driver: 'qcow2', file: 'data-file', 'node-name': 'data' }));
  if (o.dataBus === 'virtio-scsi') a.push('-device', opts({ driver: 'virtio-scsi-pci', id: 'scsi-data' }), '-device', opts({ driver: 'scsi-hd', drive: 'data', serial: o.dataSerial, bus: 'scsi-data.0' }));
  else a.push('-device', opts({ driver: 'virtio-blk-pci', drive: 'data', serial: o.dataSerial }));
  a.push('-device', opts({ driver: 'ahci', id: 'ahci0' }));
  const cd = (node: string, file: string, port: number, boot?: number): void => {
    a.push('-blockdev', opts({ driver: 'file', filename: file, 'node-name': `${node}-file`, 'read-only': true }), '-blockdev', opts({ driver: 'raw', file: `${node}-file`, 'node-name': node, 'read-only': true }));
    a.push('-device', opts({ driver: 'ide-cd', id: `cd-${node}`, drive: node, bus: `ahci0.${port}`, ...(boot === undefined ? {} : { bootindex: boot }) }));
  };
  cd('win-iso', o.iso, 0, 0);
  cd('virtio-iso', o.virtioIso, 1);
  if (o.answerMedia === 'iso') cd('answer', p.answer, 2);
  else {
    a.push('-blockdev', opts({ driver: 'file', filename: p.answer, 'node-name': 'answer-file', 'read-only': true }), '-blockdev', opts({ driver: 'raw', file: 'answer-file', 'node-name': 'answer', 'read-only': true }));
    a.push('-device', opts({ driver: 'isa-fdc', id: 'fdc0' }), '-device', opts({ driver: 'floppy', drive: 'answer' }));
  }
  a.push('-netdev', opts({ type: 'user', id: 'net0', restrict: true, hostfwd: `tcp:127.0.0.1:${sshPort}-:22` }), '-device', opts({ driver: 'virtio-net-pci', netdev: 'net0' }));
  a.push('-chardev', opts({ backend: 'file', id: 'com1', path: p.com1Log }), '-serial', 'chardev:com1');
  a.push('-qmp', `unix:${p.qmpSocket},server=on,wait=off`);
  if (o.win11Checks === 'tpm') a.push('-chardev', opts({ backend: 'socket', id: 'chrtpm', path: p.tpmSocket }), '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm', '-device', 'tpm-tis,tpmdev=tpm0');
  a.push('-device', 'qemu-xhci,id=xhci', '-device', 'usb-tablet,bus=xhci.0');
  a.push('-vga', 'std', '-display', 'none');
  if (o.vnc !== undefined) a.push('-vnc', `127.0.0.1:${o.vnc}`);
  a.push('-rtc', 'base=utc', '-boot', 'menu=off,strict=off');
  return a;
}

/** swtpm argv for win11Checks 'tpm' (TPM 2.0, state in `<out>/tpm`). */
export function swtpmArgv(p: BuildPaths, stateDir: string): string[] {
  return ['swtpm', 'socket', '--tpm2', '--tpmstate', `dir=${stateDir}`, '--ctrl', `type=unixio,path=${p.tpmSocket}`, '--flags', 'startup-clear', '--terminate'];
}

/** What a finished build records in manifest.json. */
export interface WindowsImageManifest {
  format: 'cbt-harness/windows-image/1';
  createdAt: string;
  durationMs: number;
  images: { system: string; data: string; ovmfVars: string; ovmfCode: string };
  inputs: { iso: { path: string; size: number }; virtioIso: { path: string; size: number }; driverDir: string; toolsDir: string | null };
  options: { edition: ResolvedWindowsImageOptions['edition']; win11Checks: Win11Checks; virtioOs: string; fastStartup: boolean; hibernation: boolean; dataSerial: string; dataLetter: string; dataBus: string; accel: string; answerMedia: string };
  account: { username: string; password: string };
  ssh: { authorizedKey: string; hostPublicKey: string | null; verified: boolean };
  /** What setup.ps1 reported with CBT-SETUP-DONE. */
  guest: Record<string, unknown>;
  qemuArgv: string[];
  /** The guest did not power off by itself in time; QEMU was told to quit. */
  forcedStop: boolean;
}
