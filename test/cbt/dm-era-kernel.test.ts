/**
 * The decoder on metadata the Linux kernel wrote (see test/helpers/era-kernel-fixtures.ts): the
 * claim for every `since` equals the blocks the guest wrote in those eras, through the kernel's own
 * digest (eras 1–3 folded into the era array) and its committed current writeset (era 4, after a
 * power cut). era_invalidate misses the current writeset's blocks after the power cut — the false
 * MISSED the decoder avoids — and agrees after a clean shutdown. era_dump agrees on every field.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { MemoryBlockSource } from '../../src/qcow2/index.ts';
import { decodeEraMetadata } from '../../src/cbt/dm-era/index.ts';
import { eraDump, eraInvalidate, eraLayout, runsOf, unionRuns } from '../helpers/era-fixtures.ts';
import {
  KERNEL_BLOCK_SECTORS,
  KERNEL_LARGE_BLOCK_SECTORS,
  KERNEL_LARGE_NR_BLOCKS,
  KERNEL_LARGE_WRITES,
  KERNEL_METADATA_SNAP,
  KERNEL_NR_BLOCKS,
  KERNEL_WRITES,
  kernelEraMetadata,
  kernelEraMetadataLarge,
} from '../helpers/era-kernel-fixtures.ts';
import { tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-era-kernel-'));
});
test.after.always(async () => {
  await cleanup?.();
});

/** Blocks the guest wrote in eras [from, to]. */
function written(from: number, to = 4) {
  const blocks = new Set<number>();
  for (let era = from; era <= to; era++) for (const b of KERNEL_WRITES[era] ?? []) blocks.add(b);
  return runsOf([...blocks].sort((a, b) => a - b));
}

for (const mode of ['crash', 'clean'] as const) {
  test(`kernel-written metadata (${mode}): the claim is exactly what the guest wrote, for every since`, async (t) => {
    const bytes = kernelEraMetadata(mode);
    const path = join(dir, `meta-${mode}`);
    await writeFile(path, bytes);
    const src = new MemoryBlockSource(mode, bytes);
    for (const since of [0, 1, 2, 3, 4, 5]) {
      const r = await decodeEraMetadata(src, { since });
      t.is(r.state, 'valid', r.reason ?? '');
      t.deepEqual(r.blocks, since === 0 ? [[0, KERNEL_NR_BLOCKS]] : written(since), `since=${since}`);
      const invalidate = await eraInvalidate(path, since);
      if (mode === 'clean' || since === 0) t.deepEqual(invalidate, r.blocks, `since=${since}: era_invalidate agrees after a clean shutdown`);
      else t.deepEqual(invalidate, written(since, 3), `since=${since}: era_invalidate misses era 4, the open era`);
    }
    const r = await decodeEraMetadata(src, { since: 1 });
    t.like(r, { blockSizeBytes: KERNEL_BLOCK_SECTORS * 512, nrBlocks: KERNEL_NR_BLOCKS, currentEra: 4, metadataSnap: KERNEL_METADATA_SNAP });
    // The kernel's digest folded eras 1–3 into the era array and dropped them from the tree.
    t.like(r.eras.eraArray, { entries: KERNEL_NR_BLOCKS, nonZero: 8, maxEra: 3 });
    if (mode === 'crash') {
      t.like(r.eras.current, { era: 4, nrBits: KERNEL_NR_BLOCKS, setBits: 4, claimed: true });
      t.deepEqual(r.eras.archived, []);
    } else {
      t.is(r.eras.current, null);
      t.deepEqual(r.eras.archived.map((w) => [w.era, w.setBits]), [[4, 4]]);
    }
    const dump = await eraDump(path);
    t.deepEqual([dump.blockSectors, dump.nrBlocks, dump.currentEra], [KERNEL_BLOCK_SECTORS, KERNEL_NR_BLOCKS, 4]);
    t.deepEqual(dump.writesets.map((w) => [w.era, w.bits]), mode === 'clean' ? [[4, KERNEL_WRITES[4]]] : []);
    const lastEra = new Map<number, number>();
    for (const era of [1, 2, 3]) for (const b of KERNEL_WRITES[era]) lastEra.set(b, era);
    t.deepEqual([...dump.eraArray.entries()].filter(([, e]) => e !== 0), [...lastEra.entries()].sort((a, b) => a[0] - b[0]));
  });

  test(`kernel-written metadata (${mode}): the metadata snapshot holds eras 1–3`, async (t) => {
    const src = new MemoryBlockSource(mode, kernelEraMetadata(mode));
    for (const since of [1, 2, 3, 4]) {
      const r = await decodeEraMetadata(src, { since, metadataSnapshot: true });
      t.is(r.state, 'valid', r.reason ?? '');
      t.deepEqual(r.blocks, since > 3 ? [] : written(since, 3), `since=${since}`);
    }
    // Taken while era 3 was still in the tree (the digest had folded eras 1 and 2).
    const r = await decodeEraMetadata(src, { since: 1, metadataSnapshot: true });
    t.deepEqual(r.eras.archived.map((w) => w.era), [3]);
    t.like(r.eras.eraArray, { maxEra: 2 });
    t.deepEqual(unionRuns(r.blocks), written(1, 3));
  });
}

test('larger kernel run (524 288 blocks, 8 eras, power cut during era 8): exact for every since', async (t) => {
  const bytes = kernelEraMetadataLarge();
  const path = join(dir, 'meta-large');
  await writeFile(path, bytes);
  t.true(eraLayout(bytes).eraArrayNodes.length > 1, 'the era array B-tree has an internal node');
  const src = new MemoryBlockSource('large', bytes);
  const writtenLarge = (from: number, to = 8) => {
    const blocks = new Set<number>();
    for (let era = Math.max(1, from); era <= to; era++) for (const b of KERNEL_LARGE_WRITES[era]) blocks.add(b);
    return runsOf([...blocks].sort((a, b) => a - b));
  };
  for (let since = 0; since <= 9; since++) {
    const r = await decodeEraMetadata(src, { since, chunkBlocks: since % 2 ? 4096 : undefined });
    t.is(r.state, 'valid', r.reason ?? '');
    t.deepEqual(r.blocks, since === 0 ? [[0, KERNEL_LARGE_NR_BLOCKS]] : writtenLarge(since), `since=${since}`);
    if (since > 0) t.deepEqual(await eraInvalidate(path, since), since > 7 ? [] : writtenLarge(since, 7), `since=${since}: era_invalidate misses era 8`);
  }
  const r = await decodeEraMetadata(src, { since: 1 });
  t.like(r, { blockSizeBytes: KERNEL_LARGE_BLOCK_SECTORS * 512, nrBlocks: KERNEL_LARGE_NR_BLOCKS, currentEra: 8, metadataSnap: null });
  t.like(r.eras.current, { era: 8, setBits: KERNEL_LARGE_WRITES[8].length });
  t.deepEqual(r.eras.archived, []);
  t.like(r.eras.eraArray, { maxEra: 7 });
});
