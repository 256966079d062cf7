/**
 * Every VM this process started and has not stopped yet. While there is one, a last-chance
 * `exit` hook SIGKILLs whatever is left and removes its runtime folder, and — unless the
 * application owns the signals (`leaveSignalsToApplication`, the CLI's src/cli/signals.ts) —
 * SIGINT, SIGTERM and SIGHUP stop them all (forcefully: a quick `quit`, then SIGKILL) before the
 * signal takes its default effect. The handlers are removed as soon as no VM is left, so an idle
 * harness keeps Node's default signal behaviour.
 */
import { rmSync } from 'node:fs';
import { createLogger } from '../util/index.ts';

const log = createLogger('cbt:vm');

export interface LiveVm {
  readonly label: string;
  readonly pid: number | undefined;
  readonly runtimeDir: string;
  /** Stop now, by force if needed; resolves when the process is gone and cleaned up. */
  emergencyStop(): Promise<unknown>;
}

const live = new Set<LiveVm>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let installed = false;
let stopping = false;
/** The application handles SIGINT/SIGTERM/SIGHUP itself (and calls killLiveVms when it must). */
let applicationOwnsSignals = false;

async function onSignal(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.warn(`${signal}: stopping ${live.size} VM(s)`, { vms: [...live].map((v) => v.label).join(',') });
  uninstall();
  await Promise.allSettled([...live].map((v) => v.emergencyStop()));
  stopping = false;
  // Re-raise: with our handler gone, the default action (terminate) applies unless the
  // application installed its own.
  process.kill(process.pid, signal);
}

/**
 * SIGKILL every live VM now and remove its runtime folder (synchronous: safe right before
 * `process.exit`). The application's forced stop; also the `exit` hook.
 */
export function killLiveVms(): string[] {
  const labels = liveVmLabels();
  onExit();
  return labels;
}

function onExit(): void {
  for (const v of live) {
    if (v.pid !== undefined) {
      try {
        process.kill(v.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    rmSync(v.runtimeDir, { recursive: true, force: true });
  }
}

const handlers = new Map<NodeJS.Signals, () => void>(SIGNALS.map((s) => [s, () => void onSignal(s)]));

function install(): void {
  if (installed) return;
  installed = true;
  if (!applicationOwnsSignals) for (const [s, h] of handlers) process.on(s, h);
  process.on('exit', onExit);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const [s, h] of handlers) process.off(s, h);
  process.off('exit', onExit);
}

/**
 * The application owns SIGINT/SIGTERM/SIGHUP (a graceful stop first, `killLiveVms` on a second
 * signal): this module then installs no signal handlers, only the `exit` hook. `false` gives
 * them back (library use: VMs are killed on a signal).
 */
export function leaveSignalsToApplication(owned = true): void {
  if (applicationOwnsSignals === owned) return;
  applicationOwnsSignals = owned;
  if (!installed) return;
  for (const [s, h] of handlers) {
    process.off(s, h);
    if (!owned) process.on(s, h);
  }
}

export function trackLive(vm: LiveVm): void {
  live.add(vm);
  install();
}

export function untrackLive(vm: LiveVm): void {
  live.delete(vm);
  if (live.size === 0 && !stopping) uninstall();
}

/** Labels of VMs this process is running (diagnostics, tests). */
export function liveVmLabels(): string[] {
  return [...live].map((v) => v.label);
}
