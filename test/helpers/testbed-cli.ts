/** Runs `cbt-harness hosts|testbed …` through the real CLI as a child process. */
import { execa } from 'execa';
import { CLI } from './tools.ts';

export async function runHostsCli(args: string[], options: { timeoutMs?: number } = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const [cmd, argv] = [CLI, args];
  const r = await execa(cmd, argv, { reject: false, timeout: options.timeoutMs ?? 120_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
