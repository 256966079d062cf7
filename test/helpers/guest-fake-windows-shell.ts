/**
 * sshd `ForceCommand` for windows-sshd.test.ts: plays the Windows guest behind a real OpenSSH
 * server. Reads the client's command from SSH_ORIGINAL_COMMAND (byte-exact, as sshd received
 * it), stdin, and the fake's state file (argv[2]); answers through guest-fake-windows.ts; on a
 * restart/shutdown it kills its sshd session process so the connection drops as Windows' would.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { handleCommand, type FakeState } from './guest-fake-windows.ts';

const statePath = process.argv[2];
const state = JSON.parse(readFileSync(statePath, 'utf8')) as FakeState & { received?: string[] };
const command = process.env.SSH_ORIGINAL_COMMAND ?? '';
const chunks: Buffer[] = [];
process.stdin.on('data', (c: Buffer) => chunks.push(c));
process.stdin.on('end', () => {
  const stdin = Buffer.concat(chunks).toString('utf8');
  (state.received ??= []).push(command);
  const reply = handleCommand(state, command, stdin);
  writeFileSync(statePath, JSON.stringify(state));
  process.stdout.write(reply.stdout);
  process.stderr.write(reply.stderr);
  if (reply.drop) {
    // The session's sshd: the connection ends without an exit status, as when Windows restarts.
    process.kill(process.ppid, 'SIGKILL');
    return;
  }
  process.exitCode = reply.exitCode;
});
