/**
 * Every VM this process started and has not stopped yet. While there is one, SIGINT, SIGTERM and
 * SIGHUP stop them all (forcefully: a quick `quit`, then SIGKILL) before the signal takes its
 * default effect, and a last-chance `exit` hook SIGKILLs whatever is left and removes its
 * runtime folder. The handlers are removed as soon as no VM is left, so an idle harness keeps
 * Node's default signal behaviour.
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
  for (const [s, h] of handlers) process.on(s, h);
  process.on('exit', onExit);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const [s, h] of handlers) process.off(s, h);
  process.off('exit', onExit);
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
