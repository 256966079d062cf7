/** The adapter interface's shared pieces: write plans, the support check, the command recorder. */
import test from 'ava';
import { assertSupported, checkPlan, CommandRecorder, GuestError, type GuestOperation, planWrites } from '../../src/guest/index.ts';

test('planWrites: same options, same plan; another seed, another plan', (t) => {
  const opts = { seed: 42, count: 500, sizeMin: 4096, sizeMax: 131072, deviceSize: 256 * 1024 * 1024, align: 4096 };
  const a = planWrites(opts);
  t.deepEqual(planWrites({ ...opts }), a);
  t.notDeepEqual(planWrites({ ...opts, seed: 43 }), a);
  // Seeds above 2^32 are not folded onto small ones.
  t.notDeepEqual(planWrites({ ...opts, seed: 42 + 2 ** 32 }), a);
  t.is(a.length, 500);
  // A fixed expectation, so that an accidental change of the generator shows (plans are recorded in run records).
  t.deepEqual(planWrites({ seed: 1, count: 3, sizeMin: 4096, sizeMax: 8192, deviceSize: 1 << 20 }), [
    { offset: 913408, length: 8192, pattern: 66 },
    { offset: 20480, length: 8192, pattern: 127 },
    { offset: 1044480, length: 4096, pattern: 38 },
  ]);
});

test('planWrites: every write inside the device, aligned, sized within bounds, pattern 1..255; the whole range is reachable', (t) => {
  const deviceSize = 10 * 4096 + 100;
  const w = planWrites({ seed: 9, count: 20_000, sizeMin: 4096, sizeMax: 3 * 4096, deviceSize, align: 4096 });
  const firstBlocks = new Set<number>();
  const lengths = new Set<number>();
  for (const x of w) {
    t.true(x.offset >= 0 && x.offset + x.length <= deviceSize);
    t.is(x.offset % 4096, 0);
    t.is(x.length % 4096, 0);
    t.true(x.length >= 4096 && x.length <= 3 * 4096);
    t.true(x.pattern >= 1 && x.pattern <= 255);
    firstBlocks.add(x.offset / 4096);
    lengths.add(x.length);
  }
  // 10 whole blocks: a 1-block write can start at 0..9; 3-block ones up to 7.
  t.deepEqual([...firstBlocks].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  t.deepEqual([...lengths].sort((a, b) => a - b), [4096, 8192, 12288]);
  checkPlan({ disk: 'd', seed: 9, writes: w }, deviceSize, 4096);
});

test('planWrites: large devices (beyond 2^32 bytes) get offsets across the whole device', (t) => {
  const deviceSize = 2 ** 44; // 16 TiB
  const w = planWrites({ seed: 5, count: 2000, sizeMin: 512, sizeMax: 512, deviceSize, align: 512 });
  t.true(w.some((x) => x.offset > 2 ** 43), 'upper half reached');
  t.true(w.some((x) => x.offset < 2 ** 43), 'lower half reached');
  t.true(w.every((x) => x.offset + x.length <= deviceSize && x.offset % 512 === 0));
});

test('planWrites: bad options are TypeErrors naming the option', (t) => {
  const base = { seed: 1, count: 1, sizeMin: 4096, sizeMax: 4096, deviceSize: 1 << 20 };
  t.throws(() => planWrites({ ...base, count: 0 }), { instanceOf: TypeError, message: /`count`/ });
  t.throws(() => planWrites({ ...base, count: 1_000_001 }), { instanceOf: TypeError, message: /`count`/ });
  t.throws(() => planWrites({ ...base, seed: -1 }), { instanceOf: TypeError, message: /`seed`/ });
  t.throws(() => planWrites({ ...base, seed: 1.5 }), { instanceOf: TypeError, message: /`seed`/ });
  t.throws(() => planWrites({ ...base, align: 3000 }), { instanceOf: TypeError, message: /power of two/ });
  t.throws(() => planWrites({ ...base, sizeMin: 5000, sizeMax: 6000 }), { instanceOf: TypeError, message: /No multiple/ });
  t.throws(() => planWrites({ ...base, deviceSize: 100 }), { instanceOf: TypeError, message: /does not fit/ });
  t.throws(() => planWrites({ ...base, sizeMax: 10 }), { instanceOf: TypeError, message: /`sizeMax`/ });
  t.throws(() => planWrites(null as never), { instanceOf: TypeError });
});

test('checkPlan names the first bad write', (t) => {
  t.throws(() => checkPlan({ disk: 'd', seed: 0, writes: [{ offset: 0, length: 4096, pattern: 1 }, { offset: 8192, length: 4096, pattern: 1 }] }, 10000), { message: /writes\[1\].*ends past/ });
  t.throws(() => checkPlan({ disk: 'd', seed: 0, writes: [{ offset: 100, length: 4096, pattern: 1 }] }, 1 << 20, 512), { message: /writes\[0\].*not aligned/ });
  t.throws(() => checkPlan({ disk: 'd', seed: 0, writes: [{ offset: 0, length: 4096, pattern: 256 }] }, 1 << 20), { message: /writes\[0\]\.pattern/ });
  t.throws(() => checkPlan({ disk: 'd', seed: 0 } as never, 1), { message: /writes/ });
});

test('assertSupported names the OS and every missing operation, and lists what is supported', (t) => {
  const adapter = { os: 'windows' as const, supports: new Set<GuestOperation>(['reboot', 'write']) };
  t.notThrows(() => assertSupported(adapter, ['reboot', 'write', 'reboot']));
  const e = t.throws(() => assertSupported(adapter, ['write', 'hibernate', 'checkpoint', 'hibernate']), { instanceOf: GuestError });
  t.is(e?.kind, 'unsupported');
  t.is(e?.os, 'windows');
  t.is(e?.message, 'The windows guest adapter does not support the operations `hibernate`, `checkpoint` (it supports: reboot, write)');
});

test('CommandRecorder: listeners get records, unsubscribe works, a throwing listener does not break others', (t) => {
  const rec = new CommandRecorder();
  const got: string[] = [];
  rec.on(() => {
    throw new Error('broken reporter');
  });
  const off = rec.on((r) => got.push(r.command));
  rec.emit({ command: 'a', exitCode: 0, durationMs: 1, startedAt: 0 });
  off();
  rec.emit({ command: 'b', exitCode: 0, durationMs: 1, startedAt: 0 });
  t.deepEqual(got, ['a']);
});
