/**
 * dm-era fixtures built by the real tools: a random model of dm-era state → era_restore XML →
 * metadata file; parsers for `era_invalidate` and `era_dump` output; and byte patches for what
 * era_restore cannot express (a committed current writeset, a metadata snapshot).
 */
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { sealBlock, SALT } from '../../src/cbt/persistent-data/index.ts';
import type { BlockRun } from '../../src/truth/index.ts';
import { randInt } from './tools.ts';

export const MD_BLOCK = 4096;

export interface ModelWriteset {
  era: number;
  nrBits: number;
  /** Sorted indices of set bits (all < nrBits). */
  bits: number[];
}

/** What dm-era metadata should say; `current`, if set, becomes the superblock's current writeset. */
export interface EraModel {
  seed: number;
  blockSectors: number;
  nrBlocks: number;
  currentEra: number;
  writesets: ModelWriteset[];
  /** Era of every block (0 = never digested). */
  eraArray: Uint32Array;
  current: { nrBits: number; bits: number[] } | null;
}

export interface ModelLimits {
  maxBlocks?: number;
  /** Force a committed current writeset (true), none (false), or choose at random (undefined). */
  current?: boolean;
}

/** Sorted random bit indices below `n` in one of several shapes (sparse, clustered, dense, empty). */
export function randomBits(r: () => number, n: number, maxSet = 20000): number[] {
  if (n === 0) return [];
  const shape = randInt(r, 0, 4);
  const set = new Set<number>();
  if (shape === 0) return [];
  if (shape === 1) {
    const count = randInt(r, 1, Math.min(maxSet, Math.max(1, Math.floor(n / 8))));
    for (let i = 0; i < count; i++) set.add(randInt(r, 0, n - 1));
  } else if (shape === 2) {
    // clustered extents, as file-system writes are
    let budget = Math.min(maxSet, randInt(r, 1, n));
    while (budget > 0) {
      const len = Math.min(budget, randInt(r, 1, 300));
      const start = randInt(r, 0, n - 1);
      for (let b = start; b < Math.min(n, start + len); b++) set.add(b);
      budget -= len;
    }
  } else if (shape === 3) {
    // a dense range, whole words of ones
    const start = randInt(r, 0, n - 1);
    const end = Math.min(n, start + randInt(r, 1, maxSet));
    for (let b = start; b < end; b++) set.add(b);
  } else {
    // the edges: first and last bits, word and block boundaries
    for (const b of [0, 1, 31, 32, 63, 64, 65, 509 * 64 - 1, 509 * 64, n - 2, n - 1]) if (b >= 0 && b < n) set.add(b);
  }
  return [...set].sort((a, b) => a - b);
}

export function randomEraModel(seed: number, r: () => number, limits: ModelLimits = {}): EraModel {
  const maxBlocks = limits.maxBlocks ?? 300_000;
  const edges = [1, 63, 64, 65, 1017, 1018, 1019, 2036, 32575, 32576, 32577, 256_536, 256_537].filter((n) => n <= maxBlocks);
  const nrBlocks = r() < 0.4 ? edges[randInt(r, 0, edges.length - 1)] : randInt(r, 1, maxBlocks);
  const blockSectors = [8, 16, 24, 128, 1024, 8 * randInt(r, 1, 4096)][randInt(r, 0, 5)];
  const currentEra = r() < 0.1 ? 0xffff_fff0 + randInt(r, 0, 15) : randInt(r, 1, 3000);
  const withCurrent = limits.current ?? r() < 0.5;
  const maxArchived = withCurrent ? currentEra - 1 : currentEra;
  const nws = maxArchived < 0 ? 0 : randInt(r, 0, 6);
  const eras = new Set<number>();
  for (let i = 0; i < nws; i++) eras.add(randInt(r, Math.max(0, maxArchived - 40), maxArchived));
  const writesets = [...eras]
    .sort((a, b) => a - b)
    .map((era) => {
      // mostly the volume's size; sometimes from before a grow (shorter) or a shrink (longer)
      const pick = r();
      const nrBits = pick < 0.7 ? nrBlocks : pick < 0.85 ? randInt(r, 1, nrBlocks) : nrBlocks + randInt(r, 1, 5000);
      return { era, nrBits, bits: randomBits(r, nrBits) };
    });
  const eraArray = new Uint32Array(nrBlocks);
  const arrayShape = randInt(r, 0, 3);
  const lowEra = Math.max(1, currentEra - 60);
  if (arrayShape === 1) {
    for (const b of randomBits(r, nrBlocks)) eraArray[b] = randInt(r, lowEra, currentEra);
  } else if (arrayShape >= 2) {
    for (let b = 0; b < nrBlocks; b++) if (r() < (arrayShape === 2 ? 0.5 : 0.97)) eraArray[b] = randInt(r, lowEra, currentEra);
  }
  const current = withCurrent ? { nrBits: nrBlocks, bits: randomBits(r, nrBlocks) } : null;
  return { seed, blockSectors, nrBlocks, currentEra, writesets, eraArray, current };
}

/** era_restore input for the model (the current writeset goes in as a writeset of the current era). */
export function eraXml(m: EraModel): string {
  const parts: string[] = [`<superblock uuid="" block_size="${m.blockSectors}" nr_blocks="${m.nrBlocks}" current_era="${m.currentEra}">\n`];
  const all = m.current ? [...m.writesets, { era: m.currentEra, ...m.current }] : m.writesets;
  for (const ws of all) {
    parts.push(`  <writeset era="${ws.era}" nr_bits="${ws.nrBits}">\n`);
    for (const b of ws.bits) parts.push(`    <bit block="${b}" value="true"/>\n`);
    parts.push('  </writeset>\n');
  }
  parts.push('  <era_array>\n');
  for (let b = 0; b < m.nrBlocks; b++) if (m.eraArray[b] !== 0) parts.push(`    <era block="${b}" era="${m.eraArray[b]}"/>\n`);
  parts.push('  </era_array>\n</superblock>\n');
  return parts.join('');
}

/** Metadata blocks enough for the model, with slack for B-tree nodes and two spare blocks at the end. */
export function metadataBlocksFor(m: EraModel): number {
  const all = m.current ? [...m.writesets, m.current] : m.writesets;
  let n = Math.ceil(m.nrBlocks / 1018) + 16;
  for (const ws of all) n += Math.ceil(Math.ceil(ws.nrBits / 64) / 509) + 4;
  return Math.ceil(n * 1.3) + 64;
}

/** era_restore the model into `dir/name`, then make `model.current` the committed current writeset. */
export async function buildEraMetadata(dir: string, name: string, m: EraModel, extraBlocks = 0): Promise<string> {
  const xmlPath = join(dir, `${name}.xml`);
  const path = join(dir, name);
  await writeFile(xmlPath, eraXml(m));
  const fh = await open(path, 'w');
  await fh.truncate((metadataBlocksFor(m) + extraBlocks) * MD_BLOCK);
  await fh.close();
  await execa('era_restore', ['-i', xmlPath, '-o', path]);
  if (m.current) await promoteCurrentWriteset(path, m.currentEra);
  return path;
}

export function sbView(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function u64(v: DataView, off: number): number {
  return v.getUint32(off, true) + v.getUint32(off + 4, true) * 2 ** 32;
}

function setU64(v: DataView, off: number, n: number): void {
  v.setUint32(off, n % 2 ** 32, true);
  v.setUint32(off + 4, Math.floor(n / 2 ** 32), true);
}

export function blockOf(file: Buffer, b: number): Buffer {
  return file.subarray(b * MD_BLOCK, (b + 1) * MD_BLOCK);
}

/**
 * What dm-era's commit leaves while an era is open: the current era's writeset referenced from the
 * superblock, not from the writeset tree. era_restore can only write archived writesets, so move
 * the tree's entry for `era` (its last key; the tree must be a single leaf) into the superblock.
 */
export async function promoteCurrentWriteset(path: string, era: number): Promise<void> {
  const file = await readFile(path);
  const sb = sbView(blockOf(file, 0));
  const treeRoot = u64(sb, 200);
  const leaf = blockOf(file, treeRoot);
  const lv = sbView(leaf);
  if (lv.getUint32(4, true) !== 2) throw new Error(`${path}: writeset tree root ${treeRoot} is not a leaf`);
  const n = lv.getUint32(16, true);
  const max = lv.getUint32(20, true);
  if (n === 0 || u64(lv, 32 + 8 * (n - 1)) !== era) throw new Error(`${path}: the last writeset is not era ${era}`);
  const vOff = 32 + 8 * max + 12 * (n - 1);
  const nrBits = lv.getUint32(vOff, true);
  const root = u64(lv, vOff + 4);
  lv.setUint32(16, n - 1, true);
  sealBlock(leaf, SALT.btreeNode);
  sb.setUint32(188, nrBits, true);
  setU64(sb, 192, root);
  sealBlock(blockOf(file, 0), SALT.eraSuperblock);
  await writeFile(path, file);
}

/**
 * Hold a metadata snapshot as `take_metadata_snap` leaves it: a copy of the superblock in a spare
 * block, named by the live superblock's metadata_snap. With `emptyWritesetTree`, the copy's
 * writeset tree is a fresh empty leaf, so the snapshot's view differs from the live one.
 */
export async function addMetadataSnapshot(path: string, emptyWritesetTree: boolean): Promise<number> {
  const file = await readFile(path);
  const blocks = file.length / MD_BLOCK;
  const snapAt = blocks - 1;
  const leafAt = blocks - 2;
  for (const b of [snapAt, leafAt]) if (!blockOf(file, b).every((x) => x === 0)) throw new Error(`${path}: block ${b} is not spare`);
  const snap = blockOf(file, snapAt);
  blockOf(file, 0).copy(snap);
  const sv = sbView(snap);
  setU64(sv, 8, snapAt);
  setU64(sv, 216, 0);
  if (emptyWritesetTree) {
    const leaf = blockOf(file, leafAt);
    const lv = sbView(leaf);
    lv.setUint32(4, 2, true); // LEAF_NODE
    setU64(lv, 8, leafAt);
    lv.setUint32(16, 0, true);
    lv.setUint32(20, 201, true); // calc_max_entries for 12-byte values
    lv.setUint32(24, 12, true);
    sealBlock(leaf, SALT.btreeNode);
    setU64(sv, 200, leafAt);
  }
  sealBlock(snap, SALT.eraSuperblock);
  const live = sbView(blockOf(file, 0));
  setU64(live, 216, snapAt);
  sealBlock(blockOf(file, 0), SALT.eraSuperblock);
  await writeFile(path, file);
  return snapAt;
}

/** Runs from sorted, distinct block numbers. */
export function runsOf(sorted: Iterable<number>): BlockRun[] {
  const out: BlockRun[] = [];
  for (const b of sorted) {
    const last = out.at(-1);
    if (last && last[0] + last[1] === b) last[1]++;
    else out.push([b, 1]);
  }
  return out;
}

/** Union of run lists, as sorted merged runs. */
export function unionRuns(...lists: BlockRun[][]): BlockRun[] {
  const all = lists.flat().sort((a, b) => a[0] - b[0]);
  const out: BlockRun[] = [];
  for (const [s, c] of all) {
    const last = out.at(-1);
    if (last && s <= last[0] + last[1]) last[1] = Math.max(last[1], s + c - last[0]);
    else out.push([s, c]);
  }
  return out;
}

/** Runs cut to blocks below `limit`. */
export function clampRuns(runs: BlockRun[], limit: number): BlockRun[] {
  const out: BlockRun[] = [];
  for (const [s, c] of runs) if (s < limit) out.push([s, Math.min(c, limit - s)]);
  return out;
}

/** What the model says was written in era ≥ since (the current writeset included). */
export function modelClaim(m: EraModel, since: number): BlockRun[] {
  const lists: BlockRun[][] = [];
  const arr: number[] = [];
  for (let b = 0; b < m.nrBlocks; b++) if (m.eraArray[b] >= since) arr.push(b);
  lists.push(runsOf(arr));
  for (const ws of m.writesets) if (ws.era >= since) lists.push(runsOf(ws.bits.filter((b) => b < m.nrBlocks)));
  if (m.current && m.currentEra >= since) lists.push(runsOf(m.current.bits));
  return unionRuns(...lists);
}

/** `era_invalidate --written-since N` as runs ("<block block=N/>", "<range begin=A end=B/>", end exclusive). */
export async function eraInvalidate(path: string, since: number, snapshot = false): Promise<BlockRun[]> {
  const args = ['--written-since', String(since), ...(snapshot ? ['--metadata-snapshot'] : []), path];
  const { stdout } = await execa('era_invalidate', args, { maxBuffer: 1 << 30 });
  return parseInvalidate(String(stdout));
}

export function parseInvalidate(text: string): BlockRun[] {
  const out: BlockRun[] = [];
  for (const m of text.matchAll(/<block block\s*=\s*"(\d+)"\s*\/>|<range begin\s*=\s*"(\d+)"\s*end\s*=\s*"(\d+)"\s*\/>/g)) {
    if (m[1] !== undefined) out.push([Number(m[1]), 1]);
    else out.push([Number(m[2]), Number(m[3]) - Number(m[2])]);
  }
  return unionRuns(out);
}

export interface EraDump {
  blockSectors: number;
  nrBlocks: number;
  currentEra: number;
  writesets: Array<{ era: number; nrBits: number; bitLines: number; bits: number[] }>;
  eraArray: Uint32Array;
}

/** `era_dump` (physical: every writeset with every bit, then every era-array entry). */
export async function eraDump(path: string): Promise<EraDump> {
  const { stdout } = await execa('era_dump', [path], { maxBuffer: 1 << 30 });
  const text = String(stdout);
  const sb = /<superblock[^>]*block_size="(\d+)"[^>]*nr_blocks="(\d+)"[^>]*current_era="(\d+)"/.exec(text);
  if (!sb) throw new Error(`era_dump ${path}: no superblock line`);
  const dump: EraDump = { blockSectors: Number(sb[1]), nrBlocks: Number(sb[2]), currentEra: Number(sb[3]), writesets: [], eraArray: new Uint32Array(Number(sb[2])) };
  for (const m of text.matchAll(/<writeset era="(\d+)" nr_bits="(\d+)">|<bit block="(\d+)" value="(true|false)"\/>|<era block="(\d+)" era="(\d+)"\/>/g)) {
    if (m[1] !== undefined) dump.writesets.push({ era: Number(m[1]), nrBits: Number(m[2]), bitLines: 0, bits: [] });
    else if (m[3] !== undefined) {
      const ws = dump.writesets.at(-1);
      if (!ws) throw new Error('bit outside a writeset');
      ws.bitLines++;
      if (m[4] === 'true') ws.bits.push(Number(m[3]));
    } else dump.eraArray[Number(m[5])] = Number(m[6]);
  }
  return dump;
}

/** Every node of the B-tree rooted at `root` (a raw walk, independent of the decoder). */
export function btreeNodesOf(file: Buffer, root: number): number[] {
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const b = todo.pop()!;
    out.push(b);
    const v = sbView(blockOf(file, b));
    if (v.getUint32(4, true) === 1) {
      const n = v.getUint32(16, true);
      const max = v.getUint32(20, true);
      for (let i = 0; i < n; i++) todo.push(u64(v, 32 + 8 * max + 8 * i));
    }
  }
  return out;
}

/** Leaf entries (key, value offset in the file) of the B-tree rooted at `root`. */
export function btreeEntriesOf(file: Buffer, root: number): Array<{ key: number; leaf: number; valueAt: number }> {
  const out: Array<{ key: number; leaf: number; valueAt: number }> = [];
  for (const b of btreeNodesOf(file, root)) {
    const v = sbView(blockOf(file, b));
    if (v.getUint32(4, true) !== 2) continue;
    const n = v.getUint32(16, true);
    const max = v.getUint32(20, true);
    const vs = v.getUint32(24, true);
    for (let i = 0; i < n; i++) out.push({ key: u64(v, 32 + 8 * i), leaf: b, valueAt: b * MD_BLOCK + 32 + 8 * max + vs * i });
  }
  return out.sort((a, b) => a.key - b.key);
}

/** Where each structure of dm-era metadata lives, found by walking the raw bytes. */
export interface EraLayout {
  writesetTree: number[];
  writesets: Array<{ era: number; root: number; nodes: number[]; blocks: number[] }>;
  current: { root: number; nodes: number[]; blocks: number[] } | null;
  eraArrayNodes: number[];
  eraArrayBlocks: number[];
  spaceMapBitmapRoot: number;
  spaceMapRefCountRoot: number;
}

export function eraLayout(file: Buffer): EraLayout {
  const sb = sbView(blockOf(file, 0));
  const arrayOf = (root: number) => ({ root, nodes: btreeNodesOf(file, root), blocks: btreeEntriesOf(file, root).map((e) => u64(sbView(file), e.valueAt)) });
  const treeRoot = u64(sb, 200);
  const writesets = btreeEntriesOf(file, treeRoot).map((e) => ({ era: e.key, ...arrayOf(u64(sbView(file), e.valueAt + 4)) }));
  const curRoot = u64(sb, 192);
  const eraArray = arrayOf(u64(sb, 208));
  return {
    writesetTree: btreeNodesOf(file, treeRoot),
    writesets,
    current: curRoot === 0 ? null : arrayOf(curRoot),
    eraArrayNodes: eraArray.nodes,
    eraArrayBlocks: eraArray.blocks,
    spaceMapBitmapRoot: u64(sb, 60),
    spaceMapRefCountRoot: u64(sb, 68),
  };
}

export { u64 as readU64At, setU64 as writeU64At };
