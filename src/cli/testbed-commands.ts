/** `cbt-harness testbed …`: a local testbed of real engines (dockerd + sshd hosts) for tests and demos. */
import { writeFile } from 'node:fs/promises';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readTestbedState, testbedDown, testbedKillHost, testbedUp, TestbedError, WorkerImageError } from '../hosts/index.ts';
import { log, printJson, printText } from './output.ts';

const DEFAULT_STATE = '/tmp/cbt-testbed';

async function handled(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof TestbedError || error instanceof WorkerImageError) {
      log(`cbt-harness: ${error.name}: ${error.message}`);
      throw new CommanderError(2, 'cbt-harness.reported', error.message);
    }
    throw error;
  }
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > 16) throw new InvalidArgumentError(`Expected a number of hosts from 0 to 16, got \`${value}\``);
  return n;
}

export function testbedCommand(): Command {
  const tb = new Command('testbed').description('local testbed: a private dockerd with the worker image and sshd hosts in network namespaces');

  tb.command('up')
    .description('start the testbed and write its inventory (pinned host keys, generated client key)')
    .requiredOption('--hosts-out <file>', 'where to write the inventory')
    .option('--state <dir>', 'state folder (keep it short: unix socket paths)', DEFAULT_STATE)
    .option('--ssh-hosts <n>', 'number of SSH hosts', count, 2)
    .option('--no-docker', 'no dockerd')
    .option('--no-worker-image', 'do not build/import the worker image')
    .addOption(new Option('--namespaces <mode>', 'network namespaces for SSH hosts').choices(['auto', 'always', 'never']).default('auto'))
    .option('--json', 'print the state as one JSON document')
    .action(async (flags: { hostsOut: string; state: string; sshHosts: number; docker: boolean; workerImage: boolean; namespaces: 'auto' | 'always' | 'never'; json?: boolean }) =>
      handled(async () => {
        const { state, inventoryYaml } = await testbedUp({ stateDir: flags.state, sshHosts: flags.sshHosts, docker: flags.docker, workerImage: flags.workerImage, namespaces: flags.namespaces, log });
        await writeFile(flags.hostsOut, inventoryYaml);
        if (flags.json) await printJson(state);
        else await printText(`testbed ${state.id} up; inventory written to ${flags.hostsOut}\nremove with: cbt-harness testbed down --state ${state.stateDir}`);
      }),
    );

  tb.command('down')
    .description('stop and remove everything the testbed made (processes, namespaces, veths, containers, data root)')
    .option('--state <dir>', 'state folder', DEFAULT_STATE)
    .option('--json', 'one JSON document on stdout')
    .action(async (flags: { state: string; json?: boolean }) =>
      handled(async () => {
        const report = await testbedDown({ stateDir: flags.state, log });
        if (flags.json) await printJson(report);
        else await printText(`testbed down: ${report.killed.length} process(es) stopped, ${report.removedContainers} container(s) and ${report.namespaces.length} namespace(s) removed`);
      }),
    );

  tb.command('kill-host')
    .description('simulate a host dying: SIGKILL everything of one SSH host (its sshd and sessions)')
    .argument('<name>', 'SSH host name (ssh-1, ssh-2, …)')
    .option('--state <dir>', 'state folder', DEFAULT_STATE)
    .action(async (name: string, flags: { state: string }) =>
      handled(async () => {
        const state = await readTestbedState(flags.state);
        if (!state) throw new TestbedError(`no testbed in ${flags.state}`);
        const pids = await testbedKillHost(state, name);
        await printText(`${name}: killed ${pids.length} process(es)`);
      }),
    );

  return tb;
}
