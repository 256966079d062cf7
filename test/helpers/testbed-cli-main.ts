/** Stand-in entry point for testbed-cli.ts until src/cli/main.ts registers hosts/testbed/image build. */
import { Command, CommanderError } from 'commander';
import { CheckFailed } from '../../src/cli/errors.ts';
import { hostsCommand, imageBuildCommand } from '../../src/cli/hosts-commands.ts';
import { testbedCommand } from '../../src/cli/testbed-commands.ts';

const p = new Command('cbt-harness');
p.addCommand(hostsCommand());
p.addCommand(testbedCommand());
p.addCommand(new Command('image').addCommand(imageBuildCommand()));
const exitOverride = (cmd: Command) => {
  cmd.exitOverride();
  for (const c of cmd.commands) exitOverride(c);
};
exitOverride(p);
try {
  await p.parseAsync(process.argv.slice(2), { from: 'user' });
} catch (error) {
  if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? 0 : 2;
  else {
    process.stderr.write(`cbt-harness: ${(error as Error).name}: ${(error as Error).message}\n`);
    process.exitCode = error instanceof CheckFailed ? 1 : 2;
  }
}
