/**
 * One job: a scenario run once on the machine where QEMU runs. Boots the guest, drives the steps,
 * keeps the epoch protocol (guest checkpoint first, then pause + external snapshot + the
 * tracker's host side + resume), verifies each epoch offline next to the images, and returns
 * everything the run record needs.
 *
 * The runner talks to the guest only through `GuestAdapter` and to the tracker only through
 * `Tracker` (src/trackers/): it never names either. What the VM and disks are doing, and which
 * steps that rules out, is `JobState` (machine.ts); provisioning is guests.ts and disks.ts, the
 * record's parts outcome.ts.
 *
 * The same function runs in-process for the local host and behind `cbt-harness job run` on a
 * remote host (ssh, docker), so QMP, the guest's SSH and the images never leave that host.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultProviders } from '../cbt/index.ts';
import { GuestError, planFiles, planWrites, type GuestAdapter, type GuestDisk } from '../guest/index.ts';
import { clip, type AccelInfo, type EpochRecord, type JobStatus, type StepRecord, type TimelineEvent } from '../report/index.ts';
import { trackerFor, type Tracker, type VerifyPlan } from '../trackers/index.ts';
import { startVm, VmError, type RunningVm, type VmSpec } from '../vm/index.ts';
import { acceptable, type Verdict } from '../verify/index.ts';
import { createDataDisks } from './disks.ts';
import { JobInfrastructureError, StepError } from './errors.ts';
import { guestOperations, prepareGuest, resolveGuest, type PreparedGuest } from './guests.ts';
import { JOB_SPEC_VERSION, type JobHooks, type JobObserver, type JobOutcome, type JobSpec } from './job-spec.ts';
import { parseScenario } from './loader.ts';
import { JobState, type StepOutcome } from './machine.ts';
import { verifyImages } from './oracle.ts';
import { createLogger } from '../util/log.ts';
import { epochOf, guestInfo } from './outcome.ts';
import { deriveSeed } from './seeds.ts';
import { allSteps, neededOperations, stepArgs } from './steps.ts';
import type { Scenario, Step } from './types.ts';

/** Every timeline event of every job, as it happens (`DEBUG=cbt:job`). */
const log = createLogger('cbt:job');

export { StepError, JobInfrastructureError } from './errors.ts';
export { JOB_SPEC_VERSION, type JobHooks, type JobObserver, type JobOutcome, type JobSpec } from './job-spec.ts';

function iso(t = Date.now()): string {
  return new Date(t).toISOString();
}

const guestDisk = (id: string): GuestDisk => ({ id, serial: id });

export class JobRunner {
  readonly spec: JobSpec;
  readonly scenario: Scenario;
  readonly tracker: Tracker;
  readonly state: JobState;
  readonly #observer: JobObserver;
  readonly #hooks: JobHooks;
  readonly #signal: AbortSignal | undefined;
  #allStepsRan = false;
  readonly #timeline: TimelineEvent[] = [];
  readonly #steps: StepRecord[] = [];
  readonly #epochs: EpochRecord[] = [];
  #vm: RunningVm | null = null;
  #vmSpec: VmSpec | null = null;
  #guest: PreparedGuest | null = null;
  #boot = 0;
  #accel: AccelInfo | undefined;
  #qemuVersion: string | undefined;
  #lastPlan: VerifyPlan | undefined;
  readonly #logDir: string;
  #offQmp: (() => void) | null = null;
  /** Every image file this job created (start images and snapshot overlays), for clean-up. */
  readonly #files = new Set<string>();
  /** Each disk's top image as of the last time the VM was seen (QEMU moves it at each snapshot). */
  readonly #tops = new Map<string, string>();

  constructor(spec: JobSpec, observer: JobObserver = {}, signal?: AbortSignal, hooks: JobHooks = {}) {
    this.spec = spec;
    this.scenario = parseScenario(spec.scenarioText, spec.scenarioFile);
    // The loader accepted the name, so it is a built-in tracker or a plugin path.
    this.tracker = trackerFor(this.scenario.tracker)!;
    this.state = new JobState(this.scenario.disks, (s) => this.tracker.verifyRefusal(s), this.tracker.trackedDisks?.(this.scenario.trackerOptions, this.scenario.disks));
    this.#observer = observer;
    this.#hooks = hooks;
    this.#signal = signal;
    this.#logDir = join(spec.workDir, 'logs');
  }

  #event(event: TimelineEvent): void {
    // Whole milliseconds, as the run record keeps them: the timeline.json artifact and the record agree.
    const d = (event as { durationMs?: unknown }).durationMs;
    const e = typeof d === 'number' ? ({ ...event, durationMs: Math.round(d) } as TimelineEvent) : event;
    this.#timeline.push(e);
    const { at: _at, kind, ...fields } = e;
    log.debug(kind, { job: this.spec.jobId, ...fields });
    this.#observer.event?.(e);
  }

  #note(message: string): void {
    this.#event({ at: iso(), kind: 'note', message });
  }

  get #adapter(): GuestAdapter {
    if (!this.#guest) throw new StepError('internal: the guest is not prepared');
    return this.#guest.adapter;
  }

  /** Checks what can be checked before a VM starts: guest, tracker, operations, disk buses. */
  precheck(): void {
    const s = this.scenario;
    const t = this.tracker;
    const kind = resolveGuest(s.guest, this.spec.guests ?? {}).kind;
    if (!t.guests.includes(kind)) {
      throw new StepError(`tracker \`${t.name}\` cannot run on the ${kind} guest \`${s.guest}\` (it runs on: ${t.guests.join(', ')})`);
    }
    const setup = t.guestSetup(s.trackerOptions);
    const ops = neededOperations(s.steps, t.guestCheckpoint);
    const supported = guestOperations(s.guest, this.spec.guests ?? {}, setup, ops);
    const missing = [...ops].filter((o) => !supported.has(o));
    if (missing.length) throw new GuestError('unsupported', `The ${kind} guest adapter does not support ${missing.map((m) => `\`${m}\``).join(', ')} (used by ${s.file})`, { os: kind, operation: missing.join(',') });
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
      await this.#start();
      this.state.booted();
      this.#note(`guest up (accel ${this.#accel?.used}: ${this.#accel?.reason})`);
      for (const { step, path } of allSteps(this.scenario.steps)) {
        this.#signal?.throwIfAborted();
        const ok = await this.#runStep(step, path);
        if (!ok && !step.allowFailure) {
          status = 'failed';
          error = this.#steps.at(-1)?.error;
          break;
        }
      }
      this.#allStepsRan = status === 'passed';
    } catch (e) {
      infrastructure = (e as { infrastructure?: unknown })?.infrastructure === true;
      status = infrastructure ? 'infra-error' : 'failed';
      error = clip(`${(e as Error)?.name ?? 'Error'}: ${(e as Error)?.message ?? String(e)}`);
    } finally {
      await this.#teardown().catch((e) => this.#note(`teardown: ${(e as Error).message}`));
    }
    const cancelled = this.#signal?.aborted === true && (status !== 'passed' || !this.#allStepsRan);
    if (status === 'passed' && this.#epochs.some((e) => !e.acceptable)) status = 'failed';
    await writeFile(join(this.spec.workDir, 'timeline.json'), `${JSON.stringify(this.#timeline)}\n`).catch(() => undefined);
    const ended = Date.now();
    const kind = (() => {
      try {
        return resolveGuest(this.scenario.guest, this.spec.guests ?? {}).kind;
      } catch {
        return null;
      }
    })();
    const os = this.#guest?.os ?? (kind ? { family: kind === 'windows' ? ('windows' as const) : ('linux' as const), build: `${this.scenario.guest} (not booted)` } : null);
    return {
      jobId: this.spec.jobId,
      status,
      ...(error ? { error } : {}),
      ...(infrastructure ? { infrastructure } : {}),
      ...(cancelled ? { cancelled } : {}),
      accel: this.#accel,
      guest: guestInfo(this.scenario.guest, os, this.tracker, { qemu: this.#qemuVersion, plan: this.#lastPlan }),
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
    const disks = await createDataDisks(s.disks, this.spec.workDir, this.#signal);
    for (const d of disks) this.#files.add(d.path);
    const setup = this.tracker.guestSetup(s.trackerOptions);
    this.#guest = await prepareGuest({
      runId: this.spec.runId,
      vmId: this.spec.jobId,
      guest: s.guest,
      catalog: this.spec.guests ?? {},
      disks,
      layout: s.disks,
      tracker: setup,
      operations: neededOperations(s.steps, this.tracker.guestCheckpoint),
      accel: this.spec.accel ?? 'auto',
      workDir: this.spec.workDir,
      logDir: this.#logDir,
      imageCacheDir: this.spec.imageCacheDir,
      stagedImage: this.spec.stagedImage,
      signal: this.#signal,
      vm: () => this.#vm,
      connectWindows: this.#hooks.connectWindows,
    });
    for (const d of this.#guest.vmSpec.disks ?? []) if (d.format !== 'raw' && !d.readOnly) this.#files.add(d.path);
    this.#vmSpec = this.#guest.vmSpec;
    this.#adapter.onCommand((r) => this.#event({ at: iso(r.startedAt), kind: 'guest', command: clip(r.command, 512), exitCode: r.exitCode, durationMs: r.durationMs, ...(r.exitCode ? { stderr: clip(r.stderr ?? '', 1024, 'tail') } : {}) }));
  }

  #requireVm(): RunningVm {
    // JobState refused the step when the VM is not running; this is the runner's own check.
    if (!this.#vm || !this.#vm.running) throw new StepError('the VM is not running');
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
        const spec = { ...this.#vmSpec!, disks: this.#vmSpec!.disks?.map((d) => ({ ...d, path: this.#tops.get(d.id) ?? d.path })) };
        vm = await startVm(spec, { signal: this.#signal, boot: this.#boot, accelChoice: this.#vm?.accel, forceAccelProbe: this.spec.accelProbe === 'force' });
      }
    } catch (e) {
      throw new JobInfrastructureError(`QEMU did not start: ${(e as Error).message}`, { cause: e });
    }
    this.#vm = vm;
    this.#vmSpec = { ...this.#vmSpec!, disks: this.#vmSpec!.disks?.map((d) => ({ ...d, path: vm.disk(d.id).topPath })) };
    this.#accel ??= { used: vm.accel.accel, requested: vm.accel.requested, reason: vm.accel.reason };
    if (this.#qemuVersion === undefined) {
      const v = await vm.qmp.execute<{ qemu?: { major: number; minor: number; micro: number } }>('query-version').catch(() => null);
      if (v?.qemu) this.#qemuVersion = `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}`;
    }
    this.#watch(vm);
    this.#guest!.vmStarted(vm);
    await this.#waitGuest();
  }

  async #waitGuest(): Promise<void> {
    try {
      await this.#adapter.ready({ signal: this.#signal });
    } catch (e) {
      if (this.#boot === 1) throw new JobInfrastructureError(`the guest did not come up: ${(e as Error).message}`, { cause: e });
      throw e;
    }
  }

  #rememberTops(): void {
    if (this.#vm) for (const d of this.#vm.disks) this.#tops.set(d.spec.id, d.topPath);
  }

  /** The guest powers itself off: wait for QEMU to exit on its own, then force. */
  async #vmExited(timeoutMs: number): Promise<StepOutcome> {
    const vm = this.#vm;
    if (!vm) return {};
    this.#rememberTops();
    const r = await vm.stop({ graceful: async () => vm.exited, timeoutMs });
    this.#note(`QEMU ended (${r.shutdown}, via ${r.via})`);
    this.#offQmp?.();
    this.#offQmp = null;
    await this.#adapter.close();
    return { cleanExit: r.shutdown === 'clean' };
  }

  async #runStep(step: Step, path: string): Promise<boolean> {
    const index = this.#steps.length;
    const t0 = Date.now();
    this.#event({ at: iso(t0), kind: 'step', step: index, stepKind: step.kind, phase: 'begin' });
    let ok = true;
    let error: string | undefined;
    try {
      const refusal = this.state.refusal(step);
      if (refusal) throw new StepError(refusal);
      this.state.after(step, await this.#execute(step, path));
      await this.#phases();
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

  /** The guest's shutdown-order and teardown phases of the step that just ran, into the timeline. */
  async #phases(): Promise<void> {
    const phases = (await this.#guest?.adapter.takePhases?.().catch(() => [])) ?? [];
    const at = iso();
    for (const p of phases) this.#event({ at, kind: 'phase', phase: p.phase, uptimeS: p.uptimeS });
  }

  /** Runs a step the state allows; returns what the state machine needs to know of how it ended. */
  async #execute(step: Step, path: string): Promise<StepOutcome | undefined> {
    const a = this.#adapter;
    const signal = this.#signal;
    switch (step.kind) {
      case 'checkpoint':
        return this.#checkpoint(step.disk);
      case 'write': {
        const disk = guestDisk(step.volume ?? step.disk);
        const space = (await a.writeSpace?.(disk, { signal })) ?? { size: this.state.disk(step.disk).size, align: 512 };
        const align = Math.max(space.align, step.align);
        const writes = planWrites({ seed: step.seed ?? deriveSeed(this.spec.seed, 'write', path), count: step.count, sizeMin: step.size.min, sizeMax: step.size.max, deviceSize: space.size, align });
        await a.write({ disk: disk.serial, seed: step.seed ?? 0, writes }, { signal });
        return;
      }
      case 'fio':
        await a.fio({ disk: step.volume ?? step.disk, rw: step.rw, bs: step.bs, size: step.size, runtimeSec: Math.max(1, Math.round(step.runtimeMs / 1000)), seed: step.seed ?? deriveSeed(this.spec.seed, 'fio', path) % 2 ** 31 }, { signal });
        return;
      case 'files': {
        if (!a.files || !a.writeSpace) throw new StepError(`the ${a.os} guest has no file workload`);
        const volume = guestDisk(step.volume);
        const { size: capacity } = await a.writeSpace(volume, { signal });
        const plan = planFiles({ seed: step.seed ?? deriveSeed(this.spec.seed, 'files', path), count: step.count, sizeMin: step.size.min, sizeMax: Math.min(step.size.max, Math.floor(capacity / 4)), ops: step.ops, fsync: step.fsync, capacity });
        await a.files(volume, plan, { signal });
        return;
      }
      case 'resize': {
        const vm = this.#requireVm();
        if (!a.resize) throw new StepError(`the ${a.os} guest cannot follow a disk resize`);
        this.#event({ at: iso(), kind: 'fault', fault: 'resize', detail: `${step.disk} → ${step.size} bytes (QMP block_resize)` });
        await vm.resizeDisk(step.disk, step.size, { signal });
        await a.resize(guestDisk(step.disk), step.size, { signal });
        return;
      }
      case 'reset': {
        const vm = this.#requireVm();
        this.#event({ at: iso(), kind: 'fault', fault: 'reset', detail: 'QMP system_reset' });
        this.#guest!.restarting(vm);
        await vm.reset();
        await this.#waitGuest();
        return;
      }
      case 'powercut': {
        const vm = this.#requireVm();
        this.#event({ at: iso(), kind: 'fault', fault: 'powercut', detail: 'QEMU killed (SIGKILL), then started again on the same disks' });
        this.#rememberTops();
        this.#offQmp?.();
        await a.close();
        await this.#start(vm.powerCut({ signal }));
        return;
      }
      case 'reboot':
        await a.reboot({ signal });
        return;
      case 'shutdown':
        await a.shutdown({ signal });
        return this.#vmExited(60_000);
      case 'hibernate':
        if (!a.hibernate) throw new StepError(`the ${a.os} guest does not hibernate`);
        await a.hibernate({ signal });
        return this.#vmExited(120_000);
      case 'powerbutton': {
        const vm = this.#requireVm();
        const action = (await a.powerButtonAction?.({ signal })) ?? { action: 'unknown' };
        this.#event({ at: iso(), kind: 'fault', fault: 'powerbutton', detail: `QMP system_powerdown; the guest will ${action.action}` });
        await vm.powerButton();
        return this.#vmExited(90_000);
      }
      case 'start':
        await this.#start();
        return;
      case 'offline':
      case 'online':
      case 'disable':
      case 'enable':
        await a[step.kind](guestDisk(step.disk), { signal });
        return;
      case 'unplug': {
        const vm = this.#requireVm();
        this.#event({ at: iso(), kind: 'fault', fault: `unplug-${step.mode}`, detail: step.disk });
        const r = step.mode === 'eject' ? await vm.eject(step.disk, { timeoutMs: step.timeoutMs, signal }) : await vm.surpriseRemove(step.disk, { timeoutMs: step.timeoutMs, signal });
        this.#note(`unplug ${step.mode} of ${step.disk}: ${r.outcome} after ${r.waitedMs} ms`);
        if (r.outcome === 'vetoed') throw new StepError(`the guest did not release ${step.disk} within ${step.timeoutMs} ms (eject vetoed)`);
        return;
      }
      case 'plug': {
        await this.#requireVm().replug(step.disk, { signal });
        // The guest sees a new device: tracking is set up again on the existing metadata.
        await a.reattached?.(guestDisk(step.disk), { signal });
        return;
      }
      case 'sleep':
        await sleep(step.ms, undefined, { signal });
        return;
      case 'verify':
        await this.#verify(step.disk, step.expect);
        return;
      case 'repeat':
        throw new StepError('internal: repeat steps are unrolled');
    }
  }

  /** The epoch protocol: 1. guest checkpoint; 2. pause, external snapshot, the tracker's host side, resume. */
  async #checkpoint(diskId: string | null): Promise<undefined> {
    const vm = this.#requireVm();
    const targets = this.state.targets(diskId);
    const guestIds = new Map<string, string>();
    const index = this.state.nextEpochIndex();
    this.#event({ at: iso(), kind: 'epoch', epoch: index, phase: 'begin' });
    if (this.tracker.guestCheckpoint) {
      for (const d of targets) guestIds.set(d.spec.id, (await this.#adapter.checkpoint(guestDisk(d.spec.id), { signal: this.#signal })).epochId);
    }
    await vm.pause();
    try {
      for (const d of targets) {
        const snap = await vm.snapshot(d.spec.id, { signal: this.#signal });
        this.#files.add(snap.overlay);
        const id = await this.tracker.openEpoch({
          index,
          diskId: d.spec.id,
          guestEpochId: guestIds.get(d.spec.id),
          options: this.scenario.trackerOptions,
          host: { addDirtyBitmap: async (disk, name, o) => void (await vm.addDirtyBitmap(disk, name, o)) },
        });
        this.state.epochOpened({ index, disk: d.spec.id, base: snap.base, id, startedAt: iso() });
        this.#event({ at: iso(), kind: 'epoch', epoch: index, phase: 'snapshot' });
      }
    } finally {
      await vm.resume();
    }
    this.#rememberTops();
    return undefined;
  }

  async #verify(diskId: string | null, expectOverride: Verdict[] | null): Promise<void> {
    const expect = this.spec.expect ?? expectOverride ?? this.scenario.expect;
    const targets = this.state.verifyTargets(diskId);
    const running = this.#vm?.running ?? false;
    // A claim held in guest memory is persisted first, with the tracked volume's writes held.
    const a = this.#adapter;
    const freeze = running && this.tracker.verifyFreeze === true;
    if (freeze && (!a.freeze || !a.thaw)) throw new StepError(`tracker ${this.tracker.name} needs the ${a.os} guest to freeze a volume for verify`);
    const frozen: string[] = [];
    let paused = false;
    let failure: string | null = null;
    try {
      for (const d of freeze ? targets : []) {
        await a.freeze!(guestDisk(d.spec.id), { signal: this.#signal });
        frozen.push(d.spec.id);
      }
      if (running) {
        await this.#vm!.pause();
        paused = true;
      }
      this.#rememberTops();
      for (const d of targets) {
        const epoch = this.state.epoch(d.spec.id)!;
        const top = this.#tops.get(d.spec.id)!;
        this.#event({ at: iso(), kind: 'epoch', epoch: epoch.index, phase: 'verify' });
        const t0 = Date.now();
        const plan = this.tracker.verifyPlan({ id: epoch.id, index: epoch.index, diskId: d.spec.id, diskSize: d.size }, this.state.session(), this.scenario.trackerOptions);
        this.#lastPlan = plan;
        const out = await verifyImages({ base: epoch.base, top, decoder: plan.decoder, options: plan.options, providers: defaultProviders });
        const rec = epochOf(out, { epoch, top, expect, verifyMs: Date.now() - t0, verifiedAt: iso() });
        this.#epochs.push(rec);
        const r = out.result;
        const ok = acceptable(r.verdict, expect);
        this.#event({ at: iso(), kind: 'verdict', epoch: epoch.index, verdict: r.verdict, acceptable: ok });
        await this.#observer.epoch?.(rec);
        if (!ok && !failure) failure = `epoch ${epoch.index} (${d.spec.id}): ${r.verdict}${r.reason ? ` (${r.reason})` : ''}, expected ${expect.join(' or ')}; ${r.missedBlocks} missed of ${r.changedBlocks} changed blocks`;
      }
    } finally {
      if (paused) await this.#vm!.resume();
      for (const id of frozen) await a.thaw!(guestDisk(id), { signal: this.#signal });
    }
    if (failure) throw new StepError(failure);
  }

  async #teardown(): Promise<void> {
    const vm = this.#vm;
    if (vm?.running) {
      this.#rememberTops();
      // Stopped by a signal: no guest shutdown to wait for (up to a minute); QEMU's quit, then SIGKILL.
      const aborted = this.#signal?.aborted === true;
      const r = await vm.stop(aborted ? { graceful: 'none' } : { graceful: async () => this.#guest?.adapter.shutdown().catch(() => undefined), timeoutMs: 60_000 });
      this.#note(`VM stopped at the end (${r.shutdown}, via ${r.via})`);
    }
    this.state.stopped();
    this.#offQmp?.();
    await this.#guest?.adapter.close();
    if (!this.spec.keepImages) for (const f of this.#files) await rm(f, { force: true });
  }
}

export async function runJob(spec: JobSpec, observer: JobObserver = {}, signal?: AbortSignal, hooks: JobHooks = {}): Promise<JobOutcome> {
  if (spec.version !== undefined && spec.version !== JOB_SPEC_VERSION) {
    // An old worker image or staged harness: the job can run on another host, or after a rebuild.
    throw new JobInfrastructureError(`this host runs a harness with job spec version ${JOB_SPEC_VERSION}, the job needs ${spec.version}: rebuild the worker image (cbt-harness image build worker) or restage the harness`);
  }
  await mkdir(spec.workDir, { recursive: true });
  return new JobRunner(spec, observer, signal, hooks).run();
}

export { VmError };
