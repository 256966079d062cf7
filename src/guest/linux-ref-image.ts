/**
 * The reference Linux guest: build (from Debian packages, cached by exact versions), and the
 * catalog that turns a built image into a VmSpec and an SSH session. Recipe and guest side:
 * images/linux-ref/ (README there); design: docs/vm-and-guest.md.
 *
 * Build steps:
 *   1. read images/linux-ref/packages.txt; resolve each package to its candidate version with
 *      `apt-cache show` (the kernel metapackage to the concrete linux-image-<abi>-amd64);
 *   2. key = sha256 over the (layer, package, version) list and the recipe files: a new Debian
 *      version or a changed init script is a new image;
 *   3. cached when `<cache>/linux-ref-<key>/manifest.json` exists and its files have the recorded
 *      sizes; else, under a lock file (parallel test workers build once), `apt-get download`
 *      each `name=version`, run images/linux-ref/build.sh (dpkg -x, depmod, cpio, mke2fs), hash
 *      the outputs into manifest.json and rename the folder into place.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { SshClient, fingerprintOf, type SshConnectOptions } from '../ssh/index.ts';
import type { DiskSpec, RunningVm, VmSpec } from '../vm/index.ts';
import { processAlive } from '../util/index.ts';
import { InfrastructureHarnessError } from '../util/index.ts';

export const LINUX_REF_RECIPE = resolve(dirname(fileURLToPath(import.meta.url)), '../../images/linux-ref');

export class ImageBuildError extends InfrastructureHarnessError {
  override name = 'ImageBuildError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface PackageRef {
  layer: 'kernel' | 'base' | 'tools';
  name: string;
  version: string;
}

export interface FileDigest {
  file: string;
  size: number;
  sha256: string;
}

export interface LinuxRefManifest {
  name: 'linux-ref';
  key: string;
  builtAt: string;
  buildMs: number;
  kernelRelease: string;
  compression: string;
  recipeSha256: string;
  packages: Array<PackageRef & { sha256: string }>;
  files: { vmlinux: FileDigest; vmlinuz: FileDigest; initrd: FileDigest; tools: FileDigest | null };
}

export interface LinuxRefImage {
  dir: string;
  key: string;
  kernelRelease: string;
  /** Uncompressed ELF with a PVH entry: QEMU boots it without the bzImage decompressor (TCG). */
  vmlinux: string;
  /** The bzImage as Debian ships it (KVM: a PVH boot under nested KVM was seen to crawl). */
  vmlinuz: string;
  initrd: string;
  /** ext2 image with fio and its libraries; attach read-only as serial `cbt-tools`. */
  tools: string | null;
  manifest: LinuxRefManifest;
  /** True when the image came from the cache. */
  cached: boolean;
}

export interface BuildLinuxRefOptions {
  /** @default $CBT_HARNESS_CACHE/images, else ~/.cache/cbt-harness/images */
  cacheDir?: string;
  /** @default images/linux-ref of this checkout */
  recipeDir?: string;
  /** Rebuild even when cached. @default false */
  force?: boolean;
  /** Also build the tools disk (fio). @default true */
  tools?: boolean;
  /** Initramfs compression (build.sh CBT_COMPRESS). `none` boots fastest under TCG here. @default 'none' */
  compression?: 'none' | 'gzip' | 'lz4' | 'zstd' | 'xz';
  /** Re-hash the cached files against the manifest (slower). @default false */
  verify?: boolean;
  signal?: AbortSignal;
  /** Progress lines (stderr of the CLI). */
  log?: (line: string) => void;
}

export function defaultImageCache(): string {
  const env = process.env.CBT_HARNESS_CACHE;
  return env ? join(env, 'images') : join(homedir(), '.cache', 'cbt-harness', 'images');
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, signal: opts.signal, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new ImageBuildError(`${cmd} ${args.slice(0, 6).join(' ')}${args.length > 6 ? ' …' : ''} failed: ${String(stderr).trim().split('\n').slice(-5).join(' | ') || err.message}`, { cause: err }));
      else resolvePromise(String(stdout));
    });
  });
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function digest(path: string, dir: string): Promise<FileDigest> {
  return { file: relative(dir, path), size: (await stat(path)).size, sha256: await sha256File(path) };
}

/** packages.txt → (layer, name) lines. */
export async function readPackageList(recipeDir: string): Promise<Array<{ layer: PackageRef['layer']; name: string }>> {
  const file = join(recipeDir, 'packages.txt');
  const text = await readFile(file, 'utf8');
  const out: Array<{ layer: PackageRef['layer']; name: string }> = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const m = /^(kernel|base|tools)\s+([a-z0-9][a-z0-9+.-]+)$/.exec(line);
    if (!m) throw new ImageBuildError(`${file}:${i + 1}: expected "<kernel|base|tools> <package>", got \`${line}\``);
    out.push({ layer: m[1] as PackageRef['layer'], name: m[2] });
  }
  if (!out.some((p) => p.layer === 'kernel')) throw new ImageBuildError(`${file}: no kernel package`);
  return out;
}

/** `apt-cache show --no-all-versions` → name → { version, depends }. */
async function aptShow(names: string[], signal?: AbortSignal): Promise<Map<string, { version: string; depends: string }>> {
  let text: string;
  try {
    text = await run('apt-cache', ['show', '--no-all-versions', ...names], { signal });
  } catch (e) {
    throw new ImageBuildError(`apt-cache does not know some of ${names.join(', ')} (run \`apt-get update\` first?): ${(e as Error).message}`, { cause: e });
  }
  const out = new Map<string, { version: string; depends: string }>();
  for (const para of text.split(/\n\n+/)) {
    const name = /^Package: (.+)$/m.exec(para)?.[1];
    const version = /^Version: (.+)$/m.exec(para)?.[1];
    if (name && version && !out.has(name)) out.set(name, { version, depends: /^Depends: (.+)$/m.exec(para)?.[1] ?? '' });
  }
  const missing = names.filter((n) => !out.has(n));
  if (missing.length) throw new ImageBuildError(`apt-cache has no candidate for ${missing.join(', ')} (run \`apt-get update\`?)`);
  return out;
}

/** Exact versions of every package of the recipe (the kernel metapackage resolved). */
export async function resolvePackages(recipeDir: string, signal?: AbortSignal): Promise<PackageRef[]> {
  const list = await readPackageList(recipeDir);
  const names = [...new Set(list.map((p) => p.name))];
  const shown = await aptShow(names, signal);
  const refs: PackageRef[] = [];
  for (const p of list) {
    if (p.layer === 'kernel' && !/^linux-image-\d/.test(p.name)) {
      // Metapackage → the concrete image it depends on (linux-image-6.1.0-NN-amd64).
      const dep = /(linux-image-\d[^\s,|()]*)/.exec(shown.get(p.name)?.depends ?? '')?.[1];
      if (!dep) throw new ImageBuildError(`kernel metapackage ${p.name} depends on no linux-image-<version> package`);
      const concrete = await aptShow([dep], signal);
      refs.push({ layer: 'kernel', name: dep, version: concrete.get(dep)!.version });
    } else refs.push({ layer: p.layer, name: p.name, version: shown.get(p.name)!.version });
  }
  return refs;
}

async function recipeDigest(recipeDir: string): Promise<string> {
  const h = createHash('sha256');
  const walk = async (dir: string): Promise<void> => {
    for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && e.name !== 'README.md') {
        h.update(`${relative(recipeDir, p)}\0${(await stat(p)).mode & 0o111 ? 'x' : '-'}\0`);
        h.update(await readFile(p));
        h.update('\0');
      }
    }
  };
  await walk(recipeDir);
  return h.digest('hex');
}

export function imageKey(packages: PackageRef[], recipeSha256: string, compression: string, tools: boolean): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ packages: packages.map((p) => [p.layer, p.name, p.version]), recipeSha256, compression, tools }));
  return h.digest('hex').slice(0, 16);
}

function imageFrom(dir: string, manifest: LinuxRefManifest, cached: boolean): LinuxRefImage {
  return {
    dir,
    key: manifest.key,
    kernelRelease: manifest.kernelRelease,
    vmlinux: join(dir, manifest.files.vmlinux.file),
    vmlinuz: join(dir, manifest.files.vmlinuz.file),
    initrd: join(dir, manifest.files.initrd.file),
    tools: manifest.files.tools ? join(dir, manifest.files.tools.file) : null,
    manifest,
    cached,
  };
}

async function loadCached(dir: string, verify: boolean): Promise<LinuxRefImage | null> {
  let manifest: LinuxRefManifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as LinuxRefManifest;
  } catch {
    return null;
  }
  for (const f of Object.values(manifest.files)) {
    if (!f) continue;
    const p = join(dir, f.file);
    try {
      if ((await stat(p)).size !== f.size) return null;
      if (verify && (await sha256File(p)) !== f.sha256) return null;
    } catch {
      return null;
    }
  }
  return imageFrom(dir, manifest, true);
}

/** A lock file holding our pid; a lock whose pid is gone is taken over. */
async function withLock<T>(lockPath: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  while (true) {
    signal?.throwIfAborted();
    try {
      const fh = await open(lockPath, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (!(Number.isInteger(pid) && pid > 0 && processAlive(pid))) {
        await unlink(lockPath).catch(() => undefined);
        continue;
      }
      await sleep(500, undefined, { signal });
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

function onPath(tool: string): Promise<boolean> {
  return new Promise((resolvePromise) => execFile('sh', ['-c', 'command -v "$1"', 'sh', tool], (err) => resolvePromise(!err)));
}

/**
 * build.sh needs kmod (depmod, modprobe) and cpio on the host. When they are not installed they
 * come from Debian packages too (`apt-get download` + `dpkg-deb -x`, like everything else here):
 * returns a folder to put first on PATH, or null when the host has them.
 */
async function hostTools(tmp: string, signal?: AbortSignal): Promise<string | null> {
  const need: string[] = [];
  if (!(await onPath('depmod')) || !(await onPath('modprobe'))) need.push('kmod');
  if (!(await onPath('cpio'))) need.push('cpio');
  if (need.length === 0) return null;
  const debs = join(tmp, 'host-debs');
  const root = join(tmp, 'host-root');
  const bin = join(tmp, 'host-bin');
  await Promise.all([mkdir(debs), mkdir(root), mkdir(bin)]);
  await run('apt-get', ['download', '-q', ...need], { cwd: debs, signal });
  for (const f of await readdir(debs)) await run('dpkg-deb', ['-x', join(debs, f), root], { signal });
  // kmod is one binary that acts by the name it is called with; the package's own links are absolute.
  const links: Array<[string, string]> = [];
  if (need.includes('kmod')) links.push(['depmod', 'bin/kmod'], ['modprobe', 'bin/kmod']);
  if (need.includes('cpio')) links.push(['cpio', 'bin/cpio']);
  for (const [name, target] of links) {
    if (!existsSync(join(root, target))) throw new ImageBuildError(`host tool ${name}: ${target} not found in the ${need.join(', ')} package(s)`);
    await symlink(join(root, target), join(bin, name));
  }
  return bin;
}

/** Builds (or finds in the cache) the reference guest. */
export async function buildLinuxRef(opts: BuildLinuxRefOptions = {}): Promise<LinuxRefImage> {
  const recipeDir = resolve(opts.recipeDir ?? LINUX_REF_RECIPE);
  const cacheDir = resolve(opts.cacheDir ?? defaultImageCache());
  const compression = opts.compression ?? 'none';
  const tools = opts.tools ?? true;
  const say = opts.log ?? (() => undefined);
  const packages = await resolvePackages(recipeDir, opts.signal);
  const recipeSha256 = await recipeDigest(recipeDir);
  const key = imageKey(packages, recipeSha256, compression, tools);
  const finalDir = join(cacheDir, `linux-ref-${key}`);
  if (!opts.force) {
    const hit = await loadCached(finalDir, opts.verify ?? false);
    if (hit) return hit;
  }
  await mkdir(cacheDir, { recursive: true });
  return withLock(join(cacheDir, `linux-ref-${key}.lock`), opts.signal, async () => {
    // Another process may have finished the same build while we waited for the lock.
    if (!opts.force) {
      const hit = await loadCached(finalDir, false);
      if (hit) return hit;
    }
    const started = Date.now();
    const tmp = await mkdtemp(join(cacheDir, `.linux-ref-${key}-`));
    try {
      const debs = join(tmp, 'debs');
      const out = join(tmp, 'out');
      const work = join(tmp, 'work');
      await Promise.all([mkdir(debs), mkdir(out), mkdir(work)]);
      const layers = packages.filter((p) => tools || p.layer !== 'tools');
      const unique = [...new Map(layers.map((p) => [p.name, p])).values()];
      say(`linux-ref ${key}: downloading ${unique.length} Debian packages`);
      try {
        await run('apt-get', ['download', '-q', ...unique.map((p) => `${p.name}=${p.version}`)], { cwd: debs, signal: opts.signal });
      } catch (e) {
        // Versions come from the local package lists: stale lists name files the mirror dropped.
        throw new ImageBuildError(`${(e as Error).message} (if the mirror answered 404, the package lists are stale: run \`apt-get update\`)`, { cause: e });
      }
      const files = await readdir(debs);
      const debOf = new Map<string, string>();
      for (const p of unique) {
        const f = files.find((x) => x.startsWith(`${p.name}_`) && x.endsWith('.deb'));
        if (!f) throw new ImageBuildError(`apt-get download left no .deb for ${p.name}=${p.version} in ${debs}`);
        debOf.set(p.name, join(debs, f));
      }
      await writeFile(join(tmp, 'debs.list'), layers.map((p) => `${p.layer} ${debOf.get(p.name)}\n`).join(''));
      const extraPath = await hostTools(tmp, opts.signal);
      if (extraPath) say(`linux-ref ${key}: depmod/modprobe/cpio not installed; using them from Debian packages`);
      say(`linux-ref ${key}: assembling kernel, initramfs${tools ? ' and tools disk' : ''}`);
      await new Promise<void>((resolvePromise, reject) => {
        const child = spawn('bash', [join(recipeDir, 'build.sh')], {
          env: { ...process.env, ...(extraPath ? { PATH: `${extraPath}:${process.env.PATH ?? '/usr/bin:/bin'}` } : {}), CBT_RECIPE: recipeDir, CBT_DEBS: join(tmp, 'debs.list'), CBT_OUT: out, CBT_WORK: work, CBT_COMPRESS: compression, CBT_TOOLS: tools ? '1' : '0', LC_ALL: 'C' },
          stdio: ['ignore', 'pipe', 'pipe'],
          signal: opts.signal,
        });
        let errText = '';
        const onData = (d: Buffer) => {
          errText = (errText + d.toString()).slice(-8192);
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('error', (e) => reject(new ImageBuildError(`build.sh could not run: ${e.message}`, { cause: e })));
        child.once('exit', (code, sig) => {
          if (code === 0) resolvePromise();
          else reject(new ImageBuildError(`images/linux-ref/build.sh failed (${code ?? sig}): ${errText.trim().split('\n').slice(-8).join('\n')}`));
        });
      });
      const kernelRelease = (await readFile(join(out, 'kernel-release'), 'utf8')).trim();
      const manifest: LinuxRefManifest = {
        name: 'linux-ref',
        key,
        builtAt: new Date().toISOString(),
        buildMs: Date.now() - started,
        kernelRelease,
        compression,
        recipeSha256,
        packages: await Promise.all(layers.map(async (p) => ({ ...p, sha256: await sha256File(debOf.get(p.name)!) }))),
        files: {
          vmlinux: await digest(join(out, 'vmlinux'), out),
          vmlinuz: await digest(join(out, 'vmlinuz'), out),
          initrd: await digest(join(out, 'initrd.img'), out),
          tools: tools ? await digest(join(out, 'tools.img'), out) : null,
        },
      };
      await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      if (existsSync(finalDir)) await rm(finalDir, { recursive: true, force: true });
      await rename(out, finalDir);
      say(`linux-ref ${key}: built in ${((Date.now() - started) / 1000).toFixed(1)} s → ${finalDir}`);
      return imageFrom(finalDir, manifest, false);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
}

/** Removes cached linux-ref images other than `keep` (their folders, manifests and all). */
export async function pruneLinuxRefCache(keep: string, cacheDir: string = defaultImageCache()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(cacheDir).catch(() => [] as string[])) {
    if (!/^linux-ref-[0-9a-f]{16}$/.test(name) || name === `linux-ref-${keep}`) continue;
    await rm(join(cacheDir, name), { recursive: true, force: true });
    removed.push(join(cacheDir, name));
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Catalog: a built image → VmSpec, keys, SSH.

/** An ephemeral SSH host key for the guest's dropbear, made on the host so it can be pinned. */
export interface GuestHostKey {
  /** dropbear's key file format: string "ssh-ed25519", string (32-byte seed ‖ 32-byte public key). */
  dropbear: Buffer;
  /** OpenSSH public key line. */
  publicKey: string;
  /** `SHA256:…`, what the SSH client pins. */
  fingerprint: string;
}

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

export function generateGuestHostKey(): GuestHostKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d ?? '', 'base64url');
  const pub = Buffer.from(jwk.x ?? '', 'base64url');
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.concat([sshString(type), sshString(pub)]);
  return {
    dropbear: Buffer.concat([sshString(type), sshString(Buffer.concat([seed, pub]))]),
    publicKey: `ssh-ed25519 ${blob.toString('base64')} cbt-guest`,
    fingerprint: fingerprintOf(blob),
  };
}

export const TOOLS_DISK_ID = 'cbt-tools';
/** Console markers printed by the guest's init (images/linux-ref/rootfs/init). */
export const LINUX_REF_MARKERS = { sshUp: 'CBT-SSH-UP', ready: 'CBT-READY', probe: 'CBT-PROBE-USERSPACE' } as const;

export interface LinuxRefSpecOptions {
  runId: string;
  vmId: string;
  /** Public key lines allowed to log in as root (fw_cfg opt/cbt/authorized_keys). */
  authorizedKeys: string[];
  /** @default a new one */
  hostKey?: GuestHostKey;
  /** Data disks; every one is tracked with dm-era unless listed in `untracked`. */
  disks?: DiskSpec[];
  untracked?: string[];
  /** dm-era block size in 512-byte sectors (multiple of 8). @default 128 (64 KiB) */
  eraBlockSectors?: number;
  /** Metadata area at the start of each tracked disk, MiB. @default 64 */
  metadataMiB?: number;
  /** `drop_writes`: the known-bad tracker (metadata device drops writes). @default 'normal' */
  variant?: 'normal' | 'drop_writes';
  /** Attach the tools disk (fio). @default false */
  tools?: boolean;
  machine?: 'q35' | 'pc';
  accel?: 'auto' | 'kvm' | 'tcg';
  memoryMiB?: number;
  logDir?: string;
  /** Extra kernel command line words. */
  append?: string;
  /**
   * The guest's volume and tracker set-up (images/linux-ref/README.md "Set-up file"): shell
   * assignments the guest reads from fw_cfg `opt/cbt/setup` at boot. Omitted: no volumes, dm-era
   * as the command line says.
   */
  setup?: string;
}

/** Kernel command line parts that shorten a TCG boot (docs/vm-and-guest.md "Boot time"). */
export const LINUX_REF_BASE_APPEND = 'console=ttyS0 quiet panic=-1 mitigations=off 8250.nr_uarts=1';

export function linuxRefVmSpec(image: LinuxRefImage, o: LinuxRefSpecOptions): { spec: VmSpec; hostKey: GuestHostKey } {
  const block = o.eraBlockSectors ?? 128;
  if (!Number.isInteger(block) || block < 8 || block % 8 !== 0 || block > 1 << 21) throw new ImageBuildError(`Expected \`eraBlockSectors\` to be a positive multiple of 8, got \`${String(block)}\``);
  const meta = o.metadataMiB ?? 64;
  if (!Number.isInteger(meta) || meta < 1 || meta > 1 << 20) throw new ImageBuildError(`Expected \`metadataMiB\` to be a positive integer, got \`${String(meta)}\``);
  if (!Array.isArray(o.authorizedKeys) || o.authorizedKeys.length === 0) throw new ImageBuildError('Expected `authorizedKeys` to hold at least one public key line');
  const hostKey = o.hostKey ?? generateGuestHostKey();
  const disks = [...(o.disks ?? [])];
  const tracked = disks.map((d) => d.id).filter((id) => !(o.untracked ?? []).includes(id));
  if (o.tools) {
    if (!image.tools) throw new ImageBuildError(`image ${image.key} was built without the tools disk`);
    disks.push({ id: TOOLS_DISK_ID, path: image.tools, format: 'raw', bus: 'virtio-blk', readOnly: true });
  }
  const append = [LINUX_REF_BASE_APPEND, tracked.length ? `cbt.disks=${tracked.join(',')}` : '', `cbt.block=${block}`, `cbt.meta=${meta}`, `cbt.variant=${o.variant ?? 'normal'}`, o.append ?? '']
    .filter(Boolean)
    .join(' ');
  const spec: VmSpec = {
    runId: o.runId,
    vmId: o.vmId,
    machine: o.machine ?? 'q35',
    accel: o.accel ?? 'auto',
    memoryMiB: o.memoryMiB ?? 512,
    kernel: { tcg: image.vmlinux, kvm: image.vmlinuz },
    initrd: image.initrd,
    append,
    disks,
    network: { forwards: [{ guestPort: 22 }] },
    fwCfg: [
      { name: 'opt/cbt/authorized_keys', data: `${o.authorizedKeys.map((k) => k.trim()).join('\n')}\n` },
      { name: 'opt/cbt/host_key', data: hostKey.dropbear },
      ...(o.setup ? [{ name: 'opt/cbt/setup', data: o.setup.endsWith('\n') ? o.setup : `${o.setup}\n` }] : []),
    ],
    probe: { kernel: image.vmlinuz, initrd: image.initrd, append: 'console=ttyS0 quiet panic=-1 rdinit=/cbt-probe', marker: LINUX_REF_MARKERS.probe },
    logDir: o.logDir,
  };
  return { spec, hostKey };
}

/**
 * Waits for the guest's SSH (console marker, then a login with the pinned host key).
 * @returns the client; the caller closes it.
 */
export async function connectLinuxRef(
  vm: RunningVm,
  auth: { privateKey: string; hostKey: GuestHostKey },
  opts: { signal?: AbortSignal; timeoutMs?: number; sinceConsoleOffset?: number } & Pick<SshConnectOptions, 'keepaliveIntervalMs'> = {},
): Promise<SshClient> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  await vm.waitForConsole(LINUX_REF_MARKERS.sshUp, { signal: opts.signal, timeoutMs, from: opts.sinceConsoleOffset });
  return SshClient.connect(
    { host: '127.0.0.1', port: vm.hostPort(22), username: 'root', privateKey: auth.privateKey, hostKey: { kind: 'pinned', fingerprints: [auth.hostKey.fingerprint] } },
    { signal: opts.signal, retryUntil: deadline, readyTimeoutMs: Math.max(1000, Math.min(20_000, deadline - Date.now())), keepaliveIntervalMs: opts.keepaliveIntervalMs },
  );
}

/** A linux-ref image whose files (named as in `manifest`) were staged in `dir` on this host. */
export function linuxRefImageFrom(dir: string, manifest: LinuxRefManifest): LinuxRefImage {
  return imageFrom(dir, manifest, true);
}

