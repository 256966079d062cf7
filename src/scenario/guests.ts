/**
 * Guest provisioning for one job: a guest name → its image, the VM spec of its first boot, and
 * its `GuestAdapter`. The built-in `linux-ref` image is built (or taken staged) from the project's
 * recipe; a Windows guest is an image folder made by `cbt-harness image build windows` (its
 * `manifest.json`), named in the job's guest catalogue. The tracker's guest setup (what the guest
 * tracks, the driver's checkpoint command) comes in as data: nothing here names a tracker.
 */
import { copyFile, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { buildLinuxRef, connectLinuxRef, LinuxRefAdapter, linuxRefSetupText, linuxRefImageFrom, linuxRefVmSpec, sshConnector, WindowsAdapter, type GuestAdapter, type GuestConnector, type GuestHostKey, type GuestOperation, type LinuxRefManifest, type WindowsImageManifest } from '../guest/index.ts';
import { execa } from 'execa';
import type { OsInfo } from '../report/index.ts';
import { fingerprintOf, generateKeyPair } from '../ssh/index.ts';
import type { TrackerGuestSetup } from '../trackers/index.ts';
import type { DiskSpec as VmDiskSpec, RunningVm, VmSpec } from '../vm/index.ts';
import { JobInfrastructureError, StepError } from './errors.ts';
import type { DiskSpec } from './types.ts';

/** A guest the job can boot besides the built-in `linux-ref`. */
export interface WindowsGuestEntry {
  kind: 'windows';
  /** Folder of a built Windows image (holds manifest.json). */
  image: string;
  /** The private key whose public half the image authorised (OpenSSH or PEM text file). */
  privateKeyFile: string;
  /** Memory of the VM. @default 4096 */
  memoryMiB?: number;
  /** CPUs. @default 2 */
  smp?: number;
}

/** Guest name → entry: the job's guest catalogue (linux-ref is always there). */
export type GuestCatalog = Record<string, WindowsGuestEntry>;

export interface GuestPlan {
  runId: string;
  vmId: string;
  guest: string;
  catalog: GuestCatalog;
  /** The scenario's data disks, created by the runner (qcow2 files). */
  disks: VmDiskSpec[];
  /** The scenario's disks with their volumes (the guest makes them on the first boot). */
  layout: readonly DiskSpec[];
  tracker: TrackerGuestSetup;
  /** Guest operations the scenario uses (the fio tools disk is attached only when asked for). */
  operations: ReadonlySet<GuestOperation>;
  accel: 'auto' | 'kvm' | 'tcg';
  workDir: string;
  logDir: string;
  imageCacheDir?: string;
  stagedImage?: { dir: string; manifest: LinuxRefManifest };
  signal?: AbortSignal;
  /** The running VM, when there is one (the adapter connects to it). */
  vm: () => RunningVm | null;
  /** Replaces the SSH connection to a Windows guest (tests with a fake guest shell). */
  connectWindows?: (vm: () => RunningVm | null) => GuestConnector;
}

/** What the runner needs of the guest: the first boot's VM spec, the adapter, what the record says. */
export interface PreparedGuest {
  vmSpec: VmSpec;
  adapter: GuestAdapter;
  os: OsInfo & { kernel?: string };
  /** A new QEMU process started (its console starts empty). */
  vmStarted(vm: RunningVm): void;
  /** The guest is about to boot again inside the same QEMU (reset): wait for the new boot's markers. */
  restarting(vm: RunningVm): void;
}

/** Which guest a name denotes, checked before anything is built or booted. */
export function resolveGuest(name: string, catalog: GuestCatalog): { kind: 'linux-ref' } | WindowsGuestEntry {
  if (name === 'linux-ref') return { kind: 'linux-ref' };
  const e = Object.hasOwn(catalog, name) ? catalog[name] : undefined;
  if (!e) {
    const known = ['linux-ref', ...Object.keys(catalog)];
    throw new StepError(`guest \`${name}\` is not in this host's guest catalogue (known: ${known.join(', ')}; Windows images are built with \`cbt-harness image build windows\` and named in the catalogue)`);
  }
  return e;
}

/** What an adapter of this guest supports, before a VM exists. */
export function guestOperations(name: string, catalog: GuestCatalog, tracker: TrackerGuestSetup, operations: ReadonlySet<GuestOperation>): ReadonlySet<GuestOperation> {
  if (resolveGuest(name, catalog).kind === 'linux-ref') return LinuxRefAdapter.operations(operations.has('fio'));
  const ops = new Set<GuestOperation>(['reboot', 'shutdown', 'offline', 'online', 'disable', 'enable', 'write', 'fio', 'flush', 'powerbutton-action']);
  if (tracker.windows?.checkpointCommand) ops.add('checkpoint');
  return ops;
}

export async function prepareGuest(plan: GuestPlan): Promise<PreparedGuest> {
  const entry = resolveGuest(plan.guest, plan.catalog);
  return entry.kind === 'linux-ref' ? prepareLinuxRef(plan) : prepareWindows(plan, entry);
}

async function prepareLinuxRef(plan: GuestPlan): Promise<PreparedGuest> {
  let image;
  try {
    image = plan.stagedImage ? linuxRefImageFrom(plan.stagedImage.dir, plan.stagedImage.manifest) : await buildLinuxRef({ cacheDir: plan.imageCacheDir, signal: plan.signal });
  } catch (e) {
    throw new JobInfrastructureError(`the linux-ref image could not be built: ${(e as Error).message}`, { cause: e });
  }
  const keys = await generateKeyPair('ed25519', { comment: `cbt-${plan.runId}` });
  const fio = plan.operations.has('fio');
  const lr = plan.tracker.linuxRef;
  const setup = linuxRefSetupOf(plan.tracker, plan.layout);
  const { spec, hostKey } = linuxRefVmSpec(image, {
    runId: plan.runId,
    vmId: plan.vmId,
    authorizedKeys: [keys.publicKey],
    disks: plan.disks,
    // dm-era tracks whole disks (cbt.disks=); cbtf-ref tracks one volume through the set-up file.
    untracked: plan.tracker.inGuest && lr?.tracker === 'dm-era' ? [] : plan.disks.map((d) => d.id),
    ...(setup ? { setup } : {}),
    ...(lr?.tracker === 'dm-era' ? { eraBlockSectors: lr.blockSectors, metadataMiB: lr.metadataMiB, variant: lr.variant } : {}),
    tools: fio,
    accel: plan.accel,
    logDir: plan.logDir,
  });
  const auth: { privateKey: string; hostKey: GuestHostKey } = { privateKey: keys.privateKey, hostKey };
  let consoleMark = 0;
  // The console read so far by `newConsoleText`, per QEMU process (absolute offsets).
  let seen: { vm: RunningVm | null; offset: number } = { vm: null, offset: 0 };
  const adapter = new LinuxRefAdapter({
    fio,
    trackedInGuest: plan.tracker.inGuest,
    newConsoleText: async () => {
      const vm = plan.vm();
      if (!vm) return '';
      const text = await vm.console.text();
      if (seen.vm !== vm) seen = { vm, offset: 0 };
      const start = vm.console.end - text.length;
      const out = text.slice(Math.max(0, seen.offset - start));
      seen.offset = vm.console.end;
      return out;
    },
    connect: async ({ signal }) => {
      const vm = plan.vm();
      if (!vm || !vm.running) throw new StepError('cannot connect to the guest: the VM is not running');
      return connectLinuxRef(vm, auth, { signal: signal ?? plan.signal, sinceConsoleOffset: consoleMark, timeoutMs: 180_000 });
    },
    beforeRestart: () => {
      consoleMark = plan.vm()?.console.end ?? 0;
    },
  });
  return {
    vmSpec: spec,
    adapter,
    os: { family: 'linux', build: `linux-ref ${image.kernelRelease}`, kernel: image.kernelRelease },
    vmStarted() {
      consoleMark = 0;
    },
    restarting(vm) {
      consoleMark = vm.console.end;
    },
  };
}

/** The set-up file of this job (null when the guest's defaults are it: dm-era, no volumes). */
export function linuxRefSetupOf(tracker: TrackerGuestSetup, layout: readonly DiskSpec[]): string | null {
  const lr = tracker.linuxRef;
  const volumes = layout.flatMap((d) => d.volumes.map((v) => ({ serial: d.id, index: v.index, fs: v.fs, size: v.size })));
  const kind = tracker.inGuest && lr ? lr.tracker : 'none';
  const variant = lr?.trackerVariant ?? 'normal';
  if (kind === 'dm-era' && variant === 'normal' && volumes.length === 0) return null;
  const at = (id: string): { serial: string; index: number } => {
    for (const d of layout) for (const v of d.volumes) if (v.id === id) return { serial: d.id, index: v.index };
    throw new StepError(`internal: volume ${id} is not in the layout`);
  };
  const c = lr?.cbtf;
  return linuxRefSetupText({
    tracker: kind,
    variant,
    volumes,
    ...(kind === 'cbtf-ref' && c ? { cbtf: { file: { ...at(c.fileVolume), path: c.path }, tracked: at(c.tracked), blockBytes: c.blockBytes } } : {}),
  });
}

async function prepareWindows(plan: GuestPlan, entry: WindowsGuestEntry): Promise<PreparedGuest> {
  const dir = resolve(entry.image);
  let manifest: WindowsImageManifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as WindowsImageManifest;
  } catch (e) {
    throw new StepError(`guest \`${plan.guest}\`: ${join(dir, 'manifest.json')} is not a readable Windows image manifest: ${(e as Error).message}`, { cause: e });
  }
  if (manifest?.format !== 'cbt-harness/windows-image/1' || typeof manifest.images?.system !== 'string') {
    throw new StepError(`guest \`${plan.guest}\`: ${join(dir, 'manifest.json')} is not a cbt-harness/windows-image/1 manifest`);
  }
  const inDir = (p: string) => (isAbsolute(p) ? p : join(dir, p));
  // The job boots an overlay of the system disk and its own copy of the UEFI variable store:
  // the built image stays as it was for the next job.
  const system = join(plan.workDir, 'system.qcow2');
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', inDir(manifest.images.system), system], { cancelSignal: plan.signal });
  const vars = join(plan.workDir, 'OVMF_VARS.fd');
  await copyFile(inDir(manifest.images.ovmfVars), vars);
  const spec: VmSpec = {
    runId: plan.runId,
    vmId: plan.vmId,
    machine: 'q35',
    accel: plan.accel,
    memoryMiB: entry.memoryMiB ?? 4096,
    smp: entry.smp ?? 2,
    uefi: { code: inDir(manifest.images.ovmfCode), vars },
    disks: [{ id: 'system', path: system, format: 'qcow2', bus: 'virtio-blk' }, ...plan.disks],
    network: { forwards: [{ guestPort: 22 }] },
    logDir: plan.logDir,
  };
  const connect =
    plan.connectWindows?.(plan.vm) ??
    (await (async (): Promise<GuestConnector> => {
      const privateKey = await readFile(entry.privateKeyFile, 'utf8').catch((e: Error) => {
        throw new StepError(`guest \`${plan.guest}\`: cannot read its private key ${entry.privateKeyFile}: ${e.message}`);
      });
      const host = manifest.ssh?.hostPublicKey;
      if (!host) throw new StepError(`guest \`${plan.guest}\`: its manifest records no SSH host key (the image build did not verify SSH), so the guest cannot be authenticated`);
      return (opts) => {
        const vm = plan.vm();
        if (!vm || !vm.running) return Promise.reject(new StepError('cannot connect to the guest: the VM is not running'));
        return sshConnector({ host: '127.0.0.1', port: vm.hostPort(22), username: manifest.account.username, privateKey, hostKey: { kind: 'pinned', fingerprints: [fingerprintOf(host)] } })(opts);
      };
    })());
  const w = plan.tracker.windows ?? {};
  const adapter = new WindowsAdapter({
    connect,
    disks: plan.disks.map((d) => ({ id: d.id, serial: d.id })),
    ...(w.checkpointCommand ? { checkpointCommand: w.checkpointCommand } : {}),
    ...(w.epochIdPattern ? { epochIdPattern: w.epochIdPattern } : {}),
    hibernation: manifest.options?.hibernation === true,
  });
  const g = manifest.guest ?? {};
  const build = [g.caption, g.build].filter((x) => typeof x === 'string' && x).join(' ') || `Windows (${manifest.options?.edition ?? 'unknown edition'})`;
  return {
    vmSpec: spec,
    adapter,
    os: { family: 'windows', build },
    vmStarted() {},
    restarting() {},
  };
}
