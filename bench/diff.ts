/**
 * npm run bench:diff — `image diff` against `qemu-img compare` and `cat`, in the same run.
 *
 * 1. Base: 8 GiB virtual qcow2 holding 1 GiB of random data in scattered 64 KiB writes.
 *    Overlay: 512 MiB rewritten in scattered 4 KiB–1 MiB writes with the same bytes (content
 *    identical, but allocated). qemu-img compare must read everything and exit 0; our diff must
 *    produce a complete (empty) changed map and a full written map.
 * 2. Peak RSS of `image diff` on a 1 TiB virtual pair with 100 MiB changed (target < 300 MiB).
 * Images are cached under .cache/bench/ (delete the folder to rebuild).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { CACHE, CLI, cliPeakRssMiB, medianOf, timeCommand } from './util.ts';
import { mulberry32 as prng } from '../src/util/index.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;


async function buildPair(dir: string): Promise<{ base: string; top: string }> {
  const base = join(dir, 'base.qcow2');
  const top = join(dir, 'top.qcow2');
  if (existsSync(join(dir, 'done'))) return { base, top };
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const r = prng(8);
  // Base content: a sparse 8 GiB raw file with 16384 random 64 KiB chunks, then qemu-img convert.
  const rawPath = join(dir, 'base.raw');
  const fh = await open(rawPath, 'w+');
  await fh.truncate(8 * GiB);
  const chunks = (8 * GiB) / (64 * 1024);
  const chosen = new Set<number>();
  while (chosen.size < 16384) chosen.add(Math.floor(r() * chunks));
  for (const c of chosen) await fh.write(randomBytes(64 * 1024), 0, 64 * 1024, c * 64 * 1024);
  await execa('qemu-img', ['convert', '-O', 'qcow2', rawPath, base]);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top], { cwd: dir });
  // Overlay: 512 MiB of scattered 4 KiB–1 MiB rewrites carrying the base's own bytes.
  let total = 0;
  const cmds: string[] = [];
  let n = 0;
  while (total < 512 * MiB) {
    const len = Math.min(512 * MiB - total, (1 + Math.floor(r() * 256)) * 4096);
    const off = Math.floor(r() * ((8 * GiB - len) / 4096)) * 4096;
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, off);
    const src = join(dir, `w${n++}.bin`);
    await writeFile(src, buf);
    cmds.push(`write -q -s ${src} ${off} ${len}`);
    total += len;
  }
  await fh.close();
  for (let i = 0; i < cmds.length; i += 200) await execa('qemu-io', [...cmds.slice(i, i + 200).flatMap((c) => ['-c', c]), top]);
  for (let i = 0; i < n; i++) await rm(join(dir, `w${i}.bin`));
  await rm(rawPath);
  await writeFile(join(dir, 'done'), '');
  return { base, top };
}

async function buildHuge(dir: string): Promise<{ base: string; top: string }> {
  const base = join(dir, 'huge-base.qcow2');
  const top = join(dir, 'huge-top.qcow2');
  if (existsSync(join(dir, 'huge-done'))) return { base, top };
  await mkdir(dir, { recursive: true });
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1T']);
  await execa('qemu-io', ['-c', 'write -q -P 1 0 64M', '-c', 'write -q -P 2 512G 64M', base]);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'huge-base.qcow2', '-F', 'qcow2', top], { cwd: dir });
  const r = prng(1);
  const cmds: string[] = [];
  for (let i = 0; i < 1600; i++) {
    const off = Math.floor(r() * ((1024 * GiB - 65536) / 65536)) * 65536;
    cmds.push(`write -q -P ${1 + (i % 250)} ${off} 64k`);
  }
  for (let i = 0; i < cmds.length; i += 400) await execa('qemu-io', [...cmds.slice(i, i + 400).flatMap((c) => ['-c', c]), top]);
  await writeFile(join(dir, 'huge-done'), '');
  return { base, top };
}

const dir = join(CACHE, 'diff-v1');
process.stderr.write('building images (cached under .cache/bench/diff-v1)…\n');
const { base, top } = await buildPair(dir);
// Warm the page cache so every contender reads from memory.
await execa('cat', [base, top], { stdout: 'ignore' });
const runs = Number(process.env.BENCH_RUNS ?? 3);
const qemu = await medianOf(runs, () => timeCommand('qemu-img', ['compare', base, top]));
const ours = await medianOf(runs, () => timeCommand(CLI, ['image', 'diff', base, top, '--granularity', '4096', '--json']));
const diff = JSON.parse(String((await execa(CLI, ['image', 'diff', base, top, '--granularity', '4096', '--json'])).stdout));
// Physical limit: read the overlay's bytes once per side (the data both sides must supply).
const cat = await medianOf(runs, () => timeCommand('sh', ['-c', `cat "${top}" "${top}" > /dev/null`]));
const huge = await buildHuge(dir);
const rss = await cliPeakRssMiB(['image', 'diff', huge.base, huge.top, '--granularity', '4096', '--json']);
const hugeDiff = JSON.parse(String((await execa(CLI, ['image', 'diff', huge.base, huge.top, '--granularity', '4096', '--json'])).stdout));

const result = {
  qemuImgCompareMs: Math.round(qemu.median),
  oursMs: Math.round(ours.median),
  catMs: Math.round(cat.median),
  ratioVsQemuImgCompare: +(ours.median / qemu.median).toFixed(3),
  ratioVsCat: +(ours.median / cat.median).toFixed(3),
  changedBlocks: diff.changedBlocks,
  writtenBlocks: diff.writtenBlocks,
  huge: { virtual: '1 TiB', changedBlocks: hugeDiff.changedBlocks, peakRssMiB: Math.round(rss.rssMiB), ms: Math.round(rss.ms) },
  runs: { qemu: qemu.runs.map(Math.round), ours: ours.runs.map(Math.round), cat: cat.runs.map(Math.round) },
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
process.stderr.write(
  `image diff ${result.oursMs} ms vs qemu-img compare ${result.qemuImgCompareMs} ms: ${result.ratioVsQemuImgCompare}x (target <= 1.0x); vs cat ${result.catMs} ms: ${result.ratioVsCat}x\n` +
    `1 TiB pair, ${hugeDiff.changedBlocks} changed 4 KiB blocks: peak RSS ${result.huge.peakRssMiB} MiB (target < 300 MiB)\n`,
);
