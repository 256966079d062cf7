/**
 * The guest adapter interface: what the scenario runner asks of a guest OS (reboot, offline a
 * volume, disable a disk, write a seeded plan, start a tracking epoch…), implemented once per OS
 * (`linux-ref`, `windows`). Also the typed error, the support check the runner makes before a VM
 * starts, the command recorder every adapter uses for the run timeline, and the deterministic
 * write-plan generator both adapters share. See docs/windows-guest.md.
 */
import { SshClient, type SshConnectOptions, type SshTarget } from '../ssh/index.ts';
import { InfrastructureHarnessError } from '../util/index.ts';
import type { FilePlanOp } from './files-plan.ts';

export type GuestOperation = 'reboot' | 'shutdown' | 'offline' | 'online' | 'disable' | 'enable' | 'write' | 'fio' | 'checkpoint' | 'flush' | 'hibernate' | 'powerbutton-action' | 'files' | 'resize';

export const GUEST_OPERATIONS: readonly GuestOperation[] = ['reboot', 'shutdown', 'offline', 'online', 'disable', 'enable', 'write', 'fio', 'checkpoint', 'flush', 'hibernate', 'powerbutton-action', 'files', 'resize'];

/** A stage of the guest's shutdown order or of a volume teardown, as the guest reported it. */
export interface GuestPhase {
  /** `pre-fs`, `fs-unmounted`, `post-fs`, `power-off`, `offline`, `remove`. */
  phase: string;
  /** The guest's uptime (seconds) when the stage ran. */
  uptimeS: number;
}

/** A disk as the guest sees it: the scenario's disk id and the QEMU `serial=` it was given. */
export interface GuestDisk {
  id: string;
  /** The QEMU `serial=` (vm/ uses the disk id). */
  serial: string;
}

/**
 * Writes to make, in order. Offsets are relative to the write space of `disk` (the tracked
 * device or volume, or — Windows `file` mode — a file on the tracked volume: see
 * `GuestAdapter.writeSpace`). Each write fills `[offset, offset+length)` with the byte `pattern`.
 */
export interface WritePlan {
  disk: string;
  seed: number;
  writes: Array<{ offset: number; length: number; pattern: number }>;
}

export interface FioJob {
  disk: string;
  rw: 'randwrite' | 'write' | 'randrw';
  /** Block size in bytes. */
  bs: number;
  /** Bytes of the work file / region. */
  size: number;
  runtimeSec: number;
  /** Fixes the offset sequence, not the count (truth always comes from the host). */
  seed?: number;
}

/** One guest command, for the run timeline. */
export interface GuestCommandRecord {
  /** Readable text of what ran (for Windows the PowerShell script, not its base64). */
  command: string;
  /** null when there was none (connection lost, timeout, killed). */
  exitCode: number | null;
  durationMs: number;
  /** Epoch ms. */
  startedAt: number;
  stdout?: string;
  stderr?: string;
  /** The adapter operation this command served. */
  operation?: GuestOperation | 'probe';
}

export interface GuestCallOptions {
  signal?: AbortSignal;
  /** Overall limit of the operation. Each adapter documents its default. */
  timeoutMs?: number;
}

/** What `system_powerdown` (ACPI power button) will make the guest do. */
export interface PowerButtonInfo {
  action: 'shutdown' | 'hibernate' | 'sleep' | 'nothing' | 'display-off' | 'unknown';
  /** Windows fast startup (HiberbootEnabled): an orderly power-button shutdown is then a hybrid S4. */
  fastStartup: boolean | null;
  /** Raw value the classification came from (e.g. the PBUTTONACTION index). */
  raw?: string;
}

export interface GuestAdapter {
  readonly os: 'linux-ref' | 'windows';
  readonly supports: ReadonlySet<GuestOperation>;
  /**
   * Resolves when the guest answers after a boot the runner made (a VM start, a reset, a power
   * cut's restart) and its tracking is set up; drops any connection to the previous boot first.
   */
  ready(opts?: GuestCallOptions): Promise<void>;
  /**
   * A disk came back (hot-plugged again): set tracking up on it again where the guest does not do
   * that by itself. Absent: nothing to do.
   */
  reattached?(disk: GuestDisk, opts?: GuestCallOptions): Promise<void>;
  /** Orderly restart; resolves when the guest is back and answering commands. */
  reboot(opts?: GuestCallOptions): Promise<void>;
  /** Orderly power-off; resolves once the guest accepted it (the VM layer waits for QEMU to exit). */
  shutdown(opts?: GuestCallOptions): Promise<void>;
  offline(disk: GuestDisk, opts?: GuestCallOptions): Promise<void>;
  online(disk: GuestDisk, opts?: GuestCallOptions): Promise<void>;
  disable(disk: GuestDisk, opts?: GuestCallOptions): Promise<void>;
  enable(disk: GuestDisk, opts?: GuestCallOptions): Promise<void>;
  write(plan: WritePlan, opts?: GuestCallOptions): Promise<void>;
  fio(job: FioJob, opts?: GuestCallOptions): Promise<void>;
  /** Start a new tracking epoch and return its id (dm-era era, CBTF epoch/generation). */
  checkpoint(disk: GuestDisk, opts?: GuestCallOptions): Promise<{ epochId: string }>;
  /** Flush file-system and device caches of every tracked volume. */
  flush(opts?: GuestCallOptions): Promise<void>;
  hibernate?(opts?: GuestCallOptions): Promise<void>;
  /** Applies a seeded file-level plan (`planFiles`) on a mounted volume (`volume.serial` is the volume id). */
  files?(volume: GuestDisk, plan: readonly FilePlanOp[], opts?: GuestCallOptions): Promise<void>;
  /** The host grew the disk to `bytes`: the guest rescans it and grows its last volume, file system and tracker. */
  resize?(disk: GuestDisk, bytes: number, opts?: GuestCallOptions): Promise<void>;
  /**
   * A backup product's snapshot of a tracker whose claim is in guest memory: hold the tracked
   * volume's writes and persist the current claim, so the host reads it offline (then `thaw`).
   */
  freeze?(disk: GuestDisk, opts?: GuestCallOptions): Promise<void>;
  /** Undo `freeze`: the on-disk state says "not clean" again and the writes go on. */
  thaw?(disk: GuestDisk, opts?: GuestCallOptions): Promise<void>;
  /** Shutdown-order and teardown phases the guest reported since the last call (oldest first). */
  takePhases?(): Promise<GuestPhase[]>;
  /** Classify what the ACPI power button will do, before a `powerbutton` fault. */
  powerButtonAction?(opts?: GuestCallOptions): Promise<PowerButtonInfo>;
  /**
   * The byte space a `WritePlan` for `disk` addresses (give it to `planWrites` as `deviceSize`,
   * and `align` as the smallest alignment the adapter accepts). Absent: the whole disk, any alignment.
   */
  writeSpace?(disk: GuestDisk, opts?: GuestCallOptions): Promise<{ size: number; align: number }>;
  /** Every guest command with exit code and duration, for the run timeline. Returns an unsubscribe. */
  onCommand(listener: (r: GuestCommandRecord) => void): () => void;
  /** Close connections. Idempotent. */
  close(): Promise<void>;
}

export type GuestErrorKind = 'unsupported' | 'command' | 'timeout' | 'not-found';

export interface GuestErrorOptions {
  os?: string;
  operation?: string;
  command?: string;
  exitCode?: number | null;
  stderr?: string;
  cause?: unknown;
}

/**
 * - `unsupported` — this OS adapter cannot do the operation (raised before a VM starts by `assertSupported`);
 * - `command`     — a guest command failed (exit status, stderr kept) or its connection was lost;
 * - `timeout`     — a command or a wait (reboot) did not finish in time;
 * - `not-found`   — the disk (by serial), its volume or its device is not in the guest.
 */
export class GuestError extends InfrastructureHarnessError {
  override name = 'GuestError';
  kind: GuestErrorKind;
  os: string | undefined;
  operation: string | undefined;
  command: string | undefined;
  exitCode: number | null | undefined;
  stderr: string | undefined;

  constructor(kind: GuestErrorKind, message: string, opts: GuestErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.kind = kind;
    this.os = opts.os;
    this.operation = opts.operation;
    this.command = opts.command;
    this.exitCode = opts.exitCode;
    this.stderr = opts.stderr;
  }
}

/**
 * Throw a `GuestError` kind `unsupported` naming the OS and every operation in `ops` the
 * adapter does not support (call it while validating a scenario, before a VM starts).
 */
export function assertSupported(adapter: Pick<GuestAdapter, 'os' | 'supports'>, ops: Iterable<GuestOperation>): void {
  const missing: string[] = [];
  for (const op of ops) {
    if (!adapter.supports.has(op) && !missing.includes(op)) missing.push(op);
  }
  if (missing.length === 0) return;
  const supported = GUEST_OPERATIONS.filter((o) => adapter.supports.has(o));
  throw new GuestError('unsupported', `The ${adapter.os} guest adapter does not support ${missing.length === 1 ? 'the operation' : 'the operations'} ${missing.map((m) => `\`${m}\``).join(', ')} (it supports: ${supported.join(', ') || 'none'})`, { os: adapter.os, operation: missing.join(',') });
}

/** Fan-out of command records to listeners; a throwing listener cannot break the adapter. */
export class CommandRecorder {
  #listeners = new Set<(r: GuestCommandRecord) => void>();

  on(listener: (r: GuestCommandRecord) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('Expected a listener function');
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  emit(record: GuestCommandRecord): void {
    for (const l of [...this.#listeners]) {
      try {
        l(record);
      } catch {
        /* a broken timeline listener must not fail a guest operation */
      }
    }
  }
}

/** What an adapter needs of a guest connection; `SshClient` is one. */
export interface GuestShell {
  exec(command: string, opts?: { timeoutMs?: number; signal?: AbortSignal; stdin?: string | Buffer }): Promise<{ exitCode: number | null; signal: string | null; stdout: string; stderr: string; durationMs: number }>;
  close(): Promise<void>;
  readonly closed?: boolean;
}

/** Opens a connection to the guest, retrying until `retryUntil` (epoch ms) while it boots. */
export type GuestConnector = (opts: { signal?: AbortSignal; retryUntil?: number }) => Promise<GuestShell>;

/** A `GuestConnector` over the SSH module. */
export function sshConnector(target: SshTarget, connectOptions: Omit<SshConnectOptions, 'signal' | 'retryUntil'> = {}): GuestConnector {
  return (opts) => SshClient.connect(target, { ...connectOptions, signal: opts.signal, retryUntil: opts.retryUntil });
}

// ---------------------------------------------------------------------------------------------
// Deterministic write plans

export interface PlanWritesOptions {
  /** Any non-negative safe integer; the same options give the same plan on every host. */
  seed: number;
  /** 1..1_000_000 writes. */
  count: number;
  /** Bytes, rounded up to `align`. */
  sizeMin: number;
  /** Bytes, rounded down to `align`; ≥ sizeMin after rounding. */
  sizeMax: number;
  /** Size of the write space in bytes. */
  deviceSize: number;
  /** Power of two; offsets and lengths are multiples of it. @default 4096 */
  align?: number;
}

export const MAX_PLAN_WRITES = 1_000_000;

/**
 * Seeded 32-bit generator (Mulberry32 over a SplitMix-style seed mix); small, fast and fully
 * specified, so a plan is reproducible byte for byte.
 */
class Rng {
  #s: number;
  constructor(seed: number) {
    // Mix the high and low 32 bits of the seed so that seeds above 2^32 differ too.
    const lo = seed % 0x1_0000_0000;
    const hi = Math.floor(seed / 0x1_0000_0000);
    let s = (lo ^ Math.imul(hi ^ 0x9e3779b9, 0x85ebca6b)) >>> 0;
    s = Math.imul(s ^ (s >>> 16), 0x7feb352d) >>> 0;
    s = Math.imul(s ^ (s >>> 15), 0x846ca68b) >>> 0;
    this.#s = (s ^ (s >>> 16)) >>> 0;
  }

  next32(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n), n ≤ 2^53, by rejection (no modulo bias). */
  below(n: number): number {
    if (n <= 0x1_0000_0000) {
      const limit = Math.floor(0x1_0000_0000 / n) * n;
      for (;;) {
        const x = this.next32();
        if (x < limit) return x % n;
      }
    }
    const bits = 2 ** 53;
    const limit = Math.floor(bits / n) * n;
    for (;;) {
      const x = (this.next32() & 0x1f_ffff) * 0x1_0000_0000 + this.next32();
      if (x < limit) return x % n;
    }
  }
}

function checkInt(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new TypeError(`Expected \`${name}\` to be an integer in ${min}..${max}, got \`${String(v)}\` (${typeof v})`);
  return v;
}

/**
 * A reproducible plan of `count` writes inside `[0, deviceSize)`: lengths uniform over the
 * multiples of `align` in `[sizeMin, sizeMax]`, offsets uniform over the aligned positions where
 * the write fits, patterns uniform in 1..255. The harness computes truth on the host, so the plan
 * only has to be the same for the same options.
 */
export function planWrites(opts: PlanWritesOptions): WritePlan['writes'] {
  if (opts === null || typeof opts !== 'object') throw new TypeError('Expected planWrites options');
  const seed = checkInt('seed', opts.seed, 0);
  const count = checkInt('count', opts.count, 1, MAX_PLAN_WRITES);
  const align = checkInt('align', opts.align ?? 4096, 1, 1 << 30);
  if ((align & (align - 1)) !== 0) throw new TypeError(`Expected \`align\` to be a power of two, got \`${align}\``);
  const deviceSize = checkInt('deviceSize', opts.deviceSize, 1);
  const sizeMin = checkInt('sizeMin', opts.sizeMin, 1);
  const sizeMax = checkInt('sizeMax', opts.sizeMax, sizeMin);
  const kMin = Math.ceil(sizeMin / align);
  const kMax = Math.floor(sizeMax / align);
  if (kMax < kMin) throw new TypeError(`No multiple of \`align\` ${align} lies in \`sizeMin\`..\`sizeMax\` ${sizeMin}..${sizeMax}`);
  const slots = Math.floor(deviceSize / align);
  if (kMin > slots) throw new TypeError(`The smallest write (${kMin * align} bytes) does not fit in \`deviceSize\` ${deviceSize}`);
  const kTop = Math.min(kMax, slots);
  const rng = new Rng(seed);
  const writes: WritePlan['writes'] = [];
  for (let i = 0; i < count; i++) {
    const k = kMin + rng.below(kTop - kMin + 1);
    const offset = rng.below(slots - k + 1) * align;
    const pattern = 1 + rng.below(255);
    writes.push({ offset, length: k * align, pattern });
  }
  return writes;
}

/** Throw a TypeError naming the first write of `plan` that is malformed or outside `[0, size)` or not `align`-aligned. */
export function checkPlan(plan: WritePlan, size: number, align = 1): void {
  if (plan === null || typeof plan !== 'object' || !Array.isArray(plan.writes)) throw new TypeError('Expected a write plan with a `writes` array');
  if (plan.writes.length > MAX_PLAN_WRITES) throw new TypeError(`A write plan holds at most ${MAX_PLAN_WRITES} writes, got ${plan.writes.length}`);
  for (const [i, w] of plan.writes.entries()) {
    const f = `writes[${i}]`;
    checkInt(`${f}.offset`, w?.offset, 0);
    checkInt(`${f}.length`, w.length, 1, 1 << 30);
    checkInt(`${f}.pattern`, w.pattern, 0, 255);
    if (w.offset + w.length > size) throw new TypeError(`\`${f}\` [${w.offset}, +${w.length}) ends past the write space of ${size} bytes`);
    if (w.offset % align !== 0 || w.length % align !== 0) throw new TypeError(`\`${f}\` [${w.offset}, +${w.length}) is not aligned to ${align} bytes`);
  }
}
