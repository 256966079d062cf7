/** A dockerode client for an inventory's `docker:` connection. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import Docker from 'dockerode';
import type { DockerConnection } from './types.ts';

export function expandHome(path: string): string {
  return path === '~' ? homedir() : path.startsWith('~/') ? `${homedir()}${path.slice(1)}` : path;
}

/** OpenSSH's `SHA256:` fingerprint of a raw public key blob (base64 without padding). */
export function sshFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

export function dockerClient(conn: DockerConnection, options: { timeoutMs?: number } = {}): Docker {
  if ('socketPath' in conn) return new Docker({ socketPath: expandHome(conn.socketPath), timeout: options.timeoutMs });
  if (conn.protocol === 'ssh') {
    const pinned = conn.hostKey ?? [];
    return new Docker({
      protocol: 'ssh',
      host: conn.host,
      port: conn.port,
      username: conn.username,
      timeout: options.timeoutMs,
      sshOptions: {
        privateKey: conn.identity ? readFileSync(expandHome(conn.identity)) : undefined,
        // Unknown host keys are refused, as for ssh hosts.
        hostVerifier: (key: Buffer) => pinned.includes(sshFingerprint(key)),
      },
    });
  }
  const read = (p: string | undefined) => (p ? readFileSync(expandHome(p)) : undefined);
  return new Docker({ protocol: conn.protocol, host: conn.host, port: conn.port, ca: read(conn.ca), cert: read(conn.cert), key: read(conn.key), timeout: options.timeoutMs });
}

/** "unix:///run/docker.sock" or "https://host:2376" for messages. */
export function describeDocker(conn: DockerConnection): string {
  if ('socketPath' in conn) return `unix://${conn.socketPath}`;
  return `${conn.protocol}://${conn.protocol === 'ssh' ? `${conn.username}@` : ''}${conn.host}:${conn.port}`;
}
