/**
 * NTFS volumes made by mkntfs, filled with ntfscp/ntfsfallocate (no FUSE) or through an ntfs-3g
 * FUSE mount, and what ntfsprogs say about them (ntfsinfo runlists, ntfscat content): the oracle.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import { execa, type ResultPromise } from 'execa';
import type { NtfsFile, NtfsVolume } from '../../src/fs/ntfs/index.ts';

export interface OracleRun {
  vcn: number;
  lcn: number | null;
  clusters: number;
}

export interface OracleData {
  resident: boolean;
  size: number;
  initializedSize: number;
  /** Runs of every unnamed $DATA extent, in VCN order, as ntfsinfo prints them. */
  runs: OracleRun[];
}

export async function mkntfs(path: string, sizeMiB: number, clusterSize = 4096, sectorSize = 512): Promise<string> {
  await execa('truncate', ['-s', `${sizeMiB}M`, path]);
  await execa('mkntfs', ['-F', '-Q', '-q', '-s', String(sectorSize), '-c', String(clusterSize), path]);
  return path;
}

export async function ntfscp(image: string, src: string, dest: string): Promise<void> {
  await execa('ntfscp', ['-f', '-q', image, src, dest]);
}

/** `ntfsinfo -v` on a path (`-F`) or an inode number (`-i`): the unnamed $DATA stream. */
export async function ntfsinfoData(image: string, target: string | number): Promise<OracleData> {
  const args = typeof target === 'number' ? ['-i', String(target)] : ['-F', target];
  const out = String((await execa('ntfsinfo', ['-v', ...args, image])).stdout);
  const blocks = out.split(/^Dumping attribute /m).filter((b) => b.startsWith('$DATA (0x80)') && /Name length:\s+0 \(/.test(b));
  if (blocks.length === 0) throw new Error(`ntfsinfo shows no unnamed $DATA for ${target}`);
  const num = (b: string, label: string): number => {
    const m = new RegExp(`${label}:\\s+(\\d+)`).exec(b);
    return m ? Number(m[1]) : NaN;
  };
  const resident = /Resident:\s+Yes/.test(blocks[0]);
  const runs: OracleRun[] = [];
  for (const b of blocks) {
    for (const m of b.matchAll(/^\s+0x([0-9a-f]+)\s+(<HOLE>|<RL_NOT_MAPPED>|0x[0-9a-f]+)\s+0x([0-9a-f]+)\s*$/gm)) {
      if (m[2] === '<RL_NOT_MAPPED>') continue;
      runs.push({ vcn: Number.parseInt(m[1], 16), lcn: m[2] === '<HOLE>' ? null : Number.parseInt(m[2], 16), clusters: Number.parseInt(m[3], 16) });
    }
  }
  runs.sort((a, b) => a.vcn - b.vcn);
  const head = blocks.find((b) => /Lowest VCN\s+0 \(/.test(b)) ?? blocks[0];
  const size = num(head, 'Data size');
  return { resident, size, initializedSize: resident ? size : num(head, 'Initialized size'), runs };
}

/** Inode number of a path (`ntfsinfo -F`). */
export async function ntfsInode(image: string, path: string): Promise<number> {
  const out = String((await execa('ntfsinfo', ['-F', path, image])).stdout);
  return Number(/Dumping Inode (\d+)/.exec(out)![1]);
}

export async function ntfscat(image: string, path: string): Promise<Buffer> {
  const r = await execa('ntfscat', [image, path], { encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(r.stdout);
}

/** FUSE needs /dev/fuse and the right to mount (root here). */
export function fuseAvailable(): boolean {
  return existsSync('/dev/fuse');
}

async function mounted(mnt: string): Promise<boolean> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').some((l) => l.split(' ')[4] === mnt);
}

/**
 * Mount `image` on `mnt` with ntfs-3g in the foreground (`no_detach`), so the process is ours by
 * pid. `unmount()` unmounts and waits for it to exit; if it does not, it is killed by pid.
 */
export async function mountNtfs(image: string, mnt: string): Promise<{ unmount: () => Promise<void> }> {
  const proc: ResultPromise = execa('ntfs-3g', ['-o', 'no_detach', image, mnt], { reject: false, stdio: 'ignore' });
  let exited = false;
  void proc.then(() => {
    exited = true;
  });
  // Bounded wait for the mount to appear (200 × 50 ms).
  for (let i = 0; i < 200 && !(await mounted(mnt)); i++) {
    if (exited) throw new Error(`ntfs-3g exited before mounting ${image} on ${mnt}`);
    await sleep(50);
  }
  if (!(await mounted(mnt))) {
    proc.kill('SIGKILL');
    throw new Error(`ntfs-3g did not mount ${image} on ${mnt}`);
  }
  let done = false;
  return {
    unmount: async () => {
      if (done) return;
      done = true;
      if (await mounted(mnt)) await execa('umount', [mnt], { reject: false });
      for (let i = 0; i < 100 && !exited; i++) await sleep(50);
      if (!exited && proc.pid !== undefined) process.kill(proc.pid, 'SIGKILL');
      await proc;
    },
  };
}

/**
 * Edit a multi-sector structure (MFT record, INDX block) of `size` bytes at `off` in `buf` as its
 * reader sees it: undo the fixups, let `edit` change the bytes, redo the fixups.
 */
export function editWithFixups(buf: Buffer, off: number, size: number, edit: (b: Buffer) => void): void {
  const b = buf.subarray(off, off + size);
  const usaOfs = b.readUInt16LE(4);
  const usaCount = b.readUInt16LE(6);
  for (let i = 1; i < usaCount; i++) b.copy(b, i * 512 - 2, usaOfs + 2 * i, usaOfs + 2 * i + 2);
  edit(b);
  for (let i = 1; i < usaCount; i++) {
    b.copy(b, usaOfs + 2 * i, i * 512 - 2, i * 512);
    b.copy(b, i * 512 - 2, usaOfs, usaOfs + 2);
  }
}

/** Offsets (in a record whose fixups are undone) of the attributes of `type`. */
export function findAttributes(record: Buffer, type: number): number[] {
  const out: number[] = [];
  let off = record.readUInt16LE(0x14);
  while (off + 8 <= record.length) {
    const t = record.readUInt32LE(off);
    const len = record.readUInt32LE(off + 4);
    if (t === 0xffffffff || len === 0) break;
    if (t === type) out.push(off);
    off += len;
  }
  return out;
}

/** Volume offsets of every "INDX" block on a volume (scanned at 512-byte steps). */
export function scanIndx(buf: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off + 4 <= buf.length; off += 512) if (buf.toString('latin1', off, off + 4) === 'INDX') out.push(off);
  return out;
}

/** The file's runs, size and content as ntfsinfo/ntfscat see them, and its extents hold its bytes. */
export async function checkFile(t: ExecutionContext, vol: NtfsVolume, image: string, path: string, volumeBytes: Buffer): Promise<NtfsFile> {
  const f = await vol.lookup(path);
  const o = await ntfsinfoData(image, path);
  t.is(f.size, o.size, `${path} size`);
  t.is(f.resident, o.resident, `${path} resident`);
  t.is(f.initializedSize, o.initializedSize, `${path} initialized size`);
  t.deepEqual(f.runs, o.runs, `${path} runs`);
  const content = await ntfscat(image, path);
  const data = await f.read();
  t.true(data.equals(content), `${path} content equals ntfscat`);
  let covered = 0;
  for (const e of f.extents) {
    const stored = Math.max(0, Math.min(e.length, f.initializedSize - e.fileOffset));
    t.true(volumeBytes.subarray(e.offset, e.offset + stored).equals(data.subarray(e.fileOffset, e.fileOffset + stored)), `${path} extent at ${e.offset}`);
    covered += e.length;
  }
  const cs = vol.clusterSize;
  const allocated = f.runs.filter((r) => r.lcn !== null).reduce((s, r) => s + Math.max(0, Math.min(r.clusters * cs, f.size - r.vcn * cs)), 0);
  t.is(covered, f.resident ? 0 : allocated, `${path} extents cover the allocated bytes`);
  return f;
}

