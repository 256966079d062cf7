/**
 * Key helpers: OpenSSH SHA256 fingerprints (as `ssh-keygen -lf` prints them) and key generation.
 * Fingerprint = "SHA256:" + unpadded base64 of SHA-256 over the public key blob (RFC 4253 §6.6
 * wire encoding), the blob being the base64 field of an `authorized_keys`/`.pub` line.
 */
import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import { SshKeyError } from './errors.ts';

const MAX_KEY_LINE = 64 * 1024;

/** The wire blob of an OpenSSH public key line (`type base64 [comment]`), checked for consistency. */
export function publicKeyBlob(line: string): Buffer {
  if (line.length > MAX_KEY_LINE) throw new SshKeyError(`public key line is ${line.length} characters, more than ${MAX_KEY_LINE}`);
  const fields = line.trim().split(/\s+/);
  // authorized_keys lines may start with options; the type is the field before the base64 blob.
  const i = fields.findIndex((f, k) => k + 1 < fields.length && /^(ssh-|ecdsa-|sk-)/.test(f));
  if (i < 0) throw new SshKeyError(`not an OpenSSH public key line: ${JSON.stringify(line.slice(0, 80))}`);
  const type = fields[i];
  const b64 = fields[i + 1];
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new SshKeyError(`public key of type ${type}: the key field is not base64`);
  const blob = Buffer.from(b64, 'base64');
  if (blob.length < 4 || blob.readUInt32BE(0) + 4 > blob.length || blob.toString('latin1', 4, 4 + blob.readUInt32BE(0)) !== type) {
    throw new SshKeyError(`public key of type ${type}: the blob does not start with its type name`);
  }
  return blob;
}

/** `SHA256:…` of an OpenSSH public key line or of a raw key blob (what a server sends in KEX). */
export function fingerprintOf(publicKey: Buffer | string): string {
  const blob = typeof publicKey === 'string' ? publicKeyBlob(publicKey) : publicKey;
  if (!Buffer.isBuffer(blob) || blob.length === 0) throw new SshKeyError('empty public key blob');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Normalize a user-given fingerprint (`SHA256:…`, with or without base64 padding). */
export function normalizeFingerprint(fp: string): string {
  const m = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(typeof fp === 'string' ? fp.trim() : '');
  if (!m) throw new SshKeyError(`Expected a fingerprint like \`SHA256:\` + 43 base64 characters (as \`ssh-keygen -lf\` prints), got \`${String(fp)}\``);
  return `SHA256:${m[1]}`;
}

/**
 * A new key pair, in OpenSSH formats: `privateKey` a `-----BEGIN OPENSSH PRIVATE KEY-----` PEM
 * (unencrypted), `publicKey` a `ssh-ed25519 AAAA… comment` line. Made by ssh2's keygen over
 * node:crypto; `ssh-keygen -y` reads it back (tested).
 */
export async function generateKeyPair(type: 'ed25519' = 'ed25519', opts: { comment?: string } = {}): Promise<{ privateKey: string; publicKey: string }> {
  if (type !== 'ed25519') throw new TypeError(`Expected key type \`ed25519\`, got \`${String(type)}\``);
  // ssh2's keygen strips leading zero bytes from the ed25519 public key, so about one key in 256
  // comes out malformed (mscdex/ssh2 issues 1390 and 1513; seen as a CI failure here). Such a pair
  // is drawn again: each draw is good with probability 255/256, so 8 draws all failing is ~1e-19.
  let last = '';
  for (let draw = 0; draw < 8; draw++) {
    const keys = await new Promise<{ private: string; public: string }>((resolve, reject) => {
      ssh2.utils.generateKeyPair('ed25519', { comment: opts.comment ?? 'cbt-harness' }, (err, k) => {
        if (err) reject(new SshKeyError(`ed25519 key generation failed: ${err.message}`, { cause: err }));
        else resolve(k);
      });
    });
    const priv = ssh2.utils.parseKey(keys.private);
    const pub = ssh2.utils.parseKey(keys.public);
    if (!(priv instanceof Error) && !(pub instanceof Error)) return { privateKey: keys.private, publicKey: keys.public };
    last = (priv instanceof Error ? priv : (pub as Error)).message;
  }
  throw new SshKeyError(`ed25519 key generation gave 8 malformed pairs in a row (last: ${last})`);
}
