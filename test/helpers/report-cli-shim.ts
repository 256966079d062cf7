/** Stand-in for `cbt-harness` with only `report` mounted (see report-cli.ts). */
import { Command, CommanderError } from 'commander';
import { reportCommand } from '../../src/cli/report-commands.ts';
import { CheckFailed } from '../../src/cli/errors.ts';

const p = new Command('cbt-harness').addCommand(reportCommand());
const override = (c: Command) => {
  c.exitOverride();
  for (const k of c.commands) override(k);
};
override(p);
try {
  await p.parseAsync(process.argv.slice(2), { from: 'user' });
  process.exitCode = 0;
} catch (error) {
  if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? 0 : 2;
  else {
    process.stderr.write(`cbt-harness: ${(error as Error).name}: ${(error as Error).message}\n`);
    process.exitCode = error instanceof CheckFailed ? 1 : 2;
  }
}
