/**
 * Content hashing of guest images for the per-host cache: the key is the sha256 over the files'
 * names, sizes and sha256s, so an image set is copied to a host once and reused by every job.
 * File hashes are remembered per (path, size, mtime) for the life of the process: hashing a
 * multi-GiB base once per run is enough.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { createHash } from 'node:crypto';
import { sha256File } from './harness-bundle.ts';
import { HostOperationError } from './errors.ts';

export interface ImageFile {
  /** Local path. */
  path: string;
  /** Name on the host (the basename: backing-file references between the files keep working). */
  name: string;
  size: number;
  sha256: string;
}

export interface ImageSet {
  hash: string;
  files: ImageFile[];
  bytes: number;
}

const memo = new Map<string, string>();

export async function hashImageSet(paths: readonly string[], signal?: AbortSignal): Promise<ImageSet> {
  if (paths.length === 0) throw new HostOperationError('local', 'no image files to stage');
  const files: ImageFile[] = [];
  const names = new Set<string>();
  for (const path of paths) {
    const name = basename(path);
    if (names.has(name)) throw new HostOperationError('local', `two image files named ${name}: staged files keep their names, so they must differ`);
    if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(name) || name === 'manifest.json') throw new HostOperationError('local', `image file name ${JSON.stringify(name)} is not allowed on hosts (letters, digits, . _ + -)`);
    names.add(name);
    let st;
    try {
      st = await stat(path);
    } catch (error) {
      throw new HostOperationError('local', `cannot read image ${path}: ${(error as Error).message}`, { cause: error });
    }
    if (!st.isFile()) throw new HostOperationError('local', `image ${path} is not a regular file`);
    const key = `${path}\0${st.size}\0${st.mtimeMs}`;
    let sha256 = memo.get(key);
    if (!sha256) {
      sha256 = await sha256File(path, signal);
      memo.set(key, sha256);
    }
    files.push({ path, name, size: st.size, sha256 });
  }
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const h = createHash('sha256');
  for (const f of files) h.update(`${f.name}\0${f.size}\0${f.sha256}\n`);
  return { hash: h.digest('hex'), files, bytes: files.reduce((s, f) => s + f.size, 0) };
}
