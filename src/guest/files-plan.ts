/**
 * The seeded file-level workload of a `files` step: create, overwrite in place, append, truncate,
 * delete and rename over a few directories, with fsync of files and directories, many small
 * files and a few large ones. Pure: the same options give the same plan, which every guest
 * adapter applies with its own file API (linux-ref: `cbt-ctl files`, one op per line).
 *
 * The plan keeps a model of the files it made, so each operation addresses a file that exists
 * and the live bytes stay under half the volume (a full volume would fail the step, not test it).
 */
import { mulberry32 } from '../util/index.ts';

export type FileOpKind = 'create' | 'overwrite' | 'append' | 'truncate' | 'delete' | 'rename';

export type FilePlanOp =
  | { op: 'mkdir'; path: string }
  | { op: 'create'; path: string; size: number; pattern: number }
  | { op: 'overwrite'; path: string; offset: number; length: number; pattern: number }
  | { op: 'append'; path: string; length: number; pattern: number }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'delete'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'fsync'; path: string }
  | { op: 'dirsync'; path: string };

export interface FilePlanOptions {
  seed: number;
  /** File operations (mkdir and fsync lines come on top). */
  count: number;
  sizeMin: number;
  sizeMax: number;
  ops: readonly FileOpKind[];
  fsync: 'none' | 'some' | 'all';
  /** Bytes of the volume: live file bytes stay under half of it. */
  capacity: number;
}

const DIRS = ['cbt-files/a', 'cbt-files/b', 'cbt-files/c/deep'];
export const MAX_FILE_OPS = 100_000;

/** One line per op, as `cbt-ctl files` reads them (images/linux-ref/README.md). */
export function filePlanText(plan: readonly FilePlanOp[]): string {
  const line = (o: FilePlanOp): string => {
    switch (o.op) {
      case 'mkdir':
      case 'delete':
      case 'fsync':
      case 'dirsync':
        return `${o.op} ${o.path}`;
      case 'create':
        return `create ${o.path} ${o.size} ${o.pattern}`;
      case 'overwrite':
        return `overwrite ${o.path} ${o.offset} ${o.length} ${o.pattern}`;
      case 'append':
        return `append ${o.path} ${o.length} ${o.pattern}`;
      case 'truncate':
        return `truncate ${o.path} ${o.size}`;
      case 'rename':
        return `rename ${o.from} ${o.to}`;
    }
  };
  return plan.map(line).join('\n') + '\n';
}

export function planFiles(o: FilePlanOptions): FilePlanOp[] {
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > MAX_FILE_OPS) throw new TypeError(`Expected \`count\` to be an integer 1..${MAX_FILE_OPS}, got \`${o.count}\``);
  if (!Number.isInteger(o.sizeMin) || !Number.isInteger(o.sizeMax) || o.sizeMin < 1 || o.sizeMax < o.sizeMin) throw new TypeError(`Expected file sizes 1 <= sizeMin <= sizeMax, got ${o.sizeMin}..${o.sizeMax}`);
  if (!Number.isInteger(o.capacity) || o.capacity < 2 * o.sizeMin) throw new TypeError(`Expected \`capacity\` of at least twice the smallest file, got ${o.capacity}`);
  if (o.ops.length === 0) throw new TypeError('Expected at least one file operation kind');
  const rnd = mulberry32(o.seed >>> 0);
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const budget = Math.floor(o.capacity / 2);
  // Many small, a few large: log-uniform over the range, and one file in twelve at its top quarter.
  const fileSize = (): number => {
    if (o.sizeMax === o.sizeMin) return o.sizeMin;
    if (rnd() < 1 / 12) return int(Math.floor(o.sizeMin + (o.sizeMax - o.sizeMin) * 0.75), o.sizeMax);
    return Math.min(o.sizeMax, Math.max(o.sizeMin, Math.round(Math.exp(Math.log(o.sizeMin) + rnd() * (Math.log(o.sizeMax) - Math.log(o.sizeMin))))));
  };
  const syncNow = (): boolean => o.fsync === 'all' || (o.fsync === 'some' && rnd() < 1 / 3);
  const files = new Map<string, number>();
  let live = 0;
  let next = 0;
  const out: FilePlanOp[] = ['cbt-files', 'cbt-files/c', ...DIRS].map((path) => ({ op: 'mkdir' as const, path }));
  const dirOf = (p: string): string => p.slice(0, p.lastIndexOf('/'));
  const fresh = (): string => `${pick(DIRS)}/f${String(next++).padStart(5, '0')}.bin`;
  const fsyncFile = (path: string): void => {
    if (syncNow()) out.push({ op: 'fsync', path });
  };
  const fsyncDir = (path: string): void => {
    if (syncNow()) out.push({ op: 'dirsync', path: dirOf(path) });
  };
  const create = (): void => {
    let size = fileSize();
    while (live + size > budget && files.size > 0) remove();
    size = Math.min(size, Math.max(1, budget - live));
    const path = fresh();
    out.push({ op: 'create', path, size, pattern: int(1, 255) });
    files.set(path, size);
    live += size;
    fsyncFile(path);
    fsyncDir(path);
  };
  const remove = (): void => {
    const path = pick([...files.keys()]);
    out.push({ op: 'delete', path });
    live -= files.get(path)!;
    files.delete(path);
    fsyncDir(path);
  };
  for (let i = 0; i < o.count; i++) {
    const kind = files.size === 0 ? 'create' : pick(o.ops);
    if (kind === 'create') {
      create();
      continue;
    }
    const path = pick([...files.keys()]);
    const size = files.get(path)!;
    switch (kind) {
      case 'overwrite': {
        if (size === 0) {
          create();
          break;
        }
        const offset = int(0, size - 1);
        const length = int(1, Math.min(size - offset, Math.max(1, o.sizeMax)));
        out.push({ op: 'overwrite', path, offset, length, pattern: int(1, 255) });
        fsyncFile(path);
        break;
      }
      case 'append': {
        const length = Math.min(Math.max(1, Math.floor(fileSize() / 4)), Math.max(1, budget - live));
        if (live + length > budget) {
          remove();
          break;
        }
        out.push({ op: 'append', path, length, pattern: int(1, 255) });
        files.set(path, size + length);
        live += length;
        fsyncFile(path);
        break;
      }
      case 'truncate': {
        const to = size === 0 ? 0 : int(0, size - 1);
        out.push({ op: 'truncate', path, size: to });
        files.set(path, to);
        live -= size - to;
        fsyncFile(path);
        break;
      }
      case 'delete':
        out.push({ op: 'delete', path });
        files.delete(path);
        live -= size;
        fsyncDir(path);
        break;
      case 'rename': {
        const to = fresh();
        out.push({ op: 'rename', from: path, to });
        files.delete(path);
        files.set(to, size);
        fsyncDir(to);
        if (dirOf(to) !== dirOf(path)) fsyncDir(path);
        break;
      }
    }
  }
  return out;
}
