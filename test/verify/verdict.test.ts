/** Verdicts: property tests against a brute force over every truth block, plus worked examples. */
import test from 'ava';
import type { Claim } from '../../src/cbt/index.ts';
import { judge, truthGranularityFor, acceptable, normalize, subtract, type Truth } from '../../src/verify/index.ts';
import type { BlockRun } from '../../src/truth/index.ts';
import { rng, randInt } from '../helpers/tools.ts';

function claimOf(partial: Partial<Claim>): Claim {
  return { decoder: 't', state: 'valid', reason: null, granularity: 65536, volume: { offset: 0, length: 1 << 20 }, blocks: [], excluded: [], ...partial };
}

function randomRuns(r: () => number, n: number, density: number): BlockRun[] {
  const out: BlockRun[] = [];
  let i = 0;
  while (i < n) {
    const len = randInt(r, 1, Math.max(1, Math.floor(n / 10)));
    if (r() < density) out.push([i, Math.min(len, n - i)]);
    i += len + randInt(r, 0, 3);
  }
  return out;
}

function setOf(runs: readonly BlockRun[]): Set<number> {
  const s = new Set<number>();
  for (const [f, c] of runs) for (let i = f; i < f + c; i++) s.add(i);
  return s;
}

test('property: judge equals a brute force over every truth block', (t) => {
  const r = rng(42);
  for (let iter = 0; iter < 600; iter++) {
    const gt = 2 ** randInt(r, 9, 13);
    const gc = gt * 2 ** randInt(r, 0, 5);
    const volOffset = randInt(r, 0, 64) * 512;
    const length = randInt(r, 1, 400) * gt - (r() < 0.3 ? randInt(r, 0, gt - 1) : 0);
    const nTruth = Math.ceil(length / gt);
    const nClaim = Math.ceil(length / gc);
    const changed = randomRuns(r, nTruth + 5, 0.4);
    const blocks = normalize(randomRuns(r, nClaim + 2, 0.5));
    const excluded: Array<[number, number]> = r() < 0.5 ? [[volOffset + randInt(r, 0, length), randInt(r, 0, 8) * gt + randInt(r, 0, 1) * 100]] : [];
    const claim = claimOf({ granularity: gc, volume: { offset: volOffset, length }, blocks, excluded });
    const truth: Truth = { granularity: gt, changed };
    const res = judge(claim, truth);
    // Brute force.
    const claimed = setOf(blocks);
    const changedClaim = new Set<number>();
    for (const i of setOf(changed)) {
      if (i >= nTruth) continue;
      const a = volOffset + i * gt;
      const b = Math.min(a + gt, volOffset + length);
      if (excluded.some(([o, l]) => o <= a && b <= o + l)) continue;
      changedClaim.add(Math.floor((i * gt) / gc));
    }
    const claimedIn = [...claimed].filter((c) => c < nClaim);
    const missed = [...changedClaim].filter((c) => !claimed.has(c)).sort((x, y) => x - y);
    const extra = claimedIn.filter((c) => !changedClaim.has(c));
    t.is(res.changedBlocks, changedClaim.size);
    t.is(res.claimedBlocks, claimedIn.length);
    t.is(res.missedBlocks, missed.length);
    t.is(res.extraBlocks, extra.length);
    t.deepEqual([...setOf(res.missed)].sort((x, y) => x - y), missed);
    t.is(res.verdict, missed.length ? 'MISSED' : extra.length ? 'SUPERSET' : 'EXACT');
    t.is(res.granularity, gc);
  }
});

test('a lost claim is RESYNC whatever it lists', (t) => {
  const res = judge(claimOf({ state: 'lost', reason: 'in_use', blocks: [[0, 1]] }), { granularity: 4096, changed: [[0, 100]] });
  t.is(res.verdict, 'RESYNC');
  t.is(res.reason, 'in_use');
  t.is(res.changedBlocks, 7);
});

test('metadata extents: a change inside them is dropped, one beside them in the same claim block counts', (t) => {
  // Claim blocks of 64 KiB; metadata occupies [8 KiB, 16 KiB) of the volume.
  const claim = claimOf({ volume: { offset: 1 << 20, length: 1 << 20 }, excluded: [[(1 << 20) + 8192, 8192]] });
  t.is(judge(claim, { granularity: 4096, changed: [[2, 2]] }).verdict, 'EXACT');
  const beside = judge(claim, { granularity: 4096, changed: [[2, 3]] });
  t.is(beside.verdict, 'MISSED');
  t.deepEqual(beside.missed, [[0, 1]]);
  t.is(beside.excludedTruthBlocks, 2);
});

test('superset ratio, exact, truth past the volume ignored', (t) => {
  const claim = claimOf({ granularity: 8192, volume: { offset: 0, length: 10 * 8192 }, blocks: [[0, 4]] });
  const s = judge(claim, { granularity: 4096, changed: [[0, 2], [4, 1], [100, 5]] });
  t.is(s.verdict, 'SUPERSET');
  t.is(s.changedBlocks, 2);
  t.is(s.overReportRatio, 2);
  t.is(judge(claim, { granularity: 4096, changed: [[0, 8]] }).verdict, 'EXACT');
});

test('truth granularity divides the claim and follows the metadata alignment', (t) => {
  t.is(truthGranularityFor({ granularity: 65536, volume: { offset: 0, length: 1 << 30 }, excluded: [] }), 4096);
  t.is(truthGranularityFor({ granularity: 24 * 512, volume: { offset: 0, length: 1 << 30 }, excluded: [] }), 4096);
  t.is(truthGranularityFor({ granularity: 3 * 512, volume: { offset: 0, length: 1 << 30 }, excluded: [] }), 512);
  t.is(truthGranularityFor({ granularity: 65536, volume: { offset: 1 << 20, length: 1 << 30 }, excluded: [[(1 << 20) + 1024, 2048]] }), 1024);
  t.throws(() => judge(claimOf({ granularity: 6144 }), { granularity: 4096, changed: [] }), { message: /must divide/ });
});

test('acceptable: default refuses only MISSED; --expect narrows', (t) => {
  t.true(acceptable('RESYNC'));
  t.false(acceptable('MISSED'));
  t.false(acceptable('RESYNC', ['EXACT', 'SUPERSET']));
  t.true(acceptable('MISSED', ['MISSED']));
});

test('run helpers: subtract and normalize', (t) => {
  t.deepEqual(subtract([[0, 10], [20, 5]], [[2, 3], [8, 14]]), [[0, 2], [5, 3], [22, 3]]);
  t.deepEqual(normalize([[5, 2], [0, 3], [2, 4], [10, 0]]), [[0, 7]]);
});
