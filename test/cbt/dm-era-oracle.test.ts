/**
 * The dm-era decoder against thin-provisioning-tools on metadata era_restore built from random
 * models (seeds in the test titles): for several `since`, the claim must equal
 * `era_invalidate --written-since` (cut to the volume) plus the committed current writeset, which
 * era_invalidate leaves out; and the parsed superblock, writesets and era array must equal
 * `era_dump`'s. Metadata snapshots: the decoder reads the snapshot's roots, checked against
 * era_invalidate run on the snapshot's superblock copy put in place of the live one.
 */
import { readFile, writeFile } from 'node:fs/promises';
import test from 'ava';
import { FileBlockSource } from '../../src/qcow2/index.ts';
import { decodeEraMetadata, readWritesetTree, WritesetSource, type EraDecodeResult } from '../../src/cbt/dm-era/index.ts';
import { ArrayCursor, MetadataBlockReader, sealBlock, SALT } from '../../src/cbt/persistent-data/index.ts';
import {
  addMetadataSnapshot,
  blockOf,
  buildEraMetadata,
  clampRuns,
  eraDump,
  eraInvalidate,
  modelClaim,
  randomEraModel,
  runsOf,
  sbView,
  unionRuns,
  MD_BLOCK,
  type EraModel,
} from '../helpers/era-fixtures.ts';
import { randInt, rng, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-era-'));
});
test.after.always(async () => {
  await cleanup?.();
});

async function decodeFile(path: string, since: number, extra: { metadataSnapshot?: boolean; chunkBlocks?: number } = {}): Promise<EraDecodeResult> {
  const src = await FileBlockSource.open(path);
  try {
    return await decodeEraMetadata(src, { since, ...extra });
  } finally {
    await src.close();
  }
}

function sinceValues(m: EraModel, r: () => number): number[] {
  const s = new Set<number>([0, 1, m.currentEra, Math.min(m.currentEra + 1, 0xffff_ffff), randInt(r, 0, m.currentEra)]);
  for (const ws of m.writesets) {
    s.add(ws.era);
    if (ws.era + 1 <= 0xffff_ffff) s.add(ws.era + 1);
  }
  const nonZero = [...m.eraArray].filter((e) => e !== 0);
  if (nonZero.length > 0) s.add(nonZero[randInt(r, 0, nonZero.length - 1)]);
  return [...s].sort((a, b) => a - b);
}

const SEEDS = Array.from({ length: 16 }, (_, i) => 7100 + i);
for (const seed of SEEDS) {
  test(`seed ${seed}: claim = era_invalidate ∪ current writeset, for every since`, async (t) => {
    const r = rng(seed);
    const m = randomEraModel(seed, r, { maxBlocks: seed % 4 === 0 ? 300_000 : 60_000 });
    const path = await buildEraMetadata(dir, `oracle-${seed}`, m);
    const chunk = 64 * randInt(r, 1, 200);
    t.log(`nr_blocks=${m.nrBlocks} block=${m.blockSectors}s current_era=${m.currentEra} writesets=${m.writesets.map((w) => `${w.era}:${w.nrBits}/${w.bits.length}`).join(',')} current=${m.current ? m.current.bits.length : '-'} chunk=${chunk}`);
    for (const since of sinceValues(m, r)) {
      const ours = await decodeFile(path, since);
      t.is(ours.state, 'valid', `since=${since}: ${ours.reason}`);
      const invalidate = clampRuns(await eraInvalidate(path, since), m.nrBlocks);
      const current = m.current && m.currentEra >= since ? runsOf(m.current.bits) : [];
      t.deepEqual(ours.blocks, unionRuns(invalidate, current), `since=${since}: claim vs era_invalidate ∪ current writeset`);
      t.deepEqual(ours.blocks, modelClaim(m, since), `since=${since}: claim vs the model`);
      const small = await decodeFile(path, since, { chunkBlocks: chunk });
      t.deepEqual(small.blocks, ours.blocks, `since=${since}: chunkBlocks=${chunk} gives the same claim`);
    }
    const r0 = await decodeFile(path, 1);
    t.is(r0.blockSizeBytes, m.blockSectors * 512);
    t.is(r0.nrBlocks, m.nrBlocks);
    t.is(r0.currentEra, m.currentEra);
    t.is(r0.metadataSnap, null);
    t.deepEqual(
      r0.eras.archived.map((w) => [w.era, w.nrBits, w.setBits]),
      m.writesets.map((w) => [w.era, w.nrBits, w.bits.length]),
    );
    t.is(r0.eras.current?.setBits ?? null, m.current ? m.current.bits.length : null);
  });
}

/** Every bit of a bitset, through the decoder's own source. */
async function bitsOf(reader: MetadataBlockReader, ws: { era: number; nrBits: number; root: number }): Promise<number[]> {
  const src = new WritesetSource(reader, ws, `writeset ${ws.era}`, true, ws.nrBits, 64);
  const chunk = Math.ceil(ws.nrBits / 64) * 64 || 64;
  const bitmap = new Uint32Array(chunk / 32);
  await src.fill(bitmap, 0, ws.nrBits);
  await src.finish();
  const out: number[] = [];
  for (let i = 0; i < ws.nrBits; i++) if ((bitmap[i >>> 5] >>> (i & 31)) & 1) out.push(i);
  return out;
}

for (const seed of [7301, 7302, 7303, 7304, 7305, 7306]) {
  test(`seed ${seed}: superblock, writesets and era array equal era_dump`, async (t) => {
    const r = rng(seed);
    const m = randomEraModel(seed, r, { maxBlocks: 40_000, current: false });
    const path = await buildEraMetadata(dir, `dump-${seed}`, m);
    const dump = await eraDump(path);
    const src = await FileBlockSource.open(path);
    t.teardown(() => src.close());
    const res = await decodeEraMetadata(src, { since: 0 });
    t.is(res.state, 'valid', res.reason ?? '');
    const sb = res.superblock!;
    t.deepEqual([sb.dataBlockSectors, sb.nrBlocks, sb.currentEra], [dump.blockSectors, dump.nrBlocks, dump.currentEra]);
    t.is(sb.version, 1);
    t.is(sb.currentWriteset, null, 'era_restore leaves no current writeset');
    const reader = new MetadataBlockReader(src);
    const tree = await readWritesetTree(reader, sb.writesetTreeRoot, sb.currentEra);
    t.deepEqual(
      tree.map((w) => [w.era, w.nrBits]),
      dump.writesets.map((w) => [w.era, w.nrBits]),
    );
    for (const [i, ws] of tree.entries()) {
      t.is(dump.writesets[i].bitLines, ws.nrBits, `era_dump prints every bit of era ${ws.era}`);
      t.deepEqual(await bitsOf(reader, ws), dump.writesets[i].bits, `bits of era ${ws.era}`);
    }
    const eras = new Uint32Array(sb.nrBlocks);
    const cursor = new ArrayCursor(reader, sb.eraArrayRoot, { structure: 'era array', valueSize: 4, nrEntries: sb.nrBlocks });
    for (let b = await cursor.next(); b; b = await cursor.next()) for (let j = 0; j < b.count; j++) eras[b.first + j] = b.view.getUint32(24 + 4 * j, true);
    t.deepEqual(eras, dump.eraArray);
  });
}

test('era_invalidate and era_dump leave out the committed current writeset; the decoder claims it', async (t) => {
  const r = rng(7401);
  const base = randomEraModel(7401, r, { maxBlocks: 5000, current: true });
  // Current-era bits that no other structure holds, and nothing else at or after the current era.
  const m: EraModel = { ...base, writesets: base.writesets.filter((w) => w.era < base.currentEra), eraArray: base.eraArray.map((e) => Math.min(e, base.currentEra - 1)), current: { nrBits: base.nrBlocks, bits: [0, 5, base.nrBlocks - 1].filter((b, i, a) => b >= 0 && a.indexOf(b) === i) } };
  const path = await buildEraMetadata(dir, 'current', m);
  t.deepEqual(await eraInvalidate(path, m.currentEra), [], 'era_invalidate ignores the superblock current writeset');
  t.false((await eraDump(path)).writesets.some((w) => w.era === m.currentEra), 'era_dump does not show it either');
  const ours = await decodeFile(path, m.currentEra);
  t.deepEqual(ours.blocks, runsOf(m.current!.bits));
  t.deepEqual(ours.eras.current && [ours.eras.current.era, ours.eras.current.nrBits, ours.eras.current.setBits, ours.eras.current.claimed], [m.currentEra, m.nrBlocks, m.current!.bits.length, true]);
  const later = await decodeFile(path, m.currentEra + 1);
  t.deepEqual(later.blocks, [], 'since after the current era claims nothing');
  t.false(later.eras.current?.claimed);
});

/** A copy of the metadata whose live superblock is the snapshot's copy: what era_invalidate would read if it honoured --metadata-snapshot. */
async function snapshotAsLive(path: string, snapAt: number): Promise<string> {
  const file = await readFile(path);
  blockOf(file, snapAt).copy(blockOf(file, 0));
  const v = sbView(blockOf(file, 0));
  v.setUint32(8, 0, true);
  v.setUint32(12, 0, true);
  sealBlock(blockOf(file, 0), SALT.eraSuperblock);
  const out = `${path}.snap-as-live`;
  await writeFile(out, file);
  return out;
}

for (const seed of [7501, 7502, 7503]) {
  test(`seed ${seed}: metadata snapshot: the decoder reads the snapshot's roots; era_invalidate 0.9.0 reads the live ones`, async (t) => {
    const r = rng(seed);
    const m = randomEraModel(seed, r, { maxBlocks: 50_000 });
    const path = await buildEraMetadata(dir, `snap-${seed}`, m, 2);
    t.like(await decodeFile(path, 1, { metadataSnapshot: true }), { state: 'lost', reason: 'superblock: block 0: no metadata snapshot is held (metadata_snap is 0)' });
    const snapAt = await addMetadataSnapshot(path, seed !== 7503);
    const oracle = await snapshotAsLive(path, snapAt);
    for (const since of sinceValues(m, r)) {
      const snap = await decodeFile(path, since, { metadataSnapshot: true });
      t.is(snap.state, 'valid', snap.reason ?? '');
      t.is(snap.metadataSnap, snapAt);
      t.is(snap.eras.source, 'snapshot');
      t.deepEqual(snap.blocks, clampRuns(await eraInvalidate(oracle, since), m.nrBlocks), `since=${since}: snapshot claim vs era_invalidate on the snapshot's superblock`);
      const live = await decodeFile(path, since);
      t.deepEqual(live.blocks, modelClaim(m, since), `since=${since}: live claim unchanged by the snapshot`);
      t.deepEqual(await eraInvalidate(path, since, true), await eraInvalidate(path, since), `since=${since}: era_invalidate --metadata-snapshot reads the live roots`);
    }
  });
}

test('a metadata device larger than its space map: pointers past the space map are refused', async (t) => {
  const m = randomEraModel(7601, rng(7601), { maxBlocks: 3000, current: false });
  const path = await buildEraMetadata(dir, 'grown', m);
  const file = await readFile(path);
  await writeFile(path, Buffer.concat([file, Buffer.alloc(16 * MD_BLOCK)]));
  const res = await decodeFile(path, 0);
  t.is(res.state, 'valid', res.reason ?? '');
  t.is(res.superblock?.spaceMap.nrBlocks, file.length / MD_BLOCK);
});
