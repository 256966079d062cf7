/**
 * The Docker worker image, built with no registry:
 *   1. a Debian root file system from `debootstrap` (minbase + images/worker/packages.txt), from
 *      the apt mirror this machine already uses; cached as a tarball under .cache/worker/, keyed
 *      by suite, variant, mirror and package list;
 *   2. `docker import` of that tarball as `cbt-harness-worker-base:<key>` (skipped when the engine
 *      has it);
 *   3. a container from the base with the harness bundle put at /opt/cbt-harness, committed as
 *      `cbt-harness-worker:<hash>` and tagged `latest`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { WorkerImageError } from './errors.ts';
import { harnessBundle, REPO_ROOT } from './harness-bundle.ts';
import { dockerClient } from './docker-engine.ts';
import type { DockerConnection } from './types.ts';

export const WORKER_REPOSITORY = 'cbt-harness-worker';
export const WORKER_BASE_REPOSITORY = 'cbt-harness-worker-base';
/** Bump when the recipe changes in a way the package list does not show. */
const RECIPE_VERSION = 1;
/** Label on images and containers the harness made (the sweeper looks for it). */
export const HARNESS_LABEL = 'org.cbt-harness';

export interface WorkerImageOptions {
  /** The engine to build in: a dockerode client or an inventory connection. */
  docker: Docker | DockerConnection;
  /** @default the repository this module runs from */
  repoRoot?: string;
  /** @default `<repoRoot>/.cache/worker` */
  cacheDir?: string;
  /** @default `<repoRoot>/images/worker/packages.txt` */
  packagesFile?: string;
  /** Debian mirror URL. @default the bookworm `main` entry of /etc/apt/sources.list* */
  mirror?: string;
  /** @default 'bookworm' */
  suite?: string;
  /** Rebuild the rootfs even when a cached tarball exists. @default false */
  rebuildRootfs?: boolean;
  signal?: AbortSignal;
  /** Progress lines (debootstrap is long). */
  log?: (message: string) => void;
}

export interface WorkerImage {
  /** `cbt-harness-worker:<hash>` */
  name: string;
  id: string;
  /** The rootfs tarball the base came from. */
  rootfsTarball: string;
  /** What this call had to do (false: reused). */
  built: { rootfs: boolean; base: boolean; image: boolean };
}

/** Package names from packages.txt (one per line, `#` comments). */
export function parsePackageList(text: string): string[] {
  const names = text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
  for (const n of names) if (!/^[a-z0-9][a-z0-9+.-]+$/.test(n)) throw new WorkerImageError(`not a Debian package name in the worker package list: \`${n}\``);
  return [...new Set(names)].sort();
}

/**
 * The Debian mirror serving `suite` main, from apt's sources (one-line `.list` and deb822
 * `.sources`). Only that mirror is used: this machine may reach nothing else.
 */
export async function detectDebianMirror(suite = 'bookworm', aptDir = '/etc/apt'): Promise<string> {
  const files: string[] = [];
  if (existsSync(join(aptDir, 'sources.list'))) files.push(join(aptDir, 'sources.list'));
  if (existsSync(join(aptDir, 'sources.list.d'))) for (const n of (await readdir(join(aptDir, 'sources.list.d'))).sort()) files.push(join(aptDir, 'sources.list.d', n));
  for (const f of files) {
    const text = await readFile(f, 'utf8');
    if (f.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (k: string) => new RegExp(`^${k}:\\s*(.+)$`, 'mi').exec(stanza)?.[1].trim().split(/\s+/) ?? [];
        if (!field('Types').includes('deb')) continue;
        if (field('Suites').includes(suite) && field('Components').includes('main') && field('URIs')[0]) return field('URIs')[0].replace(/\/$/, '');
      }
    } else if (f.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/.exec(line);
        if (m && m[2] === suite && m[3].split(/\s+/).includes('main')) return m[1].replace(/\/$/, '');
      }
    }
  }
  throw new WorkerImageError(`no apt source for ${suite} main in ${aptDir}/sources.list*; pass a mirror explicitly`);
}

async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1]?.replace(/\\040/g, ' ')).filter((m): m is string => Boolean(m) && (m === dir || m.startsWith(`${dir}/`)));
  // Deepest first.
  for (const m of mounts.sort((a, b) => b.length - a.length)) await execa('umount', ['-l', m], { reject: false });
}

/** Builds the cached rootfs tarball if absent; returns its path. */
export async function workerRootfs(options: Omit<WorkerImageOptions, 'docker'> = {}): Promise<{ path: string; key: string; built: boolean }> {
  const repoRoot = options.repoRoot ?? REPO_ROOT;
  const cacheDir = options.cacheDir ?? join(repoRoot, '.cache/worker');
  const packages = parsePackageList(await readFile(options.packagesFile ?? join(repoRoot, 'images/worker/packages.txt'), 'utf8'));
  const suite = options.suite ?? 'bookworm';
  const mirror = options.mirror ?? (await detectDebianMirror(suite));
  const variant = 'minbase';
  const key = createHash('sha256').update(JSON.stringify({ RECIPE_VERSION, suite, variant, mirror, packages })).digest('hex').slice(0, 16);
  const path = join(cacheDir, `rootfs-${key}.tar`);
  if (existsSync(path) && !options.rebuildRootfs) return { path, key, built: false };
  await mkdir(cacheDir, { recursive: true });
  const dir = join(cacheDir, `rootfs-${key}.tmp-${process.pid}`);
  const tmpTar = `${path}.tmp-${process.pid}`;
  const log = options.log ?? (() => {});
  try {
    await rm(dir, { recursive: true, force: true });
    log(`worker image: debootstrap ${suite} (${variant}, ${packages.length} extra packages) from ${mirror} into ${dir}`);
    const r = await execa('debootstrap', [`--variant=${variant}`, `--include=${packages.join(',')}`, '--components=main', suite, dir, mirror], { cancelSignal: options.signal, reject: false, all: true });
    if (r.exitCode !== 0) {
      const tail = String(r.all ?? '').split('\n').slice(-15).join('\n');
      let logTail = '';
      if (existsSync(join(dir, 'debootstrap/debootstrap.log'))) logTail = (await readFile(join(dir, 'debootstrap/debootstrap.log'), 'utf8')).split('\n').slice(-15).join('\n');
      throw new WorkerImageError(`debootstrap failed (exit ${r.exitCode ?? r.signal}):\n${tail}${logTail ? `\n--- debootstrap.log ---\n${logTail}` : ''}`);
    }
    // Package caches and lists are dead weight in an image that never runs apt.
    await execa('sh', ['-c', 'rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* var/log/*.log; mkdir -p var/lib/cbt-harness/cache'], { cwd: dir });
    await unmountUnder(dir);
    await execa('tar', ['--numeric-owner', '--xattrs', "--xattrs-include=*", '-C', dir, '-cf', tmpTar, '.'], { cancelSignal: options.signal });
    await rename(tmpTar, path);
    // Older rootfs tarballs of other package lists stay: switching lists back and forth is cheap.
    return { path, key, built: true };
  } catch (error) {
    if (error instanceof WorkerImageError) throw error;
    throw new WorkerImageError(`could not build the worker rootfs in ${dir}: ${(error as Error).message}`, { cause: error });
  } finally {
    await unmountUnder(dir).catch(() => {});
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    await rm(tmpTar, { force: true }).catch(() => {});
  }
}

async function hasImage(docker: Docker, name: string): Promise<string | null> {
  try {
    return ((await docker.getImage(name).inspect()) as { Id: string }).Id;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return null;
    throw error;
  }
}

/** Waits for a progress stream of the engine (import, pull) and fails on its error events. */
function followProgress(docker: Docker, stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, output: Array<{ error?: string }>) => {
      const failed = err ?? output.find((o) => o.error);
      if (failed) reject(new WorkerImageError(`docker engine: ${err ? err.message : (failed as { error: string }).error}`));
      else resolve();
    });
  });
}

/** Builds (or finds) the worker image in an engine. */
export async function buildWorkerImage(options: WorkerImageOptions): Promise<WorkerImage> {
  const docker = 'modem' in options.docker ? options.docker : dockerClient(options.docker);
  const log = options.log ?? (() => {});
  const rootfs = await workerRootfs(options);
  const bundle = await harnessBundle({ repoRoot: options.repoRoot, signal: options.signal });
  const tag = createHash('sha256').update(`${rootfs.key}\n${bundle.sha256}\n${RECIPE_VERSION}`).digest('hex').slice(0, 16);
  const name = `${WORKER_REPOSITORY}:${tag}`;
  const built = { rootfs: rootfs.built, base: false, image: false };
  try {
    let id = await hasImage(docker, name);
    if (!id) {
      const base = `${WORKER_BASE_REPOSITORY}:${rootfs.key}`;
      if (!(await hasImage(docker, base))) {
        log(`worker image: docker import ${rootfs.path} as ${base}`);
        await followProgress(docker, await docker.importImage(createReadStream(rootfs.path), { repo: WORKER_BASE_REPOSITORY, tag: rootfs.key, abortSignal: options.signal } as object));
        built.base = true;
      }
      log(`worker image: adding the harness (${(bundle.size / 2 ** 20).toFixed(1)} MiB) as ${name}`);
      const container = await docker.createContainer({ Image: base, Cmd: ['true'], Labels: { [HARNESS_LABEL]: 'build' } });
      try {
        await container.putArchive(bundle.path, { path: '/opt' });
        const labels = { [HARNESS_LABEL]: 'worker', [`${HARNESS_LABEL}.rootfs`]: rootfs.key, [`${HARNESS_LABEL}.bundle`]: bundle.sha256 };
        await container.commit({
          _query: { container: container.id, repo: WORKER_REPOSITORY, tag, comment: 'cbt-harness worker' },
          _body: {
            Cmd: ['sleep', 'infinity'],
            Env: ['PATH=/opt/cbt-harness/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8'],
            WorkingDir: '/var/lib/cbt-harness',
            Labels: labels,
          },
        });
      } finally {
        await container.remove({ force: true }).catch(() => {});
      }
      id = await hasImage(docker, name);
      if (!id) throw new WorkerImageError(`docker commit reported success but ${name} is not in the engine`);
      built.image = true;
    }
    await docker.getImage(name).tag({ repo: WORKER_REPOSITORY, tag: 'latest' });
    return { name, id, rootfsTarball: rootfs.path, built };
  } catch (error) {
    if (error instanceof WorkerImageError) throw error;
    throw new WorkerImageError(`could not build ${name}: ${(error as Error).message}`, { cause: error });
  }
}
