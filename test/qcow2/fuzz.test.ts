/** A few thousand mutated real images per CI run; `npm run fuzz` runs the long version. */
import test from 'ava';
import { buildFuzzPool } from '../../fuzz/qcow2-pool.ts';
import { loadPool, runFuzz } from '../../fuzz/qcow2-fuzz.ts';

test('mutated qcow2 images end in a result or an ImageError, never a crash or a hang', async (t) => {
  const { paths, cleanup } = await buildFuzzPool();
  t.teardown(cleanup);
  const pool = await loadPool(paths);
  t.true(pool.length >= 8);
  const seed = Number(process.env.FUZZ_SEED ?? 20261123);
  const stats = await runFuzz(pool, { cases: 4000, seed });
  t.log(`seed ${seed}: ${stats.accepted} accepted, ${stats.rejected} rejected, slowest ${stats.slowestMs.toFixed(1)} ms`);
  t.deepEqual(stats.failures.map((f) => `seed=${f.seed} ${f.image} ${f.mutation}: ${f.error.split('\n')[0]}`), []);
  // Both outcomes must occur, or the mutations are not reaching the structures.
  t.true(stats.rejected > 400 && stats.accepted > 400);
});
