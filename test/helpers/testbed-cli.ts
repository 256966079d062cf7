/**
 * Runs `cbt-harness hosts|testbed …` as a child process: the real CLI when its main.ts registers
 * these commands, else a launcher with the same contract (exit 0 / 1 check failed / 2 bad input)
 * around the same command objects, so tests do not depend on the registration order of work.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CLI } from './tools.ts';

const here = dirname(fileURLToPath(import.meta.url));
const NODE = process.execPath;
const registered = new Map<string, Promise<boolean>>();

/** Does the real CLI know this command path (its own help names it, not the top-level help)? */
async function cliHas(path: string[]): Promise<boolean> {
  const r = await execa(CLI, [...path, '--help'], { reject: false });
  return r.exitCode === 0 && String(r.stdout).startsWith(`Usage: cbt-harness ${path.join(' ')}`);
}

export async function runHostsCli(args: string[], options: { timeoutMs?: number } = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const firstOption = args.findIndex((a) => a.startsWith('-'));
  const path = (firstOption < 0 ? args : args.slice(0, firstOption)).slice(0, 3);
  const key = path.join(' ');
  if (!registered.has(key)) registered.set(key, cliHas(path));
  const [cmd, argv] = (await registered.get(key)) ? [CLI, args] : [NODE, ['--disable-warning=ExperimentalWarning', join(here, 'testbed-cli-main.ts'), ...args]];
  const r = await execa(cmd, argv, { reject: false, timeout: options.timeoutMs ?? 120_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
