/** Stand-in entry point for the vm tests until src/cli/main.ts registers `vm` and `image build linux-ref`. */
import { Command, CommanderError } from 'commander';
import { linuxRefBuildCommand } from '../../src/cli/image-build.ts';
import { vmCommand } from '../../src/cli/vm-commands.ts';

const p = new Command('cbt-harness');
p.addCommand(vmCommand());
p.addCommand(new Command('image').addCommand(new Command('build').addCommand(linuxRefBuildCommand())));
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
    process.exitCode = 2;
  }
}
