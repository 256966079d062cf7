/**
 * One QEMU process: `startVm(spec)` → a `RunningVm` (AsyncDisposable) → stopped.
 *
 * Start:
 *   1. validate the spec; choose the accelerator (`auto`: KVM only after a boot probe);
 *   2. make a private runtime folder (0700, `cbt-vm-…` under the temp dir) holding the QMP socket,
 *      the pidfile, fw_cfg data and `cbt-vm.json` (run label, pid, argv) for a sweeper;
 *   3. spawn QEMU in its own process group (under `setpriv --pdeathsig SIGKILL` when available,
 *      so it dies with the harness even on SIGKILL), console to `console-<boot>.log`;
 *   4. connect QMP (retrying until the socket exists) and check the VM runs. On any failure,
 *      tear down and rethrow the original error (with QEMU's stderr when it exited).
 * Stop (idempotent): graceful step (guest callback or ACPI power button) → wait → `quit` →
 * SIGKILL; reports `clean` only when QEMU exited by itself after the graceful step.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient, QmpError, type QmpEvent } from '../qmp/index.ts';
import { chooseAccel, type AccelChoice } from './accel.ts';
import { withPdeathsig } from './pdeathsig.ts';
import { buildQemuArgv, deviceId, diskDevices, diskNode, ejectTarget } from './argv.ts';
import { ConsoleLog, type ConsoleMatch, type ConsoleWaitOptions } from './console-log.ts';
import { VmError } from './errors.ts';
import { trackLive, untrackLive, type LiveVm } from './live.ts';
import { createLogger } from '../util/index.ts';
import { validateSpec, vmLabel, type Accel, type DiskSpec, type VmSpec } from './spec.ts';

const log = createLogger('cbt:vm');

export interface StartOptions {
  signal?: AbortSignal;
  /** Time for QEMU to come up with QMP answering. @default 30000 */
  readyTimeoutMs?: number;
  /** Reuse an earlier accel decision (restarts after a power cut skip the probe). */
  accelChoice?: AccelChoice;
  /** `auto`: probe KVM anew instead of trusting the cached answer (`--accel-probe`). */
  forceAccelProbe?: boolean;
  /** Boot counter for console file names. @default 1 */
  boot?: number;
  /** Disks started without their devices (they were unplugged before a power cut). */
  unplugged?: Iterable<string>;
}

export type Plugged = 'plugged' | 'ejected' | 'lun-removed';

export interface DiskState {
  readonly spec: DiskSpec;
  /** Node name of the chain's top (`disk-<id>`, then `disk-<id>-s<n>` after snapshots). */
  topNode: string;
  /** Image file of the chain's top. */
  topPath: string;
  /** Image files from the start image to the top (each external snapshot adds one). */
  chain: string[];
  plugged: Plugged;
}

export interface SnapshotResult {
  diskId: string;
  /** The former top, now the read-only backing of `overlay`. */
  base: string;
  overlay: string;
  node: string;
}

export interface UnplugResult {
  diskId: string;
  /** The device `device_del` was sent to. */
  device: string;
  /** `deleted`: DEVICE_DELETED came (the guest let go). `vetoed`: no event within the timeout. `removed`: surprise removal, no guest involved. */
  outcome: 'deleted' | 'vetoed' | 'removed';
  waitedMs: number;
}

export interface StopOptions {
  /**
   * First step: `powerdown` presses the ACPI power button (QMP `system_powerdown`); a function is
   * a guest-side shutdown (e.g. `cbt-ctl shutdown` over SSH; its errors are logged, not thrown);
   * `none` goes straight to `quit`.
   * @default 'powerdown'
   */
  graceful?: 'powerdown' | 'none' | ((vm: RunningVm) => Promise<unknown>);
  /** How long QEMU may take to exit after the graceful step. @default 30000 */
  timeoutMs?: number;
}

export interface StopResult {
  shutdown: 'clean' | 'forced';
  /** What ended QEMU: it exited after the graceful step (`guest`), `quit`, `kill`, or it had already exited (`exited`). */
  via: 'guest' | 'quit' | 'kill' | 'exited';
  exitCode: number | null;
  signal: string | null;
}

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const TIMED_OUT = Symbol('timed out');
/** `p`, or TIMED_OUT after `ms`; the timer is cleared either way (a pending one would keep the process alive). */
async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  const ac = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, TIMED_OUT, { signal: ac.signal })]);
  } finally {
    ac.abort();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePromise(port));
    });
  });
}

function qboot(): string | undefined {
  const p = '/usr/share/qemu/qboot.rom';
  return existsSync(p) ? p : undefined;
}

function runTool(cmd: string, args: string[], vm: string, signal?: AbortSignal): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { signal, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new VmError('tool', `${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`, { vm, cause: err }));
      else resolvePromise(String(stdout));
    });
  });
}

/** Starts QEMU for `spec`; see the module comment for the steps. */
export async function startVm(spec: VmSpec, opts: StartOptions = {}): Promise<RunningVm> {
  validateSpec(spec);
  const label = vmLabel(spec);
  const accel = opts.accelChoice ?? (await chooseAccel(spec.accel ?? 'auto', spec.probe, { qemuBinary: spec.qemuBinary, machine: spec.machine, cpu: spec.cpu, signal: opts.signal, force: opts.forceAccelProbe }));
  const autoPorts = spec.network !== false && (spec.network?.forwards ?? []).some((f) => f.hostPort === undefined);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(spec, label, accel, opts);
    } catch (e) {
      // A picked port can be taken between our check and QEMU's bind: pick again.
      if (autoPorts && attempt < 3 && e instanceof VmError && e.kind === 'start' && /host forwarding rule/i.test(e.message)) continue;
      throw e;
    }
  }
}

async function startOnce(spec: VmSpec, label: string, accel: AccelChoice, opts: StartOptions): Promise<RunningVm> {
  const boot = opts.boot ?? 1;
  const runtimeDir = await mkdtemp(join(tmpdir(), 'cbt-vm-'));
  await chmod(runtimeDir, 0o700);
  let child: ChildProcess | undefined;
  let qmp: QmpClient | undefined;
  try {
    const logDir = spec.logDir ?? runtimeDir;
    if (spec.logDir) await mkdir(spec.logDir, { recursive: true });
    const consoleLog = join(logDir, `console-${boot}.log`);
    await rm(consoleLog, { force: true });
    const fwCfg: Array<{ name: string; file: string } | { name: string; string: string }> = [];
    for (const [i, e] of (spec.fwCfg ?? []).entries()) {
      if ('data' in e) {
        const file = join(runtimeDir, `fwcfg-${i}`);
        await writeFile(file, e.data, { mode: 0o600 });
        fwCfg.push({ name: e.name, file });
      } else fwCfg.push(e);
    }
    const forwards: Array<{ guestPort: number; hostPort: number }> = [];
    if (spec.network !== false) for (const f of spec.network?.forwards ?? []) forwards.push({ guestPort: f.guestPort, hostPort: f.hostPort ?? (await freePort()) });
    const kernel = spec.kernel === undefined ? undefined : typeof spec.kernel === 'string' ? spec.kernel : spec.kernel[accel.accel];
    const firmware = spec.uefi ? 'uefi' : (spec.firmware ?? (kernel && qboot() ? 'qboot' : 'seabios'));
    const bios = firmware === 'qboot' ? qboot() : undefined;
    if (firmware === 'qboot' && !bios) throw new VmError('spec', 'firmware `qboot` asked for, but /usr/share/qemu/qboot.rom is not installed', { vm: label });
    const qmpSocket = join(runtimeDir, 'qmp.sock');
    const pidFile = join(runtimeDir, 'qemu.pid');
    const argv = buildQemuArgv(spec, { accel: accel.accel, cpu: accel.cpu, kernel, bios, qmpSocket, consoleLog, pidFile, forwards, fwCfg, unplugged: new Set(opts.unplugged ?? []) });
    const qemu = spec.qemuBinary ?? 'qemu-system-x86_64';
    const [cmd, args] = await withPdeathsig(qemu, argv);
    log.debug('spawn', { vm: label, accel: accel.accel, argv: argv.join(' ') });
    const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    child = proc;
    let stderr = '';
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => {
      stderr = (stderr + d).slice(-16384);
    });
    const exited = new Promise<ExitInfo>((resolvePromise) => {
      proc.once('exit', (code, signal) => resolvePromise({ code, signal }));
      proc.once('error', (err) => {
        stderr += `\n${err.message}`;
        resolvePromise({ code: null, signal: null });
      });
    });
    await writeFile(join(runtimeDir, 'cbt-vm.json'), `${JSON.stringify({ label, runId: spec.runId, vmId: spec.vmId, pid: proc.pid, ownerPid: process.pid, startedAt: new Date().toISOString(), qemu, argv }, null, 1)}\n`, { mode: 0o600 });
    const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
    const connecting = QmpClient.connect({ path: qmpSocket }, { retryUntil: Date.now() + readyTimeoutMs, timeoutMs: readyTimeoutMs, signal: opts.signal, label: `${label} QMP` });
    const early = exited.then((x) => {
      throw new VmError('start', `QEMU exited during start-up (${x.code ?? x.signal}): ${stderr.trim() || '(no stderr)'}`, { vm: label });
    });
    try {
      qmp = await Promise.race([connecting, early]);
    } catch (e) {
      connecting.then((c) => c.close(), () => undefined);
      // QEMU may have exited because of bad arguments: its stderr explains the QMP failure.
      if (e instanceof QmpError && e.kind === 'aborted') throw new VmError('aborted', 'start aborted', { vm: label, cause: e });
      if (e instanceof QmpError) {
        const x = await withTimeout(exited, 200);
        if (x !== TIMED_OUT) throw new VmError('start', `QEMU exited during start-up (${x.code ?? x.signal}): ${stderr.trim() || '(no stderr)'}`, { vm: label, cause: e });
        throw new VmError('start', `QMP did not come up: ${e.message}`, { vm: label, cause: e });
      }
      throw e;
    }
    early.catch(() => undefined);
    const status = await qmp.execute<{ status: string; running: boolean }>('query-status');
    if (!status.running) throw new VmError('start', `VM is not running after start (status ${status.status})`, { vm: label });
    const vm = new RunningVm({ spec, label, accel, boot, runtimeDir, consoleLog, argv, proc, exited, qmp, forwards, stderr: () => stderr, unplugged: new Set(opts.unplugged ?? []) });
    log.debug('started', { vm: label, pid: proc.pid, accel: accel.accel });
    return vm;
  } catch (error) {
    // Tear down what was started, then rethrow the original error.
    try {
      await qmp?.close();
    } catch {
      // ignore
    }
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone
      }
      await new Promise((r) => (child?.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r)));
    }
    await rm(runtimeDir, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}

interface RunningInit {
  spec: VmSpec;
  label: string;
  accel: AccelChoice;
  boot: number;
  runtimeDir: string;
  consoleLog: string;
  argv: string[];
  proc: ChildProcess;
  exited: Promise<ExitInfo>;
  qmp: QmpClient;
  forwards: Array<{ guestPort: number; hostPort: number }>;
  stderr: () => string;
  unplugged: Set<string>;
}

export class RunningVm implements AsyncDisposable, LiveVm {
  readonly spec: VmSpec;
  /** `cbt-<runId>-<vmId>`. */
  readonly label: string;
  readonly accel: AccelChoice;
  /** 1 for the first QEMU of this VM, +1 for each restart after a power cut. */
  readonly boot: number;
  readonly runtimeDir: string;
  readonly consoleLogPath: string;
  readonly console: ConsoleLog;
  readonly argv: string[];
  readonly qmp: QmpClient;
  /** Resolves when the QEMU process has exited. */
  readonly exited: Promise<ExitInfo>;
  #proc: ChildProcess;
  #forwards: Array<{ guestPort: number; hostPort: number }>;
  #stderr: () => string;
  #disks = new Map<string, DiskState>();
  #snapshotCounter = 0;
  #stopping: Promise<StopResult> | null = null;
  #exitInfo: ExitInfo | null = null;
  #offDeleted: () => void;

  constructor(init: RunningInit) {
    this.spec = init.spec;
    this.label = init.label;
    this.accel = init.accel;
    this.boot = init.boot;
    this.runtimeDir = init.runtimeDir;
    this.consoleLogPath = init.consoleLog;
    this.console = new ConsoleLog(init.consoleLog);
    this.argv = init.argv;
    this.qmp = init.qmp;
    this.#proc = init.proc;
    this.exited = init.exited;
    this.#forwards = init.forwards;
    this.#stderr = init.stderr;
    void this.exited.then((x) => (this.#exitInfo = x));
    for (const d of init.spec.disks ?? []) {
      this.#disks.set(d.id, { spec: d, topNode: diskNode(d.id), topPath: d.path, chain: [d.path], plugged: init.unplugged.has(d.id) ? 'ejected' : 'plugged' });
    }
    // A late DEVICE_DELETED (a guest that acked after we called it vetoed) still unplugs.
    this.#offDeleted = this.qmp.onEvent((e) => this.#onDeviceDeleted(e));
    trackLive(this);
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  /** Whether the QEMU process is still there. */
  get running(): boolean {
    return this.#exitInfo === null;
  }

  /** Host port forwarded to `guestPort` on 127.0.0.1. */
  hostPort(guestPort: number): number {
    const f = this.#forwards.find((x) => x.guestPort === guestPort);
    if (!f) throw new VmError('spec', `guest port ${guestPort} is not forwarded (forwards: ${this.#forwards.map((x) => x.guestPort).join(', ') || 'none'})`, { vm: this.label });
    return f.hostPort;
  }

  disk(id: string): Readonly<DiskState> {
    const d = this.#disks.get(id);
    if (!d) throw new VmError('spec', `no disk \`${id}\` (disks: ${[...this.#disks.keys()].join(', ') || 'none'})`, { vm: this.label });
    return d;
  }

  get disks(): ReadonlyArray<Readonly<DiskState>> {
    return [...this.#disks.values()];
  }

  /** Waits for text on the serial console (this boot's log); rejects if QEMU exits first. */
  waitForConsole(pattern: RegExp | string, opts: ConsoleWaitOptions = {}): Promise<ConsoleMatch> {
    return this.console.waitFor(pattern, { ...opts, stopped: this.exited, vm: this.label });
  }

  async execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<T> {
    try {
      return await this.qmp.execute<T>(command, args, opts);
    } catch (e) {
      if (e instanceof QmpError) {
        const kind = e.kind === 'aborted' ? 'aborted' : e.kind === 'closed' ? 'exited' : 'qmp';
        throw new VmError(kind, `QMP ${command}: ${e.desc ?? e.message}`, { vm: this.label, cause: e });
      }
      throw e;
    }
  }

  /**
   * Hard reset (QMP `system_reset`): the guest reboots without shutting down. A running VM stays
   * running: QEMU handles the request in its main loop with the vCPUs paused, and when the run
   * state reads anything but running after that (it can change while the vCPUs are paused, says
   * QEMU's softmmu/runstate.c) it leaves the machine in `prelaunch`, stopped for good; seen once
   * under load in CI. Then the VM is continued, as the reset did not ask it to stop.
   */
  async reset(): Promise<void> {
    const before = await this.execute<{ status: string }>('query-status');
    const since = Date.now();
    await this.execute('system_reset');
    if (before.status !== 'running') return;
    await this.qmp.waitForEvent('RESET', { since, timeoutMs: 10_000 }).catch(() => undefined);
    const after = await this.execute<{ status: string }>('query-status');
    if (after.status === 'prelaunch') await this.execute('cont');
  }

  /** ACPI power button (QMP `system_powerdown`); does not wait for the guest. */
  async powerButton(): Promise<void> {
    await this.execute('system_powerdown');
  }

  /** Pause the vCPUs (QMP `stop`; QEMU drains and flushes in-flight I/O). */
  async pause(): Promise<void> {
    await this.execute('stop');
  }

  async resume(): Promise<void> {
    await this.execute('cont');
  }

  /**
   * External snapshot: a new qcow2 overlay (made by `qemu-img create -u`, backing = the current
   * top) becomes the disk's top; the old top stays as its read-only backing.
   * @returns both paths
   */
  async snapshot(diskId: string, opts: { overlayPath?: string; signal?: AbortSignal } = {}): Promise<SnapshotResult> {
    const d = this.disk(diskId) as DiskState;
    const n = ++this.#snapshotCounter;
    const overlay = resolve(opts.overlayPath ?? this.#defaultOverlayPath(d));
    if (existsSync(overlay)) throw new VmError('spec', `snapshot overlay ${overlay} already exists`, { vm: this.label });
    const nodes = await this.execute<Array<{ 'node-name': string; image: { 'virtual-size': number; format: string } }>>('query-named-block-nodes', { flat: true });
    const top = nodes.find((x) => x['node-name'] === d.topNode);
    if (!top) throw new VmError('qmp', `block node ${d.topNode} not found`, { vm: this.label });
    // -u: the top is in use (locked) by QEMU; the size comes from QEMU itself.
    await runTool(this.spec.qemuImgBinary ?? 'qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', resolve(d.topPath), '-F', top.image.format, overlay, String(top.image['virtual-size'])], this.label, opts.signal);
    const node = `${diskNode(diskId)}-s${n}`;
    try {
      await this.execute('blockdev-add', { driver: 'file', 'node-name': `${node}-file`, filename: overlay, discard: 'unmap' }, opts);
      await this.execute('blockdev-add', { driver: 'qcow2', 'node-name': node, file: `${node}-file`, backing: null, discard: 'unmap' }, opts);
      await this.execute('blockdev-snapshot', { node: d.topNode, overlay: node }, opts);
    } catch (e) {
      await this.execute('blockdev-del', { 'node-name': node }).catch(() => undefined);
      await this.execute('blockdev-del', { 'node-name': `${node}-file` }).catch(() => undefined);
      await rm(overlay, { force: true });
      throw e;
    }
    const base = d.topPath;
    d.topNode = node;
    d.topPath = overlay;
    d.chain.push(overlay);
    return { diskId, base, overlay, node };
  }

  #defaultOverlayPath(d: DiskState): string {
    const first = d.chain[0];
    const stem = basename(first, extname(first));
    for (let k = d.chain.length; ; k++) {
      const p = join(dirname(first), `${stem}.snap${k}.qcow2`);
      if (!existsSync(p)) return p;
    }
  }

  /**
   * Grows the disk the guest sees (QMP `block_resize` of its top node, which the guest's device
   * reports as a capacity change). The backing images keep their size: past their end they read zeros.
   */
  async resizeDisk(diskId: string, bytes: number, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const d = this.disk(diskId);
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 512 !== 0) throw new VmError('qmp', `resize of ${diskId} to ${bytes} bytes: not a positive multiple of 512`, { vm: this.label });
    await this.execute('block_resize', { 'node-name': d.topNode, size: bytes }, opts);
  }

  /** A dirty bitmap on the disk's top node; persistent ones are stored in the qcow2 at close. */
  async addDirtyBitmap(diskId: string, name: string, opts: { granularity?: number; persistent?: boolean } = {}): Promise<{ node: string }> {
    const d = this.disk(diskId);
    const args: Record<string, unknown> = { node: d.topNode, name, persistent: opts.persistent ?? true };
    if (opts.granularity !== undefined) args.granularity = opts.granularity;
    await this.execute('block-dirty-bitmap-add', args);
    return { node: d.topNode };
  }

  /**
   * Orderly removal: `device_del` of the disk's PCI function (for virtio-scsi its controller),
   * which asks the guest to let go (ACPI/PCIe hotplug). DEVICE_DELETED → `deleted`; nothing
   * within `timeoutMs` → `vetoed` (the device is still there).
   */
  async eject(diskId: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<UnplugResult> {
    const d = this.disk(diskId) as DiskState;
    if (d.plugged !== 'plugged') throw new VmError('unsupported', `disk ${diskId} is not plugged (${d.plugged})`, { vm: this.label });
    const device = ejectTarget(d.spec);
    return this.#deviceDel(d, device, 'ejected', opts.timeoutMs ?? 10_000, opts.signal);
  }

  /**
   * Surprise removal: the `scsi-hd` LUN is deleted from its virtio-scsi controller. QEMU unrealizes
   * it at once and only then tells the guest (a virtio-scsi transport-reset event, "removed"):
   * the guest cannot refuse or flush. virtio-scsi disks only.
   */
  async surpriseRemove(diskId: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<UnplugResult> {
    const d = this.disk(diskId) as DiskState;
    if (d.spec.bus !== 'virtio-scsi') throw new VmError('unsupported', `surprise removal needs a virtio-scsi disk; ${diskId} is on ${d.spec.bus} (use eject)`, { vm: this.label });
    if (d.plugged !== 'plugged') throw new VmError('unsupported', `disk ${diskId} is not plugged (${d.plugged})`, { vm: this.label });
    const r = await this.#deviceDel(d, deviceId(diskId), 'lun-removed', opts.timeoutMs ?? 5_000, opts.signal);
    return { ...r, outcome: r.outcome === 'deleted' ? 'removed' : r.outcome };
  }

  async #deviceDel(d: DiskState, device: string, after: Plugged, timeoutMs: number, signal?: AbortSignal): Promise<UnplugResult> {
    const since = Date.now();
    await this.execute('device_del', { id: device }, { signal });
    try {
      await this.qmp.waitForEvent('DEVICE_DELETED', { since, timeoutMs, signal, predicate: (e) => e.data.device === device });
    } catch (e) {
      if (e instanceof QmpError && e.kind === 'timeout') return { diskId: d.spec.id, device, outcome: 'vetoed', waitedMs: Date.now() - since };
      if (e instanceof QmpError) throw new VmError(e.kind === 'aborted' ? 'aborted' : 'exited', `waiting for DEVICE_DELETED of ${device}: ${e.message}`, { vm: this.label, cause: e });
      throw e;
    }
    d.plugged = after;
    return { diskId: d.spec.id, device, outcome: 'deleted', waitedMs: Date.now() - since };
  }

  #onDeviceDeleted(e: QmpEvent): void {
    if (e.event !== 'DEVICE_DELETED' || typeof e.data.device !== 'string') return;
    for (const d of this.#disks.values()) {
      if (d.plugged !== 'plugged') continue;
      if (e.data.device === ejectTarget(d.spec)) d.plugged = 'ejected';
      else if (e.data.device === deviceId(d.spec.id) && d.spec.bus === 'virtio-scsi') d.plugged = 'lun-removed';
    }
  }

  /** Plugs a removed disk back: same node (the chain's current top), same serial, same slot. */
  async replug(diskId: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const d = this.disk(diskId) as DiskState;
    if (d.plugged === 'plugged') throw new VmError('unsupported', `disk ${diskId} is plugged already`, { vm: this.label });
    const devices = diskDevices(d.spec, this.spec.machine ?? 'q35', d.topNode);
    const toAdd = d.plugged === 'lun-removed' ? devices.filter((x) => x.id === deviceId(diskId)) : devices;
    for (const dev of toAdd) await this.execute('device_add', { ...dev }, opts);
    d.plugged = 'plugged';
  }

  /**
   * Power cut: SIGKILL QEMU (no flush, no shutdown), then start a new QEMU on the same disk
   * chains (their current tops). This object is stopped afterwards; use the returned VM.
   */
  async powerCut(opts: StartOptions = {}): Promise<RunningVm> {
    await this.#finish(async () => {
      this.#kill();
      await this.exited;
      return 'kill';
    });
    const disks = [...this.#disks.values()].map((d) => ({ ...d.spec, path: d.topPath }));
    const unplugged = [...this.#disks.values()].filter((d) => d.plugged !== 'plugged').map((d) => d.spec.id);
    return startVm({ ...this.spec, disks }, { ...opts, accelChoice: this.accel, boot: this.boot + 1, unplugged });
  }

  #kill(): void {
    if (this.#exitInfo || this.#proc.pid === undefined) return;
    try {
      process.kill(this.#proc.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  async #waitExit(ms: number): Promise<boolean> {
    if (this.#exitInfo) return true;
    return (await withTimeout(this.exited, ms)) !== TIMED_OUT;
  }

  /** Stops QEMU gracefully then by force; idempotent (later calls get the first result). */
  stop(opts: StopOptions = {}): Promise<StopResult> {
    return this.#finish(async () => {
      if (this.#exitInfo) return 'exited';
      const graceful = opts.graceful ?? 'powerdown';
      const timeoutMs = opts.timeoutMs ?? 30_000;
      if (graceful !== 'none') {
        const deadline = Date.now() + timeoutMs;
        try {
          if (graceful === 'powerdown') await this.execute('system_powerdown', undefined, { timeoutMs: 5_000 });
          // A guest callback that hangs (an SSH session that never returns) must not hold us.
          else await withTimeout(Promise.race([graceful(this), this.exited]), timeoutMs);
        } catch (e) {
          log.debug('graceful step failed', { vm: this.label, error: e });
        }
        if (await this.#waitExit(Math.max(0, deadline - Date.now()))) return 'guest';
        log.warn('guest did not power off in time; quitting QEMU', { vm: this.label, timeoutMs });
      }
      try {
        await this.qmp.execute('quit', undefined, { timeoutMs: 5_000 });
      } catch {
        // QMP gone or QEMU busy: SIGKILL follows
      }
      if (await this.#waitExit(5_000)) return 'quit';
      this.#kill();
      await this.exited;
      return 'kill';
    });
  }

  #finish(end: () => Promise<StopResult['via']>): Promise<StopResult> {
    this.#stopping ??= (async () => {
      let via: StopResult['via'];
      try {
        via = await end();
      } catch (e) {
        log.warn('stop failed; killing QEMU', { vm: this.label, error: e });
        this.#kill();
        via = 'kill';
      }
      const x = await this.exited;
      this.#offDeleted();
      await this.qmp.close().catch(() => undefined);
      await rm(this.runtimeDir, { recursive: true, force: true }).catch(() => undefined);
      untrackLive(this);
      const clean = via === 'guest' || (via === 'exited' && x.code === 0);
      return { shutdown: clean ? 'clean' : 'forced', via, exitCode: x.code, signal: x.signal };
    })();
    return this.#stopping;
  }

  /** For the signal handlers: stop fast (`quit`, then SIGKILL). */
  emergencyStop(): Promise<StopResult> {
    return this.stop({ graceful: 'none' });
  }

  /** QEMU's stderr so far (last 16 KiB). */
  get stderr(): string {
    return this.#stderr();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

export type { Accel };
