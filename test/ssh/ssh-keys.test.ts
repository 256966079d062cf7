/** Key helpers against ssh-keygen: fingerprints and generated key pairs. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import ssh2 from 'ssh2';
import { fingerprintOf, generateKeyPair, normalizeFingerprint, publicKeyBlob, SshKeyError } from '../../src/ssh/index.ts';
import { tempDir } from '../helpers/tools.ts';

test('fingerprintOf matches ssh-keygen -lf for ed25519, ecdsa and rsa keys, as a line and as a blob', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-keys-');
  t.teardown(cleanup);
  for (const [type, extra] of [['ed25519', []], ['ecdsa', ['-b', '256']], ['rsa', ['-b', '2048']]] as const) {
    const path = join(dir, `k_${type}`);
    await execa('ssh-keygen', ['-q', '-t', type, ...extra, '-N', '', '-C', `a comment with spaces ${type}`, '-f', path]);
    const line = (await readFile(`${path}.pub`, 'utf8')).trim();
    const expected = (await execa('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${path}.pub`])).stdout.split(/\s+/)[1];
    t.is(fingerprintOf(line), expected, type);
    t.is(fingerprintOf(publicKeyBlob(line)), expected, type);
    // authorized_keys lines may carry options in front.
    t.is(fingerprintOf(`restrict,command="echo x" ${line}`), expected, type);
  }
});

test('generateKeyPair: ssh-keygen reads the private key back to the same public key', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-keys-');
  t.teardown(cleanup);
  const kp = await generateKeyPair('ed25519');
  t.regex(kp.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
  t.regex(kp.publicKey, /^ssh-ed25519 AAAA[A-Za-z0-9+/]+=* \S/);
  const path = join(dir, 'k');
  await writeFile(path, kp.privateKey, { mode: 0o600 });
  const derived = (await execa('ssh-keygen', ['-y', '-f', path])).stdout.trim();
  t.is(derived.split(' ').slice(0, 2).join(' '), kp.publicKey.split(' ').slice(0, 2).join(' '));
  const other = await generateKeyPair();
  t.not(other.publicKey, kp.publicKey);
});

test('generateKeyPair: every pair parses, also the one in 256 that ssh2 mangles (public key starting with a zero byte)', async (t) => {
  // Without the redraw in generateKeyPair about 8 of 2,000 pairs fail to parse (mscdex/ssh2#1513).
  const bad: string[] = [];
  for (let i = 0; i < 2_000; i++) {
    const kp = await generateKeyPair();
    for (const k of [kp.privateKey, kp.publicKey]) {
      const parsed = ssh2.utils.parseKey(k);
      if (parsed instanceof Error) bad.push(`${parsed.message}: ${kp.publicKey}`);
    }
    t.is(publicKeyBlob(kp.publicKey).length, 4 + 11 + 4 + 32, 'an ed25519 blob: type and a 32-byte key');
  }
  t.deepEqual(bad, []);
});

test('bad keys and fingerprints are refused with SshKeyError', (t) => {
  t.throws(() => fingerprintOf('not a key'), { instanceOf: SshKeyError });
  t.throws(() => fingerprintOf('ssh-ed25519 !!!notbase64'), { instanceOf: SshKeyError });
  // A blob whose embedded type differs from the line's type.
  const blob = Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.from('ssh-rsa'), Buffer.alloc(8)]);
  t.throws(() => fingerprintOf(`ssh-ed25519 ${blob.toString('base64')}`), { instanceOf: SshKeyError, message: /type/ });
  t.throws(() => fingerprintOf(`ssh-ed25519 ${Buffer.from([0, 0, 1, 0, 65]).toString('base64')}`), { instanceOf: SshKeyError });
  t.throws(() => fingerprintOf(Buffer.alloc(0)), { instanceOf: SshKeyError });
  t.throws(() => normalizeFingerprint('MD5:aa:bb'), { instanceOf: SshKeyError, message: /SHA256/ });
  const fp = 'SHA256:RWTdFN+rkIBP6Rj7oHXUZtMZrn+eA+ReELdeI1KynrU';
  t.is(normalizeFingerprint(`${fp}=`), fp);
});
