/**
 * Test helpers for the VM launcher and the reference guest: the image (built once, cached in the
 * user's image cache), a login key, VMs stopped (and killed by pid) in teardown.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { buildLinuxRef, connectLinuxRef, linuxRefVmSpec, type GuestHostKey, type LinuxRefImage, type LinuxRefSpecOptions } from '../../src/guest/linux-ref-image.ts';
import { generateKeyPair, type SshClient } from '../../src/ssh/index.ts';
import { startVm, type RunningVm, type StartOptions, type VmSpec } from '../../src/vm/index.ts';

export const run = promisify(execFile);

let image: Promise<LinuxRefImage> | null = null;
/** The reference image (one build per test process; the cache makes later ones instant). */
export function linuxRefImage(): Promise<LinuxRefImage> {
  image ??= buildLinuxRef();
  return image;
}

let keys: Promise<{ privateKey: string; publicKey: string }> | null = null;
export function loginKey(): Promise<{ privateKey: string; publicKey: string }> {
  keys ??= generateKeyPair();
  return keys;
}

/** Stops the VM in teardown, whatever happened (a VM already stopped is a no-op). */
export function stopInTeardown(t: ExecutionContext, vm: RunningVm): RunningVm {
  t.teardown(async () => {
    await vm.stop({ graceful: 'none' });
  });
  return vm;
}

export async function startTracked(t: ExecutionContext, spec: VmSpec, opts: StartOptions = {}): Promise<RunningVm> {
  return stopInTeardown(t, await startVm(spec, opts));
}

export interface Guest {
  vm: RunningVm;
  ssh: SshClient;
  hostKey: GuestHostKey;
  spec: VmSpec;
  /** Runs a command, fails the test's promise with its output when it exits non-zero. */
  sh(cmd: string, stdin?: string): Promise<string>;
  /** Re-connects after a reboot or restart (new console offset, same pinned key). */
  reconnect(vm: RunningVm, fromConsoleOffset?: number): Promise<void>;
}

/** Boots linux-ref under TCG (the accel probe has its own test) and logs in. */
export async function bootGuest(t: ExecutionContext, o: Omit<LinuxRefSpecOptions, 'authorizedKeys'>): Promise<Guest> {
  const img = await linuxRefImage();
  const key = await loginKey();
  const { spec, hostKey } = linuxRefVmSpec(img, { accel: 'tcg', ...o, authorizedKeys: [key.publicKey] });
  const vm = await startTracked(t, spec);
  const guest: Guest = {
    vm,
    ssh: await connectLinuxRef(vm, { privateKey: key.privateKey, hostKey }),
    hostKey,
    spec,
    async sh(cmd, stdin) {
      const r = await guest.ssh.exec(cmd, { timeoutMs: 120_000, stdin });
      if (r.exitCode !== 0) throw new Error(`guest command \`${cmd}\` exited ${r.exitCode ?? r.signal}: ${r.stderr}${r.stdout}`);
      return r.stdout;
    },
    async reconnect(next, from) {
      await guest.ssh.close().catch(() => undefined);
      guest.vm = next;
      guest.ssh = await connectLinuxRef(next, { privateKey: key.privateKey, hostKey }, { sinceConsoleOffset: from });
    },
  };
  t.teardown(() => guest.ssh.close().catch(() => undefined));
  return guest;
}

/** JSON lines printed by cbt-ctl. */
export function jsonLines<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as T);
}

/** The dm-era metadata area (first `mib` MiB of the guest disk) of a qcow2 chain, as a raw file. */
export async function extractMetadata(image: string, out: string, mib = 64): Promise<void> {
  await run('qemu-img', ['dd', '-O', 'raw', `if=${image}`, `of=${out}`, 'bs=1M', `count=${mib}`]);
}

/** `era_invalidate --written-since N` → block numbers (ranges expanded). */
export async function eraWrittenSince(metadata: string, era: number): Promise<number[]> {
  const { stdout } = await run('era_invalidate', ['--written-since', String(era), metadata]);
  const blocks: number[] = [];
  // era_invalidate 0.9 prints `<range begin="10" end = "12"/>` (spaces around the second `=`).
  for (const m of stdout.matchAll(/<block\s+block\s*=\s*"(\d+)"\s*\/>|<range\s+begin\s*=\s*"(\d+)"\s+end\s*=\s*"(\d+)"\s*\/>/g)) {
    if (m[1] !== undefined) blocks.push(Number(m[1]));
    else for (let b = Number(m[2]); b < Number(m[3]); b++) blocks.push(b);
  }
  return blocks.sort((a, b) => a - b);
}

/** current_era from `era_dump`'s superblock line (the XML is large: only its first line is read). */
export async function eraDumpCurrentEra(metadata: string): Promise<number> {
  const { stdout } = await run('sh', ['-c', 'era_dump "$1" | head -n 1', 'sh', metadata]);
  const m = /current_era="(\d+)"/.exec(stdout);
  if (!m) throw new Error(`era_dump ${metadata}: no superblock line in ${stdout.slice(0, 200)}`);
  return Number(m[1]);
}
