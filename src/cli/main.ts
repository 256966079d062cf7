/**
 * The `cbt-harness` command. The only module that reads argv, prints and sets the exit code:
 * 0 success, 1 a verdict or check failed, 2 bad input or infrastructure error (any HarnessError,
 * a usage error, a file that cannot be opened), 3 an internal error (a bug: printed with its
 * stack), 128 + n a run stopped by signal n (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { cbtCommand, verifyCommand } from './cbt-commands.ts';
import { CheckFailed, Interrupted } from './errors.ts';
import { HarnessError } from '../util/index.ts';
import { hostsCommand, imageBuildCommand } from './hosts-commands.ts';
import { linuxRefBuildCommand } from './image-build.ts';
import { windowsImageBuildCommand } from './image-build-windows.ts';
import { imageCommand } from './image-commands.ts';
import { testbedCommand } from './testbed-commands.ts';
import { vmCommand } from './vm-commands.ts';
import { reportCommand } from './report-commands.ts';
import { jobCommand, runCommand } from './run-commands.ts';
import { demoCommand } from './demo.ts';

export const VERSION = '0.1.0';
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_INTERNAL = 3;

/** Set to 1 to make the CLI throw a plain Error before parsing: the test of exit code 3. */
export const CRASH_ENV = 'CBT_HARNESS_CRASH';

export { CheckFailed };

/** A Node system error from a file-system call (ENOENT, EACCES, EISDIR, …): bad input. */
interface PathError extends Error {
  code: string;
  syscall?: string;
  path: string;
  dest?: string;
}

function isPathError(error: unknown): error is PathError {
  if (!(error instanceof Error)) return false;
  const e = error as Partial<PathError>;
  return typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code) && typeof e.path === 'string';
}

const SYSCALL_VERBS: Record<string, string> = { open: 'open', mkdir: 'create directory', scandir: 'list', stat: 'stat', lstat: 'stat', rename: 'rename', unlink: 'remove', rmdir: 'remove', copyfile: 'copy', access: 'access', write: 'write', read: 'read' };

/** `cannot open /x.json: no such file or directory` from `ENOENT: no such file or directory, open '/x.json'`. */
export function describePathError(e: PathError): string {
  const text = /^[A-Z]+: (.*?), \w+ '/.exec(e.message)?.[1] ?? e.code;
  const verb = SYSCALL_VERBS[e.syscall ?? ''] ?? e.syscall ?? 'use';
  return `cannot ${verb} ${e.path}${e.dest ? ` → ${e.dest}` : ''}: ${text}`;
}

export function exitCodeFor(error: unknown): number {
  if (error instanceof Interrupted) return error.exitCode;
  if (error instanceof CheckFailed) return EXIT_FAILED;
  if (error instanceof HarnessError || error instanceof CommanderError || isPathError(error)) return EXIT_BAD_INPUT;
  return EXIT_INTERNAL;
}

/** The one line an expected failure prints (without the `cbt-harness: ` prefix), or null for a bug. */
export function expectedLine(error: unknown): string | null {
  const oneLine = (s: string) => s.trim().replace(/\s*\n\s*/g, '; ');
  if (error instanceof Interrupted) return error.message;
  if (error instanceof HarnessError) return oneLine(error.name === 'UsageError' ? error.message : `${error.name}: ${error.message}`);
  if (error instanceof InvalidArgumentError) return oneLine(error.message);
  if (isPathError(error)) return oneLine(describePathError(error));
  return null;
}

function program(): Command {
  const p = new Command('cbt-harness')
    .description('prove whether a change-block-tracking driver tells the truth')
    .version(VERSION)
    .option('--debug', 'print stack traces of errors');
  const build = imageBuildCommand();
  build.addCommand(linuxRefBuildCommand());
  build.addCommand(windowsImageBuildCommand());
  p.addCommand(imageCommand().addCommand(build));
  p.addCommand(vmCommand());
  p.addCommand(hostsCommand());
  p.addCommand(testbedCommand());
  p.addCommand(runCommand(VERSION));
  p.addCommand(jobCommand());
  p.addCommand(cbtCommand());
  p.addCommand(verifyCommand());
  p.addCommand(reportCommand());
  p.addCommand(demoCommand());
  // Usage errors exit 2, like every other bad input (commander's default would be 1), and print
  // one line naming the command whose help explains it.
  const exitOverride = (cmd: Command, path: string) => {
    cmd.exitOverride();
    cmd.configureOutput({
      outputError: (text, write) => write(`cbt-harness: ${text.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')} (see ${path} --help)\n`),
    });
    for (const c of cmd.commands) exitOverride(c, `${path} ${c.name()}`);
  };
  exitOverride(p, 'cbt-harness');
  return p;
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    if (process.env[CRASH_ENV] === '1') throw new Error(`crash requested by ${CRASH_ENV}=1`);
    await program().parseAsync(argv, { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    // --help and --version end with a zero code; commander printed its own usage errors.
    if (error instanceof CommanderError && !(error instanceof InvalidArgumentError)) return error.exitCode === 0 ? EXIT_OK : EXIT_BAD_INPUT;
    const line = expectedLine(error);
    if (line !== null) {
      process.stderr.write(`cbt-harness: ${line}\n`);
      if (debug) process.stderr.write(`${stackOf(error)}\n`);
    } else {
      const e = error as Error | null;
      process.stderr.write(`cbt-harness: internal error: ${e?.name ?? 'Error'}: ${e?.message ?? String(error)} (this is a bug, please report it)\n${stackOf(error)}\n`);
    }
    return exitCodeFor(error);
  }
}

/** The stack, and those of the causes. */
function stackOf(error: unknown): string {
  const parts: string[] = [];
  for (let e = error, depth = 0; e !== undefined && depth < 8; e = (e as { cause?: unknown })?.cause, depth++) {
    parts.push(`${depth ? 'caused by: ' : ''}${(e as Error)?.stack ?? String(e)}`);
  }
  return parts.join('\n');
}
