/**
 * Runs `cbt-harness report …` as a child process. Uses the real CLI once `report` is registered in
 * src/cli/main.ts; until then a shim (test/helpers/report-cli-shim.ts) that mounts the same
 * `reportCommand()` and maps errors to exit codes like main.ts (CheckFailed 1, anything else 2).
 */
import { join } from 'node:path';
import { execa } from 'execa';
import { ROOT, runCli } from './tools.ts';

const NODE = process.execPath;
let real: boolean | undefined;

async function realCliHasReport(): Promise<boolean> {
  real ??= (await runCli(['report', 'schema'])).exitCode === 0;
  return real;
}

export async function reportCli(args: string[], options: { cwd?: string } = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  if (await realCliHasReport()) return runCli(['report', ...args], options);
  const r = await execa(NODE, ['--disable-warning=ExperimentalWarning', join(ROOT, 'test/helpers/report-cli-shim.ts'), 'report', ...args], { reject: false, cwd: options.cwd });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
