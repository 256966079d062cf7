/**
 * SshClient against a real OpenSSH sshd on loopback (test/helpers/sshd.ts). sshd runs on this
 * machine, so remote files and processes are checked directly with node:fs and /proc-level
 * tools as the oracle.
 */
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { QmpClient } from '../../src/qmp/index.ts';
import { fingerprintOf, generateKeyPair, SshClient, SshError, type SshTarget } from '../../src/ssh/index.ts';
import { startSshd, type StartedSshd } from '../helpers/sshd.ts';
import { tempDir } from '../helpers/tools.ts';
import { freePort, startQemu } from '../qmp/qemu-fixture.ts';

let shared: StartedSshd;
let noSftp: StartedSshd;

test.before(async () => {
  [shared, noSftp] = await Promise.all([startSshd(), startSshd({ sftp: false })]);
});

test.after.always(async () => {
  if (process.env.CBT_SSHD_LOG) process.stderr.write(`--- shared\n${shared?.log()}\n--- noSftp\n${noSftp?.log()}\n`);
  await Promise.all([shared?.stop(), noSftp?.stop()]);
});

function targetOf(s: StartedSshd, over: Partial<SshTarget> = {}): SshTarget {
  return { host: s.host, port: s.port, username: s.username, privateKey: s.clientKey.privateKey, hostKey: { kind: 'pinned', fingerprints: [s.hostKeyFingerprint] }, ...over };
}

async function connect(t: ExecutionContext, s: StartedSshd, over: Partial<SshTarget> = {}, opts: Parameters<typeof SshClient.connect>[1] = {}): Promise<SshClient> {
  const c = await SshClient.connect(targetOf(s, over), opts);
  t.teardown(() => c.close());
  return c;
}

/**
 * A remote `sleep 30` that records its pid, killed in teardown: closing an SSH channel does not
 * end a command, and OpenSSH ignores SSH signal requests for root logins (no privsep child), so
 * the test ends what it started itself.
 */
async function remoteSleep(t: ExecutionContext): Promise<{ command: string; running: () => Promise<void> }> {
  const dir = await scratch(t);
  const pidFile = join(dir, 'sleep.pid');
  t.teardown(async () => {
    const pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
    if (pid > 0) {
      try {
        // Only if it is still our sleep (pids get reused).
        if ((await readFile(`/proc/${pid}/cmdline`, 'utf8')).startsWith('sleep')) process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
  const running = async (): Promise<void> => {
    while (!(await readFile(pidFile, 'utf8').catch(() => '')).endsWith('\n')) await new Promise((r) => setTimeout(r, 20));
  };
  return { command: `echo $$ > ${pidFile}; exec sleep 30`, running };
}

/** Compare big buffers by digest: ava's deepEqual renders megabytes slowly. */
function sameBytes(t: ExecutionContext, actual: Buffer, expected: Buffer): void {
  const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  t.deepEqual([actual.length, digest(actual)], [expected.length, digest(expected)]);
}

async function scratch(t: ExecutionContext): Promise<string> {
  const { dir, cleanup } = await tempDir('cbt-ssh-');
  t.teardown(cleanup);
  return dir;
}

test('the helper pins the key ssh-keygen reports, and fingerprintOf agrees', (t) => {
  t.is(fingerprintOf(shared.hostPublicKey), shared.hostKeyFingerprint);
});

test('exec: exit codes 0 and 3, stdout, stderr, signals, check', async (t) => {
  const c = await connect(t, shared);
  const ok = await c.exec('echo hello; echo warn >&2');
  t.like(ok, { exitCode: 0, signal: null, stdout: 'hello\n', stderr: 'warn\n', stdoutDropped: 0, stderrDropped: 0 });
  t.true(ok.durationMs >= 0);
  const three = await c.exec('printf partial; echo bad >&2; exit 3');
  t.like(three, { exitCode: 3, signal: null, stdout: 'partial', stderr: 'bad\n' });
  const killed = await c.exec('kill -TERM $$');
  t.like(killed, { exitCode: null, signal: 'SIGTERM' });
  const e = await t.throwsAsync(c.exec('echo nope >&2; exit 3', { check: true }), { instanceOf: SshError });
  t.is(e.kind, 'exec');
  t.is(e.command, 'echo nope >&2; exit 3');
  t.regex(e.message, /exited 3: nope/);
  t.regex(e.message, new RegExp(`${shared.host}:${shared.port}`));
  // Several commands at once on one connection (one channel each).
  const many = await Promise.all(Array.from({ length: 5 }, (_, i) => c.exec(`echo ${i}`)));
  t.deepEqual(many.map((r) => r.stdout), ['0\n', '1\n', '2\n', '3\n', '4\n']);
});

test('exec: stdin (text, binary, stream), closed stdin by default, env by export and by SSH request', async (t) => {
  const c = await connect(t, shared);
  t.is((await c.exec('cat', { stdin: 'line one\nline two\n' })).stdout, 'line one\nline two\n');
  const bin = randomBytes(300_000);
  const sum = (await c.exec('sha256sum', { stdin: bin })).stdout.split(' ')[0];
  t.is(sum, createHash('sha256').update(bin).digest('hex'));
  const streamed = await c.exec('wc -c', { stdin: Readable.from([bin.subarray(0, 100_000), bin.subarray(100_000)]) });
  t.is(streamed.stdout.trim(), String(bin.length));
  // Without stdin the command sees EOF at once instead of hanging.
  t.is((await c.exec('cat; echo done')).stdout, 'done\n');
  const env = { CBT_A: "it's a \"quoted\" $value; `x`", OTHER_B: 'two\nlines' };
  const viaExport = await c.exec('printf "%s|%s" "$CBT_A" "$OTHER_B"', { env });
  t.is(viaExport.stdout, `${env.CBT_A}|${env.OTHER_B}`);
  // SSH env requests: this sshd has AcceptEnv CBT_*, so OTHER_B is silently dropped.
  const viaRequest = await c.exec('printf "%s|%s" "$CBT_A" "${OTHER_B-unset}"', { env, envMode: 'request' });
  t.is(viaRequest.stdout, `${env.CBT_A}|unset`);
  await t.throwsAsync(c.exec('true', { env: { 'BAD-NAME': 'x' } }), { instanceOf: TypeError });
});

test('exec: output beyond maxOutputBytes keeps the tail and says how much was dropped', async (t) => {
  const c = await connect(t, shared);
  const full = (await execa('seq', ['1', '300000'])).stdout + '\n';
  const limit = 100_000;
  const r = await c.exec('seq 1 300000; seq 1 1000 >&2', { maxOutputBytes: limit });
  t.is(r.stdout.length, limit);
  t.is(r.stdoutDropped, full.length - limit);
  t.is(r.stdout, full.slice(-limit));
  t.is(r.stderrDropped, 0);
});

test('exec: timeout rejects with kind timeout and partial output, closes the channel, keeps the connection', async (t) => {
  const c = await connect(t, shared);
  const cmd = `echo started; ${(await remoteSleep(t)).command}`;
  const e = await t.throwsAsync(c.exec(cmd, { timeoutMs: 500 }), { instanceOf: SshError });
  t.is(e.kind, 'timeout');
  t.is(e.command, cmd);
  t.regex(e.message, /500 ms/);
  t.is(e.stdout, 'started\n');
  t.false(c.closed);
  t.is((await c.exec('echo next')).stdout, 'next\n');
});

test('exec: abort rejects with kind aborted and the reason as cause', async (t) => {
  const c = await connect(t, shared);
  const ac = new AbortController();
  const sleeper = await remoteSleep(t);
  const p = c.exec(sleeper.command, { signal: ac.signal });
  const reason = new Error('enough');
  await sleeper.running();
  ac.abort(reason);
  const e = await t.throwsAsync(p, { instanceOf: SshError });
  t.is(e.kind, 'aborted');
  t.is(e.cause, reason);
  const again = await t.throwsAsync(c.exec('true', { signal: ac.signal }), { instanceOf: SshError });
  t.is(again.kind, 'aborted');
  t.is((await c.exec('echo still')).stdout, 'still\n');
});

test('upload by SFTP: bytes and a file, mode applied, odd file names', async (t) => {
  const dir = await scratch(t);
  const c = await connect(t, shared);
  const bytes = randomBytes(5 * 1024 * 1024 + 123);
  const dest = join(dir, "it's a file.bin");
  await c.upload(bytes, dest, { mode: 0o640 });
  sameBytes(t, await readFile(dest), bytes);
  t.is((await stat(dest)).mode & 0o7777, 0o640);
  const src = join(dir, 'local.bin');
  await writeFile(src, bytes.subarray(1000));
  const dest2 = join(dir, 'from-file.bin');
  await c.upload(src, dest2, { mode: 0o755, method: 'sftp' });
  sameBytes(t, await readFile(dest2), bytes.subarray(1000));
  t.is((await stat(dest2)).mode & 0o7777, 0o755);
  // Replaces an existing, longer file.
  await c.upload(Buffer.from('short'), dest2);
  t.is(await readFile(dest2, 'utf8'), 'short');
  const e = await t.throwsAsync(c.upload(bytes, join(dir, 'no/such/dir/x')), { instanceOf: SshError });
  t.is(e.kind, 'transfer');
  const missing = await t.throwsAsync(c.upload(join(dir, 'missing'), join(dir, 'y')), { instanceOf: SshError });
  t.is(missing.kind, 'transfer');
  t.regex(missing.message, /missing/);
});

test('upload by exec (cat): forced on an SFTP server, automatic on a server without SFTP', async (t) => {
  const dir = await scratch(t);
  const bytes = randomBytes(3 * 1024 * 1024 + 7);
  const src = join(dir, 'local.bin');
  await writeFile(src, bytes);
  const c = await connect(t, shared);
  const forced = join(dir, "forced $(x) 'q'.bin");
  await c.upload(src, forced, { method: 'exec', mode: 0o600 });
  sameBytes(t, await readFile(forced), bytes);
  t.is((await stat(forced)).mode & 0o7777, 0o600);

  const n = await connect(t, noSftp);
  const fallback = join(dir, 'fallback.bin');
  await n.upload(bytes, fallback, { mode: 0o751 });
  sameBytes(t, await readFile(fallback), bytes);
  t.is((await stat(fallback)).mode & 0o7777, 0o751);
  const forcedSftp = await t.throwsAsync(n.upload(bytes, join(dir, 'never'), { method: 'sftp' }), { instanceOf: SshError });
  t.is(forcedSftp.kind, 'transfer');
  const bad = await t.throwsAsync(n.upload(bytes, join(dir, 'no/such/dir/x')), { instanceOf: SshError });
  t.is(bad.kind, 'transfer');
  t.regex(bad.message, /No such file|cannot create|nonexistent/i);
});

test('host key policy: a wrong pin is refused naming both fingerprints; accept-any connects', async (t) => {
  const wrong = fingerprintOf((await generateKeyPair()).publicKey);
  const e = await t.throwsAsync(SshClient.connect(targetOf(shared, { hostKey: { kind: 'pinned', fingerprints: [wrong] } })), { instanceOf: SshError });
  t.is(e.kind, 'host-key');
  t.is(e.offeredFingerprint, shared.hostKeyFingerprint);
  t.deepEqual(e.expectedFingerprints, [wrong]);
  t.true(e.message.includes(shared.hostKeyFingerprint) && e.message.includes(wrong) && e.message.includes(`${shared.host}:${shared.port}`), e.message);
  // Not retried even with a deadline: a host-key mismatch is final.
  const e2 = await t.throwsAsync(SshClient.connect(targetOf(shared, { hostKey: { kind: 'pinned', fingerprints: [wrong] } }), { retryUntil: Date.now() + 60_000 }), { instanceOf: SshError });
  t.is(e2.kind, 'host-key');
  // One of several pins matching is enough.
  const c = await connect(t, shared, { hostKey: { kind: 'pinned', fingerprints: [wrong, shared.hostKeyFingerprint] } });
  t.is((await c.exec('echo pinned')).stdout, 'pinned\n');
  const any = await connect(t, shared, { hostKey: { kind: 'accept-any' } });
  t.is((await any.exec('echo any')).stdout, 'any\n');
  await t.throwsAsync(SshClient.connect(targetOf(shared, { hostKey: { kind: 'pinned', fingerprints: ['SHA256:short'] } })), { message: /SHA256/ });
});

test('auth: an unknown key is refused with kind auth; a generated key works once authorized', async (t) => {
  const kp = await generateKeyPair();
  const e = await t.throwsAsync(SshClient.connect(targetOf(shared, { privateKey: kp.privateKey }), { retryUntil: Date.now() + 60_000 }), { instanceOf: SshError });
  t.is(e.kind, 'auth');
  t.regex(e.message, new RegExp(shared.username));
  const bad = await t.throwsAsync(SshClient.connect(targetOf(shared, { privateKey: 'garbage' })), { instanceOf: SshError });
  t.is(bad.kind, 'auth');
  const s = await startSshd();
  t.teardown(() => s.stop());
  await appendFile(join(s.dir, 'authorized_keys'), `${kp.publicKey}\n`);
  const c = await connect(t, s, { privateKey: kp.privateKey });
  t.is((await c.exec('echo generated')).stdout, 'generated\n');
});

test('connect: refused without retry; retried until a late server starts; gives up at the deadline', async (t) => {
  const port = await freePort();
  const refused = await t.throwsAsync(SshClient.connect({ ...targetOf(shared), port }), { instanceOf: SshError });
  t.is(refused.kind, 'connect');
  t.regex(refused.message, /ECONNREFUSED/);
  t.is(refused.port, port);
  const giveUp = await t.throwsAsync(SshClient.connect({ ...targetOf(shared), port }, { retryUntil: Date.now() + 300 }), { instanceOf: SshError });
  t.is(giveUp.kind, 'connect');
  t.regex(giveUp.message, /gave up after \d+ attempt/);

  const started: StartedSshd[] = [];
  t.teardown(() => Promise.all(started.map((s) => s.stop())));
  // The client starts first; sshd appears on that port later.
  const connecting = SshClient.connect(
    { host: '127.0.0.1', port, username: shared.username, privateKey: shared.clientKey.privateKey, hostKey: { kind: 'pinned', fingerprints: [shared.hostKeyFingerprint] } },
    { retryUntil: Date.now() + 30_000 },
  );
  connecting.catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
  started.push(await startSshd({ port, reuse: shared }));
  const c = await connecting;
  t.teardown(() => c.close());
  t.is((await c.exec('echo late')).stdout, 'late\n');
  const ac = new AbortController();
  const aborted = SshClient.connect({ ...targetOf(shared), port: await freePort() }, { retryUntil: Date.now() + 60_000, signal: ac.signal });
  setTimeout(() => ac.abort(), 100);
  t.is((await t.throwsAsync(aborted, { instanceOf: SshError })).kind, 'aborted');
});

test('connect: a server that accepts but never speaks SSH times out (kind timeout)', async (t) => {
  const sockets: Socket[] = [];
  const silent: Server = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const e = await t.throwsAsync(SshClient.connect({ ...targetOf(shared), port }, { readyTimeoutMs: 300 }), { instanceOf: SshError });
  t.is(e.kind, 'timeout');
  t.regex(e.message, /300 ms/);
});

test('server killed mid-exec: the command rejects with kind closed, later calls too', async (t) => {
  const s = await startSshd();
  t.teardown(() => s.stop());
  const c = await connect(t, s);
  const sleeper = await remoteSleep(t);
  const cmd = `echo before; ${sleeper.command}`;
  const p = c.exec(cmd);
  p.catch(() => {});
  await sleeper.running();
  await s.kill();
  const e = await t.throwsAsync(p, { instanceOf: SshError });
  t.is(e.kind, 'closed');
  t.is(e.command, cmd);
  t.regex(e.stack ?? '', /ssh-sshd\.test\.ts/);
  t.true(c.closed);
  t.is((await t.throwsAsync(c.exec('true'), { instanceOf: SshError })).kind, 'closed');
  t.is((await t.throwsAsync(c.upload(Buffer.from('x'), '/tmp/never'), { instanceOf: SshError })).kind, 'closed');
});

test('a frozen server is declared gone by keepalive: kind closed', async (t) => {
  const s = await startSshd();
  t.teardown(() => s.stop());
  const c = await connect(t, s, {}, { keepaliveIntervalMs: 200, keepaliveCountMax: 2 });
  const sleeper = await remoteSleep(t);
  const p = c.exec(sleeper.command);
  p.catch(() => {});
  await sleeper.running();
  const resume = await s.freeze();
  t.teardown(resume);
  const e = await t.throwsAsync(p, { instanceOf: SshError });
  t.is(e.kind, 'closed');
  t.regex(e.message, /[Kk]eepalive/);
  t.true(c.closed);
});

test('close: running command rejects with kind closed; await using disposes', async (t) => {
  let seen: SshClient | undefined;
  {
    await using c = await SshClient.connect(targetOf(shared));
    seen = c;
    const sleeper = await remoteSleep(t);
    const p = c.exec(sleeper.command);
    p.catch(() => {});
    await sleeper.running();
    await c.close();
    t.is((await t.throwsAsync(p, { instanceOf: SshError })).kind, 'closed');
    await c.close();
  }
  t.true(seen.closed);
});

test('forwardOut: TCP through the server, SSH over a forwarded channel, QMP through the tunnel', async (t) => {
  const c = await connect(t, shared);
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => echo.close());
  const ch = await c.forwardOut('127.0.0.1', (echo.address() as { port: number }).port);
  const got = new Promise<string>((r) => ch.once('data', (d: Buffer) => r(d.toString())));
  ch.write('ping');
  t.is(await got, 'ping');
  ch.destroy();

  // A second SSH session tunnelled through the first (a jump host).
  const jumped = await SshClient.connect({ ...targetOf(shared), sock: await c.forwardOut(shared.host, shared.port) });
  t.teardown(() => jumped.close());
  t.is((await jumped.exec('echo jumped')).stdout, 'jumped\n');

  // QMP of a QEMU reachable only from the SSH server's side.
  const q = await startQemu(t, { tcp: true });
  const qmpStream = await (async () => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        return await c.forwardOut('127.0.0.1', q.port as number);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  })();
  const qmp = await QmpClient.fromStream(qmpStream, { label: 'qemu via ssh' });
  t.teardown(() => qmp.close());
  t.is((await qmp.execute<{ status: string }>('query-status')).status, 'running');

  const refused = await t.throwsAsync(c.forwardOut('127.0.0.1', await freePort()), { instanceOf: SshError });
  t.is(refused.kind, 'connect');
});
