/**
 * Framing and matching with a scripted fake QMP peer over an in-memory stream pair, beside the
 * real-QEMU tests (qmp-qemu.test.ts): chunk boundaries anywhere, events interleaved with
 * replies, out-of-order replies, huge replies, and protocol violations.
 */
import { duplexPair, type Duplex } from 'node:stream';
import test from 'ava';
import { LineSplitter, LineTooLongError, QmpClient, QmpError } from '../../src/qmp/index.ts';
import { randInt, rng } from '../helpers/tools.ts';

const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: ['oob'] } };

/** The fake peer: collects commands the client sent; `send` writes raw bytes, optionally split. */
class FakeQemu {
  readonly side: Duplex;
  readonly received: Array<{ execute: string; arguments?: Record<string, unknown>; id: number }> = [];
  #buf = '';
  #waiters: Array<() => void> = [];

  constructor(side: Duplex) {
    this.side = side;
    side.on('data', (d: Buffer) => {
      this.#buf += d.toString();
      let i: number;
      while ((i = this.#buf.indexOf('\n')) >= 0) {
        this.received.push(JSON.parse(this.#buf.slice(0, i)) as FakeQemu['received'][number]);
        this.#buf = this.#buf.slice(i + 1);
        for (const w of this.#waiters.splice(0)) w();
      }
    });
  }

  async command(n: number): Promise<FakeQemu['received'][number]> {
    while (this.received.length <= n) await new Promise<void>((r) => this.#waiters.push(r));
    return this.received[n];
  }

  /** Write `text` cut at the given byte offsets (each piece its own chunk). */
  async send(text: string | Buffer, cuts: number[] = []): Promise<void> {
    const bytes = typeof text === 'string' ? Buffer.from(text) : text;
    let prev = 0;
    for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b), bytes.length]) {
      this.side.write(bytes.subarray(prev, c));
      prev = c;
      await new Promise((r) => setImmediate(r)); // separate 'data' events on the client side
    }
  }
}

async function handshake(opts: Parameters<typeof QmpClient.fromStream>[1] = {}, greetingCuts?: number[]): Promise<{ client: QmpClient; fake: FakeQemu }> {
  const [a, b] = duplexPair();
  const fake = new FakeQemu(b);
  const connecting = QmpClient.fromStream(a, { label: 'fake', ...opts });
  const g = `${JSON.stringify(GREETING)}\r\n`;
  await fake.send(g, greetingCuts ?? [...Array(g.length).keys()]); // byte by byte
  const caps = await fake.command(0);
  await fake.send(`${JSON.stringify({ return: {}, id: caps.id })}\n`);
  return { client: await connecting, fake };
}

const MULTIBYTE = ['é', '€', '😀'];

test('LineSplitter: random chunking of random lines gives back the same lines (200 seeds)', (t) => {
  for (let seed = 1; seed <= 200; seed++) {
    const r = rng(seed);
    const lines: string[] = [];
    const n = randInt(r, 1, 30);
    for (let i = 0; i < n; i++) {
      const len = randInt(r, 0, 300);
      let s = '';
      // Include multi-byte UTF-8 so chunk cuts fall inside characters.
      for (let j = 0; j < len; j++) s += r() < 0.1 ? MULTIBYTE[randInt(r, 0, MULTIBYTE.length - 1)] : String.fromCharCode(randInt(r, 32, 126));
      lines.push(s);
    }
    const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''));
    const sp = new LineSplitter(1 << 20);
    const out: string[] = [];
    let pos = 0;
    while (pos < bytes.length) {
      const len = randInt(r, 1, 64);
      out.push(...sp.push(bytes.subarray(pos, pos + len)));
      pos += len;
    }
    t.deepEqual(out, lines, `seed ${seed}`);
    t.is(sp.pendingBytes, 0);
  }
});

test('LineSplitter: refuses a line beyond the limit, with or without its newline', (t) => {
  const sp = new LineSplitter(10);
  t.deepEqual(sp.push(Buffer.from('0123456789\nabc')), ['0123456789']);
  t.throws(() => sp.push(Buffer.from('defghijk')), { instanceOf: LineTooLongError });
  t.throws(() => new LineSplitter(10).push(Buffer.from('0123456789A\n')), { instanceOf: LineTooLongError });
  t.throws(() => new LineSplitter(0), { instanceOf: TypeError });
});

test('greeting byte by byte, then out-of-order replies interleaved with events in one chunk', async (t) => {
  const { client, fake } = await handshake();
  t.deepEqual(client.greeting, GREETING);
  t.is(fake.received[0].execute, 'qmp_capabilities');
  const events: string[] = [];
  client.onEvent((e) => events.push(e.event));
  const p1 = client.execute('query-a');
  const p2 = client.execute<{ b: number }>('query-b', { x: 1 });
  const c1 = await fake.command(1);
  const c2 = await fake.command(2);
  t.deepEqual(c2.arguments, { x: 1 });
  t.not(c1.id, c2.id);
  const ev = (name: string): string => JSON.stringify({ event: name, data: { n: 1 }, timestamp: { seconds: 5, microseconds: 6 } });
  const chunk = [ev('E1'), JSON.stringify({ return: { b: 2 }, id: c2.id }), ev('E2'), JSON.stringify({ id: c1.id, return: 'a' }), ev('E3')].join('\n') + '\n';
  await fake.send(chunk, [3, 50, 51, 130]);
  t.deepEqual(await p2, { b: 2 });
  t.is(await p1, 'a');
  t.deepEqual(events, ['E1', 'E2', 'E3']);
  t.deepEqual(client.eventLog.map((e) => [e.event, e.data, e.timestamp]), ['E1', 'E2', 'E3'].map((n) => [n, { n: 1 }, { seconds: 5, microseconds: 6 }]));
  await client.close();
});

test('a 20 MiB reply split into odd chunks', async (t) => {
  const { client, fake } = await handshake();
  const p = client.execute<string>('big');
  const c = await fake.command(1);
  const big = 'x'.repeat(20 * 1024 * 1024);
  const line = Buffer.from(`${JSON.stringify({ return: big, id: c.id })}\n`);
  const cuts: number[] = [];
  for (let off = 65521; off < line.length; off += 65521) cuts.push(off);
  await fake.send(line, cuts);
  t.is((await p).length, big.length);
  await client.close();
});

test('error reply keeps class and desc; unknown ids are ignored', async (t) => {
  const { client, fake } = await handshake();
  const p = client.execute('bad');
  const c = await fake.command(1);
  await fake.send(`${JSON.stringify({ return: {}, id: 9999 })}\n${JSON.stringify({ error: { class: 'DeviceNotFound', desc: 'no disk0' }, id: c.id })}\n`);
  const e = await t.throwsAsync(p, { instanceOf: QmpError });
  t.deepEqual([e.kind, e.class, e.desc, e.command], ['command', 'DeviceNotFound', 'no disk0', 'bad']);
  t.regex(e.message, /bad.*fake.*DeviceNotFound: no disk0/);
  t.false(client.closed);
  await client.close();
});

test('garbage line or oversized line: pending commands reject with kind protocol and the connection closes', async (t) => {
  {
    const { client, fake } = await handshake();
    const p = client.execute('x');
    await fake.command(1);
    await fake.send('{"return": oops}\n');
    const e = await t.throwsAsync(p, { instanceOf: QmpError });
    t.is(e.kind, 'protocol');
    t.regex(e.message, /unparsable/);
    t.true(client.closed);
  }
  {
    const { client, fake } = await handshake({ maxLineBytes: 1000 });
    const p = client.execute('x');
    await fake.command(1);
    await fake.send('{"return": "' + 'y'.repeat(2000));
    t.is((await t.throwsAsync(p, { instanceOf: QmpError })).kind, 'protocol');
    t.true(client.closed);
  }
});

test('a peer that does not greet with QMP is refused; one that never greets times out', async (t) => {
  {
    const [a, b] = duplexPair();
    const connecting = QmpClient.fromStream(a, { label: 'not-qmp' });
    b.write('SSH-2.0-OpenSSH_9.2\r\n');
    const e = await t.throwsAsync(connecting, { instanceOf: QmpError });
    t.is(e.kind, 'protocol');
  }
  {
    const [a] = duplexPair();
    const e = await t.throwsAsync(QmpClient.fromStream(a, { label: 'silent', timeoutMs: 100 }), { instanceOf: QmpError });
    t.is(e.kind, 'timeout');
    t.true(a.destroyed);
  }
  {
    const [a, b] = duplexPair();
    const connecting = QmpClient.fromStream(a, { label: 'hangup' });
    b.end();
    t.is((await t.throwsAsync(connecting, { instanceOf: QmpError })).kind, 'connect');
  }
});

test('bad arguments are refused before anything is sent', async (t) => {
  const { client, fake } = await handshake();
  await t.throwsAsync(client.execute(''), { instanceOf: TypeError });
  await t.throwsAsync(client.execute('x', [] as unknown as Record<string, unknown>), { instanceOf: TypeError });
  await t.throwsAsync(client.execute('x', { n: 1n }), { instanceOf: TypeError, message: /JSON/ });
  await t.throwsAsync(QmpClient.connect({ host: 'localhost', port: 70000 }), { instanceOf: TypeError, message: /port/ });
  t.is(fake.received.length, 1);
  await client.close();
});
