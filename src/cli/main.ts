/**
 * The `cbt-harness` command. The only module that reads argv, prints and sets the exit code:
 * 0 success, 1 a verdict or check failed, 2 bad input or infrastructure error.
 */
import { Command, CommanderError } from 'commander';
import { cbtCommand, verifyCommand } from './cbt-commands.ts';
import { CheckFailed } from './errors.ts';
import { ImageError } from '../qcow2/index.ts';
import { DiffOptionError } from '../truth/index.ts';
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

export { CheckFailed };

/** Typed errors of other modules that are bad input (exit 2) and need no stack trace. */
const KNOWN_ERRORS = new Set(['DecoderOptionError', 'DecoderPluginError', 'VerifyInputError', 'EraOptionError', 'EraMetadataError', 'PartitionTableError', 'NtfsError', 'NtfsFormatError', 'NtfsNotFoundError', 'NtfsUnsupportedError', 'NtfsLimitError', 'ConfigError', 'ReportInputError', 'RunConfigError', 'HistoryIndexError', 'ReporterOptionError', 'WindowsImageError', 'GuestError', 'PowerShellQuoteError', 'InfrastructureFailed', 'InventoryError', 'StepError', 'VmError', 'HostError', 'InfrastructureError', 'HostOperationError', 'CommandTimeoutError', 'WorkerImageError', 'TestbedError', 'SchedulerError', 'ImageBuildError']);

export function exitCodeFor(error: unknown): number {
  if (error instanceof CheckFailed) return EXIT_FAILED;
  return EXIT_BAD_INPUT;
}

function program(): Command {
  const p = new Command('cbt-harness')
    .description('prove whether a change-block-tracking driver tells the truth')
    .version(VERSION)
    .showHelpAfterError()
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
  // Usage errors exit 2, like every other bad input (commander's default would be 1).
  const exitOverride = (cmd: Command) => {
    cmd.exitOverride();
    for (const c of cmd.commands) exitOverride(c);
  };
  exitOverride(p);
  return p;
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    await program().parseAsync(argv, { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with a zero code; usage errors were already printed.
      return error.exitCode === 0 ? EXIT_OK : EXIT_BAD_INPUT;
    }
    const known = error instanceof ImageError || error instanceof DiffOptionError || error instanceof CheckFailed || KNOWN_ERRORS.has((error as Error)?.name);
    const name = (error as Error)?.name ?? 'Error';
    const message = (error as Error)?.message ?? String(error);
    process.stderr.write(`cbt-harness: ${known ? '' : 'internal error: '}${name}: ${message}\n`);
    if (debug || !known) process.stderr.write(`${(error as Error)?.stack ?? ''}\n`);
    return exitCodeFor(error);
  }
}
