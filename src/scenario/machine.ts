/**
 * What the job runner knows of the VM and its disks between steps, and the rules that follow
 * from it: which steps make no sense now (the refusals the README promises), and how each step
 * changes the state once it succeeded. Pure: the runner asks `refusal(step)` before it acts and
 * calls `after(step, …)` when the step succeeded; nothing here touches a VM.
 */
import type { SessionFacts } from '../trackers/index.ts';
import type { DiskSpec, Step } from './types.ts';

export interface DiskState {
  readonly spec: DiskSpec;
  /** Attached to the VM (not hot-unplugged). */
  plugged: boolean;
  /** The volume is online in the guest. */
  online: boolean;
  /** The disk is enabled in the guest (not PnP-disabled). */
  enabled: boolean;
  /** Bytes now (the scenario's size until a `resize` grows it). */
  size: number;
  /** The tracker tracks it (checkpoints and verifies without a disk address only these). */
  readonly tracked: boolean;
}

export interface OpenEpoch {
  index: number;
  disk: string;
  /** The snapshot's base image (the epoch's start). */
  base: string;
  /** The tracker's epoch id (dm-era era, bitmap name, CBTF epoch). */
  id: string;
  startedAt: string;
}

/** What a step that ended the VM reported. */
export interface StepOutcome {
  /** shutdown / powerbutton / hibernate: QEMU exited on its own after the guest powered off. */
  cleanExit?: boolean;
}

/** A tracker's rule for verifying while QEMU runs (`Tracker.verifyRefusal`). */
export type VerifyRule = (session: SessionFacts) => string | null;

const DISK_STEPS = new Set(['write', 'fio', 'files', 'resize', 'offline', 'online', 'disable', 'enable', 'unplug', 'plug']);
const NEEDS_VM: Record<string, string> = {
  checkpoint: 'checkpoint',
  write: 'write',
  fio: 'run fio',
  reset: 'reset',
  powercut: 'cut the power',
  reboot: 'reboot',
  shutdown: 'shut down',
  powerbutton: 'press the power button',
  hibernate: 'hibernate',
  offline: 'offline',
  online: 'online',
  disable: 'disable',
  enable: 'enable',
  unplug: 'unplug',
  plug: 'plug',
  files: 'run a file workload',
  resize: 'resize a disk',
};

export class JobState {
  readonly #disks = new Map<string, DiskState>();
  readonly #open = new Map<string, OpenEpoch>();
  readonly #verifyRule: VerifyRule;
  #running = false;
  #epochs = 0;
  #sessionFromPowercut = false;
  #cleanExitSinceEpoch = false;
  #powercutSinceEpoch = false;

  /** `tracked`: the disks the tracker tracks (default: all). */
  constructor(disks: readonly DiskSpec[], verifyRule: VerifyRule = () => null, tracked?: readonly string[]) {
    for (const d of disks) this.#disks.set(d.id, { spec: d, plugged: true, online: true, enabled: true, size: d.size, tracked: tracked === undefined || tracked.includes(d.id) });
    this.#verifyRule = verifyRule;
  }

  get running(): boolean {
    return this.#running;
  }

  get disks(): ReadonlyArray<Readonly<DiskState>> {
    return [...this.#disks.values()];
  }

  disk(id: string): Readonly<DiskState> {
    const d = this.#disks.get(id);
    if (!d) throw new RangeError(`no disk \`${id}\``);
    return d;
  }

  /** The disks a checkpoint or verify addresses: one, or every tracked disk when it names none. */
  targets(disk: string | null): ReadonlyArray<Readonly<DiskState>> {
    return disk === null ? this.disks.filter((d) => d.tracked) : [this.disk(disk)];
  }

  /** The open epoch of a disk (the last checkpoint's). */
  epoch(disk: string): OpenEpoch | undefined {
    return this.#open.get(disk);
  }

  session(): SessionFacts {
    return { running: this.#running, sessionFromPowercut: this.#sessionFromPowercut, cleanExitSinceEpoch: this.#cleanExitSinceEpoch, powercutSinceEpoch: this.#powercutSinceEpoch };
  }

  /** The next epoch's index (0, 1, …), counted over the whole job. */
  nextEpochIndex(): number {
    return this.#epochs++;
  }

  /**
   * Why `step` cannot run now, or null. I/O (write, fio) to an offline volume or a disabled disk
   * is sent to the guest anyway: whether the guest refuses it (and how) is what a scenario with
   * writes while offline tests. A disk that is not in the VM has nothing to address.
   */
  refusal(step: Step): string | null {
    const what = NEEDS_VM[step.kind];
    if (what && !this.#running) return `cannot ${what}: the VM is not running`;
    if (DISK_STEPS.has(step.kind)) {
      const id = (step as { disk: string }).disk;
      const d = this.#disks.get(id);
      if (!d) return `no disk \`${id}\``;
      switch (step.kind) {
        case 'write':
          return d.plugged ? null : `cannot write to ${id}: the disk is unplugged`;
        case 'fio':
          return d.plugged ? null : `cannot run fio on ${id}: the disk is unplugged`;
        case 'files':
          if (!d.plugged) return `cannot run a file workload on ${id}: the disk is unplugged`;
          if (!d.online || !d.enabled) return `cannot run a file workload on ${(step as { volume: string }).volume}: its file system is not mounted (${id} is ${d.online ? 'disabled' : 'offline'})`;
          return null;
        case 'resize':
          return d.plugged ? null : `cannot resize ${id}: the disk is unplugged`;
        case 'offline':
        case 'online':
        case 'disable':
        case 'enable':
          if (!d.plugged) return `cannot ${step.kind} ${id}: the disk is unplugged`;
          if (step.kind === 'offline' && !d.online) return `${id} is already offline`;
          if (step.kind === 'online' && d.online) return `${id} is already online`;
          if (step.kind === 'disable' && !d.enabled) return `${id} is already disabled`;
          if (step.kind === 'enable' && d.enabled) return `${id} is already enabled`;
          return null;
        case 'unplug':
          return d.plugged ? null : `${id} is already unplugged`;
        case 'plug':
          return d.plugged ? `${id} is plugged already` : null;
      }
    }
    switch (step.kind) {
      case 'start':
        return this.#running ? 'cannot start: the VM is already running' : null;
      case 'checkpoint': {
        if (step.disk !== null && !this.#disks.has(step.disk)) return `no disk \`${step.disk}\``;
        for (const d of this.targets(step.disk)) {
          if (!d.tracked) return `cannot checkpoint ${d.spec.id}: the tracker does not track it`;
          if (!d.plugged) return `cannot checkpoint ${d.spec.id}: the disk is unplugged`;
          if (!d.enabled) return `cannot checkpoint ${d.spec.id}: the disk is disabled in the guest`;
          if (!d.online) return `cannot checkpoint ${d.spec.id}: the volume is offline`;
        }
        return null;
      }
      case 'verify': {
        if (step.disk !== null && !this.#disks.has(step.disk)) return `no disk \`${step.disk}\``;
        if (!this.targets(step.disk).some((d) => this.#open.has(d.spec.id))) return 'verify before any checkpoint: no epoch is open';
        return this.#verifyRule(this.session());
      }
      default:
        return null;
    }
  }

  /** The disks `verify` reads: those addressed that have an open epoch. */
  verifyTargets(disk: string | null): ReadonlyArray<Readonly<DiskState>> {
    return this.targets(disk).filter((d) => this.#open.has(d.spec.id));
  }

  /** The first boot of the job reached the guest. */
  booted(): void {
    this.#running = true;
  }

  /** The VM stopped outside a step (teardown, a failed boot). */
  stopped(): void {
    this.#running = false;
  }

  /** An epoch began on a disk (at its snapshot). */
  epochOpened(e: OpenEpoch): void {
    this.#open.set(e.disk, e);
    this.#cleanExitSinceEpoch = false;
    this.#powercutSinceEpoch = false;
  }

  /** `step` succeeded: apply what it changed. */
  after(step: Step, outcome: StepOutcome = {}): void {
    const disk = DISK_STEPS.has(step.kind) ? this.#disks.get((step as { disk: string }).disk) : undefined;
    switch (step.kind) {
      case 'offline':
        disk!.online = false;
        return;
      case 'online':
        disk!.online = true;
        return;
      case 'disable':
        disk!.enabled = false;
        return;
      case 'enable':
        disk!.enabled = true;
        disk!.online = true;
        return;
      case 'unplug':
        disk!.plugged = false;
        return;
      case 'resize':
        disk!.size = (step as { size: number }).size;
        return;
      case 'plug':
        // The guest sees a new device and sets tracking up again on it.
        disk!.plugged = true;
        disk!.online = true;
        disk!.enabled = true;
        return;
      case 'powercut':
        this.#sessionFromPowercut = true;
        this.#powercutSinceEpoch = true;
        this.#restoreAfterBoot();
        return;
      case 'start':
        this.#running = true;
        this.#sessionFromPowercut = false;
        this.#restoreAfterBoot();
        return;
      case 'reset':
      case 'reboot':
        this.#restoreAfterBoot();
        return;
      case 'shutdown':
      case 'powerbutton':
      case 'hibernate':
        this.#running = false;
        if (outcome.cleanExit) this.#cleanExitSinceEpoch = true;
        return;
      default:
        return;
    }
  }

  /** After a boot the guest set tracking up again on every disk it has. */
  #restoreAfterBoot(): void {
    for (const d of this.#disks.values()) {
      d.online = d.plugged;
      d.enabled = d.plugged;
    }
  }
}
