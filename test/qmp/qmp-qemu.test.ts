/** QmpClient against a real QEMU (`-machine none`): commands, errors, block nodes, events, failures. */
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { QmpClient, QmpError, type QmpEvent } from '../../src/qmp/index.ts';
import { qemuImg } from '../helpers/tools.ts';
import { startQemu, targetOf, type QemuFixture } from './qemu-fixture.ts';

async function connected(t: ExecutionContext, q: QemuFixture, opts: Parameters<typeof QmpClient.connect>[1] = {}): Promise<QmpClient> {
  const c = await QmpClient.connect(targetOf(q), { retryUntil: Date.now() + 20_000, ...opts });
  t.teardown(() => c.close());
  return c;
}

test('greeting, capabilities and query-version agree with the QEMU binary', async (t) => {
  const q = await startQemu(t);
  const c = await connected(t, q);
  t.true(Array.isArray(c.greeting.QMP.capabilities));
  const { stdout } = await execa('qemu-system-x86_64', ['--version']);
  const m = /version (\d+)\.(\d+)\.(\d+)/.exec(stdout);
  t.truthy(m);
  const v = await c.execute<{ qemu: { major: number; minor: number; micro: number } }>('query-version');
  t.deepEqual([v.qemu.major, v.qemu.minor, v.qemu.micro], [Number(m?.[1]), Number(m?.[2]), Number(m?.[3])]);
  t.deepEqual((c.greeting.QMP.version as { qemu: unknown }).qemu, v.qemu);
  // Capabilities were negotiated: commands other than qmp_capabilities work, and a second negotiation is refused.
  const again = await t.throwsAsync(c.execute('qmp_capabilities'));
  t.true(again instanceof QmpError && again.kind === 'command' && again.class === 'CommandNotFound', String(again));
});

test('TCP monitor', async (t) => {
  const q = await startQemu(t, { tcp: true });
  const c = await connected(t, q);
  t.is(c.target, `127.0.0.1:${q.port}`);
  const s = await c.execute<{ status: string; running: boolean }>('query-status');
  t.is(s.status, 'running');
});

test('command errors carry class and desc, and a stack from the caller', async (t) => {
  const q = await startQemu(t);
  const c = await connected(t, q);
  const e1 = await t.throwsAsync(c.execute('no-such-command'), { instanceOf: QmpError });
  t.is(e1.kind, 'command');
  t.is(e1.class, 'CommandNotFound');
  t.is(e1.command, 'no-such-command');
  t.regex(e1.message, /no-such-command/);
  t.regex(e1.stack ?? '', /qmp-qemu\.test\.ts/);
  const missing = join(q.dir, 'missing.qcow2');
  const e2 = await t.throwsAsync(c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'x', file: { driver: 'file', filename: missing } }), { instanceOf: QmpError });
  t.is(e2.kind, 'command');
  t.is(e2.class, 'GenericError');
  t.true(e2.desc?.includes(missing), e2.desc);
  // The connection is still usable after errors.
  t.is((await c.execute<{ status: string }>('query-status')).status, 'running');
});

test('blockdev-add, dirty bitmap and HMP qemu-io writes: checked by qemu-img after quit', async (t) => {
  const q = await startQemu(t);
  const img = join(q.dir, 'disk.qcow2');
  await qemuImg(['create', '-f', 'qcow2', img, '16M']);
  const c = await connected(t, q);
  await c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'n0', file: { driver: 'file', filename: img } });
  await c.execute('block-dirty-bitmap-add', { node: 'n0', name: 'b0', granularity: 65536, persistent: true });
  const sha = async (): Promise<string> => (await c.execute<{ sha256: string }>('x-debug-block-dirty-bitmap-sha256', { node: 'n0', name: 'b0' })).sha256;
  const empty = await sha();
  // QEMU 7.2 prints qemu-io's report on its stdout; the HMP reply is empty.
  t.is(await c.hmp('qemu-io n0 "write -P 0x5a 1M 64k"'), '');
  const afterOne = await sha();
  t.not(afterOne, empty);
  const nodes = await c.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string; count: number; granularity: number }> }>>('query-named-block-nodes');
  const bm = nodes.find((n) => n['node-name'] === 'n0')?.['dirty-bitmaps']?.find((b) => b.name === 'b0');
  t.deepEqual(bm && { count: bm.count, granularity: bm.granularity }, { count: 65536, granularity: 65536 });
  // HMP answers with text; an HMP-level failure is text too, not a QMP error.
  t.regex(await c.hmp('info status'), /VM status: running/);
  t.regex(await c.hmp('no-such-hmp-command'), /unknown command/);
  await c.execute('quit');
  await q.exited; // stdout fully read
  t.regex(q.stdout(), /wrote 65536\/65536 bytes at offset 1048576/);
  const info = JSON.parse(await qemuImg(['info', '--output=json', img])) as { 'format-specific': { data: { bitmaps?: Array<{ name: string; granularity: number; flags: string[] }> } } };
  t.deepEqual(info['format-specific'].data.bitmaps, [{ name: 'b0', granularity: 65536, flags: ['auto'] }]);
  const io = await execa('qemu-io', ['-r', '-c', 'read -P 0x5a 1M 64k', img]);
  t.regex(io.stdout, /read 65536\/65536/);
  t.notRegex(io.stdout + io.stderr, /Pattern verification failed/);
});

test('events machine none can produce: STOP, RESUME, POWERDOWN, RESET, BLOCK_WRITE_THRESHOLD, JOB_STATUS_CHANGE, SHUTDOWN', async (t) => {
  const q = await startQemu(t);
  const c = await connected(t, q);
  const seen: string[] = [];
  const unsubscribe = c.onEvent((e) => seen.push(e.event));
  const stream = c.events();
  const streamed: string[] = [];
  const reader = (async () => {
    for await (const e of stream) streamed.push(e.event);
  })();

  let since = Date.now();
  await c.execute('stop');
  // QEMU emits STOP before the reply: only `since` catches it now.
  const stop = await c.waitForEvent('STOP', { since, timeoutMs: 10_000 });
  t.true(stop.receivedAt >= since);
  t.true(stop.timestamp.seconds > 0);
  t.is((await c.execute<{ status: string }>('query-status')).status, 'paused');
  since = Date.now();
  await c.execute('cont');
  await c.waitForEvent(['RESUME'], { since, timeoutMs: 10_000 });

  since = Date.now();
  await c.execute('system_powerdown');
  await c.waitForEvent('POWERDOWN', { since, timeoutMs: 10_000 });
  since = Date.now();
  await c.execute('system_reset');
  const reset = await c.waitForEvent('RESET', { since, timeoutMs: 10_000 });
  t.is(reset.data.reason, 'host-qmp-system-reset');

  const img = join(q.dir, 't.qcow2');
  await qemuImg(['create', '-f', 'qcow2', img, '4M']);
  await c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'n0', file: { driver: 'file', filename: img } });
  await c.execute('block-set-write-threshold', { 'node-name': 'n0', 'write-threshold': 4096 });
  // Waiting first, then acting: the live path (no `since`).
  const threshold = c.waitForEvent('BLOCK_WRITE_THRESHOLD', { timeoutMs: 10_000 });
  await c.hmp('qemu-io n0 "write 0 64k"');
  const te = await threshold;
  t.is(te.data['node-name'], 'n0');
  t.is(te.data['write-threshold'], 4096);

  since = Date.now();
  const created = join(q.dir, 'created.raw');
  await c.execute('blockdev-create', { 'job-id': 'j1', options: { driver: 'file', filename: created, size: 1 << 20 } });
  const concluded = await c.waitForEvent('JOB_STATUS_CHANGE', { since, timeoutMs: 10_000, predicate: (e) => e.data.id === 'j1' && e.data.status === 'concluded' });
  t.is(concluded.data.status, 'concluded');
  await c.execute('job-dismiss', { id: 'j1' });

  since = Date.now();
  await c.execute('quit');
  const shutdown = await c.waitForEvent('SHUTDOWN', { since, timeoutMs: 10_000 });
  t.is(shutdown.data.reason, 'host-qmp-quit');
  await q.exited;
  await reader; // the stream ends when the connection closes
  unsubscribe();
  t.true(c.closed);
  const expectedOrder = ['STOP', 'RESUME', 'POWERDOWN', 'RESET', 'BLOCK_WRITE_THRESHOLD', 'SHUTDOWN'];
  const pick = (names: string[]): string[] => names.filter((n) => expectedOrder.includes(n));
  t.deepEqual(pick(seen), expectedOrder);
  t.deepEqual(pick(streamed), expectedOrder);
  t.deepEqual(pick(c.eventLog.map((e: QmpEvent) => e.event)), expectedOrder);
  t.deepEqual(
    c.eventLog.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => e.data.status),
    ['created', 'running', 'waiting', 'pending', 'concluded', 'null'],
  );
  // Waiting after the close rejects at once, unless the log already has the event.
  await t.throwsAsync(c.waitForEvent('STOP'), { instanceOf: QmpError, message: /closed/ });
  t.is((await c.waitForEvent('STOP', { since: 0 })).event, 'STOP');
});

test('QEMU killed mid-command: pending command and waiters reject with kind closed', async (t) => {
  const q = await startQemu(t);
  const c = await connected(t, q);
  const closedReasons: QmpError[] = [];
  c.onClose((r) => closedReasons.push(r));
  // A stopped process cannot answer: the command is provably in flight when it dies.
  q.proc.kill('SIGSTOP');
  const pending = c.execute('query-status', undefined, { timeoutMs: 0 });
  const waiter = c.waitForEvent('NEVER');
  const stream = c.events()[Symbol.asyncIterator]();
  const next = stream.next();
  q.proc.kill('SIGKILL');
  const e = await t.throwsAsync(pending, { instanceOf: QmpError });
  t.is(e.kind, 'closed');
  t.is(e.command, 'query-status');
  t.regex(e.stack ?? '', /qmp-qemu\.test\.ts/);
  t.is((await t.throwsAsync(waiter, { instanceOf: QmpError })).kind, 'closed');
  t.deepEqual(await next, { value: undefined, done: true });
  t.true(c.closed);
  t.is(closedReasons.length, 1);
  t.is((await t.throwsAsync(c.execute('query-status'), { instanceOf: QmpError })).kind, 'closed');
  await c.close(); // idempotent after a peer close
});

test('timeout: command rejected with kind timeout, connection stays usable, late reply dropped', async (t) => {
  const q = await startQemu(t);
  const c = await connected(t, q);
  q.proc.kill('SIGSTOP');
  const e = await t.throwsAsync(c.execute('query-status', undefined, { timeoutMs: 200 }), { instanceOf: QmpError });
  t.is(e.kind, 'timeout');
  t.is(e.command, 'query-status');
  t.regex(e.message, /200 ms/);
  const we = await t.throwsAsync(c.waitForEvent('STOP', { timeoutMs: 100 }), { instanceOf: QmpError });
  t.is(we.kind, 'timeout');
  q.proc.kill('SIGCONT');
  // The late query-status reply arrives first and must not be taken for this one.
  const v = await c.execute<{ qemu: { major: number } }>('query-version');
  t.is(typeof v.qemu.major, 'number');
  t.false(c.closed);
});

test('abort: command, waitForEvent and events() reject with kind aborted and the reason as cause', async (t) => {
  const q = await startQemu(t);
  const c = await connected(t, q);
  q.proc.kill('SIGSTOP');
  const ac = new AbortController();
  const p = c.execute('query-status', undefined, { signal: ac.signal, timeoutMs: 0 });
  const w = c.waitForEvent('STOP', { signal: ac.signal });
  const it = c.events({ signal: ac.signal })[Symbol.asyncIterator]();
  const n = it.next();
  const reason = new Error('user gave up');
  ac.abort(reason);
  for (const promise of [p, w, n]) {
    const e = await t.throwsAsync(promise, { instanceOf: QmpError });
    t.is(e.kind, 'aborted');
    t.is(e.cause, reason);
  }
  // Already aborted: rejected before anything is sent.
  t.is((await t.throwsAsync(c.execute('query-status', undefined, { signal: ac.signal }), { instanceOf: QmpError })).kind, 'aborted');
  q.proc.kill('SIGCONT');
  t.is((await c.execute<{ status: string }>('query-status')).status, 'running');
});

test('connect: retries until QEMU creates the socket; refuses fast without retryUntil; times out on a busy monitor', async (t) => {
  const q = await startQemu(t, { delayMs: 700 });
  // Without retry: the socket does not exist yet.
  const e = await t.throwsAsync(QmpClient.connect(targetOf(q)), { instanceOf: QmpError });
  t.is(e.kind, 'connect');
  t.regex(e.message, /ENOENT/);
  const c = await connected(t, q, { retryUntil: Date.now() + 20_000 });
  t.is((await c.execute<{ status: string }>('query-status')).status, 'running');
  // QEMU serves one QMP client: a second one gets no greeting.
  const busy = await t.throwsAsync(QmpClient.connect(targetOf(q), { timeoutMs: 300 }), { instanceOf: QmpError });
  t.is(busy.kind, 'timeout');
  t.regex(busy.message, /another client/);
  // Retrying stops at the deadline with kind connect.
  const gone = await t.throwsAsync(QmpClient.connect({ path: join(q.dir, 'nobody.sock') }, { retryUntil: Date.now() + 200 }), { instanceOf: QmpError });
  t.is(gone.kind, 'connect');
  t.regex(gone.message, /attempt/);
  const ac = new AbortController();
  const aborted = QmpClient.connect({ path: join(q.dir, 'nobody.sock') }, { retryUntil: Date.now() + 60_000, signal: ac.signal });
  ac.abort();
  t.is((await t.throwsAsync(aborted, { instanceOf: QmpError })).kind, 'aborted');
});

test('close: pending commands reject with kind closed; await using disposes', async (t) => {
  const q = await startQemu(t);
  let seen: QmpClient | undefined;
  {
    await using c = await connected(t, q);
    seen = c;
    q.proc.kill('SIGSTOP');
    const p = c.execute('query-status', undefined, { timeoutMs: 0 });
    await c.close();
    t.is((await t.throwsAsync(p, { instanceOf: QmpError })).kind, 'closed');
    await c.close();
  }
  t.true(seen.closed);
  q.proc.kill('SIGCONT');
  // The monitor is free again for a new client.
  const c2 = await connected(t, q);
  t.is((await c2.execute<{ status: string }>('query-status')).status, 'running');
});
