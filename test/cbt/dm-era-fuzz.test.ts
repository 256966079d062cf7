/**
 * Random damage to era_restore-made metadata: the decoder must return `valid` or `lost` every
 * time (no exception, no hang, bounded reads), with a well-formed claim when valid. Half the
 * mutations reseal the block's checksum, so the structural checks behind the checksums are
 * exercised too, not only the checksum test.
 */
import { readFile } from 'node:fs/promises';
import test from 'ava';
import { MemoryBlockSource } from '../../src/qcow2/index.ts';
import { decodeEraMetadata } from '../../src/cbt/dm-era/index.ts';
import { blockChecksum, sealBlock, SALT } from '../../src/cbt/persistent-data/index.ts';
import { blockOf, buildEraMetadata, randomBits, writeU64At, MD_BLOCK, type EraModel } from '../helpers/era-fixtures.ts';
import { randInt, rng, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-era-fuzz-'));
});
test.after.always(async () => {
  await cleanup?.();
});

function model(seed: number, nrBlocks: number): EraModel {
  const r = rng(seed);
  const eraArray = new Uint32Array(nrBlocks);
  for (let b = 0; b < nrBlocks; b++) if (r() < 0.6) eraArray[b] = randInt(r, 1, 29);
  return {
    seed,
    blockSectors: 128,
    nrBlocks,
    currentEra: 40,
    writesets: [30, 33, 36].map((era) => ({ era, nrBits: nrBlocks, bits: randomBits(r, nrBlocks, 3000) })),
    eraArray,
    current: { nrBits: nrBlocks, bits: randomBits(r, nrBlocks, 3000) },
  };
}

/** The salt that seals each block as found (undefined: a block the decoder does not read, e.g. the space map's). */
function saltsOf(file: Buffer): Array<number | undefined> {
  const out: Array<number | undefined> = [];
  for (let b = 0; b < file.length / MD_BLOCK; b++) {
    const blk = blockOf(file, b);
    const stored = blk.readUInt32LE(0);
    out.push([SALT.eraSuperblock, SALT.btreeNode, SALT.arrayBlock].find((s) => stored !== 0 && blockChecksum(blk, s) === stored));
  }
  return out;
}

const INTERESTING = [0, 1, 2, 3, 8, 12, 63, 64, 201, 252, 509, 1018, 0x7fffffff, 0x80000000, 0xffffffff];

function mutate(r: () => number, orig: Buffer, salts: Array<number | undefined>): { bytes: Buffer; what: string } {
  const used = salts.flatMap((s, b) => (s === undefined ? [] : [b]));
  const kind = randInt(r, 0, 9);
  const bytes = Buffer.from(orig);
  const b = used[randInt(r, 0, used.length - 1)];
  const blk = blockOf(bytes, b);
  const reseal = () => salts[b] !== undefined && sealBlock(blk, salts[b]!);
  if (kind <= 2) {
    const n = randInt(r, 1, 4);
    for (let i = 0; i < n; i++) blk[randInt(r, 0, MD_BLOCK - 1)] ^= 1 << randInt(r, 0, 7);
    if (kind === 0) return { bytes, what: `flip ${n} bytes in block ${b}` };
    reseal();
    return { bytes, what: `flip ${n} bytes in block ${b}, resealed` };
  }
  if (kind <= 6) {
    // a header or near-header field, or a key/value slot, set to an interesting number
    const off = kind === 6 ? 4 * randInt(r, 0, 1023) : 4 * randInt(r, 1, 60);
    const v = r() < 0.7 ? INTERESTING[randInt(r, 0, INTERESTING.length - 1)] : r() < 0.5 ? used[randInt(r, 0, used.length - 1)] : randInt(r, 0, 0xffffffff);
    blk.writeUInt32LE(v >>> 0, off);
    reseal();
    return { bytes, what: `u32 ${v} at block ${b} + ${off}, resealed` };
  }
  if (kind === 7) {
    // a sealed copy of another block here: shared nodes, loops, blocks of the wrong kind
    const from = used[randInt(r, 0, used.length - 1)];
    blockOf(orig, from).copy(blk);
    const at = salts[from] === SALT.arrayBlock ? 16 : 8;
    writeU64At(new DataView(blk.buffer, blk.byteOffset, MD_BLOCK), at, b);
    if (salts[from] !== undefined) sealBlock(blk, salts[from]!);
    return { bytes, what: `block ${from} copied over ${b}, resealed` };
  }
  if (kind === 8) {
    const len = randInt(r, 0, orig.length);
    return { bytes: bytes.subarray(0, len), what: `truncated to ${len}` };
  }
  // a pointer-sized field of the superblock
  const off = [192, 200, 208, 216, 188, 180, 184, 52, 60][randInt(r, 0, 8)];
  writeU64At(new DataView(bytes.buffer, bytes.byteOffset, MD_BLOCK), off, used[randInt(r, 0, used.length - 1)]);
  sealBlock(blockOf(bytes, 0), SALT.eraSuperblock);
  return { bytes, what: `superblock u64 at ${off} → another block, resealed` };
}

for (const [seed, nrBlocks, cases] of [
  [31, 20_000, 2500],
  [32, 270_000, 500],
] as const) {
  test(`fuzz seed ${seed}: ${cases} random mutations of ${nrBlocks}-block metadata → valid or lost, never a crash`, async (t) => {
    const path = await buildEraMetadata(dir, `fuzz-${seed}`, model(seed, nrBlocks), 4);
    const orig = await readFile(path);
    const salts = saltsOf(orig);
    const r = rng(seed * 1000);
    const outcomes = { valid: 0, lost: 0, unchanged: 0 };
    const baseline = await decodeEraMetadata(new MemoryBlockSource('orig', orig), { since: 33 });
    t.is(baseline.state, 'valid');
    for (let i = 0; i < cases; i++) {
      const { bytes, what } = mutate(r, orig, salts);
      const since = [0, 1, 30, 33, 40, 41][randInt(r, 0, 5)];
      const chunkBlocks = r() < 0.5 ? undefined : 64 * randInt(r, 1, 64);
      let res;
      try {
        res = await decodeEraMetadata(new MemoryBlockSource(`case ${i}`, bytes), { since, chunkBlocks });
      } catch (error) {
        t.fail(`case ${i} (${what}, since=${since}): threw ${String(error)}`);
        continue;
      }
      const trees = res.eras.archived.length + 3;
      if (res.eras.metadataBlocksRead > trees * (bytes.length / MD_BLOCK) + 2) t.fail(`case ${i} (${what}): read ${res.eras.metadataBlocksRead} blocks`);
      if (res.state === 'lost') {
        outcomes.lost++;
        if (!res.reason || res.blocks.length !== 0) t.fail(`case ${i} (${what}): lost without a reason or with blocks`);
        continue;
      }
      outcomes.valid++;
      if (res.reason !== null) t.fail(`case ${i} (${what}): valid with a reason`);
      let end = -1;
      for (const [first, count] of res.blocks) {
        if (!(first > end && count > 0 && first + count <= (res.nrBlocks ?? 0))) t.fail(`case ${i} (${what}): bad run [${first}, ${count}]`);
        end = first + count;
      }
      if (since === 33 && JSON.stringify(res.blocks) === JSON.stringify(baseline.blocks)) outcomes.unchanged++;
    }
    t.log(outcomes);
    t.true(outcomes.lost > cases / 4, 'most damage is detected');
    t.true(outcomes.valid > 0, 'damage outside the structures read (or undone by resealing) leaves a valid claim');
  });
}
