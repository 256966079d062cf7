/**
 * npm run bench:decode — the dm-era decoder against `era_invalidate --written-since`, on the same
 * metadata, in the same run.
 *
 * Metadata: a 2 TiB volume at 64 KiB blocks (32 Mi blocks), 20 archived writesets (eras 101–120,
 * ~1.4 % of the volume each, in clustered extents), a committed current writeset (era 121), and an
 * era array where ~70 % of the blocks carry an era from 1 to 100. Built by `era_restore` from XML
 * streamed to a file (the XML is deleted afterwards); cached under .cache/bench/ (delete the
 * folder to rebuild). Each tool runs in its own child process under `/usr/bin/time -v` (peak RSS);
 * the decoder's child also reports `process.resourceUsage().maxRSS` and its in-process time. The claims are
 * checked equal (decoder = era_invalidate ∪ current writeset) before any figure is printed.
 *
 * Usage: node bench/decode-era.ts [--repeat N] [--since a,b]
 *        node bench/decode-era.ts --child <metadata> <since>   (internal: one timed decode)
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlockRun } from '../src/truth/index.ts';
import { mulberry32 as prng } from '../src/util/index.ts';

// Only what child mode needs is imported statically: its RSS and time should be the decoder's.
const ROOT = join(fileURLToPath(import.meta.url), '../..');
const CACHE = join(ROOT, '.cache/bench');

const NR_BLOCKS = 32 * 1024 * 1024;
const BLOCK_SECTORS = 128;
const ARCHIVED = Array.from({ length: 20 }, (_, i) => 101 + i);
const CURRENT_ERA = 121;
const SEED = 20261123;
const DIR = join(CACHE, 'dm-era-2TiB-64KiB-v1');
const META = join(DIR, 'meta.bin');


/** ~1500 random extents of 1–600 blocks, merged. */
function extents(r: () => number, unionRuns: (...l: BlockRun[][]) => BlockRun[]): BlockRun[] {
  const raw: BlockRun[] = [];
  for (let i = 0; i < 1500; i++) {
    const start = Math.floor(r() * NR_BLOCKS);
    raw.push([start, Math.min(NR_BLOCKS - start, 1 + Math.floor(r() * 600))]);
  }
  return unionRuns(raw);
}

/** Stream text lines into a file in ~4 MiB writes. */
class LineWriter {
  #parts: string[] = [];
  #size = 0;
  bytes = 0;
  readonly fh: Awaited<ReturnType<typeof open>>;
  constructor(fh: Awaited<ReturnType<typeof open>>) {
    this.fh = fh;
  }
  async add(s: string): Promise<void> {
    this.#parts.push(s);
    this.#size += s.length;
    if (this.#size >= 4 << 20) await this.flush();
  }
  async flush(): Promise<void> {
    const chunk = this.#parts.join('');
    this.#parts = [];
    this.#size = 0;
    this.bytes += chunk.length;
    await this.fh.write(chunk);
  }
}

interface Build {
  xmlBytes: number;
  xmlSeconds: number;
  restoreSeconds: number;
  metadataBytes: number;
  current: BlockRun[];
}

async function build(): Promise<Build> {
  const { execa } = await import('execa');
  const { promoteCurrentWriteset, unionRuns } = await import('../test/helpers/era-fixtures.ts');
  const done = join(DIR, 'build.json');
  if (existsSync(done)) return JSON.parse(await readFile(done, 'utf8')) as Build;
  await rm(DIR, { recursive: true, force: true });
  await mkdir(DIR, { recursive: true });
  const r = prng(SEED);
  const xml = join(DIR, 'meta.xml');
  process.stderr.write(`building ${xml} …\n`);
  let t0 = performance.now();
  const fh = await open(xml, 'w');
  const w = new LineWriter(fh);
  await w.add(`<superblock uuid="" block_size="${BLOCK_SECTORS}" nr_blocks="${NR_BLOCKS}" current_era="${CURRENT_ERA}">\n`);
  let current: BlockRun[] = [];
  let bitsetWords = 0;
  for (const era of [...ARCHIVED, CURRENT_ERA]) {
    const runs = extents(r, unionRuns);
    if (era === CURRENT_ERA) current = runs;
    bitsetWords += Math.ceil(NR_BLOCKS / 64);
    await w.add(`  <writeset era="${era}" nr_bits="${NR_BLOCKS}">\n`);
    for (const [s, c] of runs) for (let b = s; b < s + c; b++) await w.add(`    <bit block="${b}" value="true"/>\n`);
    await w.add('  </writeset>\n');
  }
  await w.add('  <era_array>\n');
  for (let b = 0; b < NR_BLOCKS; ) {
    const len = Math.min(NR_BLOCKS - b, 1 + Math.floor(r() * 4000));
    if (r() < 0.7) {
      const era = 1 + Math.floor(r() * 100);
      for (let i = b; i < b + len; i++) await w.add(`    <era block="${i}" era="${era}"/>\n`);
    }
    b += len;
  }
  await w.add('  </era_array>\n</superblock>\n');
  await w.flush();
  await fh.close();
  const xmlSeconds = (performance.now() - t0) / 1000;
  // Room for the era array, 21 bitsets, their B-trees and the space map, with slack.
  const blocks = Math.ceil((Math.ceil(NR_BLOCKS / 1018) + Math.ceil(bitsetWords / 509)) * 1.1) + 1024;
  const mf = await open(META, 'w');
  await mf.truncate(blocks * 4096);
  await mf.close();
  process.stderr.write(`era_restore (${(w.bytes / 2 ** 20).toFixed(0)} MiB of XML) …\n`);
  t0 = performance.now();
  await execa('era_restore', ['-i', xml, '-o', META]);
  const restoreSeconds = (performance.now() - t0) / 1000;
  await promoteCurrentWriteset(META, CURRENT_ERA);
  await rm(xml);
  const b: Build = { xmlBytes: w.bytes, xmlSeconds, restoreSeconds, metadataBytes: (await stat(META)).size, current };
  await writeFile(done, JSON.stringify(b));
  return b;
}

function digest(runs: BlockRun[]): { blocks: number; runs: number; sha: string } {
  return { blocks: runs.reduce((n, r) => n + r[1], 0), runs: runs.length, sha: createHash('sha256').update(JSON.stringify(runs)).digest('hex').slice(0, 16) };
}

/** Child mode: decode once, report time, peak RSS and the claim's digest on stdout. */
async function child(meta: string, since: number): Promise<void> {
  const { decodeEraMetadata } = await import('../src/cbt/dm-era/index.ts');
  const { FileBlockSource } = await import('../src/qcow2/index.ts');
  const baselineRssKiB = process.resourceUsage().maxRSS;
  const t0 = performance.now();
  const src = await FileBlockSource.open(meta);
  const res = await decodeEraMetadata(src, { since });
  await src.close();
  const ms = performance.now() - t0;
  if (res.state !== 'valid') throw new Error(`decode lost: ${res.reason}`);
  process.stdout.write(`${JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS, baselineRssKiB, metadataBlocksRead: res.eras.metadataBlocksRead, ...digest(res.blocks) })}\n`);
}

interface Sample {
  wallMs: number;
  innerMs?: number;
  rssMiB: number;
  /** Peak RSS before the work started (Node with its modules loaded). */
  baselineMiB?: number;
}

async function runDecoder(since: number): Promise<Sample & { digest: ReturnType<typeof digest> }> {
  const { execa } = await import('execa');
  // Under /usr/bin/time like era_invalidate: on Linux an exec'd child inherits the forking
  // process's RSS high-water mark, so forking node straight from this (large) process would
  // inflate the child's maxRSS.
  const t0 = performance.now();
  const r = await execa('/usr/bin/time', ['-v', process.execPath, '--disable-warning=ExperimentalWarning', join(ROOT, 'bench/decode-era.ts'), '--child', META, String(since)]);
  const wallMs = performance.now() - t0;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(String(r.stderr));
  if (!rss) throw new Error(`no RSS in /usr/bin/time output: ${r.stderr}`);
  const j = JSON.parse(String(r.stdout)) as { ms: number; maxRssKiB: number; baselineRssKiB: number; blocks: number; runs: number; sha: string };
  return { wallMs, innerMs: j.ms, rssMiB: Math.max(j.maxRssKiB, Number(rss[1])) / 1024, baselineMiB: j.baselineRssKiB / 1024, digest: { blocks: j.blocks, runs: j.runs, sha: j.sha } };
}

async function runInvalidate(since: number): Promise<Sample & { runs: BlockRun[] }> {
  const { execa } = await import('execa');
  const { parseInvalidate } = await import('../test/helpers/era-fixtures.ts');
  const out = join(DIR, `invalidate-${since}.xml`);
  const t0 = performance.now();
  const r = await execa('/usr/bin/time', ['-v', 'era_invalidate', '--written-since', String(since), '-o', out, META]);
  const wallMs = performance.now() - t0;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(String(r.stderr));
  if (!rss) throw new Error(`no RSS in /usr/bin/time output: ${r.stderr}`);
  const runs = parseInvalidate(await readFile(out, 'utf8'));
  await rm(out);
  return { wallMs, rssMiB: Number(rss[1]) / 1024, runs };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1], Number(args[2]));
  const repeat = Number(args[args.indexOf('--repeat') + 1] || 0) || 3;
  const sinces = (args.includes('--since') ? args[args.indexOf('--since') + 1] : '50,111').split(',').map(Number);
  if (!existsSync('/usr/bin/time')) throw new Error('bench:decode measures peak RSS with /usr/bin/time -v: apt-get install time');
  const { unionRuns } = await import('../test/helpers/era-fixtures.ts');
  const { median } = await import('./util.ts');
  const b = await build();
  console.log(`metadata: 2 TiB volume, 64 KiB blocks (${NR_BLOCKS} blocks), ${ARCHIVED.length} archived writesets + current, era array ~70 % populated`);
  console.log(`  built from ${(b.xmlBytes / 2 ** 20).toFixed(0)} MiB of XML: generated in ${b.xmlSeconds.toFixed(1)} s, era_restore ${b.restoreSeconds.toFixed(1)} s; metadata file ${(b.metadataBytes / 2 ** 20).toFixed(0)} MiB (cached in ${DIR})`);
  // Warm the page cache for both tools (in a child: a read here would grow this process's RSS).
  const { execa } = await import('execa');
  await execa('cat', [META], { stdout: 'ignore' });
  for (const since of sinces) {
    const ours: Array<Awaited<ReturnType<typeof runDecoder>>> = [];
    const theirs: Array<Awaited<ReturnType<typeof runInvalidate>>> = [];
    for (let i = 0; i < repeat; i++) {
      ours.push(await runDecoder(since));
      theirs.push(await runInvalidate(since));
    }
    const expected = digest(unionRuns(theirs[0].runs, since <= CURRENT_ERA ? b.current : []));
    const got = ours[0].digest;
    if (got.sha !== expected.sha) throw new Error(`since=${since}: decoder claim ${JSON.stringify(got)} ≠ era_invalidate ∪ current ${JSON.stringify(expected)}`);
    const ow = median(ours.map((s) => s.wallMs));
    const oi = median(ours.map((s) => s.innerMs ?? 0));
    const tw = median(theirs.map((s) => s.wallMs));
    const orss = Math.max(...ours.map((s) => s.rssMiB));
    const trss = Math.max(...theirs.map((s) => s.rssMiB));
    const obase = Math.max(...ours.map((s) => s.baselineMiB ?? 0));
    console.log(`since=${since}: ${got.blocks} blocks claimed in ${got.runs} runs (= era_invalidate's ${digest(theirs[0].runs).blocks} ∪ current writeset), median of ${repeat}`);
    console.log(`  decoder        ${(ow / 1000).toFixed(2)} s wall (${(oi / 1000).toFixed(2)} s in-process)   peak RSS ${orss.toFixed(0)} MiB (${obase.toFixed(0)} MiB of it Node and its modules before the decode)`);
    console.log(`  era_invalidate ${(tw / 1000).toFixed(2)} s wall                      peak RSS ${trss.toFixed(0)} MiB`);
    console.log(`  ratio          era_invalidate / decoder = ${(tw / ow).toFixed(1)}x time, ${(trss / orss).toFixed(1)}x memory`);
  }
}

await main();
