/** Images made by the real qemu-img/qemu-io with seeded random writes, for cross-checks. */
import { join } from 'node:path';
import { qemuImg, qemuIo, randInt, rng, syncFile } from './tools.ts';

export interface RandomImageSpec {
  name: string;
  size: number;
  clusterSize?: number;
  compat?: '0.10' | '1.1';
  extendedL2?: boolean;
  compression?: 'zlib' | 'zstd';
  backing?: string;
  backingFormat?: 'qcow2' | 'raw';
  format?: 'qcow2' | 'raw';
  dataFile?: string;
  dataFileRaw?: boolean;
  ops?: number;
  seed: number;
  /** Which kinds of operation to draw from. @default all that the format allows */
  kinds?: OpKind[];
  extraOptions?: string[];
}

export type OpKind = 'write' | 'zero' | 'zero-unmap' | 'discard' | 'compressed';

/** qemu-io commands for `ops` random operations. */
export function randomOps(seed: number, size: number, clusterSize: number, ops: number, kinds: OpKind[]): string[] {
  const r = rng(seed);
  const cmds: string[] = [];
  // QEMU writes compressed clusters only where nothing is allocated yet: issue them first, on
  // distinct clusters.
  const compressed: string[] = [];
  const used = new Set<number>();
  const sector = 512;
  for (let i = 0; i < ops; i++) {
    const kind = kinds[randInt(r, 0, kinds.length - 1)];
    if (kind === 'compressed') {
      const clusters = Math.floor(size / clusterSize);
      const c = randInt(r, 0, clusters - 1);
      let n = Math.min(randInt(r, 1, 3), clusters - c);
      for (let k = 0; k < n; k++) if (used.has(c + k)) n = k;
      if (n === 0) continue;
      for (let k = 0; k < n; k++) used.add(c + k);
      compressed.push(`write -c -P ${randInt(r, 1, 255)} ${c * clusterSize} ${n * clusterSize}`);
      continue;
    }
    const maxLen = Math.min(size, Math.max(4 * clusterSize, 256 * 1024));
    const len = randInt(r, 1, Math.floor(maxLen / sector)) * sector;
    const off = randInt(r, 0, Math.floor((size - len) / sector)) * sector;
    switch (kind) {
      case 'write':
        cmds.push(`write -P ${randInt(r, 1, 255)} ${off} ${len}`);
        break;
      case 'zero':
        cmds.push(`write -z ${off} ${len}`);
        break;
      case 'zero-unmap':
        cmds.push(`write -z -u ${off} ${len}`);
        break;
      case 'discard':
        cmds.push(`discard ${off} ${len}`);
        break;
    }
  }
  return [...compressed, ...cmds];
}

export async function makeImage(dir: string, spec: RandomImageSpec): Promise<string> {
  const path = join(dir, spec.name);
  const fmt = spec.format ?? 'qcow2';
  const cs = spec.clusterSize ?? 65536;
  const opts: string[] = [];
  if (fmt === 'qcow2') {
    opts.push(`cluster_size=${cs}`, `compat=${spec.compat ?? '1.1'}`);
    if (spec.extendedL2) opts.push('extended_l2=on');
    if (spec.compression === 'zstd') opts.push('compression_type=zstd');
    if (spec.dataFile) opts.push(`data_file=${spec.dataFile}`);
    if (spec.dataFileRaw) opts.push('data_file_raw=on');
    opts.push(...(spec.extraOptions ?? []));
  }
  const args = ['create', '-q', '-f', fmt];
  if (opts.length) args.push('-o', opts.join(','));
  if (spec.backing) args.push('-b', spec.backing, '-F', spec.backingFormat ?? 'qcow2');
  args.push(path, String(spec.size));
  await qemuImg(args, { cwd: dir });
  const ops = spec.ops ?? 40;
  if (ops > 0) {
    let kinds: OpKind[] = spec.kinds ?? ['write', 'write', 'write', 'zero', 'zero-unmap', 'discard', ...(fmt === 'qcow2' && !spec.dataFile && !spec.extraOptions?.some((o) => o.startsWith('preallocation')) ? (['compressed'] as OpKind[]) : [])];
    if (fmt === 'raw') kinds = kinds.filter((k) => k !== 'compressed');
    const cmds = randomOps(spec.seed, spec.size, fmt === 'raw' ? 65536 : cs, ops, kinds);
    // Batches keep command lines short.
    for (let i = 0; i < cmds.length; i += 100) await qemuIo(path, cmds.slice(i, i + 100), ['-f', fmt], dir);
  }
  await syncFile(path);
  return path;
}
