/** Runs `cbt-harness report …` through the real CLI as a child process. */
import { runCli } from './tools.ts';

export async function reportCli(args: string[], options: { cwd?: string } = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return runCli(['report', ...args], options);
}
