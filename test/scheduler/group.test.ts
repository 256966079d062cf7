/** JobGroup: a requirement set's pending jobs, retries first, a retry avoiding the hosts it failed on. */
import test from 'ava';
import { JobGroup } from '../../src/scheduler/group.ts';

interface E {
  id: string;
  failedOn?: Set<number>;
}
const e = (id: string, failedOn?: number[]): E => ({ id, failedOn: failedOn && new Set(failedOn) });

test('fresh jobs in order; a retry goes before them', (t) => {
  const g = new JobGroup<E>([], [0, 1]);
  for (const id of ['a', 'b', 'c']) g.push(e(id));
  t.is(g.take(0)?.id, 'a');
  g.retry(e('r', [1]));
  t.is(g.pending, 3);
  t.is(g.fresh, 2);
  t.is(g.take(0)?.id, 'r', 'the retry first');
  t.is(g.take(0)?.id, 'b');
  t.is(g.take(1)?.id, 'c');
  t.is(g.take(1), undefined);
  t.is(g.pending, 0);
});

test('a retry avoids the host it failed on while another host of the group could take it', (t) => {
  const g = new JobGroup<E>(['kvm'], [0, 1, 2]);
  const r = e('r', [0]);
  g.retry(r);
  t.false(g.acceptable(r, 0));
  t.true(g.acceptable(r, 1));
  t.false(g.canTake(0), 'host 0 has nothing it may take');
  t.is(g.take(0), undefined);
  t.is(g.take(2), r);
  // Failed on every host of the group: any of them may take it.
  const all = e('all', [0, 1, 2]);
  g.retry(all);
  t.true(g.canTake(0));
  t.is(g.take(0), all);
  // A host that left the group (down) no longer counts.
  const two = e('two', [0, 1]);
  g.hosts = [0, 1];
  g.retry(two);
  t.true(g.acceptable(two, 0));
});

test('a host that may not take the oldest retry takes a younger one, or a fresh job', (t) => {
  const g = new JobGroup<E>([], [0, 1]);
  g.retry(e('r0', [0]));
  g.retry(e('r1', [1]));
  g.push(e('f'));
  t.is(g.take(0)?.id, 'r1');
  t.is(g.take(0)?.id, 'f');
  t.is(g.take(0), undefined);
  t.is(g.take(1)?.id, 'r0');
});

test('arrange reorders the fresh jobs; drain empties the group, retries first', (t) => {
  const g = new JobGroup<E>(['b', 'a'], [0]);
  t.is(g.key, 'b\0a');
  for (const id of ['x', 'y', 'z']) g.push(e(id));
  g.take(0);
  g.arrange((q) => q.reverse());
  t.deepEqual(g.queued().map((x) => x.id), ['z', 'y']);
  g.retry(e('r'));
  t.deepEqual(g.drain().map((x) => x.id), ['r', 'z', 'y']);
  t.is(g.pending, 0);
  t.is(g.take(0), undefined);
});

test('a long queue keeps its order across the compaction of its taken prefix', (t) => {
  const g = new JobGroup<E>([], [0]);
  for (let i = 0; i < 5000; i++) g.push(e(`j${i}`));
  const taken: string[] = [];
  for (let x = g.take(0); x; x = g.take(0)) taken.push(x.id);
  t.deepEqual(taken, Array.from({ length: 5000 }, (_, i) => `j${i}`));
});
