/**
 * The Windows image build: stage and pack the answer media, create the disks, run the
 * unattended install under QEMU (q35 + OVMF, optional swtpm), press a key at the CD prompt,
 * follow setup.ps1's COM1 lines, check SSH with the harness key through the Windows adapter,
 * power off and write manifest.json. Everything it starts is stopped on every exit path.
 * Cannot be run on a machine without Windows media; see images/windows/README.md.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { QmpClient } from '../qmp/index.ts';
import { withPdeathsig } from '../vm/index.ts';
import { fingerprintOf } from '../ssh/index.ts';
import { sshConnector } from './adapter.ts';
import { WindowsAdapter } from './windows.ts';
import {
  buildPaths,
  type BuildPaths,
  installArgv,
  renderAutounattend,
  resolveImageOptions,
  type ResolvedWindowsImageOptions,
  SETUP_DIR,
  setupConfig,
  swtpmArgv,
  type WindowsImageManifest,
  type WindowsImageOptions,
  WindowsImageError,
} from './windows-image.ts';

/** images/windows in this checkout. */
export const RECIPE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../images/windows');

export type AnswerMedia = 'iso' | 'floppy';

/**
 * Pack `dir` into a small ISO 9660 image with Joliet and Rock Ridge (xorriso, else genisoimage)
 * or a FAT floppy image (mtools: 1.44 MB, or 2.88 MB when needed).
 */
export async function packAnswerMedia(dir: string, outFile: string, media: AnswerMedia, opts: { label?: string } = {}): Promise<{ tool: string }> {
  const label = opts.label ?? 'CBT_ANSWER';
  if (!/^[A-Z0-9_]{1,11}$/.test(label)) throw new WindowsImageError(`Expected a volume label of 1–11 characters of [A-Z0-9_], got \`${label}\``);
  await rm(outFile, { force: true });
  if (media === 'iso') {
    for (const [tool, args] of [
      ['xorriso', ['-as', 'mkisofs', '-quiet', '-o', outFile, '-J', '-joliet-long', '-r', '-V', label, dir]],
      ['genisoimage', ['-quiet', '-o', outFile, '-J', '-joliet-long', '-r', '-V', label, dir]],
    ] as const) {
      try {
        await execa(tool, [...args]);
        return { tool };
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOENT') throw new WindowsImageError(`${tool} could not pack ${dir} into ${outFile}: ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`, { cause: e });
      }
    }
    throw new WindowsImageError('packing the answer ISO needs xorriso or genisoimage (Debian packages `xorriso`, `genisoimage`)');
  }
  const bytes = await dirSize(dir);
  // FAT12 floppy: 1440 KiB or 2880 KiB, less the FAT and root directory.
  const kib = bytes < 1300 * 1024 ? 1440 : bytes < 2700 * 1024 ? 2880 : 0;
  if (kib === 0) throw new WindowsImageError(`the answer files take ${bytes} bytes, more than a 2.88 MB floppy holds: use the ISO answer media`);
  try {
    await execa('mformat', ['-C', '-i', outFile, '-f', String(kib), '-v', label, '::']);
    const entries = await readdir(dir);
    if (entries.length > 0) await execa('mcopy', ['-s', '-i', outFile, ...entries.map((e) => join(dir, e)), '::/']);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw new WindowsImageError('packing the answer floppy needs mtools (Debian package `mtools`)', { cause: e });
    throw new WindowsImageError(`mtools could not pack ${dir} into ${outFile}: ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`, { cause: e });
  }
  return { tool: 'mtools' };
}

async function dirSize(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? await dirSize(p) : (await stat(p)).size;
  }
  return n;
}

/** Stage the answer media folder: autounattend.xml, cbt-setup/{setup.ps1,cbt-setup.json,driver/,tools/}. */
export async function stageAnswerFiles(o: ResolvedWindowsImageOptions, stageDir: string, recipeDir = RECIPE_DIR): Promise<void> {
  const template = await readFile(join(recipeDir, 'autounattend.xml.template'), 'utf8');
  await rm(stageDir, { recursive: true, force: true });
  await mkdir(join(stageDir, SETUP_DIR), { recursive: true });
  await writeFile(join(stageDir, 'autounattend.xml'), renderAutounattend(template, o));
  await copyFile(join(recipeDir, 'setup.ps1'), join(stageDir, SETUP_DIR, 'setup.ps1'));
  await writeFile(join(stageDir, SETUP_DIR, 'cbt-setup.json'), `${JSON.stringify(setupConfig(o), null, 2)}\n`);
  const infs = (await readdir(o.driverDir, { recursive: true })).filter((f) => String(f).toLowerCase().endsWith('.inf'));
  if (infs.length === 0) throw new WindowsImageError(`the driver folder ${o.driverDir} holds no .inf file`);
  await cp(o.driverDir, join(stageDir, SETUP_DIR, 'driver'), { recursive: true });
  if (o.toolsDir) await cp(o.toolsDir, join(stageDir, SETUP_DIR, 'tools'), { recursive: true });
}

export interface ComLine {
  kind: 'step' | 'done' | 'failed' | 'other';
  text: string;
  data?: Record<string, unknown>;
}

/** One COM1 line of setup.ps1's protocol. */
export function parseComLine(line: string): ComLine {
  const text = line.replace(/\r$/, '');
  const m = /^CBT-SETUP-(STEP|DONE|FAILED) ?(.*)$/.exec(text);
  if (!m) return { kind: 'other', text };
  if (m[1] === 'STEP') return { kind: 'step', text: m[2] };
  try {
    const data = JSON.parse(m[2]) as Record<string, unknown>;
    return { kind: m[1] === 'DONE' ? 'done' : 'failed', text: m[2], data };
  } catch {
    return { kind: m[1] === 'DONE' ? 'done' : 'failed', text: m[2] };
  }
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res, rej) => srv.listen(0, '127.0.0.1', () => res()).once('error', rej));
  const addr = srv.address();
  await new Promise<void>((res) => srv.close(() => res()));
  if (addr === null || typeof addr === 'string') throw new WindowsImageError('no free TCP port');
  return addr.port;
}

export interface BuildOptions extends WindowsImageOptions {
  /** Private key matching `authorizedKey` (to check SSH after setup). */
  privateKey?: string;
  /** Check SSH login and the data disk through the Windows adapter after setup. @default true */
  verifySsh?: boolean;
  /** Press Enter at "Press any key to boot from CD" for this long after start (until the first guest reset). @default 120000 */
  bootKeyWindowMs?: number;
  /** After the done marker: time for the guest to power off. @default 600000 */
  powerOffTimeoutMs?: number;
  /** Reuse an existing output folder's disks (otherwise the folder must not hold system.qcow2). @default false */
  force?: boolean;
  onProgress?: (message: string) => void;
  signal?: AbortSignal;
  /** Label of the QEMU process (the sweeper matches `cbt-`). @default 'cbt-winbuild-<pid>' */
  label?: string;
}

async function fileSize(path: string, field: string): Promise<number> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new Error('not a regular file');
    return s.size;
  } catch (e) {
    throw new WindowsImageError(`\`${field}\` ${path}: ${(e as Error).message}`, { cause: e });
  }
}

async function killAndWait(proc: ChildProcess | null, ms = 5000): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), ms);
  await exited;
  clearTimeout(t);
}

/** Run the whole build; resolves with the manifest (also written to `<out>/manifest.json`). */
export async function buildWindowsImage(options: BuildOptions): Promise<WindowsImageManifest> {
  const o = resolveImageOptions(options);
  const progress = options.onProgress ?? (() => {});
  const signal = options.signal;
  const p: BuildPaths = buildPaths(o.out);
  const started = Date.now();
  const isoSize = await fileSize(o.iso, 'iso');
  const virtioSize = await fileSize(o.virtioIso, 'virtioIso');
  await mkdir(o.out, { recursive: true });
  if (!options.force) {
    const exists = await stat(p.systemDisk).then(
      () => true,
      () => false,
    );
    if (exists) throw new WindowsImageError(`${p.systemDisk} exists: choose an empty --out folder or pass force`);
  }
  progress('staging the answer files');
  const stage = join(o.out, 'answer');
  await stageAnswerFiles(o, stage);
  const packed = await packAnswerMedia(stage, p.answer, o.answerMedia);
  progress(`answer media packed with ${packed.tool}`);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', p.systemDisk, `${o.systemDiskGiB}G`]);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', p.dataDisk, `${o.dataDiskGiB}G`]);
  await copyFile(o.ovmfVars, p.ovmfVars);
  await writeFile(p.com1Log, '');
  await rm(p.qmpSocket, { force: true });
  const label = options.label ?? `cbt-winbuild-${process.pid}`;
  const sshPort = await freePort();
  const argv = installArgv(o, p, sshPort, label);
  let swtpm: ChildProcess | null = null;
  let qemu: ChildProcess | null = null;
  let qmp: QmpClient | null = null;
  let forcedStop = false;
  try {
    if (o.win11Checks === 'tpm') {
      const state = join(o.out, 'tpm');
      await mkdir(state, { recursive: true });
      const a = swtpmArgv(p, state);
      // Both die with the harness, even on SIGKILL (setpriv --pdeathsig), like the scenario VMs.
      const [cmd, args] = await withPdeathsig(a[0], a.slice(1));
      swtpm = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      await waitForPath(p.tpmSocket, 10_000, signal, () => (swtpm?.exitCode !== null ? 'swtpm exited' : null));
    }
    progress(`starting QEMU (${o.accel}); COM1 → ${p.com1Log}`);
    let qemuErr = '';
    const [qemuCmd, qemuArgs] = await withPdeathsig(argv[0], argv.slice(1));
    qemu = spawn(qemuCmd, qemuArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
    qemu.stderr?.on('data', (d: Buffer) => {
      qemuErr = (qemuErr + d.toString()).slice(-4000);
    });
    const qemuExit = once(qemu, 'exit').then(([code, sig]) => ({ code: code as number | null, sig: sig as string | null }));
    qmp = await QmpClient.connect({ path: p.qmpSocket }, { retryUntil: Date.now() + 30_000, signal }).catch(async (e: unknown) => {
      throw new WindowsImageError(`QEMU did not answer on QMP: ${(e as Error).message}; QEMU said: ${qemuErr.trim()}`, { cause: e });
    });
    void pressBootKeys(qmp, options.bootKeyWindowMs ?? 120_000, signal);
    const deadline = started + o.timeoutMs;
    let done: ComLine | null = null;
    let offset = 0;
    let pending = '';
    while (!done) {
      const exited = await Promise.race([qemuExit, sleep(2000, null, { signal })]);
      const text = await readFile(p.com1Log, 'utf8');
      pending += text.slice(offset);
      offset = text.length;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) {
        const c = parseComLine(l);
        if (c.kind === 'step') progress(`setup: ${c.text}`);
        else if (c.kind === 'failed') throw new WindowsImageError(`setup.ps1 failed in step ${String(c.data?.step ?? '?')}: ${String(c.data?.message ?? c.text)} (C:\\cbt\\setup.log in the guest has details)`);
        else if (c.kind === 'done') done = c;
      }
      if (done) break;
      if (exited) throw new WindowsImageError(`QEMU exited (${exited.code ?? exited.sig}) before setup reported done; COM1 so far: ${text.slice(-500)}; QEMU said: ${qemuErr.trim()}`);
      if (Date.now() > deadline) throw new WindowsImageError(`no CBT-SETUP-DONE on COM1 within ${o.timeoutMs} ms (watch the install with --vnc); COM1 so far: ${text.slice(-500)}`);
    }
    const guest = done.data ?? {};
    const hostPublicKey = typeof guest.hostPublicKey === 'string' ? guest.hostPublicKey : null;
    let verified = false;
    if (options.verifySsh !== false) {
      if (!options.privateKey || !hostPublicKey) throw new WindowsImageError('cannot check SSH: no private key given or the guest reported no host key');
      progress('checking SSH with the harness key');
      const adapter = new WindowsAdapter({
        connect: sshConnector({ host: '127.0.0.1', port: sshPort, username: o.username, privateKey: options.privateKey, hostKey: { kind: 'pinned', fingerprints: [fingerprintOf(hostPublicKey)] } }),
        disks: [{ id: 'data', serial: o.dataSerial }],
      });
      try {
        guest.sshProbe = await adapter.probe({ signal });
        guest.sshDataDisk = await adapter.locate({ id: 'data', serial: o.dataSerial }, { signal });
        verified = true;
        progress('SSH works; shutting down');
        await adapter.shutdown({ signal });
      } finally {
        await adapter.close();
      }
    } else {
      await qmp.execute('system_powerdown').catch(() => {});
    }
    const off = await Promise.race([qemuExit, sleep(options.powerOffTimeoutMs ?? 600_000, null, { signal })]);
    if (!off) {
      forcedStop = true;
      progress('the guest did not power off in time: quitting QEMU');
      await qmp.execute('quit').catch(() => {});
      await Promise.race([qemuExit, sleep(10_000, null)]);
    }
    const manifest: WindowsImageManifest = {
      format: 'cbt-harness/windows-image/1',
      createdAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      images: { system: p.systemDisk, data: p.dataDisk, ovmfVars: p.ovmfVars, ovmfCode: o.ovmfCode },
      inputs: { iso: { path: o.iso, size: isoSize }, virtioIso: { path: o.virtioIso, size: virtioSize }, driverDir: o.driverDir, toolsDir: o.toolsDir ?? null },
      options: { edition: o.edition, win11Checks: o.win11Checks, virtioOs: o.virtioOs, fastStartup: o.fastStartup, hibernation: o.hibernation, dataSerial: o.dataSerial, dataLetter: o.dataLetter, dataBus: o.dataBus, accel: o.accel, answerMedia: o.answerMedia },
      account: { username: o.username, password: o.password },
      ssh: { authorizedKey: o.authorizedKey, hostPublicKey, verified },
      guest,
      qemuArgv: argv,
      forcedStop,
    };
    await writeFile(p.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
    return manifest;
  } finally {
    await qmp?.close().catch(() => {});
    await killAndWait(qemu);
    await killAndWait(swtpm);
    await rm(p.qmpSocket, { force: true });
  }
}

async function waitForPath(path: string, ms: number, signal: AbortSignal | undefined, dead: () => string | null): Promise<void> {
  for (let waited = 0; ; waited += 50) {
    if (await stat(path).then(() => true, () => false)) return;
    const why = dead();
    if (why || waited > ms) throw new WindowsImageError(`${path} did not appear within ${ms} ms${why ? ` (${why})` : ''}`);
    await sleep(50, undefined, { signal });
  }
}

/** Press Enter once a second at the CD boot prompt, until the window ends or the guest resets (Setup's first reboot must boot from disk). */
async function pressBootKeys(qmp: QmpClient, windowMs: number, signal?: AbortSignal): Promise<void> {
  const since = Date.now();
  const end = since + windowMs;
  while (Date.now() < end && !signal?.aborted) {
    if (qmp.eventLog.some((e) => e.event === 'RESET' && e.receivedAt >= since)) return;
    try {
      await qmp.execute('send-key', { keys: [{ type: 'qcode', data: 'ret' }] });
    } catch {
      return; // QEMU gone
    }
    await sleep(1000, undefined, { signal }).catch(() => {});
  }
}
