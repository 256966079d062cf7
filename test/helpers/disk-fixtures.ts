/** Partitioned disks laid out by sgdisk/sfdisk, and what those tools say about them (the oracle). */
import { join } from 'node:path';
import { execa } from 'execa';

export interface OracleVolume {
  number: number;
  offset: number;
  length: number;
  type: string;
  guid: string | null;
  name: string | null;
}

/** A raw disk of `sizeMiB` with GPT partitions made by sgdisk (`-n`, `-t`, `-c` per partition). */
export async function makeGptDisk(dir: string, file: string, sizeMiB: number, parts: Array<{ number: number; size: string; code: string; name: string }>): Promise<string> {
  const path = join(dir, file);
  await execa('truncate', ['-s', `${sizeMiB}M`, path]);
  const args: string[] = [];
  for (const p of parts) args.push('-n', `${p.number}:0:${p.size}`, '-t', `${p.number}:${p.code}`, '-c', `${p.number}:${p.name}`);
  await execa('sgdisk', [...args, path]);
  return path;
}

/** `sgdisk -i N` for every partition `sgdisk -p` lists, as volumes; plus the disk GUID. */
export async function sgdiskOracle(path: string): Promise<{ diskGuid: string; volumes: OracleVolume[] }> {
  const p = String((await execa('sgdisk', ['-p', path])).stdout);
  const diskGuid = /Disk identifier \(GUID\): (\S+)/.exec(p)![1].toLowerCase();
  const sectorSize = Number(/Sector size \(logical\): (\d+)/.exec(p)![1]);
  const numbers = [...p.matchAll(/^\s+(\d+)\s+\d+\s+\d+\s/gm)].map((m) => Number(m[1]));
  const volumes: OracleVolume[] = [];
  for (const n of numbers) {
    const i = String((await execa('sgdisk', ['-i', String(n), path])).stdout);
    const first = Number(/First sector: (\d+)/.exec(i)![1]);
    const last = Number(/Last sector: (\d+)/.exec(i)![1]);
    volumes.push({
      number: n,
      offset: first * sectorSize,
      length: (last - first + 1) * sectorSize,
      type: /Partition GUID code: (\S+)/.exec(i)![1].toLowerCase(),
      guid: /Partition unique GUID: (\S+)/.exec(i)![1].toLowerCase(),
      name: /Partition name: '(.*)'/.exec(i)![1],
    });
  }
  return { diskGuid, volumes };
}

/**
 * Run an sfdisk script against a raw disk of `sizeMiB`. sfdisk 2.38 has no `--sector-size`, so a
 * 4096-byte layout is written through a loop device with `losetup -b 4096` (root only).
 */
export async function makeSfdiskDisk(dir: string, file: string, sizeMiB: number, script: string, sectorSize = 512): Promise<string> {
  const path = join(dir, file);
  await execa('truncate', ['-s', `${sizeMiB}M`, path]);
  await onDevice(path, sectorSize, (dev) => execa('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', dev], { input: script }));
  return path;
}

async function onDevice<T>(path: string, sectorSize: number, fn: (dev: string) => Promise<T>): Promise<T> {
  if (sectorSize === 512) return fn(path);
  const loop = String((await execa('losetup', ['--find', '--show', '--sector-size', String(sectorSize), path])).stdout).trim();
  try {
    return await fn(loop);
  } finally {
    await execa('losetup', ['--detach', loop]);
  }
}

interface SfdiskJson {
  partitiontable: { label: 'dos' | 'gpt'; id: string; sectorsize: number; partitions: Array<{ node: string; start: number; size: number; type: string; uuid?: string; name?: string }> };
}

/** `sfdisk --json` as volumes (extended containers 0x05/0x0f/0x85 left out, as readPartitionTable does). */
export async function sfdiskOracle(path: string, sectorSize = 512): Promise<{ label: string; id: string; volumes: OracleVolume[] }> {
  const out = await onDevice(path, sectorSize, (dev) => execa('sfdisk', ['--json', dev]));
  const j = JSON.parse(String(out.stdout)) as SfdiskJson;
  const t = j.partitiontable;
  const volumes: OracleVolume[] = [];
  for (const p of t.partitions) {
    const number = Number(/(\d+)$/.exec(p.node)![1]);
    if (t.label === 'dos') {
      const type = Number.parseInt(p.type, 16);
      if (type === 0x05 || type === 0x0f || type === 0x85) continue;
      volumes.push({ number, offset: p.start * t.sectorsize, length: p.size * t.sectorsize, type: `0x${type.toString(16).padStart(2, '0')}`, guid: null, name: null });
    } else {
      volumes.push({ number, offset: p.start * t.sectorsize, length: p.size * t.sectorsize, type: p.type.toLowerCase(), guid: p.uuid!.toLowerCase(), name: p.name ?? '' });
    }
  }
  return { label: t.label, id: t.id.toLowerCase(), volumes };
}
