/**
 * Run configs (harness/gate.yaml, harness/nightly.yaml): YAML → validated, defaulted, paths
 * resolved against the file's folder. Every error names the file, line, column and field
 * (`matrix[1].repeats`): ajv's instance path is walked in the YAML document, whose nodes know
 * their offsets, and `LineCounter` turns an offset into a line.
 */
import { glob, readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { describeValue, fieldName, parseYaml, pathSegments, type YamlLocator } from '../config/index.ts';
import type { Verdict } from '../verify/index.ts';
import { RunConfigError } from './errors.ts';
import { RUN_CONFIG_SCHEMA } from './run-config-schema.ts';

export type ReporterChoice = 'terminal' | 'json' | 'junit' | 'html';

export interface MatrixEntry {
  name?: string;
  /** Absolute paths or glob patterns (see `resolveScenarioFiles`). */
  scenarios: string[];
  guests: string[];
  repeats: number;
  tags: string[];
  /** Overrides the scenarios' acceptable verdicts. */
  expect?: Verdict[];
  /** Known-bad trackers: the jobs must fail (record `expectedStatus: 'failed'`). */
  mustFail: boolean;
}

export interface RunConfig {
  /** The config file, as given. */
  file: string;
  version: 1;
  name: string;
  description?: string;
  /** Absolute, or null: the runner's default inventory. */
  hosts: string | null;
  guestCatalog: string | null;
  seed: number | 'random';
  matrix: MatrixEntry[];
  exclude: Array<{ scenario?: string; guest?: string }>;
  baseline: string | null;
  history: string | null;
  /** Absolute; may hold `{runId}`. */
  out: string | null;
  /** @default ['terminal'] (plus json/junit/html when `out` is set) */
  reporters: ReporterChoice[];
  failOn: { missed: 'unexpected' | 'any' | 'never'; regression: boolean; infraError: boolean };
  compare: { threshold: number; resyncThreshold: number };
  limits: { jobTimeoutMs: number; runTimeoutMs: number | null; maxAttempts: number; hostFailureLimit: number; speculate: boolean };
  labels: Record<string, string>;
}

const MAX_FILE_BYTES = 1 << 20;

let validator: ReturnType<Ajv2020['compile']> | undefined;
function validate(value: unknown): ErrorObject[] {
  validator ??= new Ajv2020({ allErrors: true, verbose: true, strict: true, strictTypes: false }).compile(RUN_CONFIG_SCHEMA);
  return validator(value) ? [] : [...(validator.errors ?? [])];
}

function explain(e: ErrorObject, at: YamlLocator<RunConfigError>): RunConfigError {
  const segs = pathSegments(e.instancePath);
  const last = segs.at(-1);
  const name = typeof last === 'string' ? last : fieldName(segs) || 'the file';
  const schema = e.parentSchema as { description?: string; type?: string; minimum?: number; maximum?: number; properties?: object } | undefined;
  const desc = schema?.description;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      return at.error(`Unknown key \`${key}\`; allowed keys: ${Object.keys(schema?.properties ?? {}).join(', ')}`, segs, key);
    }
    case 'required':
      return at.error(`Missing required key \`${(e.params as { missingProperty: string }).missingProperty}\``, segs);
    case 'type':
      return at.error(`Expected \`${name}\` to be ${desc ?? `${/^[aeiou]/.test(String(schema?.type)) ? 'an' : 'a'} ${String(schema?.type)}`}, got ${describeValue(e.data)}`, segs);
    case 'minimum':
    case 'maximum':
      return at.error(`Expected \`${name}\` to be ${desc ?? `a number ${e.keyword === 'minimum' ? 'of at least' : 'of at most'} ${e.keyword === 'minimum' ? schema?.minimum : schema?.maximum}`}, got ${describeValue(e.data)}`, segs);
    case 'const':
    case 'enum': {
      const allowed = e.keyword === 'const' ? [(e.params as { allowedValue: unknown }).allowedValue] : (e.params as { allowedValues: unknown[] }).allowedValues;
      return at.error(`Expected \`${name}\` to be one of ${allowed.map((a) => `\`${String(a)}\``).join(', ')}, got ${describeValue(e.data)}`, segs);
    }
    case 'pattern':
    case 'minLength':
    case 'oneOf':
      return at.error(`Expected \`${name}\` to be ${desc ?? 'valid'}, got ${describeValue(e.data)}`, segs);
    case 'minItems':
      return at.error(`Expected \`${name}\` to list at least ${(e.params as { limit: number }).limit} item(s)`, segs);
    case 'minProperties':
      return at.error(`Expected \`${name}\` to name at least one of its keys`, segs);
    case 'uniqueItems':
      return at.error(`Expected \`${name}\` to have no duplicates, got ${describeValue(e.data)}`, segs);
    default:
      return at.error(e.message ?? 'invalid', segs);
  }
}

/** For one bad value ajv reports a oneOf summary and each branch: keep the summary. */
function pick(errors: ErrorObject[]): ErrorObject[] {
  const oneOfPaths = new Set(errors.filter((e) => e.keyword === 'oneOf').map((e) => e.instancePath));
  return errors.filter((e) => e.keyword === 'oneOf' || !oneOfPaths.has(e.instancePath));
}

function durationMs(text: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text)!;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

/** Parses config text; `file` names it in errors and anchors relative paths. */
export function parseRunConfig(text: string, file: string): RunConfig {
  const { root, at } = parseYaml(text, file, RunConfigError);
  if (root === null || root === undefined) throw new RunConfigError('the file is empty; expected `version: 1`, `name:` and a `matrix:`', { file });
  const errors = pick(validate(root));
  if (errors.length > 0) {
    const unique = new Map<string, RunConfigError>();
    for (const e of errors.map((x) => explain(x, at))) if (!unique.has(e.message)) unique.set(e.message, e);
    const all = [...unique.values()].sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    if (all.length === 1) throw all[0];
    throw new RunConfigError(`${all.length} problems:\n${all.map((e) => `  ${e.message}`).join('\n')}`, { file, line: all[0].line, column: all[0].column });
  }
  const raw = root as Record<string, unknown> & { matrix: Array<Record<string, unknown>> };
  const dir = dirname(resolve(file));
  const abs = (p: unknown) => (typeof p === 'string' ? (isAbsolute(p) ? p : resolve(dir, p)) : null);
  const defRepeats = (raw.repeats as number | undefined) ?? 1;
  const failOn = (raw.failOn as Record<string, unknown> | undefined) ?? {};
  const compare = (raw.compare as Record<string, unknown> | undefined) ?? {};
  const limits = (raw.limits as Record<string, unknown> | undefined) ?? {};
  // A regression needs something to regress from.
  if (failOn.regression === true && raw.baseline === undefined) throw at.error('`failOn.regression: true` needs a `baseline` to compare with', ['failOn'], 'regression');
  const out = abs(raw.out);
  const reporters = (raw.reporters as ReporterChoice[] | undefined) ?? (out ? ['terminal', 'json', 'junit', 'html'] : ['terminal']);
  const config: RunConfig = {
    file,
    version: 1,
    name: raw.name as string,
    hosts: abs(raw.hosts),
    guestCatalog: abs(raw.guestCatalog),
    seed: (raw.seed as number | 'random' | undefined) ?? 'random',
    matrix: raw.matrix.map((m) => {
      const entry: MatrixEntry = { scenarios: (m.scenarios as string[]).map((p) => abs(p)!), guests: m.guests as string[], repeats: (m.repeats as number | undefined) ?? defRepeats, tags: (m.tags as string[] | undefined) ?? [], mustFail: m.mustFail === true };
      if (typeof m.name === 'string') entry.name = m.name;
      if (m.expect) entry.expect = m.expect as Verdict[];
      return entry;
    }),
    exclude: (raw.exclude as RunConfig['exclude'] | undefined) ?? [],
    baseline: abs(raw.baseline),
    history: abs(raw.history),
    out,
    reporters,
    failOn: { missed: (failOn.missed as RunConfig['failOn']['missed'] | undefined) ?? 'unexpected', regression: (failOn.regression as boolean | undefined) ?? raw.baseline !== undefined, infraError: (failOn.infraError as boolean | undefined) ?? true },
    compare: { threshold: (compare.threshold as number | undefined) ?? 0.1, resyncThreshold: (compare.resyncThreshold as number | undefined) ?? 0 },
    limits: {
      jobTimeoutMs: durationMs((limits.jobTimeout as string | undefined) ?? '30m'),
      runTimeoutMs: typeof limits.runTimeout === 'string' ? durationMs(limits.runTimeout) : null,
      maxAttempts: (limits.maxAttempts as number | undefined) ?? 3,
      hostFailureLimit: (limits.hostFailureLimit as number | undefined) ?? 3,
      speculate: (limits.speculate as boolean | undefined) ?? false,
    },
    labels: (raw.labels as Record<string, string> | undefined) ?? {},
  };
  if (typeof raw.description === 'string') config.description = raw.description;
  return config;
}

export interface LoadRunConfigOptions {
  /**
   * Check that the hosts file and every plain scenario path exist (a glob that matches nothing is
   * allowed: it adds no job). @default false
   */
  checkFiles?: boolean;
}

/** Reads and validates a run config. Errors are `RunConfigError`s naming file, line and field. */
export async function loadRunConfig(path: string, options: LoadRunConfigOptions = {}): Promise<RunConfig> {
  let text: string;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new RunConfigError('not a regular file', { file: path });
    if (st.size > MAX_FILE_BYTES) throw new RunConfigError(`the file is ${st.size} bytes; a run config is at most ${MAX_FILE_BYTES}`, { file: path });
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof RunConfigError) throw error;
    throw new RunConfigError(`cannot read the run config: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`, { file: path, cause: error });
  }
  const config = parseRunConfig(text, path);
  if (options.checkFiles) {
    // Re-parse for positions: the checks below point at the entry that names a missing file.
    const { at } = parseYaml(text, path, RunConfigError);
    if (config.hosts) {
      try {
        await stat(config.hosts);
      } catch {
        throw at.error(`the hosts file ${config.hosts} does not exist`, ['hosts']);
      }
    }
    for (const [i, m] of config.matrix.entries()) {
      for (const [k, pattern] of m.scenarios.entries()) {
        if (isGlob(pattern)) continue;
        if ((await resolveScenarioFiles([pattern])).length === 0) throw at.error(`the scenario file ${pattern} does not exist`, ['matrix', i, 'scenarios', k]);
      }
    }
  }
  return config;
}

function isGlob(p: string): boolean {
  return /[*?[\]{}]/.test(p);
}

/** Scenario files of a matrix entry: each pattern expanded (glob), existing files only, sorted, unique. */
export async function resolveScenarioFiles(patterns: readonly string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const p of patterns) {
    if (!isGlob(p)) {
      try {
        if ((await stat(p)).isFile()) out.add(p);
      } catch {
        // Missing: the caller reports the pattern that matched nothing.
      }
      continue;
    }
    for await (const f of glob(p)) out.add(isAbsolute(f) ? f : resolve(f));
  }
  return [...out].sort();
}

export interface PlannedJob {
  scenarioFile: string;
  guest: string;
  repeat: number;
  tags: string[];
  expect?: Verdict[];
  mustFail: boolean;
  /** Index of the matrix entry. */
  entry: number;
}

/**
 * The jobs of a config: every entry's scenarios × guests × repeats, minus `exclude` (matched on
 * the guest name and on the scenario file's base name without extension, or the scenario name
 * the caller gives through `scenarioName`). The same scenario × guest in two entries runs once,
 * with the larger repeat count.
 */
export async function plannedJobs(config: RunConfig, scenarioName: (file: string) => string = defaultScenarioName): Promise<PlannedJob[]> {
  const seen = new Map<string, PlannedJob[]>();
  for (const [i, m] of config.matrix.entries()) {
    const files = await resolveScenarioFiles(m.scenarios);
    for (const f of files) {
      for (const g of m.guests) {
        const excluded = config.exclude.some((x) => (x.scenario === undefined || x.scenario === scenarioName(f)) && (x.guest === undefined || x.guest === g));
        if (excluded) continue;
        const key = `${f}\u0000${g}`;
        const prev = seen.get(key);
        if (prev && prev.length >= m.repeats) continue;
        const jobs: PlannedJob[] = [];
        for (let r = 1; r <= m.repeats; r++) {
          const job: PlannedJob = { scenarioFile: f, guest: g, repeat: r, tags: m.tags, mustFail: m.mustFail, entry: i };
          if (m.expect) job.expect = m.expect;
          jobs.push(job);
        }
        seen.set(key, jobs);
      }
    }
  }
  return [...seen.values()].flat();
}

function defaultScenarioName(file: string): string {
  const base = file.split('/').pop() ?? file;
  return base.replace(/\.(ya?ml|json)$/i, '');
}
