/**
 * Reporters by name, for `run --reporter …` and run configs: `terminal`, `json`, `junit`, `html`.
 * With an output folder the run record is always written (`DIR/run.json`), whatever the names.
 */
import { join } from 'node:path';
import { ReporterOptionError } from './errors.ts';
import { HtmlReporter } from './html.ts';
import { JsonReporter } from './json-reporter.ts';
import { JunitReporter } from './junit.ts';
import { Multiplexer } from './multiplexer.ts';
import type { ReportLogger, Reporter } from './reporter.ts';
import { TerminalReporter, type TextStream } from './terminal.ts';

export const REPORTER_NAMES = ['terminal', 'json', 'junit', 'html'] as const;
export type ReporterName = (typeof REPORTER_NAMES)[number];

/** File names inside the output folder. */
export const REPORT_FILES = { json: 'run.json', junit: 'junit.xml', html: 'report.html' } as const;

export interface CreateReportersOptions {
  /** Where `json`, `junit` and `html` write. Required by those. */
  outDir?: string;
  /** Where `terminal` writes (the CLI passes process.stderr or stdout). */
  stream?: TextStream;
  /** Whether `stream` is a terminal (live status line, colours). @default false */
  isTTY?: boolean;
  /** Colours. @default isTTY */
  color?: boolean;
  /** Terminal width. @default 100 */
  columns?: number;
  /** Where a broken reporter's error goes. */
  logger: ReportLogger;
  /** Extra reporters (plugins, tests), called after the named ones. */
  extra?: Reporter[];
}

export interface CreatedReporters {
  /** Call the hooks on this one. */
  reporter: Multiplexer;
  names: ReporterName[];
  /** Files written at onEnd, by reporter name. */
  files: Partial<Record<Exclude<ReporterName, 'terminal'>, string>>;
}

export function createReporters(names: readonly string[], options: CreateReportersOptions): CreatedReporters {
  const unknown = names.filter((n) => !(REPORTER_NAMES as readonly string[]).includes(n));
  if (unknown.length) throw new ReporterOptionError(`Unknown reporter ${unknown.map((n) => `\`${n}\``).join(', ')}; known: ${REPORTER_NAMES.join(', ')}`);
  const set = new Set(names as ReporterName[]);
  if (options.outDir !== undefined) set.add('json');
  const list: Reporter[] = [];
  const files: CreatedReporters['files'] = {};
  for (const name of REPORTER_NAMES) {
    if (!set.has(name)) continue;
    if (name === 'terminal') {
      if (!options.stream) throw new ReporterOptionError('the terminal reporter needs a `stream`');
      list.push(new TerminalReporter({ stream: options.stream, isTTY: options.isTTY ?? false, color: options.color, columns: options.columns }));
      continue;
    }
    if (options.outDir === undefined) throw new ReporterOptionError(`the ${name} reporter writes ${REPORT_FILES[name]} and needs an output folder (--out DIR)`);
    const file = join(options.outDir, REPORT_FILES[name]);
    files[name] = file;
    list.push(name === 'json' ? new JsonReporter(file) : name === 'junit' ? new JunitReporter(file) : new HtmlReporter(file));
  }
  return { reporter: new Multiplexer([...list, ...(options.extra ?? [])], options.logger), names: REPORTER_NAMES.filter((n) => set.has(n)), files };
}
