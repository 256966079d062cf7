/** The scheduler's clocks: the VirtualClock tests and bench:schedule drive, and the real one. */
import test from 'ava';
import { realClock, VirtualClock } from '../../src/scheduler/index.ts';
import { toClock } from '../../src/scheduler/clock.ts';

test('advance fires the timers due in the window, in time order, each at its own time', async (t) => {
  const vc = new VirtualClock();
  const fired: string[] = [];
  vc.after(30, () => fired.push(`b@${vc.now()}`));
  vc.after(10, () => fired.push(`a@${vc.now()}`));
  vc.after(30, () => fired.push(`c@${vc.now()}`));
  const cancel = vc.after(20, () => fired.push('cancelled'));
  vc.after(31, () => fired.push('late'));
  cancel();
  t.is(vc.pending, 4);
  t.is(vc.nextAt, 10);
  await vc.advance(30);
  t.deepEqual(fired, ['a@10', 'b@30', 'c@30'], 'same time: in the order set');
  t.is(vc.now(), 30);
  t.is(vc.pending, 1);
  t.is(vc.nextAt, 31);
  await vc.advance(0);
  t.is(fired.length, 3, 'nothing due yet');
  await vc.advance(5);
  t.deepEqual(fired.slice(3), ['late']);
  t.is(vc.now(), 35, 'time moves to the end of the window');
  t.is(vc.nextAt, undefined);
});

test('what a timer starts runs before the next timer fires', async (t) => {
  const vc = new VirtualClock();
  const seen: string[] = [];
  const chain = async () => {
    await vc.sleep(10);
    seen.push(`first@${vc.now()}`);
    await vc.sleep(5);
    seen.push(`second@${vc.now()}`);
  };
  void chain();
  vc.after(12, () => seen.push(`timer@${vc.now()}`));
  await vc.advance(20);
  t.deepEqual(seen, ['first@10', 'timer@12', 'second@15']);
});

test('sleep rejects with the signal reason on abort and its timer no longer counts', async (t) => {
  const vc = new VirtualClock();
  const ac = new AbortController();
  const p = vc.sleep(100, ac.signal);
  t.is(vc.pending, 1);
  const reason = new Error('stop');
  ac.abort(reason);
  await t.throwsAsync(p, { is: reason });
  t.is(vc.pending, 0);
  await t.throwsAsync(vc.sleep(1, ac.signal), { is: reason }, 'an aborted signal rejects at once');
});

test('run jumps to the next timer whenever nothing else can run, and fails when nothing is left to wait for', async (t) => {
  const vc = new VirtualClock();
  const work = (async () => {
    await vc.sleep(1_000);
    await vc.sleep(500);
    return vc.now();
  })();
  t.is(await vc.run(work), 1_500);
  await t.throwsAsync(vc.run(new Promise(() => {})), { message: /nothing left to wait for/ });
});

test('toClock: a bare now() keeps real timers; realClock.after fires and cancels', async (t) => {
  const c = toClock(() => 42);
  t.is(c.now(), 42);
  t.is(toClock(undefined), realClock);
  const vc = new VirtualClock();
  t.is(toClock(vc), vc);
  let fired = 0;
  await new Promise<void>((resolve) => c.after(1, () => resolve(void fired++)));
  const cancel = realClock.after(1, () => fired++);
  cancel();
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.is(fired, 1);
});
