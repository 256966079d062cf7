/**
 * Damaged dm-era metadata is `lost` with a reason naming the structure and block, never an
 * exception; era_invalidate/era_check agree that the same bytes are damaged. Metadata made by
 * era_restore from a fixed model, then damaged: flipped bytes (checksums catch them), and
 * well-sealed lies (valid checksums around impossible structures: loops, depth, eras from the
 * future, arrays with holes, misdirected blocks), truncation, bad options, failing I/O.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { MemoryBlockSource, type BlockSource } from '../../src/qcow2/index.ts';
import { decodeEraMetadata, EraMetadataError, EraOptionError } from '../../src/cbt/dm-era/index.ts';
import { MetadataIoError, sealBlock, SALT } from '../../src/cbt/persistent-data/index.ts';
import { blockOf, btreeEntriesOf, buildEraMetadata, eraLayout, modelClaim, randomBits, sbView, writeU64At, MD_BLOCK, type EraLayout, type EraModel } from '../helpers/era-fixtures.ts';
import { randInt, rng, tempDir } from '../helpers/tools.ts';

const SINCE = 41;
const SPARE = 32;
let dir: string;
let cleanup: () => Promise<void>;
let base: Buffer;
let layout: EraLayout;
let model: EraModel;

test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-era-bad-'));
  const r = rng(4242);
  const nrBlocks = 300_000; // 295 era-array blocks: the array's B-tree has an internal root
  const eraArray = new Uint32Array(nrBlocks);
  for (let b = 0; b < nrBlocks; b += 3) eraArray[b] = randInt(r, 1, 19);
  model = {
    seed: 4242,
    blockSectors: 128,
    nrBlocks,
    currentEra: 50,
    writesets: [20, 40, 45].map((era) => ({ era, nrBits: nrBlocks, bits: randomBits(r, nrBlocks, 5000) })),
    eraArray,
    current: { nrBits: nrBlocks, bits: [0, 7, 64, 299_999] },
  };
  const path = await buildEraMetadata(dir, 'base', model, SPARE);
  base = await readFile(path);
  layout = eraLayout(base);
});
test.after.always(async () => {
  await cleanup?.();
});

async function decode(bytes: Uint8Array, since = SINCE, extra = {}) {
  return decodeEraMetadata(new MemoryBlockSource('meta', bytes), { since, ...extra });
}

/** Exit code of an era tool on these bytes. */
async function toolExit(tool: string, bytes: Uint8Array, args: string[] = []): Promise<number> {
  const p = join(dir, `t-${Math.random().toString(36).slice(2)}`);
  await writeFile(p, bytes);
  const r = await execa(tool, [...args, p], { reject: false });
  return r.exitCode ?? -1;
}

/** The first spare (all-zero) blocks at the end of the file. */
function spare(i: number): number {
  return base.length / MD_BLOCK - SPARE + i;
}

test('the undamaged base decodes as the model says', async (t) => {
  const res = await decode(base);
  t.is(res.state, 'valid', res.reason ?? '');
  t.deepEqual(res.blocks, modelClaim(model, SINCE));
  t.true(layout.eraArrayNodes.length > 1, 'the era array B-tree has an internal node');
  t.is(base.subarray(spare(0) * MD_BLOCK).every((x) => x === 0), true);
});

interface FlipCase {
  name: string;
  block: () => number;
  structure: () => string;
  /** Whether era_invalidate reads this block (it ignores the current writeset). */
  toolReads: boolean;
}

const flips: FlipCase[] = [
  { name: 'superblock', block: () => 0, structure: () => 'superblock', toolReads: true },
  { name: 'writeset tree node', block: () => layout.writesetTree[0], structure: () => 'writeset tree', toolReads: true },
  { name: 'bitset block of a claimed writeset', block: () => layout.writesets[2].blocks[3], structure: () => 'writeset for era 45', toolReads: true },
  { name: 'bitset block of an older writeset', block: () => layout.writesets[0].blocks.at(-1)!, structure: () => 'writeset for era 20', toolReads: true },
  { name: 'bitset B-tree node', block: () => layout.writesets[1].nodes[0], structure: () => 'writeset for era 40', toolReads: true },
  { name: 'current writeset bitset block', block: () => layout.current!.blocks[0], structure: () => 'current writeset (era 50)', toolReads: false },
  { name: 'era array block', block: () => layout.eraArrayBlocks[150], structure: () => 'era array', toolReads: true },
  { name: 'era array B-tree root (internal)', block: () => layout.eraArrayNodes[0], structure: () => 'era array', toolReads: true },
  { name: 'era array B-tree leaf', block: () => layout.eraArrayNodes.at(-1)!, structure: () => 'era array', toolReads: true },
];

for (const [i, c] of flips.entries()) {
  test(`flipped bytes in the ${c.name} → lost, naming it`, async (t) => {
    const r = rng(900 + i);
    const b = c.block();
    for (const offset of [0, 4, 9, 17, 30, 40, randInt(r, 0, 4095), randInt(r, 0, 4095), 4095]) {
      const bytes = Buffer.from(base);
      bytes[b * MD_BLOCK + offset] ^= 1 << randInt(r, 0, 7);
      const res = await decode(bytes);
      t.is(res.state, 'lost', `offset ${offset}`);
      t.true(res.reason?.startsWith(`${c.structure()}: block ${b}: `), `offset ${offset}: ${res.reason}`);
      t.deepEqual(res.blocks, []);
    }
    const bytes = Buffer.from(base);
    bytes[b * MD_BLOCK + 100] ^= 0x10;
    t.is((await toolExit('era_invalidate', bytes, ['--written-since', String(SINCE)])) !== 0, c.toolReads, 'era_invalidate agrees');
  });
}

test('flipped bytes in space map blocks do not matter: neither the decoder nor era_invalidate reads them', async (t) => {
  for (const b of [layout.spaceMapBitmapRoot, layout.spaceMapRefCountRoot]) {
    const bytes = Buffer.from(base);
    bytes[b * MD_BLOCK + 200] ^= 0xff;
    const res = await decode(bytes);
    t.is(res.state, 'valid', res.reason ?? '');
    t.deepEqual(res.blocks, modelClaim(model, SINCE));
    t.is(await toolExit('era_invalidate', bytes, ['--written-since', String(SINCE)]), 0);
  }
});

test('truncated metadata → lost (truncated), never a crash', async (t) => {
  for (const size of [0, 1, 4095]) {
    const res = await decode(base.subarray(0, size));
    t.like(res, { state: 'lost', reason: `superblock: metadata device is ${size} bytes, smaller than one 4096-byte block` });
  }
  for (const size of [4096, 8192, 10 * 4096 + 17, Math.floor(base.length / 2), base.length - 4096, base.length - 1]) {
    const res = await decode(base.subarray(0, size));
    t.is(res.state, 'lost');
    t.regex(res.reason ?? '', /truncated/, `size ${size}`);
  }
});

/** A copy of the base with `edit` applied to it; the edit reseals what it changes. */
function edited(edit: (file: Buffer) => void): Buffer {
  const file = Buffer.from(base);
  edit(file);
  return file;
}

function resealSb(file: Buffer): void {
  sealBlock(blockOf(file, 0), SALT.eraSuperblock);
}

const sbLies: Array<[string, (v: DataView) => void, string]> = [
  ['version 2', (v) => v.setUint32(40, 2, true), 'unsupported metadata version 2 (this decoder reads 1..1)'],
  ['version 0', (v) => v.setUint32(40, 0, true), 'unsupported metadata version 0 (this decoder reads 1..1)'],
  ['another magic', (v) => v.setUint32(32, 0x12345678, true), 'bad magic 0x012345678 (dm-era\'s is 2126579579): not dm-era metadata'],
  ['flags', (v) => v.setUint32(4, 1, true), 'unsupported superblock flags 0x1'],
  ['data block size 0', (v) => v.setUint32(172, 0, true), 'data block size of 0 sectors is not a positive multiple of 8'],
  ['data block size 12', (v) => v.setUint32(172, 12, true), 'data block size of 12 sectors is not a positive multiple of 8'],
  ['metadata block size 16', (v) => v.setUint32(176, 16, true), 'unsupported metadata block size of 16 sectors (dm-era uses 8)'],
  ['nr_blocks 2^31', (v) => v.setUint32(180, 2 ** 31, true), 'nr_blocks 2147483648 exceeds dm-era\'s limit of 2147483647'],
  ['blocknr 5', (v) => v.setUint32(8, 5, true), 'records block number 5 (misdirected or stale write)'],
];
for (const [name, edit, reason] of sbLies) {
  test(`sealed superblock with ${name} → lost`, async (t) => {
    const bytes = edited((f) => {
      edit(sbView(blockOf(f, 0)));
      resealSb(f);
    });
    t.like(await decode(bytes), { state: 'lost', reason: `superblock: block 0: ${reason}` });
  });
}

test('all-zero superblock → lost (never formatted)', async (t) => {
  const bytes = edited((f) => blockOf(f, 0).fill(0));
  t.like(await decode(bytes), { state: 'lost', reason: 'superblock: block 0: all zeroes: the metadata device was never formatted (dm-era would start afresh)' });
});

test('era-array entry after the current era → lost; era_check agrees', async (t) => {
  const ab = layout.eraArrayBlocks[7];
  const bytes = edited((f) => {
    sbView(blockOf(f, ab)).setUint32(24 + 4 * 5, 51, true);
    sealBlock(blockOf(f, ab), SALT.arrayBlock);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `era array: block ${ab}: entry for data block ${7 * 1018 + 5} holds era 51, after the current era 50` });
  t.not(await toolExit('era_check', bytes), 0);
});

test('writeset tree holding an era after the current one → lost', async (t) => {
  const leaf = layout.writesetTree[0];
  const bytes = edited((f) => {
    writeU64At(sbView(blockOf(f, leaf)), 32 + 8 * 2, 51);
    sealBlock(blockOf(f, leaf), SALT.btreeNode);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `writeset tree: block ${leaf}: holds a writeset for era 51, after the current era 50` });
});

test('keys out of order in a sealed node → lost', async (t) => {
  const leaf = layout.writesetTree[0];
  const bytes = edited((f) => {
    const v = sbView(blockOf(f, leaf));
    writeU64At(v, 32, 40);
    writeU64At(v, 40, 20);
    sealBlock(blockOf(f, leaf), SALT.btreeNode);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `writeset tree: block ${leaf}: keys out of order: key 1 (20) after 40` });
});

test('a loop in the era array B-tree → lost, not a hang', async (t) => {
  const root = layout.eraArrayNodes[0];
  const bytes = edited((f) => {
    const v = sbView(blockOf(f, root));
    t.is(v.getUint32(4, true), 1, 'root is internal');
    const max = v.getUint32(20, true);
    writeU64At(v, 32 + 8 * max + 8, root); // child 1 → the root itself
    sealBlock(blockOf(f, root), SALT.btreeNode);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `era array: block ${root}: reached twice (from node ${root}): the tree has a loop or a shared node` });
});

/** An internal node at block `at` with one child. */
function internalNode(f: Buffer, at: number, child: number, key = 0): void {
  const blk = blockOf(f, at);
  blk.fill(0);
  const v = sbView(blk);
  v.setUint32(4, 1, true);
  writeU64At(v, 8, at);
  v.setUint32(16, 1, true);
  v.setUint32(20, 252, true);
  v.setUint32(24, 8, true);
  writeU64At(v, 32, key);
  writeU64At(v, 32 + 8 * 252, child);
  sealBlock(blk, SALT.btreeNode);
}

test('a self-pointing node as the era array root → lost', async (t) => {
  const s = spare(0);
  const bytes = edited((f) => {
    internalNode(f, s, s);
    writeU64At(sbView(blockOf(f, 0)), 208, s);
    resealSb(f);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `era array: block ${s}: reached twice (from node ${s}): the tree has a loop or a shared node` });
});

test('a B-tree deeper than 16 levels → lost', async (t) => {
  const bytes = edited((f) => {
    for (let i = 0; i < 20; i++) internalNode(f, spare(i), spare(i + 1));
    writeU64At(sbView(blockOf(f, 0)), 200, spare(0));
    resealSb(f);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `writeset tree: block ${spare(16)}: deeper than 16 levels` });
});

test('an era array missing its last block → lost', async (t) => {
  const leaf = btreeEntriesOf(base, layout.eraArrayNodes[0]).at(-1)!.leaf;
  const bytes = edited((f) => {
    const v = sbView(blockOf(f, leaf));
    v.setUint32(16, v.getUint32(16, true) - 1, true);
    sealBlock(blockOf(f, leaf), SALT.btreeNode);
  });
  t.like(await decode(bytes), { state: 'lost', reason: 'era array: array ends after 294 blocks, but its 300000 entries need 295' });
});

test('an array block with the wrong entry count → lost', async (t) => {
  const ab = layout.eraArrayBlocks[0];
  const bytes = edited((f) => {
    sbView(blockOf(f, ab)).setUint32(8, 1000, true);
    sealBlock(blockOf(f, ab), SALT.arrayBlock);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `era array: block ${ab}: array block 0 holds 1000 entries, expected 1018` });
});

test('a bitset root past the end of the device → lost (truncated)', async (t) => {
  const leaf = layout.writesetTree[0];
  const bytes = edited((f) => {
    const v = sbView(blockOf(f, leaf));
    const max = v.getUint32(20, true);
    writeU64At(v, 32 + 8 * max + 12 * 2 + 4, 1e9);
    sealBlock(blockOf(f, leaf), SALT.btreeNode);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `writeset for era 45: points at block 1000000000 but the metadata device holds only ${base.length / MD_BLOCK} blocks of 4096 bytes (truncated?)` });
});

test('a misdirected bitset block (right bytes, wrong place) → lost', async (t) => {
  const ws = layout.writesets[2];
  const moved = ws.blocks[0];
  const leaf = ws.nodes[0];
  const bytes = edited((f) => {
    blockOf(f, moved).copy(blockOf(f, spare(0)));
    const v = sbView(blockOf(f, leaf));
    const max = v.getUint32(20, true);
    writeU64At(v, 32 + 8 * max, spare(0));
    sealBlock(blockOf(f, leaf), SALT.btreeNode);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `writeset for era 45: block ${spare(0)}: array block records block number ${moved} (misdirected or stale write)` });
});

test('a tree of the wrong kind where the writeset tree should be → lost', async (t) => {
  const bytes = edited((f) => {
    writeU64At(sbView(blockOf(f, 0)), 200, layout.eraArrayNodes.at(-1)!);
    resealSb(f);
  });
  t.like(await decode(bytes), { state: 'lost', reason: `writeset tree: block ${layout.eraArrayNodes.at(-1)}: leaf node value size 8, expected 12 (not the tree its owner expects)` });
});

test('a current writeset longer than its bitset → lost', async (t) => {
  const bytes = edited((f) => {
    sbView(blockOf(f, 0)).setUint32(188, model.nrBlocks + 2 * 509 * 64, true);
    resealSb(f);
  });
  const last = layout.current!.blocks.at(-1)!;
  t.like(await decode(bytes), { state: 'lost', reason: `current writeset (era 50): block ${last}: array block 9 holds 107 entries, expected 509` });
});

test('bad options are typed errors', async (t) => {
  for (const since of [-1, 1.5, Number.NaN, 2 ** 32, '3' as unknown as number, undefined as unknown as number]) {
    const e = await t.throwsAsync(decodeEraMetadata(new MemoryBlockSource('meta', base), { since }), { instanceOf: EraOptionError });
    t.true(e instanceof EraMetadataError);
    t.regex(e?.message ?? '', /`since`/);
  }
  await t.throwsAsync(decode(base, 1, { chunkBlocks: 100 }), { instanceOf: EraOptionError, message: /`chunkBlocks`/ });
});

test('a failing metadata device is an EraMetadataError naming it, with the cause kept', async (t) => {
  const inner = new MemoryBlockSource('meta', base);
  const failing: BlockSource = {
    name: '/dev/broken',
    size: inner.size,
    identity: 'broken',
    read: async (buf, pos) => {
      if (pos >= 3 * MD_BLOCK) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
      return inner.read(buf, pos);
    },
    close: async () => {},
  };
  const e = await t.throwsAsync(decodeEraMetadata(failing, { since: 1 }), { instanceOf: EraMetadataError });
  t.regex(e?.message ?? '', /^\/dev\/broken: cannot read dm-era metadata: .*EIO: i\/o error/);
  t.true(e?.cause instanceof MetadataIoError);
});

test('an aborted decode rejects with the abort reason', async (t) => {
  const ac = new AbortController();
  ac.abort();
  await t.throwsAsync(decode(base, 1, { signal: ac.signal }), { name: 'AbortError' });
});
