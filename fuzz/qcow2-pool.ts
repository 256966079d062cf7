/** The seed images of the fuzzer, made by the real qemu-img/qemu-io. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

async function img(dir: string, name: string, createArgs: string[], io: string[]): Promise<string> {
  const p = join(dir, name);
  const size = createArgs.at(-1) as string;
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', ...createArgs.slice(0, -1), p, size], { cwd: dir });
  if (io.length) await execa('qemu-io', [...io.flatMap((c) => ['-c', c]), p], { cwd: dir });
  return p;
}

export async function buildFuzzPool(): Promise<{ dir: string; paths: string[]; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'cbt-fuzz-'));
  const writes = ['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -z 2M 64k', 'write -P 3 3M 200k', 'discard 3M 4k'];
  const paths = [
    await img(dir, 'v3.qcow2', ['-o', 'cluster_size=4096', '4M'], writes),
    await img(dir, 'v2.qcow2', ['-o', 'compat=0.10,cluster_size=65536', '4M'], writes),
    await img(dir, 'zlib.qcow2', ['-o', 'cluster_size=4096', '4M'], ['write -c -P 5 0 8k', 'write -c -P 6 1M 4k', 'write -P 7 2M 4k']),
    await img(dir, 'zstd.qcow2', ['-o', 'cluster_size=4096,compression_type=zstd', '4M'], ['write -c -P 5 0 8k', 'write -c -P 6 1M 4k']),
    await img(dir, 'extl2.qcow2', ['-o', 'cluster_size=65536,extended_l2=on', '4M'], ['write -P 1 0 4k', 'write -P 2 70k 10k', 'write -z 1M 8k']),
    await img(dir, 'overlay.qcow2', ['-b', 'v3.qcow2', '-F', 'qcow2', '-o', 'cluster_size=4096', '6M'], ['write -P 9 1M 8k', 'write -z 5M 4k']),
  ];
  const snap = await img(dir, 'snap.qcow2', ['-o', 'cluster_size=4096', '2M'], ['write -P 1 0 16k']);
  await execa('qemu-img', ['snapshot', '-c', 's1', snap]);
  await execa('qemu-io', ['-c', 'write -P 2 0 4k', snap]);
  paths.push(snap);
  const bm = await img(dir, 'bitmap.qcow2', ['-o', 'cluster_size=4096', '2M'], ['write -P 1 0 16k']);
  await execa('qemu-img', ['bitmap', '--add', '-g', '4096', bm, 'b0']);
  paths.push(bm);
  return { dir, paths, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
