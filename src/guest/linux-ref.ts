/**
 * The reference Linux guest's adapter: every operation is one `cbt-ctl` call over SSH
 * (images/linux-ref/rootfs/bin/cbt-ctl), whose answers are JSON lines. Restarts (reboot)
 * reconnect through the connector the runner gives, which waits for the guest to come back.
 */
import { CommandRecorder, GuestError, checkPlan, type FioJob, type GuestAdapter, type GuestCallOptions, type GuestCommandRecord, type GuestDisk, type GuestOperation, type GuestPhase, type GuestShell, type PowerButtonInfo, type WritePlan } from './adapter.ts';
import { filePlanText, type FilePlanOp } from './files-plan.ts';

/** `CBT-PHASE <phase> <uptime>` lines of the guest's console (images/linux-ref/README.md "Shutdown order"). */
export function parsePhaseMarkers(text: string): GuestPhase[] {
  const out: GuestPhase[] = [];
  for (const m of text.matchAll(/^CBT-PHASE ([a-z][a-z-]*) (\d+(?:\.\d+)?)\s*$/gm)) out.push({ phase: m[1], uptimeS: Number(m[2]) });
  return out;
}

export interface LinuxRefAdapterOptions {
  /** Opens a shell to the guest, waiting until it is reachable (after a boot or a restart). */
  connect: (opts: { signal?: AbortSignal }) => Promise<GuestShell>;
  /** Called right before the guest restarts itself, so the connector waits for the new boot. */
  beforeRestart?: () => void;
  /** The tools disk (fio) is attached. @default false */
  fio?: boolean;
  /** Default limit of one guest command. @default 120000 */
  commandTimeoutMs?: number;
  /** The guest tracks the data disks itself (dm-era): a disk plugged back needs its tracking set up again. @default true */
  trackedInGuest?: boolean;
  /** How long `ready` waits for the guest after a boot. @default 180000 */
  readyTimeoutMs?: number;
  /** Console text of the VM not returned before (the shutdown phases are read from it). */
  newConsoleText?: () => Promise<string>;
}

const OPS: GuestOperation[] = ['reboot', 'shutdown', 'offline', 'online', 'disable', 'enable', 'write', 'checkpoint', 'flush', 'powerbutton-action', 'files', 'resize'];

function shellWord(s: string): string {
  if (!/^[A-Za-z0-9_.:,/=+-]+$/.test(s)) throw new GuestError('command', `refusing a guest argument with shell metacharacters: ${JSON.stringify(s)}`, { os: 'linux-ref' });
  return s;
}

export class LinuxRefAdapter implements GuestAdapter {
  readonly os = 'linux-ref';
  readonly supports: ReadonlySet<GuestOperation>;
  readonly #opts: LinuxRefAdapterOptions;
  readonly #recorder = new CommandRecorder();
  #shell: GuestShell | null = null;
  /** Write spaces by serial; valid until the tracker or the guest restarts (any reconnect). */
  readonly #space = new Map<string, { size: number; align: number }>();

  constructor(opts: LinuxRefAdapterOptions) {
    this.#opts = opts;
    this.supports = LinuxRefAdapter.operations(opts.fio ?? false);
  }

  /** What the adapter supports, with or without the tools disk (fio): checkable before a VM exists. */
  static operations(fio: boolean): ReadonlySet<GuestOperation> {
    return new Set<GuestOperation>(fio ? [...OPS, 'fio'] : OPS);
  }

  onCommand(listener: (r: GuestCommandRecord) => void): () => void {
    return this.#recorder.on(listener);
  }

  async #getShell(signal?: AbortSignal): Promise<GuestShell> {
    if (this.#shell && !this.#shell.closed) return this.#shell;
    this.#shell = await this.#opts.connect({ signal });
    return this.#shell;
  }

  /** Run one guest command; a non-zero exit is a GuestError carrying stderr. */
  async run(command: string, operation: GuestOperation | 'probe', opts: GuestCallOptions & { stdin?: string; allowLost?: boolean } = {}): Promise<string> {
    const shell = await this.#getShell(opts.signal);
    const startedAt = Date.now();
    let r: Awaited<ReturnType<GuestShell['exec']>>;
    try {
      r = await shell.exec(command, { timeoutMs: opts.timeoutMs ?? this.#opts.commandTimeoutMs ?? 120_000, signal: opts.signal, stdin: opts.stdin });
    } catch (error) {
      this.#recorder.emit({ command, exitCode: null, durationMs: Date.now() - startedAt, startedAt, operation, stderr: (error as Error).message });
      if (opts.allowLost) return '';
      const kind = (error as { kind?: string }).kind === 'timeout' ? 'timeout' : 'command';
      throw new GuestError(kind, `linux-ref: \`${command}\` failed: ${(error as Error).message}`, { os: 'linux-ref', operation, command, cause: error });
    }
    this.#recorder.emit({ command, exitCode: r.exitCode, durationMs: r.durationMs, startedAt, operation, stdout: r.stdout.slice(-4000), stderr: r.stderr.slice(-4000) });
    if (r.exitCode !== 0) {
      throw new GuestError('command', `linux-ref: \`${command}\` exited ${r.exitCode ?? r.signal}: ${r.stderr.trim().split('\n').at(-1) ?? ''}`, { os: 'linux-ref', operation, command, exitCode: r.exitCode, stderr: r.stderr });
    }
    return r.stdout;
  }

  static #json(out: string): Array<Record<string, unknown>> {
    return out
      .split('\n')
      .filter((l) => l.trim().startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async #dropShell(): Promise<void> {
    this.#space.clear();
    const s = this.#shell;
    this.#shell = null;
    await s?.close().catch(() => {});
  }

  async ready(opts: GuestCallOptions = {}): Promise<void> {
    await this.#dropShell();
    const limitMs = opts.timeoutMs ?? this.#opts.readyTimeoutMs ?? 180_000;
    const secs = Math.max(1, Math.ceil(limitMs / 1000));
    await this.run(`cbt-ctl wait-ready ${secs}`, 'probe', { signal: opts.signal, timeoutMs: limitMs + 20_000 });
  }

  async reattached(disk: GuestDisk, opts: GuestCallOptions = {}): Promise<void> {
    if (this.#opts.trackedInGuest === false) return;
    // The device came back under the same serial after an unplug no hook saw: the guest tears the
    // stale stack down without persisting and loads tracking again (dm-era on its metadata;
    // cbtf-ref from a file that is not clean).
    this.#space.clear();
    await this.run(`cbt-ctl reattach ${shellWord(disk.serial)}`, 'online', opts);
  }

  async reboot(opts: GuestCallOptions = {}): Promise<void> {
    this.#opts.beforeRestart?.();
    await this.run('cbt-ctl reboot', 'reboot', { ...opts, allowLost: true });
    await this.#dropShell();
    await this.#getShell(opts.signal);
    await this.run('cbt-ctl wait-ready 120', 'reboot', opts);
  }

  async shutdown(opts: GuestCallOptions = {}): Promise<void> {
    await this.run('cbt-ctl shutdown', 'shutdown', { ...opts, allowLost: true });
    await this.#dropShell();
  }

  async offline(disk: GuestDisk, opts?: GuestCallOptions): Promise<void> {
    this.#space.clear();
    await this.run(`cbt-ctl offline ${shellWord(disk.serial)}`, 'offline', opts);
  }

  async online(disk: GuestDisk, opts?: GuestCallOptions): Promise<void> {
    this.#space.clear();
    await this.run(`cbt-ctl online ${shellWord(disk.serial)}`, 'online', opts);
  }

  async disable(disk: GuestDisk, opts?: GuestCallOptions): Promise<void> {
    this.#space.clear();
    await this.run(`cbt-ctl disable ${shellWord(disk.serial)}`, 'disable', opts);
  }

  async enable(disk: GuestDisk, opts?: GuestCallOptions): Promise<void> {
    this.#space.clear();
    await this.run(`cbt-ctl enable ${shellWord(disk.serial)}`, 'enable', opts);
  }

  /**
   * The console is the one source: every phase prints a marker there, also those whose command
   * answer never comes back (reboot, shutdown, the ACPI power button). The `phases` of the
   * offline/disable answers repeat the same markers and are not read.
   */
  async takePhases(): Promise<GuestPhase[]> {
    return this.#opts.newConsoleText ? parsePhaseMarkers(await this.#opts.newConsoleText()) : [];
  }

  async freeze(disk: GuestDisk, opts?: GuestCallOptions): Promise<void> {
    await this.run(`cbt-ctl freeze ${shellWord(disk.serial)}`, 'probe', opts);
  }

  async thaw(disk: GuestDisk, opts?: GuestCallOptions): Promise<void> {
    await this.run(`cbt-ctl thaw ${shellWord(disk.serial)}`, 'probe', opts);
  }

  async files(volume: GuestDisk, plan: readonly FilePlanOp[], opts?: GuestCallOptions): Promise<void> {
    const v = shellWord(volume.serial);
    const ops = plan.length;
    const [j] = LinuxRefAdapter.#json(await this.run(`cbt-ctl files ${v}`, 'files', { ...opts, stdin: filePlanText(plan), timeoutMs: opts?.timeoutMs ?? Math.max(120_000, ops * 2_000) }));
    if (j?.ops !== ops) throw new GuestError('command', `linux-ref: the guest applied ${String(j?.ops)} of ${ops} file operations on ${volume.serial}`, { os: 'linux-ref', operation: 'files' });
  }

  async resize(disk: GuestDisk, bytes: number, opts?: GuestCallOptions): Promise<void> {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new GuestError('command', `linux-ref: resize to ${bytes} bytes`, { os: 'linux-ref', operation: 'resize' });
    this.#space.clear();
    const [j] = LinuxRefAdapter.#json(await this.run(`cbt-ctl resize ${shellWord(disk.serial)} ${bytes}`, 'resize', opts));
    if (j?.size !== bytes) throw new GuestError('command', `linux-ref: after the resize the guest sees ${String(j?.size)} bytes on ${disk.serial}, not ${bytes}`, { os: 'linux-ref', operation: 'resize' });
  }

  async writeSpace(disk: GuestDisk, opts?: GuestCallOptions): Promise<{ size: number; align: number }> {
    const known = this.#space.get(disk.serial);
    if (known) return known;
    const [j] = LinuxRefAdapter.#json(await this.run(`cbt-ctl space ${shellWord(disk.serial)}`, 'write', opts));
    if (typeof j?.size !== 'number') throw new GuestError('command', `linux-ref: cbt-ctl space ${disk.serial} gave no size`, { os: 'linux-ref', operation: 'write' });
    const space = { size: j.size, align: 512 };
    this.#space.set(disk.serial, space);
    return space;
  }

  async write(plan: WritePlan, opts?: GuestCallOptions): Promise<void> {
    const serial = shellWord(plan.disk);
    const { size } = await this.writeSpace({ id: plan.disk, serial }, opts);
    checkPlan(plan, size, 512);
    const stdin = plan.writes.map((w) => `${w.offset} ${w.length} ${w.pattern}`).join('\n') + '\n';
    const [j] = LinuxRefAdapter.#json(await this.run(`cbt-ctl write ${serial}`, 'write', { ...opts, stdin }));
    if (j?.writes !== plan.writes.length) {
      throw new GuestError('command', `linux-ref: the guest applied ${String(j?.writes)} of ${plan.writes.length} writes`, { os: 'linux-ref', operation: 'write' });
    }
  }

  async fio(job: FioJob, opts: GuestCallOptions = {}): Promise<void> {
    if (!this.supports.has('fio')) throw new GuestError('unsupported', 'linux-ref: fio needs the tools disk attached', { os: 'linux-ref', operation: 'fio' });
    const serial = shellWord(job.disk);
    const dev = (await this.run(`cbt-ctl dev ${serial}`, 'fio', opts)).trim();
    const args = [
      'fio',
      '--name=cbt',
      `--filename=${shellWord(dev)}`,
      `--rw=${job.rw}`,
      `--bs=${Math.trunc(job.bs)}`,
      `--size=${Math.trunc(job.size)}`,
      `--runtime=${Math.max(1, Math.trunc(job.runtimeSec))}`,
      '--time_based',
      '--direct=1',
      '--ioengine=psync',
      `--randseed=${Math.trunc(job.seed ?? 1)}`,
      '--output-format=terse',
    ];
    // fio bounds itself with --runtime; the guest command also gets a hard limit.
    await this.run(`timeout ${Math.trunc(job.runtimeSec) + 60} ${args.join(' ')} && sync`, 'fio', { ...opts, timeoutMs: opts.timeoutMs ?? (job.runtimeSec + 120) * 1000 });
  }

  async checkpoint(disk: GuestDisk, opts?: GuestCallOptions): Promise<{ epochId: string }> {
    const [j] = LinuxRefAdapter.#json(await this.run(`cbt-ctl checkpoint ${shellWord(disk.serial)}`, 'checkpoint', opts));
    // cbtf-ref answers the generation it wrote in the CBTF file: verify checks the file still has it.
    if (typeof j?.generation === 'string') return { epochId: j.generation };
    if (typeof j?.era !== 'number') throw new GuestError('command', `linux-ref: checkpoint of ${disk.serial} reported no era`, { os: 'linux-ref', operation: 'checkpoint' });
    return { epochId: String(j.era) };
  }

  /** The current era of a tracked disk (what a checkpoint started, or later after reboots). */
  async status(disk: GuestDisk, opts?: GuestCallOptions): Promise<Record<string, unknown>> {
    const [j] = LinuxRefAdapter.#json(await this.run(`cbt-ctl status ${shellWord(disk.serial)}`, 'probe', opts));
    return j ?? {};
  }

  async flush(opts?: GuestCallOptions): Promise<void> {
    await this.run('cbt-ctl flush', 'flush', opts);
  }

  async powerButtonAction(): Promise<PowerButtonInfo> {
    // images/linux-ref/rootfs/etc/acpi/PWRF/00000080: the power button runs `cbt-ctl shutdown`.
    return { action: 'shutdown', fastStartup: null, raw: 'acpid PWRF → cbt-ctl shutdown' };
  }

  async close(): Promise<void> {
    await this.#dropShell();
  }
}
