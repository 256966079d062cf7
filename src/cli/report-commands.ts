/**
 * `cbt-harness report …`: compare two runs, trends over a results history, re-render a run's
 * reports, check a run config, print the published schemas. Exit codes: 0 fine, 1 something got
 * worse (compare; trend with --fail-on-regression), 2 bad input.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  compareRuns,
  HtmlReporter,
  JunitReporter,
  Multiplexer,
  REPORT_FILES,
  ReporterOptionError,
  formatComparison,
  formatTrend,
  historyTrend,
  loadRunConfig,
  plannedJobs,
  readRunRecord,
  recordPath,
  RUN_CONFIG_SCHEMA,
  RUN_RECORD_SCHEMA,
  TREND_DIMENSIONS,
  type Reporter,
  type ReportLogger,
  type TrendDimension,
} from '../report/index.ts';
import { dirname, join } from 'node:path';
import { CheckFailed } from './errors.ts';
import { printJson, printText, userWarnings } from './output.ts';

const logger: ReportLogger = userWarnings('cbt-harness report');

function ratio(name: string, max = Infinity) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > max) throw new InvalidArgumentError(`Expected ${name} to be a number from 0${max === Infinity ? '' : ` to ${max}`}, got \`${value}\``);
    return n;
  };
}

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`Expected ${name} to be a positive integer, got \`${value}\``);
    return n;
  };
}

function collectBy(value: string, previous: TrendDimension[] | undefined): TrendDimension[] {
  const out = [...(previous ?? [])];
  for (const v of value.split(',').map((x) => x.trim())) {
    if (!(TREND_DIMENSIONS as readonly string[]).includes(v)) throw new InvalidArgumentError(`Expected --by among ${TREND_DIMENSIONS.join(', ')}, got \`${v}\``);
    if (!out.includes(v as TrendDimension)) out.push(v as TrendDimension);
  }
  return out;
}

function compareCommand(): Command {
  return new Command('compare')
    .description('what got worse or better, per scenario × OS build, from BASELINE to CURRENT (exit 1 when anything got worse)')
    .argument('<baseline>', 'run directory or run.json')
    .argument('<current>', 'run directory or run.json')
    .option('--threshold <ratio>', 'relative over-report increase counted as worse (0.1 = +10%)', ratio('--threshold'), 0.1)
    .option('--resync-threshold <rate>', 'resync-rate increase counted as worse (0–1)', ratio('--resync-threshold', 1), 0)
    .option('--json', 'one JSON document on stdout')
    .action(async (baseline: string, current: string, flags: { threshold: number; resyncThreshold: number; json?: boolean }) => {
      const [bf, cf] = [await recordPath(baseline), await recordPath(current)];
      const [b, c] = [await readRunRecord(bf), await readRunRecord(cf)];
      const result = compareRuns(b, c, { threshold: flags.threshold, resyncThreshold: flags.resyncThreshold, baselineFile: bf, currentFile: cf });
      if (flags.json) await printJson(result);
      else await printText(formatComparison(result));
      if (result.worse.length) throw new CheckFailed(`${result.worse.length} thing(s) got worse since ${b.runId}`);
    });
}

function trendCommand(): Command {
  return new Command('trend')
    .description('accuracy per OS build and driver version across the runs in DIR... (run.json files or run directories)')
    .argument('<dirs...>', 'history folders')
    .option('--by <dimension>', `group by ${TREND_DIMENSIONS.join(' | ')} (repeatable; default: build and driver)`, collectBy)
    .option('--window <runs>', 'recent runs compared with the earlier ones', positiveInt('--window'), 5)
    .option('--threshold <ratio>', 'relative over-report increase counted as a regression', ratio('--threshold'), 0.1)
    .option('--resync-threshold <rate>', 'resync-rate increase counted as a regression (0–1)', ratio('--resync-threshold', 1), 0)
    .option('--index <file>', 'SQLite index file (default: DIR/.cbt-index.sqlite of the first DIR)')
    .option('--no-index', 'read every record, keep no index')
    .option('--series', 'include each group\'s per-run series (JSON)')
    .option('--fail-on-regression', 'exit 1 when a group regressed')
    .option('--json', 'one JSON document on stdout')
    .action(async (dirs: string[], flags: { by?: TrendDimension[]; window: number; threshold: number; resyncThreshold: number; index: string | boolean; series?: boolean; failOnRegression?: boolean; json?: boolean }) => {
      const dims = flags.by ?? ['build', 'driver'];
      const index = flags.index === false ? false : typeof flags.index === 'string' ? flags.index : undefined;
      const results = [];
      for (const by of dims) results.push(await historyTrend(dirs, { by, window: flags.window, threshold: flags.threshold, resyncThreshold: flags.resyncThreshold, index, series: flags.series, logger }));
      const first = results[0];
      if (flags.json) {
        await printJson({ runs: first.runs, window: first.window, index: first.index, skipped: first.skipped, trends: Object.fromEntries(results.map((r) => [r.by, r.groups])) });
      } else {
        const head = `${first.runs} run(s)${first.index ? ` (index ${first.index.file}: ${first.index.indexed} read, ${first.index.unchanged} unchanged, ${first.index.removed} removed)` : ''}${first.skipped.length ? `; ${first.skipped.length} unreadable file(s) skipped` : ''}`;
        await printText([head, ...results.map((r) => `\n${formatTrend(r)}`)].join('\n'));
      }
      const regressed = results.flatMap((r) => r.groups.filter((g) => g.status === 'regressed').map((g) => `${r.by} ${g.key}`));
      if (flags.failOnRegression && regressed.length) throw new CheckFailed(`regressed: ${regressed.join('; ')}`);
    });
}

function renderReporters(value: string): Array<'junit' | 'html'> {
  const names = value.split(',').map((x) => x.trim()).filter(Boolean);
  for (const name of names) if (name !== 'junit' && name !== 'html') throw new InvalidArgumentError(`Expected --reporter among junit, html, got \`${name}\``);
  if (!names.length) throw new InvalidArgumentError('Expected --reporter among junit, html, got nothing');
  return names as Array<'junit' | 'html'>;
}

function renderCommand(): Command {
  return new Command('render')
    .description('write junit.xml and report.html again from a run record')
    .argument('<run>', 'run directory or run.json')
    .option('--out <dir>', "output folder (default: the record's folder)")
    .addOption(new Option('--reporter <names>', 'comma-separated among junit, html').default(['junit', 'html'], 'junit,html').argParser(renderReporters))
    .action(async (run: string, flags: { out?: string; reporter: Array<'junit' | 'html'> }) => {
      const file = await recordPath(run);
      const record = await readRunRecord(file);
      const outDir = flags.out ?? dirname(file);
      const reporters: Reporter[] = [];
      const written: string[] = [];
      for (const name of flags.reporter) {
        const target = join(outDir, REPORT_FILES[name]);
        reporters.push(name === 'junit' ? new JunitReporter(target) : new HtmlReporter(target));
        written.push(target);
      }
      const mux = new Multiplexer(reporters, logger);
      await mux.onEnd(record);
      if (mux.failures.length) throw new ReporterOptionError(`${mux.failures.length} report(s) could not be written`);
      await printText(written.join('\n'));
    });
}

function configCommand(): Command {
  return new Command('config')
    .description('check a run config (harness/gate.yaml, nightly.yaml) and list the jobs it plans')
    .argument('<file>', 'run config file')
    .option('--json', 'one JSON document on stdout')
    .action(async (file: string, flags: { json?: boolean }) => {
      const config = await loadRunConfig(file, { checkFiles: true });
      const jobs = await plannedJobs(config);
      if (flags.json) await printJson({ config, jobs });
      else await printText(`${file}: ${config.name}: ${jobs.length} job(s) (${jobs.filter((j) => j.mustFail).length} must fail) from ${config.matrix.length} matrix entr${config.matrix.length === 1 ? 'y' : 'ies'}; reporters ${config.reporters.join(', ')}; baseline ${config.baseline ?? 'none'}`);
    });
}

function schemaCommand(): Command {
  return new Command('schema')
    .description('print a published JSON Schema: run-record (reports/schema/run-record.json) or run-config (harness/schema/run-config.schema.json)')
    .addArgument(new Command().createArgument('[which]', 'run-record | run-config').choices(['run-record', 'run-config']).default('run-record'))
    .action(async (which: string) => {
      await printText(JSON.stringify(which === 'run-config' ? RUN_CONFIG_SCHEMA : RUN_RECORD_SCHEMA, null, 2));
    });
}

export function reportCommand(): Command {
  const report = new Command('report').description('compare runs, trends across runs, re-render reports, check run configs');
  report.addCommand(compareCommand());
  report.addCommand(trendCommand());
  report.addCommand(renderCommand());
  report.addCommand(configCommand());
  report.addCommand(schemaCommand());
  return report;
}
