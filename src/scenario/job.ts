/**
 * One job: a scenario run once on the machine where QEMU runs. Boots the guest, drives the steps,
 * keeps the epoch protocol (guest checkpoint first, then pause + external snapshot + resume),
 * verifies each epoch offline next to the images, and returns everything the run record needs.
 *
 * The same function runs in-process for the local host and behind `cbt-harness job run` on a
 * remote host (ssh, docker), so QMP, the guest's SSH and the images never leave that host.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { defaultProviders } from '../cbt/index.ts';
import { buildLinuxRef, linuxRefImageFrom, connectLinuxRef, LinuxRefAdapter, linuxRefVmSpec, planWrites, GuestError, type GuestDisk, type GuestHostKey, type GuestOperation, type LinuxRefManifest } from '../guest/index.ts';
import { epochRecord, clip, type AccelInfo, type EpochRecord, type GuestInfo, type JobArtifacts, type JobStatus, type StepRecord, type TimelineEvent } from '../report/index.ts';
import { generateKeyPair } from '../ssh/index.ts';
import { startVm, VmError, type RunningVm, type VmSpec } from '../vm/index.ts';
import { acceptable, type Verdict } from '../verify/index.ts';
import { StepError, JobInfrastructureError } from './errors.ts';
import { parseScenario } from './loader.ts';
import { verifyImages } from './oracle.ts';
import { deriveSeed } from './seeds.ts';
import { parseSize } from './units.ts';
import type { DiskSpec, Scenario, Step } from './types.ts';

/** Bumped whenever JobSpec or JobOutcome change meaning: a host running another harness refuses the job. */
export const JOB_SPEC_VERSION = 2;

export interface JobSpec {
  /** JOB_SPEC_VERSION of the scheduling harness (absent: this process made it). */
  version?: number;
  jobId: string;
  runId: string;
  /** The scenario file's path (for messages) and its text (a remote host needs nothing else). */
  scenarioFile: string;
  scenarioText: string;
  /** The job's seed (derived from the run seed, the scenario and the repeat). */
  seed: number;
  repeat: number;
  /** Created if absent; holds images, console logs and the timeline. */
  workDir: string;
  /** @default 'auto' */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Keep the qcow2 images after the job (they can be large). @default false */
  keepImages?: boolean;
  /** Guest image cache folder. @default the image module's default */
  imageCacheDir?: string;
  /** Acceptable verdicts for every verify, overriding the scenario's (a run config's matrix entry). */
  expect?: Verdict[];
  /** A prebuilt linux-ref image staged on this host: the folder holding its files, and its manifest. Skips the build. */
  stagedImage?: { dir: string; manifest: LinuxRefManifest };
}

export interface JobObserver {
  event?(e: TimelineEvent): void;
  step?(s: StepRecord): void | Promise<void>;
  epoch?(e: EpochRecord): void | Promise<void>;
}

export interface JobOutcome {
  jobId: string;
  status: JobStatus;
  error?: string;
  /** The failure was the infrastructure's (VM did not boot…): the scheduler may retry elsewhere. */
  infrastructure?: boolean;
  accel?: AccelInfo;
  guest: GuestInfo;
  steps: StepRecord[];
  epochs: EpochRecord[];
  timeline: TimelineEvent[];
  artifacts: JobArtifacts;
  startedAt: string;
  endedAt: string;
  durationMs: number;
}

export { StepError, JobInfrastructureError } from './errors.ts';

const META_MIB = 64;
const MiB = 1024 * 1024;

interface DiskRuntime {
  spec: DiskSpec;
  guest: GuestDisk;
  /** What the guest can do with it now. */
  plugged: boolean;
  online: boolean;
  enabled: boolean;
}

interface OpenEpoch {
  index: number;
  disk: string;
  base: string;
  /** dm-era era at the checkpoint, or the qemu bitmap's name. */
  id: string;
  startedAt: string;
}

/** Guest operations a step needs from the adapter (checked before the VM starts). */
function neededOps(steps: Iterable<Step>, tracker: string): Set<string> {
  const ops = new Set<string>();
  for (const s of steps) {
    if (s.kind === 'checkpoint' && tracker !== 'qemu-bitmap') ops.add('checkpoint');
    if (['write', 'fio', 'reboot', 'shutdown', 'offline', 'online', 'disable', 'enable', 'hibernate'].includes(s.kind)) ops.add(s.kind);
  }
  return ops;
}

function* allSteps(steps: readonly Step[], path = ''): Generator<{ step: Step; path: string }> {
  for (const [i, s] of steps.entries()) {
    const p = `${path}${i}`;
    if (s.kind === 'repeat') for (let k = 0; k < s.times; k++) yield* allSteps(s.steps, `${p}.${k}.`);
    else yield { step: s, path: p };
  }
}

function stepArgs(s: Step): Record<string, unknown> {
  const { allowFailure: _a, source: _s, kind: _k, ...rest } = s as Step & Record<string, unknown>;
  return rest;
}

function iso(t = Date.now()): string {
  return new Date(t).toISOString();
}

export class JobRunner {
  readonly spec: JobSpec;
  readonly scenario: Scenario;
  readonly #observer: JobObserver;
  readonly #signal: AbortSignal | undefined;
  readonly #timeline: TimelineEvent[] = [];
  readonly #steps: StepRecord[] = [];
  readonly #epochs: EpochRecord[] = [];
  readonly #disks = new Map<string, DiskRuntime>();
  readonly #open = new Map<string, OpenEpoch>();
  #epochCounter = 0;
  #vm: RunningVm | null = null;
  #vmSpec: VmSpec | null = null;
  #adapter: LinuxRefAdapter | null = null;
  #auth: { privateKey: string; hostKey: GuestHostKey } | null = null;
  #consoleMark = 0;
  #boot = 0;
  #accel: AccelInfo | undefined;
  #kernel = 'unknown';
  #logDir: string;
  #offQmp: (() => void) | null = null;
  /** qemu-bitmap: QEMU exited cleanly (storing the bitmaps) since the epoch began. */
  #cleanExitSinceEpoch = false;
  /** The running QEMU was started by a power cut's restart (the killed one never stored its bitmaps). */
  #sessionFromPowercut = false;
  /** Every image file this job created (start images and snapshot overlays), for clean-up. */
  readonly #files = new Set<string>();

  constructor(spec: JobSpec, observer: JobObserver = {}, signal?: AbortSignal) {
    this.spec = spec;
    this.scenario = parseScenario(spec.scenarioText, spec.scenarioFile);
    this.#observer = observer;
    this.#signal = signal;
    this.#logDir = join(spec.workDir, 'logs');
  }

  #event(e: TimelineEvent): void {
    this.#timeline.push(e);
    this.#observer.event?.(e);
  }

  #note(message: string): void {
    this.#event({ at: iso(), kind: 'note', message });
  }

  get #tracker(): string {
    return this.scenario.tracker;
  }

  /** Checks what can be checked before a VM starts: guest, tracker, operations. */
  precheck(): void {
    const s = this.scenario;
    if (s.guest !== 'linux-ref') {
      throw new StepError(`guest \`${s.guest}\` is not in this host's image catalog (built in: linux-ref; Windows images are built with \`cbt-harness image build windows\`)`);
    }
    if (s.tracker !== 'dm-era' && s.tracker !== 'qemu-bitmap') {
      throw new StepError(`tracker \`${s.tracker}\` cannot run on the linux-ref guest (it tracks with dm-era or QEMU's persistent bitmaps; cbtf needs a Windows guest with the driver)`);
    }
    const ops = neededOps((function* (st) {
      for (const x of allSteps(st)) yield x.step;
    })(s.steps), s.tracker);
    const supported = LinuxRefAdapter.operations(true);
    const missing = [...ops].filter((o) => !supported.has(o as GuestOperation));
    if (missing.length) throw new GuestError('unsupported', `The linux-ref guest adapter does not support ${missing.map((m) => `\`${m}\``).join(', ')} (used by ${s.file})`, { os: 'linux-ref', operation: missing.join(',') });
    for (const { step } of allSteps(s.steps)) {
      if (step.kind === 'unplug' && step.mode === 'surprise') {
        const d = s.disks.find((x) => x.id === step.disk);
        if (d && d.bus !== 'virtio-scsi') throw new StepError(`${step.source.file}:${step.source.line}: surprise removal needs a virtio-scsi disk; ${d.id} is on ${d.bus}`);
      }
    }
  }

  async run(): Promise<JobOutcome> {
    const started = Date.now();
    let status: JobStatus = 'passed';
    let error: string | undefined;
    let infrastructure = false;
    try {
      this.precheck();
      await mkdir(this.#logDir, { recursive: true });
      await this.#prepare();
      await this.#boot1();
      for (const { step, path } of allSteps(this.scenario.steps)) {
        this.#signal?.throwIfAborted();
        const ok = await this.#runStep(step, path);
        if (!ok && !step.allowFailure) {
          status = 'failed';
          error = this.#steps.at(-1)?.error;
          break;
        }
      }
    } catch (e) {
      infrastructure = (e as { infrastructure?: unknown })?.infrastructure === true;
      status = infrastructure ? 'infra-error' : 'failed';
      error = clip(`${(e as Error)?.name ?? 'Error'}: ${(e as Error)?.message ?? String(e)}`);
    } finally {
      await this.#teardown().catch((e) => this.#note(`teardown: ${(e as Error).message}`));
    }
    if (status === 'passed' && this.#epochs.some((e) => !e.acceptable)) status = 'failed';
    const timelinePath = join(this.spec.workDir, 'timeline.json');
    await writeFile(timelinePath, `${JSON.stringify(this.#timeline)}\n`).catch(() => undefined);
    const ended = Date.now();
    return {
      jobId: this.spec.jobId,
      status,
      ...(error ? { error } : {}),
      ...(infrastructure ? { infrastructure } : {}),
      accel: this.#accel,
      guest: { name: this.scenario.guest, os: { family: 'linux', build: `linux-ref ${this.#kernel}`, kernel: this.#kernel }, tracker: { name: this.#tracker, decoder: this.#tracker, version: this.#tracker === 'dm-era' ? `dm-era (kernel ${this.#kernel})` : 'qemu 7.2 persistent bitmap' } },
      steps: this.#steps,
      epochs: this.#epochs,
      timeline: this.#timeline,
      artifacts: { serialLog: 'logs', timeline: 'timeline.json' },
      startedAt: iso(started),
      endedAt: iso(ended),
      durationMs: ended - started,
    };
  }

  async #prepare(): Promise<void> {
    const s = this.scenario;
    let image;
    try {
      image = this.spec.stagedImage ? linuxRefImageFrom(this.spec.stagedImage.dir, this.spec.stagedImage.manifest) : await buildLinuxRef({ cacheDir: this.spec.imageCacheDir, signal: this.#signal });
    } catch (e) {
      throw new JobInfrastructureError(`the linux-ref image could not be built: ${(e as Error).message}`, { cause: e });
    }
    this.#kernel = image.kernelRelease;
    const keys = await generateKeyPair('ed25519', { comment: `cbt-${this.spec.runId}` });
    const disks = [];
    for (const d of s.disks) {
      const path = join(this.spec.workDir, `${d.id}.qcow2`);
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', path, String(d.size)], { cancelSignal: this.#signal });
      disks.push({ id: d.id, path, bus: d.bus, format: 'qcow2' as const });
      this.#files.add(path);
      this.#disks.set(d.id, { spec: d, guest: { id: d.id, serial: d.id }, plugged: true, online: true, enabled: true });
    }
    const opt = s.trackerOptions;
    // The loader checked both options with parseSize.
    const blockSize = opt.blockSize === undefined ? 65536 : parseSize(opt.blockSize as string | number)!;
    const usesFio = [...allSteps(s.steps)].some((x) => x.step.kind === 'fio');
    const { spec, hostKey } = linuxRefVmSpec(image, {
      runId: this.spec.runId,
      vmId: this.spec.jobId,
      authorizedKeys: [keys.publicKey],
      disks,
      untracked: this.#tracker === 'dm-era' ? [] : disks.map((d) => d.id),
      eraBlockSectors: blockSize / 512,
      metadataMiB: META_MIB,
      variant: opt.metadataFault === 'drop-writes' ? 'drop_writes' : 'normal',
      tools: usesFio,
      accel: this.spec.accel ?? 'auto',
      logDir: this.#logDir,
    });
    this.#vmSpec = spec;
    this.#auth = { privateKey: keys.privateKey, hostKey };
    this.#adapter = new LinuxRefAdapter({
      fio: usesFio,
      connect: async ({ signal }) => {
        const vm = this.#requireVm('connect to the guest');
        return connectLinuxRef(vm, this.#auth!, { signal: signal ?? this.#signal, sinceConsoleOffset: this.#consoleMark, timeoutMs: 180_000 });
      },
      beforeRestart: () => {
        this.#consoleMark = this.#vm?.console.end ?? 0;
      },
    });
    this.#adapter.onCommand((r) => this.#event({ at: iso(r.startedAt), kind: 'guest', command: clip(r.command, 512), exitCode: r.exitCode, durationMs: r.durationMs, ...(r.exitCode ? { stderr: clip(r.stderr ?? '', 1024, 'tail') } : {}) }));
  }

  #requireVm(what: string): RunningVm {
    if (!this.#vm || !this.#vm.running) throw new StepError(`cannot ${what}: the VM is not running`);
    return this.#vm;
  }

  #watch(vm: RunningVm): void {
    this.#offQmp?.();
    this.#offQmp = vm.qmp.onEvent((e) => this.#event({ at: iso(e.receivedAt), kind: 'qmp', event: e.event, ...(Object.keys(e.data).length ? { data: e.data } : {}) }));
  }

  /** Start (or restart) QEMU on the disks' current tops and wait for the guest. */
  async #start(vmPromise?: Promise<RunningVm>): Promise<void> {
    this.#boot++;
    let vm: RunningVm;
    try {
      if (vmPromise) vm = await vmPromise;
      else {
        const spec = { ...this.#vmSpec!, disks: this.#vmSpec!.disks?.map((d) => ({ ...d, path: this.#currentTop(d.id) ?? d.path })) };
        vm = await startVm(spec, { signal: this.#signal, boot: this.#boot, accelChoice: this.#vm?.accel });
      }
    } catch (e) {
      throw new JobInfrastructureError(`QEMU did not start: ${(e as Error).message}`, { cause: e });
    }
    this.#vm = vm;
    this.#vmSpec = { ...this.#vmSpec!, disks: this.#vmSpec!.disks?.map((d) => ({ ...d, path: vm.disk(d.id).topPath })) };
    this.#accel ??= { used: vm.accel.accel, requested: vm.accel.requested, reason: vm.accel.reason };
    this.#watch(vm);
    this.#consoleMark = 0;
    await this.#waitGuest();
  }

  #lastTops = new Map<string, string>();

  #currentTop(id: string): string | undefined {
    return this.#lastTops.get(id);
  }

  async #waitGuest(): Promise<void> {
    const a = this.#adapter!;
    await a.close();
    try {
      await a.run('cbt-ctl wait-ready 180', 'probe', { timeoutMs: 200_000 });
    } catch (e) {
      if (this.#boot === 1) throw new JobInfrastructureError(`the guest did not come up: ${(e as Error).message}`, { cause: e });
      throw e;
    }
  }

  async #boot1(): Promise<void> {
    await this.#start();
    this.#note(`guest up (accel ${this.#accel?.used}: ${this.#accel?.reason})`);
  }

  #rememberTops(): void {
    if (this.#vm) for (const d of this.#vm.disks) this.#lastTops.set(d.spec.id, d.topPath);
  }

  async #vmExited(timeoutMs: number): Promise<void> {
    const vm = this.#vm;
    if (!vm) return;
    this.#rememberTops();
    // The guest powers itself off: wait for QEMU to exit on its own, then force.
    const r = await vm.stop({ graceful: async () => vm.exited, timeoutMs });
    if (r.shutdown === 'clean') this.#cleanExitSinceEpoch = true;
    this.#event({ at: iso(), kind: 'note', message: `QEMU ended (${r.shutdown}, via ${r.via})` });
    this.#offQmp?.();
    this.#offQmp = null;
    await this.#adapter?.close();
  }

  #disk(id: string): DiskRuntime {
    const d = this.#disks.get(id);
    if (!d) throw new StepError(`no disk \`${id}\``);
    return d;
  }

  #targets(disk: string | null): DiskRuntime[] {
    return disk ? [this.#disk(disk)] : [...this.#disks.values()];
  }

  /**
   * Refuses what makes no sense on the disk's state. I/O (`io: true`) to an offline volume or a
   * disabled disk is sent to the guest anyway: whether the guest refuses it (and how) is what a
   * scenario with writes while offline tests. A disk that is not in the VM has nothing to address.
   */
  #usable(d: DiskRuntime, what: string, { io = false }: { io?: boolean } = {}): void {
    if (!d.plugged) throw new StepError(`cannot ${what} ${d.spec.id}: the disk is unplugged`);
    if (io) return;
    if (!d.enabled) throw new StepError(`cannot ${what} ${d.spec.id}: the disk is disabled in the guest`);
    if (!d.online) throw new StepError(`cannot ${what} ${d.spec.id}: the volume is offline`);
  }

  async #runStep(step: Step, path: string): Promise<boolean> {
    const index = this.#steps.length;
    const t0 = Date.now();
    this.#event({ at: iso(t0), kind: 'step', step: index, stepKind: step.kind, phase: 'begin' });
    let ok = true;
    let error: string | undefined;
    try {
      await this.#execute(step, path);
    } catch (e) {
      if ((e as { infrastructure?: unknown })?.infrastructure === true || this.#signal?.aborted) throw e;
      ok = false;
      const where = step.source.line ? `${step.source.file}:${step.source.line}: ` : '';
      error = clip(`${where}${step.source.field} (${step.kind}): ${(e as Error)?.message ?? String(e)}`);
    }
    const rec: StepRecord = { index, kind: step.kind, args: stepArgs(step), startedAt: iso(t0), durationMs: Date.now() - t0, ok, ...(error ? { error } : {}), ...(step.allowFailure ? { allowFailure: true } : {}) };
    this.#steps.push(rec);
    this.#event({ at: iso(), kind: 'step', step: index, stepKind: step.kind, phase: 'end', ok });
    if (error && step.allowFailure) this.#note(`allowed failure: ${error}`);
    await this.#observer.step?.(rec);
    return ok;
  }

  async #execute(step: Step, path: string): Promise<void> {
    const a = this.#adapter!;
    switch (step.kind) {
      case 'checkpoint':
        return this.#checkpoint(step.disk);
      case 'write': {
        const d = this.#disk(step.disk);
        this.#usable(d, 'write to', { io: true });
        this.#requireVm('write');
        const space = await a.writeSpace(d.guest);
        const align = Math.max(512, step.align);
        const writes = planWrites({ seed: step.seed ?? deriveSeed(this.spec.seed, 'write', path), count: step.count, sizeMin: step.size.min, sizeMax: step.size.max, deviceSize: space.size, align });
        await a.write({ disk: d.guest.serial, seed: step.seed ?? 0, writes });
        return;
      }
      case 'fio': {
        const d = this.#disk(step.disk);
        this.#usable(d, 'run fio on', { io: true });
        this.#requireVm('run fio');
        await a.fio({ disk: d.guest.serial, rw: step.rw, bs: step.bs, size: step.size, runtimeSec: Math.max(1, Math.round(step.runtimeMs / 1000)), seed: step.seed ?? deriveSeed(this.spec.seed, 'fio', path) % 2 ** 31 });
        return;
      }
      case 'reset': {
        const vm = this.#requireVm('reset');
        this.#event({ at: iso(), kind: 'fault', fault: 'reset', detail: 'QMP system_reset' });
        this.#consoleMark = vm.console.end;
        await vm.reset();
        await this.#waitGuest();
        this.#restoreAfterBoot();
        return;
      }
      case 'powercut': {
        const vm = this.#requireVm('cut the power');
        this.#event({ at: iso(), kind: 'fault', fault: 'powercut', detail: 'QEMU killed (SIGKILL), then started again on the same disks' });
        this.#rememberTops();
        this.#offQmp?.();
        await this.#adapter!.close();
        await this.#start(vm.powerCut({ signal: this.#signal }));
        this.#sessionFromPowercut = true;
        this.#restoreAfterBoot();
        return;
      }
      case 'reboot':
        this.#requireVm('reboot');
        await a.reboot({ signal: this.#signal });
        this.#restoreAfterBoot();
        return;
      case 'shutdown': {
        this.#requireVm('shut down');
        await a.shutdown({ signal: this.#signal });
        await this.#vmExited(60_000);
        return;
      }
      case 'powerbutton': {
        const vm = this.#requireVm('press the power button');
        const action = await a.powerButtonAction();
        this.#event({ at: iso(), kind: 'fault', fault: 'powerbutton', detail: `QMP system_powerdown; the guest will ${action.action}` });
        await vm.powerButton();
        await this.#vmExited(90_000);
        return;
      }
      case 'start':
        if (this.#vm?.running) throw new StepError('cannot start: the VM is already running');
        await this.#start();
        this.#sessionFromPowercut = false;
        this.#restoreAfterBoot();
        return;
      case 'offline':
      case 'online':
      case 'disable':
      case 'enable': {
        const d = this.#disk(step.disk);
        this.#requireVm(step.kind);
        if (!d.plugged) throw new StepError(`cannot ${step.kind} ${d.spec.id}: the disk is unplugged`);
        if (step.kind === 'offline' && !d.online) throw new StepError(`${d.spec.id} is already offline`);
        if (step.kind === 'online' && d.online) throw new StepError(`${d.spec.id} is already online`);
        if (step.kind === 'disable' && !d.enabled) throw new StepError(`${d.spec.id} is already disabled`);
        if (step.kind === 'enable' && d.enabled) throw new StepError(`${d.spec.id} is already enabled`);
        await a[step.kind](d.guest, { signal: this.#signal });
        if (step.kind === 'offline') d.online = false;
        if (step.kind === 'online') d.online = true;
        if (step.kind === 'disable') d.enabled = false;
        if (step.kind === 'enable') {
          d.enabled = true;
          d.online = true;
        }
        return;
      }
      case 'unplug': {
        const d = this.#disk(step.disk);
        const vm = this.#requireVm('unplug');
        if (!d.plugged) throw new StepError(`${d.spec.id} is already unplugged`);
        this.#event({ at: iso(), kind: 'fault', fault: `unplug-${step.mode}`, detail: d.spec.id });
        const r = step.mode === 'eject' ? await vm.eject(d.spec.id, { timeoutMs: step.timeoutMs, signal: this.#signal }) : await vm.surpriseRemove(d.spec.id, { timeoutMs: step.timeoutMs, signal: this.#signal });
        this.#note(`unplug ${step.mode} of ${d.spec.id}: ${r.outcome} after ${r.waitedMs} ms`);
        if (r.outcome === 'vetoed') throw new StepError(`the guest did not release ${d.spec.id} within ${step.timeoutMs} ms (eject vetoed)`);
        d.plugged = false;
        return;
      }
      case 'plug': {
        const d = this.#disk(step.disk);
        const vm = this.#requireVm('plug');
        if (d.plugged) throw new StepError(`${d.spec.id} is plugged already`);
        await vm.replug(d.spec.id, { signal: this.#signal });
        d.plugged = true;
        // The guest sees a new device: tracking is set up again on the existing metadata.
        if (this.#tracker === 'dm-era') {
          await a.run(`cbt-ctl offline ${d.guest.serial} || true`, 'offline', { signal: this.#signal });
          await a.online(d.guest, { signal: this.#signal });
        }
        d.online = true;
        d.enabled = true;
        return;
      }
      case 'sleep':
        await sleep(step.ms, undefined, { signal: this.#signal });
        return;
      case 'hibernate':
        throw new StepError('the linux-ref guest does not hibernate');
      case 'verify':
        return this.#verify(step.disk, step.expect);
      case 'repeat':
        throw new StepError('internal: repeat steps are unrolled');
    }
  }

  /** After a reset or power cut the guest set tracking up again on every disk. */
  #restoreAfterBoot(): void {
    for (const d of this.#disks.values()) {
      d.online = d.plugged;
      d.enabled = d.plugged;
    }
  }

  /** The epoch protocol: 1. guest checkpoint; 2. pause, external snapshot, (bitmap), resume. */
  async #checkpoint(diskId: string | null): Promise<void> {
    const vm = this.#requireVm('checkpoint');
    const targets = this.#targets(diskId);
    const ids = new Map<string, string>();
    const index = this.#epochCounter++;
    this.#event({ at: iso(), kind: 'epoch', epoch: index, phase: 'begin' });
    if (this.#tracker === 'dm-era') {
      for (const d of targets) {
        this.#usable(d, 'checkpoint');
        const { epochId } = await this.#adapter!.checkpoint(d.guest, { signal: this.#signal });
        ids.set(d.spec.id, epochId);
      }
    }
    await vm.pause();
    try {
      for (const d of targets) {
        const snap = await vm.snapshot(d.spec.id, { signal: this.#signal });
        this.#files.add(snap.overlay);
        let id = ids.get(d.spec.id) ?? '';
        if (this.#tracker === 'qemu-bitmap') {
          id = `cbt-epoch-${index}`;
          const g = this.scenario.trackerOptions.granularity;
          await vm.addDirtyBitmap(d.spec.id, id, { persistent: true, granularity: g === undefined ? 65536 : parseSize(g as string | number)! });
        }
        this.#open.set(d.spec.id, { index, disk: d.spec.id, base: snap.base, id, startedAt: iso() });
        this.#event({ at: iso(), kind: 'epoch', epoch: index, phase: 'snapshot' });
      }
    } finally {
      await vm.resume();
    }
    this.#rememberTops();
    this.#cleanExitSinceEpoch = false;
  }

  async #verify(diskId: string | null, expectOverride: Verdict[] | null): Promise<void> {
    const expect = this.spec.expect ?? expectOverride ?? this.scenario.expect;
    const targets = this.#targets(diskId).filter((d) => this.#open.has(d.spec.id));
    if (targets.length === 0) throw new StepError('verify before any checkpoint: no epoch is open');
    const running = this.#vm?.running ?? false;
    // QEMU stores persistent bitmaps when it exits, and marks them in_use while it has them open.
    // With QEMU running, the image tells the truth only when this QEMU is the restart after a
    // power cut and no clean exit stored the epoch's bitmap since (then it is absent or in_use).
    if (running && this.#tracker === 'qemu-bitmap' && !(this.#sessionFromPowercut && !this.#cleanExitSinceEpoch)) {
      throw new StepError('QEMU stores persistent bitmaps only when it exits: verify a qemu-bitmap scenario after shutdown or powerbutton (or right after a powercut)');
    }
    if (running) await this.#vm!.pause();
    this.#rememberTops();
    let failure: string | null = null;
    try {
      for (const d of targets) {
        const epoch = this.#open.get(d.spec.id)!;
        const top = this.#currentTop(d.spec.id)!;
        this.#event({ at: iso(), kind: 'epoch', epoch: epoch.index, phase: 'verify' });
        const t0 = Date.now();
        const options: Record<string, string> =
          this.#tracker === 'dm-era'
            ? { metadata: `0:${META_MIB * MiB}`, data: `${META_MIB * MiB}:${d.spec.size - META_MIB * MiB}`, since: epoch.id }
            : { name: epoch.id };
        const out = await verifyImages({ base: epoch.base, top, decoder: this.#tracker, options, providers: defaultProviders });
        const r = out.result;
        const rec = epochRecord(r, {
          index: epoch.index,
          id: epoch.id,
          base: epoch.base,
          top,
          expected: expect,
          volumeBlocks: Math.ceil(out.claim.volume.length / out.claim.granularity),
          extra: r.extra,
          changed: r.changed,
          truthGranularity: out.truth.granularity,
          startedAt: epoch.startedAt,
          verifiedAt: iso(),
          verifyMs: Date.now() - t0,
        });
        this.#epochs.push(rec);
        const ok = acceptable(r.verdict, expect);
        this.#event({ at: iso(), kind: 'verdict', epoch: epoch.index, verdict: r.verdict, acceptable: ok });
        await this.#observer.epoch?.(rec);
        if (!ok && !failure) failure = `epoch ${epoch.index} (${d.spec.id}): ${r.verdict}${r.reason ? ` (${r.reason})` : ''}, expected ${expect.join(' or ')}; ${r.missedBlocks} missed of ${r.changedBlocks} changed blocks`;
      }
    } finally {
      if (running) await this.#vm!.resume();
    }
    if (failure) throw new StepError(failure);
  }

  async #teardown(): Promise<void> {
    const vm = this.#vm;
    if (vm?.running) {
      this.#rememberTops();
      const r = await vm.stop({ graceful: async () => this.#adapter?.shutdown().catch(() => undefined), timeoutMs: 60_000 });
      this.#note(`VM stopped at the end (${r.shutdown}, via ${r.via})`);
    }
    this.#offQmp?.();
    await this.#adapter?.close();
    if (!this.spec.keepImages) for (const f of this.#files) await rm(f, { force: true });
  }
}

export async function runJob(spec: JobSpec, observer: JobObserver = {}, signal?: AbortSignal): Promise<JobOutcome> {
  if (spec.version !== undefined && spec.version !== JOB_SPEC_VERSION) {
    // An old worker image or staged harness: the job can run on another host, or after a rebuild.
    throw new JobInfrastructureError(`this host runs a harness with job spec version ${JOB_SPEC_VERSION}, the job needs ${spec.version}: rebuild the worker image (cbt-harness image build worker) or restage the harness`);
  }
  await mkdir(spec.workDir, { recursive: true });
  return new JobRunner(spec, observer, signal).run();
}

export { VmError };
