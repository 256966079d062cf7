/** Test helpers: real qemu-img/qemu-io, temp folders cleaned in teardown, seeded randomness. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';
import { mulberry32 } from '../../src/util/index.ts';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
export const CLI = join(ROOT, 'bin/cbt-harness');

export async function tempDir(prefix = 'cbt-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function qemuImg(args: string[], options: Options = {}): Promise<string> {
  const r = await execa('qemu-img', args, options);
  return String(r.stdout);
}

/** Run qemu-io commands against an image (each string one -c). */
export async function qemuIo(image: string, commands: string[], extra: string[] = [], cwd?: string): Promise<void> {
  const args = [...extra];
  for (const c of commands) args.push('-c', c);
  args.push(image);
  const r = await execa('qemu-io', args, { cwd });
  // qemu-io exits 0 even when a command fails; a fixture must not silently miss a write.
  if (/failed|error/i.test(String(r.stdout) + String(r.stderr))) throw new Error(`qemu-io on ${image}: ${r.stdout}${r.stderr}`);
}

/** Deterministic PRNG (mulberry32). */
export const rng = mulberry32;

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

export interface QemuMapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

export async function qemuMap(image: string, extra: string[] = []): Promise<QemuMapEntry[]> {
  return JSON.parse(await qemuImg(['map', '--output=json', ...extra, image], { cwd: dirname(image) })) as QemuMapEntry[];
}

/** Merge adjacent extents with equal data/zero/depth: the contract's normal form. */
export function normalizeMap(entries: Array<{ start: number; length: number; data: boolean; zero: boolean; depth: number }>): Array<[number, number, boolean, boolean, number]> {
  const out: Array<[number, number, boolean, boolean, number]> = [];
  for (const e of entries) {
    const last = out.at(-1);
    if (last && last[0] + last[1] === e.start && last[2] === e.data && last[3] === e.zero && last[4] === e.depth) last[1] += e.length;
    else out.push([e.start, e.length, e.data, e.zero, e.depth]);
  }
  return out;
}

export async function runCli(args: string[], options: Options = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(CLI, args, { reject: false, ...options });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/**
 * fsync an image so its allocated size (st_blocks) is settled: QEMU's metadata-preallocation
 * heuristic (and ours) reads it, and ext4 delayed allocation changes it until writeback.
 */
export async function syncFile(path: string): Promise<void> {
  await execa('sync', [path]);
}

type NormalMap = ReturnType<typeof normalizeMap>;

/**
 * `qemu-img map` right before and right after `ours` runs. QEMU answers the same for the same
 * file except on images near its metadata-preallocation threshold, whose answer follows the host
 * file's allocated size (st_blocks) as ext4 settles it; then ours must equal one of QEMU's two
 * answers, byte for byte. Returns the answers to compare against.
 */
export async function qemuMapsAround(path: string, ours: () => Promise<NormalMap>): Promise<{ ours: NormalMap; qemu: NormalMap[] }> {
  const before = normalizeMap(await qemuMap(path));
  const mine = await ours();
  const after = normalizeMap(await qemuMap(path));
  const same = JSON.stringify(before) === JSON.stringify(after);
  return { ours: mine, qemu: same ? [before] : [before, after] };
}

export { processAlive } from '../../src/util/index.ts';
