/**
 * The Windows guest adapter: PowerShell over OpenSSH (Win32-OpenSSH's sshd; its default shell may
 * be cmd.exe or powershell.exe — every command is `powershell.exe … -EncodedCommand`, which both
 * pass through untouched). Disks are found by their QEMU `serial=`; faults map to the commands of
 * docs/windows-guest.md (volume/disk offline, PnP disable, restart, shutdown, hibernate);
 * workloads are a seeded write plan (streamed on stdin) or diskspd; the tracker's checkpoint is a
 * command line from the adapter options with quoted placeholders.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  checkPlan,
  CommandRecorder,
  GuestError,
  type FioJob,
  type GuestAdapter,
  type GuestCallOptions,
  type GuestCommandRecord,
  type GuestConnector,
  type GuestDisk,
  type GuestOperation,
  type GuestShell,
  type PowerButtonInfo,
  type WritePlan,
} from './adapter.ts';
import { psCommandLine, readableStderr } from './powershell.ts';
import {
  CLASSIFIED_EXIT,
  disableScript,
  type DiskLookup,
  enableScript,
  ERROR_MARKER,
  flushScript,
  locateScript,
  nativeScript,
  powerButtonScript,
  powerScript,
  probeScript,
  RESULT_MARKER,
  setOfflineScript,
  writePlanInput,
  writeScript,
} from './windows-scripts.ts';

export interface WindowsAdapterOptions {
  /** Opens an SSH connection to the guest (see `sshConnector`). */
  connect: GuestConnector;
  /** Disk ids → QEMU serials. A disk id missing here is taken as its own serial (what vm/ does). */
  disks?: GuestDisk[];
  /**
   * The tracker's checkpoint command, e.g. `C:\cbt\cbtctl.exe checkpoint --volume {volume}`.
   * Split on blanks (double quotes group a token, as in `"C:\Program Files\x.exe"`); placeholders
   * `{volume}` (`X:` or the volume GUID path), `{letter}`, `{guid}`, `{disk}` (disk number),
   * `{partition}`, `{serial}`, `{id}` are filled per token and each argument is quoted for the
   * Windows command line. Without it `checkpoint` is unsupported.
   */
  checkpointCommand?: string;
  /** Regular expression with one capture group that finds the epoch id in the checkpoint command's stdout. @default the last non-empty line */
  epochIdPattern?: string;
  /**
   * `file`: write plans go into a file on the tracked NTFS volume (offsets relative to the file;
   * NTFS metadata writes come with them — the real path of user data). `volume`: straight into
   * the volume (`\\.\X:`), offsets relative to the volume; needs a volume without a file system.
   * @default 'file'
   */
  writeMode?: 'file' | 'volume';
  /** Folder on the tracked volume for the write file and diskspd's file, relative. @default 'cbt' */
  workDir?: string;
  /** Size of the write file in `file` mode (the write space). @default 134217728 (128 MiB) */
  writeFileSize?: number;
  /** Tracked partition number on each data disk; 0 = the largest data partition. @default 0 */
  partition?: number;
  /** What `offline`/`online` act on: the volume (`Set-Partition -IsOffline`) or the whole disk (`Set-Disk -IsOffline`). @default 'volume' */
  offlineScope?: 'volume' | 'disk';
  /** diskspd.exe in the guest. @default 'C:\\cbt\\diskspd.exe' */
  diskspd?: string;
  /** @default 'powershell.exe' */
  powershell?: string;
  /** Disk lookups by serial: attempts and pause (viostor has reported serial "0" on some boots). @default 10 */
  serialTries?: number;
  /** @default 3000 */
  serialRetryDelayMs?: number;
  /** Default limit of one command. @default 300000 */
  commandTimeoutMs?: number;
  /** How long a reboot may take until the guest answers again. @default 900000 */
  rebootTimeoutMs?: number;
  /** The image has hibernation enabled (`powercfg /h on`): `hibernate` is then supported. @default false */
  hibernation?: boolean;
}

const PLACEHOLDERS = new Set(['volume', 'letter', 'guid', 'disk', 'partition', 'serial', 'id']);
const DIR_RE = /^[A-Za-z0-9 _.-]+(?:\\[A-Za-z0-9 _.-]+)*$/;
const WRITE_FILE = 'cbt-write.dat';
const DISKSPD_FILE = 'diskspd.dat';

/** Split a command template into tokens: blanks separate, double quotes group (and are removed). */
export function splitCommandTemplate(template: string): string[] {
  if (typeof template !== 'string' || template.trim() === '') throw new TypeError(`Expected \`checkpointCommand\` to be a non-empty command line, got \`${String(template)}\``);
  if (/[\0\r\n]/.test(template)) throw new TypeError('Expected `checkpointCommand` to be one line without NUL');
  const tokens: string[] = [];
  let cur = '';
  let inToken = false;
  let quoted = false;
  for (const ch of template) {
    if (ch === '"') {
      quoted = !quoted;
      inToken = true;
    } else if ((ch === ' ' || ch === '\t') && !quoted) {
      if (inToken) tokens.push(cur);
      cur = '';
      inToken = false;
    } else {
      cur += ch;
      inToken = true;
    }
  }
  if (quoted) throw new TypeError(`\`checkpointCommand\` has an unclosed double quote: ${template}`);
  if (inToken) tokens.push(cur);
  for (const t of tokens) {
    for (const m of t.matchAll(/\{([^{}]*)\}/g)) {
      if (!PLACEHOLDERS.has(m[1])) throw new TypeError(`\`checkpointCommand\` uses the unknown placeholder {${m[1]}} (known: ${[...PLACEHOLDERS].map((p) => `{${p}}`).join(' ')})`);
    }
  }
  return tokens;
}

/** Fill placeholders of each token (values are not re-scanned: a value holding `{disk}` stays as it is). */
export function fillTemplate(tokens: readonly string[], values: Record<string, string>): string[] {
  return tokens.map((t) => t.replace(/\{([a-z]+)\}/g, (whole, name: string) => (PLACEHOLDERS.has(name) ? (values[name] ?? '') : whole)));
}

interface Located {
  Disk: number;
  Pnp: string;
  Partition: { Number: number; Offset: number; Size: number; Letter: string | null; Guid: string | null; Offline: boolean };
}

interface RunOptions extends GuestCallOptions {
  stdin?: string;
  /** A lost connection is the expected end (restart, shutdown, hibernate). */
  allowClose?: boolean;
}

function int(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new TypeError(`Expected \`${name}\` to be an integer in ${min}..${max}, got \`${String(v)}\` (${typeof v})`);
  return v;
}

const TIMELINE_OUTPUT = 16 * 1024;
const tail = (s: string): string => (s.length > TIMELINE_OUTPUT ? `…${s.slice(-TIMELINE_OUTPUT)}` : s);

export class WindowsAdapter implements GuestAdapter {
  readonly os = 'windows' as const;
  readonly supports: ReadonlySet<GuestOperation>;
  readonly options: Readonly<Required<Omit<WindowsAdapterOptions, 'checkpointCommand' | 'epochIdPattern' | 'disks' | 'connect'>>>;
  #connect: GuestConnector;
  #disks = new Map<string, GuestDisk>();
  #checkpoint: string[] | null;
  #epochRe: RegExp | null;
  #recorder = new CommandRecorder();
  #shell: Promise<GuestShell> | null = null;
  /** serial → PnP instance id of a disk this adapter disabled (a disabled disk is not in Win32_DiskDrive). */
  #disabled = new Map<string, string>();
  #closed = false;

  constructor(opts: WindowsAdapterOptions) {
    if (opts === null || typeof opts !== 'object') throw new TypeError('Expected Windows adapter options');
    if (typeof opts.connect !== 'function') throw new TypeError('Expected `connect` to be a function that opens a guest connection (see sshConnector)');
    this.#connect = opts.connect;
    for (const d of opts.disks ?? []) {
      if (typeof d?.id !== 'string' || typeof d.serial !== 'string' || d.serial === '') throw new TypeError(`Expected \`disks\` entries to be {id, serial} strings, got \`${JSON.stringify(d)}\``);
      this.#disks.set(d.id, d);
    }
    const writeMode = opts.writeMode ?? 'file';
    if (writeMode !== 'file' && writeMode !== 'volume') throw new TypeError(`Expected \`writeMode\` to be 'file' or 'volume', got \`${String(writeMode)}\``);
    const offlineScope = opts.offlineScope ?? 'volume';
    if (offlineScope !== 'volume' && offlineScope !== 'disk') throw new TypeError(`Expected \`offlineScope\` to be 'volume' or 'disk', got \`${String(offlineScope)}\``);
    const workDir = opts.workDir ?? 'cbt';
    if (typeof workDir !== 'string' || !DIR_RE.test(workDir) || workDir.split('\\').some((s) => s === '.' || s === '..')) throw new TypeError(`Expected \`workDir\` to be a relative Windows folder of [A-Za-z0-9 _.-] segments, got \`${String(workDir)}\``);
    const diskspd = opts.diskspd ?? 'C:\\cbt\\diskspd.exe';
    if (typeof diskspd !== 'string' || diskspd === '' || /[\0\r\n"]/.test(diskspd)) throw new TypeError(`Expected \`diskspd\` to be a Windows path, got \`${String(diskspd)}\``);
    this.#checkpoint = opts.checkpointCommand === undefined ? null : splitCommandTemplate(opts.checkpointCommand);
    try {
      this.#epochRe = opts.epochIdPattern === undefined ? null : new RegExp(opts.epochIdPattern, 'm');
    } catch (e) {
      throw new TypeError(`Expected \`epochIdPattern\` to be a regular expression: ${(e as Error).message}`);
    }
    this.options = {
      writeMode,
      offlineScope,
      workDir,
      diskspd,
      writeFileSize: int('writeFileSize', opts.writeFileSize ?? 128 * 1024 * 1024, 4096),
      partition: int('partition', opts.partition ?? 0, 0, 128),
      powershell: opts.powershell ?? 'powershell.exe',
      serialTries: int('serialTries', opts.serialTries ?? 10, 1, 1000),
      serialRetryDelayMs: int('serialRetryDelayMs', opts.serialRetryDelayMs ?? 3000, 0, 600_000),
      commandTimeoutMs: int('commandTimeoutMs', opts.commandTimeoutMs ?? 300_000, 1),
      rebootTimeoutMs: int('rebootTimeoutMs', opts.rebootTimeoutMs ?? 900_000, 1),
      hibernation: opts.hibernation ?? false,
    };
    psCommandLine('', { powershell: this.options.powershell }); // validates the program name
    const ops: GuestOperation[] = ['reboot', 'shutdown', 'offline', 'online', 'disable', 'enable', 'write', 'fio', 'flush', 'powerbutton-action'];
    if (this.#checkpoint) ops.push('checkpoint');
    if (this.options.hibernation) ops.push('hibernate');
    this.supports = new Set(ops);
  }

  onCommand(listener: (r: GuestCommandRecord) => void): () => void {
    return this.#recorder.on(listener);
  }

  // -- connection ------------------------------------------------------------------------------

  #getShell(signal?: AbortSignal): Promise<GuestShell> {
    if (this.#closed) return Promise.reject(new GuestError('command', 'the Windows adapter is closed', { os: 'windows' }));
    if (!this.#shell) {
      const p = this.#connect({ signal });
      this.#shell = p;
      p.catch(() => {
        if (this.#shell === p) this.#shell = null;
      });
    }
    return this.#shell;
  }

  async #dropShell(): Promise<void> {
    const p = this.#shell;
    this.#shell = null;
    if (!p) return;
    try {
      await (await p).close();
    } catch {
      /* already gone */
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#dropShell();
  }

  // -- one command -----------------------------------------------------------------------------

  async #run<T>(operation: GuestOperation | 'probe', script: string, opts: RunOptions = {}): Promise<T | null> {
    return (await this.#exec<T>(operation, script, opts)).result;
  }

  /** Run one script; its `CBT-RESULT` (null when none, or when the connection closed as allowed) and stdout. */
  async #exec<T>(operation: GuestOperation | 'probe', script: string, opts: RunOptions = {}): Promise<{ result: T | null; stdout: string }> {
    const command = psCommandLine(script, { powershell: this.options.powershell });
    let shell: GuestShell;
    try {
      shell = await this.#getShell(opts.signal);
    } catch (e) {
      throw new GuestError('command', `${operation}: cannot connect to the Windows guest: ${(e as Error).message}`, { os: 'windows', operation, cause: e });
    }
    const startedAt = Date.now();
    const t0 = performance.now();
    const timeoutMs = opts.timeoutMs ?? this.options.commandTimeoutMs;
    let r: Awaited<ReturnType<GuestShell['exec']>>;
    try {
      r = await shell.exec(command, { timeoutMs, signal: opts.signal, stdin: opts.stdin });
    } catch (e) {
      const kind = (e as { kind?: string }).kind;
      const durationMs = performance.now() - t0;
      this.#recorder.emit({ command: script, exitCode: null, durationMs, startedAt, operation, stderr: (e as Error).message });
      if (kind === 'closed' || shell.closed) await this.#dropShell();
      if (kind === 'closed' && opts.allowClose) return { result: null, stdout: '' };
      if (kind === 'timeout') throw new GuestError('timeout', `${operation}: Windows guest command did not finish within ${timeoutMs} ms`, { os: 'windows', operation, command: script, exitCode: null, cause: e });
      throw new GuestError('command', `${operation}: Windows guest command failed: ${(e as Error).message}`, { os: 'windows', operation, command: script, exitCode: null, cause: e });
    }
    const stderr = readableStderr(r.stderr);
    this.#recorder.emit({ command: script, exitCode: r.exitCode, durationMs: r.durationMs, startedAt, operation, stdout: tail(r.stdout), stderr: tail(stderr) });
    if (r.exitCode !== 0) {
      // A restart may kill the session before PowerShell exits.
      if (opts.allowClose && r.exitCode === null) return { result: null, stdout: r.stdout };
      const tagged = stderr.split(/\r?\n/).find((l) => l.startsWith(ERROR_MARKER));
      if (tagged) {
        const rest = tagged.slice(ERROR_MARKER.length);
        const sp = rest.indexOf(' ');
        const kind = sp < 0 ? rest : rest.slice(0, sp);
        const message = sp < 0 ? '' : rest.slice(sp + 1);
        throw new GuestError(kind === 'not-found' && r.exitCode === CLASSIFIED_EXIT ? 'not-found' : 'command', `${operation}: ${message || 'failed'} (exit ${r.exitCode})`, { os: 'windows', operation, command: script, exitCode: r.exitCode, stderr });
      }
      const status = r.exitCode === null ? `ended without an exit status${r.signal ? ` (${r.signal})` : ''}` : `exited ${r.exitCode}`;
      throw new GuestError('command', `${operation}: Windows guest command ${status}: ${stderr.trim().slice(-2000) || '(no stderr)'}`, { os: 'windows', operation, command: script, exitCode: r.exitCode, stderr });
    }
    const line = r.stdout.split(/\r?\n/).find((l) => l.startsWith(RESULT_MARKER));
    if (line === undefined) return { result: null, stdout: r.stdout };
    try {
      return { result: JSON.parse(line.slice(RESULT_MARKER.length)) as T, stdout: r.stdout };
    } catch (e) {
      throw new GuestError('command', `${operation}: unreadable result line from the guest: ${line.slice(0, 200)}`, { os: 'windows', operation, command: script, exitCode: r.exitCode, cause: e });
    }
  }

  #need(op: GuestOperation): void {
    if (!this.supports.has(op)) {
      const why = op === 'checkpoint' ? ' (no `checkpointCommand` configured)' : op === 'hibernate' ? ' (the image has no hibernation: set `hibernation: true` after `powercfg /h on`)' : '';
      throw new GuestError('unsupported', `The windows guest adapter does not support \`${op}\`${why}`, { os: 'windows', operation: op });
    }
  }

  #diskById(id: string): GuestDisk {
    if (typeof id !== 'string' || id === '') throw new TypeError(`Expected a disk id, got \`${String(id)}\``);
    return this.#disks.get(id) ?? { id, serial: id };
  }

  #lookup(disk: GuestDisk): DiskLookup {
    if (disk === null || typeof disk !== 'object' || typeof disk.serial !== 'string' || disk.serial === '') throw new TypeError(`Expected a guest disk {id, serial}, got \`${JSON.stringify(disk)}\``);
    return { serial: disk.serial, tries: this.options.serialTries, delayMs: this.options.serialRetryDelayMs, partition: this.options.partition };
  }

  async #probe(opts: GuestCallOptions = {}): Promise<{ Boot: string; Caption: string; Version: string; Build: string }> {
    const r = await this.#run<{ Boot: string; Caption: string; Version: string; Build: string }>('probe', probeScript(), opts);
    if (!r || typeof r.Boot !== 'string') throw new GuestError('command', 'probe: the guest returned no boot time', { os: 'windows', operation: 'probe' });
    return r;
  }

  /** OS facts and boot identity (for manifests and logs). */
  probe(opts: GuestCallOptions = {}): Promise<{ Boot: string; Caption: string; Version: string; Build: string }> {
    return this.#probe(opts);
  }

  /** Disk number, PnP id and tracked partition of `disk`. */
  async locate(disk: GuestDisk, opts: GuestCallOptions = {}): Promise<Located> {
    const r = await this.#run<Located>('probe', locateScript(this.#lookup(disk)), opts);
    if (!r || typeof r.Disk !== 'number' || !r.Partition) throw new GuestError('command', `locate ${disk.serial}: no result from the guest`, { os: 'windows' });
    return r;
  }

  // -- power -----------------------------------------------------------------------------------

  async ready(opts: GuestCallOptions = {}): Promise<void> {
    const limitMs = opts.timeoutMs ?? this.options.rebootTimeoutMs;
    const deadline = Date.now() + limitMs;
    await this.#dropShell();
    let last: unknown = null;
    while (Date.now() < deadline) {
      try {
        await this.#shellUntil(deadline, opts.signal);
        await this.#probe({ signal: opts.signal, timeoutMs: Math.max(1, Math.min(120_000, deadline - Date.now())) });
        return;
      } catch (e) {
        if (opts.signal?.aborted) throw e;
        const kind = (e as { kind?: string; cause?: { kind?: string } }).cause?.kind;
        if (kind === 'auth' || kind === 'host-key') throw e;
        last = e;
      }
      await this.#dropShell();
      await sleep(Math.max(0, Math.min(2000, deadline - Date.now())), undefined, { signal: opts.signal });
    }
    throw new GuestError('timeout', `the Windows guest did not answer within ${limitMs} ms of its boot${last ? ` (last: ${(last as Error).message})` : ''}`, { os: 'windows', operation: 'probe', cause: last ?? undefined });
  }

  async reboot(opts: GuestCallOptions = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? this.options.rebootTimeoutMs);
    const before = await this.#probe(opts);
    await this.#run('reboot', powerScript('restart'), { ...opts, timeoutMs: 120_000, allowClose: true });
    await this.#dropShell();
    let last: unknown = null;
    while (Date.now() < deadline) {
      try {
        await this.#shellUntil(deadline, opts.signal);
        const now = await this.#probe({ signal: opts.signal, timeoutMs: Math.max(1, Math.min(120_000, deadline - Date.now())) });
        if (now.Boot !== before.Boot) return;
        last = new Error(`still the boot of ${before.Boot}`);
      } catch (e) {
        if (opts.signal?.aborted) throw e;
        const kind = (e as { kind?: string; cause?: { kind?: string } }).cause?.kind;
        if (kind === 'auth' || kind === 'host-key') throw e;
        last = e;
      }
      await this.#dropShell();
      await sleep(Math.max(0, Math.min(2000, deadline - Date.now())), undefined, { signal: opts.signal });
    }
    throw new GuestError('timeout', `reboot: the Windows guest did not come back within ${opts.timeoutMs ?? this.options.rebootTimeoutMs} ms${last ? ` (last: ${(last as Error).message})` : ''}`, { os: 'windows', operation: 'reboot', cause: last ?? undefined });
  }

  async #shellUntil(deadline: number, signal?: AbortSignal): Promise<void> {
    if (this.#shell) return;
    const p = this.#connect({ signal, retryUntil: deadline });
    this.#shell = p;
    try {
      await p;
    } catch (e) {
      if (this.#shell === p) this.#shell = null;
      throw new GuestError('command', `cannot connect to the Windows guest: ${(e as Error).message}`, { os: 'windows', cause: e });
    }
  }

  async shutdown(opts: GuestCallOptions = {}): Promise<void> {
    await this.#run('shutdown', powerScript('stop'), { ...opts, timeoutMs: opts.timeoutMs ?? 120_000, allowClose: true });
    await this.#dropShell();
  }

  async hibernate(opts: GuestCallOptions = {}): Promise<void> {
    this.#need('hibernate');
    await this.#run('hibernate', nativeScript('shutdown.exe', ['/h']), { ...opts, timeoutMs: opts.timeoutMs ?? 120_000, allowClose: true });
    await this.#dropShell();
  }

  async powerButtonAction(opts: GuestCallOptions = {}): Promise<PowerButtonInfo> {
    const r = await this.#run<{ Index: number | null; Hiberboot: number | null }>('powerbutton-action', powerButtonScript(), opts);
    const names: Record<number, PowerButtonInfo['action']> = { 0: 'nothing', 1: 'sleep', 2: 'hibernate', 3: 'shutdown', 4: 'display-off' };
    const idx = r?.Index ?? null;
    return { action: idx === null ? 'unknown' : (names[idx] ?? 'unknown'), fastStartup: r?.Hiberboot === null || r?.Hiberboot === undefined ? null : r.Hiberboot === 1, raw: idx === null ? undefined : String(idx) };
  }

  // -- disks -----------------------------------------------------------------------------------

  async offline(disk: GuestDisk, opts: GuestCallOptions & { scope?: 'volume' | 'disk' } = {}): Promise<void> {
    await this.#run('offline', setOfflineScript(this.#lookup(disk), opts.scope ?? this.options.offlineScope, true), opts);
  }

  async online(disk: GuestDisk, opts: GuestCallOptions & { scope?: 'volume' | 'disk' } = {}): Promise<void> {
    await this.#run('online', setOfflineScript(this.#lookup(disk), opts.scope ?? this.options.offlineScope, false), opts);
  }

  async disable(disk: GuestDisk, opts: GuestCallOptions = {}): Promise<void> {
    const r = await this.#run<{ Pnp: string }>('disable', disableScript(this.#lookup(disk)), opts);
    if (r && typeof r.Pnp === 'string' && r.Pnp) this.#disabled.set(disk.serial, r.Pnp);
  }

  async enable(disk: GuestDisk, opts: GuestCallOptions = {}): Promise<void> {
    const lookup = this.#lookup(disk);
    await this.#run('enable', enableScript(lookup, this.#disabled.get(disk.serial) ?? null), opts);
    this.#disabled.delete(disk.serial);
  }

  // -- workloads -------------------------------------------------------------------------------

  async writeSpace(disk: GuestDisk, opts: GuestCallOptions = {}): Promise<{ size: number; align: number }> {
    if (this.options.writeMode === 'file') return { size: this.options.writeFileSize, align: 1 };
    const l = await this.locate(disk, opts);
    return { size: l.Partition.Size, align: 4096 };
  }

  async write(plan: WritePlan, opts: GuestCallOptions = {}): Promise<void> {
    const disk = this.#diskById(plan?.disk);
    const file = this.options.writeMode === 'file';
    // Volume mode: the guest checks the end against the volume size; handles need sector-aligned I/O.
    checkPlan(plan, file ? this.options.writeFileSize : Number.MAX_SAFE_INTEGER, file ? 1 : 512);
    if (plan.writes.length === 0) return;
    const maxLength = plan.writes.reduce((m, w) => Math.max(m, w.length), 0);
    const script = writeScript({ ...this.#lookup(disk), mode: this.options.writeMode, dir: this.options.workDir, file: WRITE_FILE, fileSize: this.options.writeFileSize, maxLength, count: plan.writes.length });
    const bytes = plan.writes.reduce((s, w) => s + w.length, 0);
    // Under TCG a Windows guest may write only a few MB/s.
    const timeoutMs = opts.timeoutMs ?? this.options.commandTimeoutMs + Math.ceil(bytes / (1024 * 1024)) * 1000;
    const r = await this.#run<{ Writes: number }>('write', script, { ...opts, timeoutMs, stdin: writePlanInput(plan.writes) });
    if (!r || r.Writes !== plan.writes.length) throw new GuestError('command', `write: the guest reports ${r?.Writes ?? 'no'} writes of ${plan.writes.length}`, { os: 'windows', operation: 'write' });
  }

  /** diskspd arguments for a job (never a `#N` target: that goes below the volume filter). */
  static diskspdArgs(job: FioJob, target: string): string[] {
    const bs = int('bs', job.bs, 512, 1 << 30);
    const size = int('size', job.size, bs);
    const runtime = int('runtimeSec', job.runtimeSec, 1, 86_400);
    if (!['randwrite', 'write', 'randrw'].includes(job.rw)) throw new TypeError(`Expected \`rw\` to be randwrite, write or randrw, got \`${String(job.rw)}\``);
    if (/^#/.test(target)) throw new TypeError('diskspd targets `#N` address the physical disk below the volume filter; use a file on the tracked volume');
    const args = [`-c${size}`, `-b${bs}`, job.rw === 'write' ? `-s${bs}` : `-r${bs}`, job.rw === 'randrw' ? '-w50' : '-w100', '-t1', '-o1', `-d${runtime}`, '-W0', '-Sh'];
    if (job.seed !== undefined) args.push(`-z${int('seed', job.seed, 0, 0xffff_ffff)}`);
    args.push(target);
    return args;
  }

  async fio(job: FioJob, opts: GuestCallOptions = {}): Promise<void> {
    const disk = this.#diskById(job?.disk);
    WindowsAdapter.diskspdArgs(job, 'X:\\check'); // validate before touching the guest
    const l = await this.locate(disk, opts);
    if (!l.Partition.Letter) throw new GuestError('not-found', `fio: the tracked volume of disk ${disk.id} has no drive letter (diskspd needs a file path on it)`, { os: 'windows', operation: 'fio' });
    const target = `${l.Partition.Letter}:\\${this.options.workDir}\\${DISKSPD_FILE}`;
    const timeoutMs = opts.timeoutMs ?? job.runtimeSec * 1000 + this.options.commandTimeoutMs;
    await this.#run('fio', nativeScript(this.options.diskspd, WindowsAdapter.diskspdArgs(job, target), { ensureDir: `${l.Partition.Letter}:\\${this.options.workDir}` }), { ...opts, timeoutMs });
  }

  async checkpoint(disk: GuestDisk, opts: GuestCallOptions = {}): Promise<{ epochId: string }> {
    this.#need('checkpoint');
    const l = await this.locate(disk, opts);
    const p = l.Partition;
    const values: Record<string, string> = {
      volume: p.Letter ? `${p.Letter}:` : (p.Guid ?? ''),
      letter: p.Letter ?? '',
      guid: p.Guid ?? '',
      disk: String(l.Disk),
      partition: String(p.Number),
      serial: disk.serial,
      id: disk.id,
    };
    const argv = fillTemplate(this.#checkpoint as string[], values);
    const { stdout: raw } = await this.#exec('checkpoint', nativeScript(argv[0], argv.slice(1)), opts);
    const stdout = raw.split(/\r?\n/).filter((line) => !line.startsWith(RESULT_MARKER)).join('\n');
    const epochId = this.#epochRe ? (this.#epochRe.exec(stdout)?.[1] ?? '') : (stdout.split('\n').map((s) => s.trim()).filter(Boolean).pop() ?? '');
    if (!epochId) throw new GuestError('command', `checkpoint: no epoch id in the output of ${argv[0]}${this.#epochRe ? ` (pattern ${this.#epochRe.source})` : ''}: ${stdout.slice(-500)}`, { os: 'windows', operation: 'checkpoint' });
    return { epochId };
  }

  async flush(opts: GuestCallOptions = {}): Promise<void> {
    await this.#run('flush', flushScript(), opts);
  }
}
