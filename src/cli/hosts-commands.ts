/**
 * `cbt-harness hosts …`: check an inventory's hosts, sweep leftovers of crashed runs, print the
 * inventory schema. And `image build worker` (the Docker worker image), registered under `image`.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import {
  buildWorkerImage,
  createExecutor,
  HOSTS_SCHEMA,
  HostError,
  InventoryError,
  loadInventory,
  newRunId,
  WorkerImageError,
  type HostFacts,
  type HostSpec,
  type SweepReport,
} from '../hosts/index.ts';
import { CheckFailed } from './errors.ts';
import { log, printJson, printText } from './output.ts';
import { formatAge } from '../vm/accel-cache.ts';

/** Known errors of these commands: a one-line message, exit 2 (bad input or infrastructure). */
async function handled(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof InventoryError || error instanceof HostError || error instanceof WorkerImageError) {
      log(`cbt-harness: ${error.name}: ${error.message}`);
      throw new CommanderError(2, 'cbt-harness.reported', error.message);
    }
    throw error;
  }
}

function parseMs(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`Expected a positive number of milliseconds, got \`${value}\``);
  return n;
}

export interface HostCheck {
  name: string;
  type: HostSpec['type'];
  reachable: boolean;
  usable: boolean;
  /** Why it is unreachable (connection, authentication, host key, engine). */
  error: string | null;
  facts: HostFacts | null;
}

/** Connects to every host (in parallel, each bounded by `timeoutMs`) and probes its facts. */
export async function checkHosts(hosts: readonly HostSpec[], timeoutMs: number): Promise<HostCheck[]> {
  const runId = newRunId();
  return Promise.all(
    hosts.map(async (spec): Promise<HostCheck> => {
      const signal = AbortSignal.timeout(timeoutMs);
      let ex: ReturnType<typeof createExecutor> | undefined;
      try {
        ex = createExecutor(spec, { runId });
        await ex.connect(signal);
        const facts = await ex.facts(signal);
        return { name: spec.name, type: spec.type, reachable: true, usable: facts.usable, error: null, facts };
      } catch (error) {
        const message = signal.aborted ? `no answer within ${timeoutMs} ms` : `${(error as Error).name}: ${(error as Error).message}`;
        return { name: spec.name, type: spec.type, reachable: false, usable: false, error: message, facts: null };
      } finally {
        await ex?.close().catch(() => {});
      }
    }),
  );
}

const gib = (n: number | undefined) => (n === undefined ? '-' : `${(n / 2 ** 30).toFixed(1)} GiB`);

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

function humanCheck(file: string, checks: HostCheck[]): string {
  const rows = [['HOST', 'TYPE', 'STATUS', 'QEMU', 'KVM', 'KVM PROBE', 'DISK FREE', 'MEM AVAIL', 'IMAGES']];
  for (const c of checks) {
    const f = c.facts;
    rows.push([
      c.name,
      c.type,
      !c.reachable ? 'UNREACHABLE' : c.usable ? 'ok' : 'UNUSABLE',
      f?.qemu ? (/version (\S+)/.exec(f.qemu)?.[1] ?? f.qemu) : '-',
      !f ? '-' : f.kvm.device ? (f.kvm.accessible ? '/dev/kvm' : '/dev/kvm (no access)') : 'none',
      f?.kvm.probed && f.kvm.probedAt ? `${f.kvm.probed}, ${formatAge(Date.now() - Date.parse(f.kvm.probedAt))} ago` : '-',
      gib(f?.disk?.freeBytes),
      gib(f?.memory?.availableBytes),
      f ? String(f.images.length) : '-',
    ]);
  }
  const lines = [`inventory: ${file}`, table(rows)];
  const problems = checks.flatMap((c) => (c.error ? [`  ${c.name}: ${c.error}`] : (c.facts?.problems ?? []).map((p) => `  ${c.name}: ${p}`)));
  if (problems.length) lines.push('problems:', ...problems);
  for (const c of checks) for (const img of c.facts?.images ?? []) lines.push(`image on ${c.name}: ${img.hash.slice(0, 16)} ${img.files.map((x) => x.name).join(', ')}`);
  for (const c of checks) if (c.facts?.kvm.probeReason) lines.push(`kvm probe on ${c.name} (cached, used by runs for a day): ${c.facts.kvm.probeReason}`);
  lines.push('note: KVM shows whether /dev/kvm exists and is accessible; it does not prove a guest boots under KVM. KVM PROBE is the cached answer of the boot probe the VM launcher runs (`cbt-harness vm boot --accel-probe` on the host probes again).');
  return lines.join('\n');
}

export function hostsCommand(): Command {
  const hosts = new Command('hosts').description('host inventories: check hosts, sweep leftovers, schema');

  hosts
    .command('check')
    .description('connect to each host and report QEMU, KVM, free disk and memory, cached images and problems (exit 1 when a host is unusable, 2 on a bad inventory)')
    .requiredOption('--hosts <file>', 'inventory file (harness/hosts.*.yaml)')
    .option('--json', 'one JSON document on stdout')
    .option('--timeout-ms <ms>', 'per host: connect and probe within this long', parseMs, 30_000)
    .action(async (flags: { hosts: string; json?: boolean; timeoutMs: number }) =>
      handled(async () => {
        const inventory = await loadInventory(flags.hosts);
        const checks = await checkHosts(inventory.hosts, flags.timeoutMs);
        const usable = checks.every((c) => c.usable);
        if (flags.json) await printJson({ inventory: inventory.file, usable, acceleration: 'device-file', hosts: checks });
        else await printText(humanCheck(inventory.file, checks));
        if (!usable) throw new CheckFailed(`unusable hosts: ${checks.filter((c) => !c.usable).map((c) => c.name).join(', ')}`);
      }),
    );

  hosts
    .command('sweep')
    .description('remove what crashed runs left on the hosts: processes, job folders and containers carrying a run id whose run is gone')
    .requiredOption('--hosts <file>', 'inventory file')
    .option('--json', 'one JSON document on stdout')
    .option('--foreign-max-age-ms <ms>', 'runs of another controller machine count as crashed after this long', parseMs, 24 * 3600 * 1000)
    .action(async (flags: { hosts: string; json?: boolean; foreignMaxAgeMs: number }) =>
      handled(async () => {
        const inventory = await loadInventory(flags.hosts);
        const runId = newRunId();
        const reports: Array<SweepReport | { host: string; error: string }> = await Promise.all(
          inventory.hosts.map(async (spec) => {
            const ex = createExecutor(spec, { runId });
            try {
              return await ex.sweep({ foreignMaxAgeMs: flags.foreignMaxAgeMs });
            } catch (error) {
              return { host: spec.name, error: `${(error as Error).name}: ${(error as Error).message}` };
            } finally {
              await ex.close().catch(() => {});
            }
          }),
        );
        if (flags.json) await printJson({ inventory: inventory.file, hosts: reports });
        else {
          await printText(
            reports
              .map((r) => ('error' in r ? `${r.host}: ${r.error}` : `${r.host}: ${r.staleRuns.length} stale run(s)${r.staleRuns.length ? ` (${r.staleRuns.join(', ')})` : ''}, ${r.killedPids.length} process(es) killed, ${r.removedDirs.length} folder(s) and ${r.removedContainers.length} container(s) removed`))
              .join('\n'),
          );
        }
        if (reports.some((r) => 'error' in r)) throw new CheckFailed('some hosts could not be swept');
      }),
    );

  hosts
    .command('schema')
    .description('print the JSON Schema of inventory files (published as harness/schema/hosts.schema.json)')
    .action(async () => printText(JSON.stringify(HOSTS_SCHEMA, null, 2)));

  return hosts;
}

/** `build worker` — to register under `image`: `imageCommand().addCommand(imageBuildCommand())`. */
export function imageBuildCommand(): Command {
  const build = new Command('build').description('build images the harness needs');
  build
    .command('worker')
    .description('build the Docker worker image (debootstrap rootfs cached under .cache/worker, harness inside) in a Docker engine, no registry')
    .option('--docker-socket <path>', 'engine socket', '/run/docker.sock')
    .option('--mirror <url>', 'Debian mirror (default: the bookworm main entry of /etc/apt/sources.list*)')
    .option('--rebuild-rootfs', 'rebuild the cached rootfs tarball')
    .option('--json', 'one JSON document on stdout')
    .action(async (flags: { dockerSocket: string; mirror?: string; rebuildRootfs?: boolean; json?: boolean }) =>
      handled(async () => {
        const image = await buildWorkerImage({ docker: { socketPath: flags.dockerSocket }, mirror: flags.mirror, rebuildRootfs: flags.rebuildRootfs, log });
        if (flags.json) await printJson(image);
        else await printText(`${image.name} (${image.id.slice(0, 19)}), tagged ${image.name.split(':')[0]}:latest${image.built.image ? '' : ' (already present)'}`);
      }),
    );
  return build;
}
