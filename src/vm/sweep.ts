/**
 * Finds what crashed runs left behind: runtime folders `cbt-vm-*` in the temp dir whose label
 * file `cbt-vm.json` names a run whose harness process (`ownerPid`) is gone, and the QEMU
 * processes they record (matched by pid *and* by the `-name cbt-<runId>-<vmId>` on their
 * command line, so a recycled pid is never killed). VMs of a harness still running are not
 * leftovers and are never touched.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Leftover {
  dir: string;
  label: string;
  runId: string;
  pid: number | null;
  /** The recorded pid is a live QEMU carrying this label. */
  alive: boolean;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function cmdlineOf(pid: number): Promise<string | null> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'latin1')).split('\0').join(' ');
  } catch {
    return null;
  }
}

export async function findLeftoverVms(opts: { runId?: string; root?: string } = {}): Promise<Leftover[]> {
  const root = opts.root ?? tmpdir();
  const out: Leftover[] = [];
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.startsWith('cbt-vm-')) continue;
    const dir = join(root, name);
    let meta: { label?: unknown; runId?: unknown; pid?: unknown; ownerPid?: unknown };
    try {
      meta = JSON.parse(await readFile(join(dir, 'cbt-vm.json'), 'utf8')) as typeof meta;
    } catch {
      continue;
    }
    if (typeof meta.label !== 'string' || typeof meta.runId !== 'string') continue;
    if (opts.runId !== undefined && meta.runId !== opts.runId) continue;
    if (Number.isInteger(meta.ownerPid) && meta.ownerPid !== process.pid && pidAlive(meta.ownerPid as number)) continue;
    if (meta.ownerPid === process.pid) continue;
    const pid = Number.isInteger(meta.pid) ? (meta.pid as number) : null;
    const cmd = pid === null ? null : await cmdlineOf(pid);
    out.push({ dir, label: meta.label, runId: meta.runId, pid, alive: cmd !== null && cmd.includes(`${meta.label},`) });
  }
  return out;
}

/** SIGKILLs the live ones and removes their folders. Do not call it for a run still going on. */
export async function sweepLeftoverVms(opts: { runId?: string; root?: string } = {}): Promise<Leftover[]> {
  const found = await findLeftoverVms(opts);
  for (const l of found) {
    if (l.alive && l.pid !== null) {
      try {
        process.kill(l.pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    await rm(l.dir, { recursive: true, force: true });
  }
  return found;
}
