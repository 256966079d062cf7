/** The signal owner (src/cli/signals.ts) on a fake process: first signal graceful, second forced. */
import { EventEmitter } from 'node:events';
import test from 'ava';
import { Interrupted } from '../../src/cli/errors.ts';
import { ownSignals, STOP_SIGNALS } from '../../src/cli/signals.ts';

function fake() {
  const source = new EventEmitter();
  const lines: string[] = [];
  const exits: number[] = [];
  const owned: boolean[] = [];
  let kills = 0;
  const controller = new AbortController();
  const owner = ownSignals({
    controller,
    source: source as unknown as Parameters<typeof ownSignals>[0]['source'],
    log: (l) => lines.push(l),
    kill: () => (kills++, ['cbt-r1-vm0']),
    exit: (c) => void exits.push(c),
    own: (o) => void owned.push(o),
  });
  return { source, lines, exits, owned, controller, owner, kills: () => kills };
}

test('the first signal aborts the controller with Interrupted and prints one line; the second kills the VMs and exits 128 + the first signal', (t) => {
  const f = fake();
  t.deepEqual(f.owned, [true], 'src/vm/live.ts is told the application owns the signals');
  t.deepEqual(STOP_SIGNALS.map((s) => f.source.listenerCount(s)), [1, 1, 1]);
  f.source.emit('SIGINT');
  t.true(f.controller.signal.aborted);
  t.true(f.controller.signal.reason instanceof Interrupted);
  t.is(f.owner.received, 'SIGINT');
  t.deepEqual(f.lines, ['cbt-harness: stopping (press Ctrl-C again to force)']);
  t.is(f.kills(), 0, 'no VM is killed by the graceful stop');
  t.deepEqual(f.exits, []);
  t.throws(() => f.owner.throwIfInterrupted(), { instanceOf: Interrupted, message: 'stopped by SIGINT' });
  f.source.emit('SIGTERM');
  t.is(f.kills(), 1);
  t.deepEqual(f.exits, [130], 'the exit code of the signal that started the stop');
  t.regex(f.lines[1], /^cbt-harness: forced stop by a second SIGTERM: killed cbt-r1-vm0$/);
});

test('exit codes per signal: SIGINT 130, SIGTERM 143, SIGHUP 129', (t) => {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    const f = fake();
    f.source.emit(signal);
    const e = t.throws(() => f.owner.throwIfInterrupted(), { instanceOf: Interrupted });
    t.is(e?.exitCode, code);
    f.source.emit(signal);
    t.deepEqual(f.exits, [code]);
  }
});

test('dispose removes the listeners and gives the signals back to src/vm/live.ts; no signal, no Interrupted', (t) => {
  const f = fake();
  t.notThrows(() => f.owner.throwIfInterrupted());
  f.owner.dispose();
  t.deepEqual(STOP_SIGNALS.map((s) => f.source.listenerCount(s)), [0, 0, 0]);
  t.deepEqual(f.owned, [true, false]);
  t.false(f.controller.signal.aborted);
});
