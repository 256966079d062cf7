/**
 * Scenario files: YAML → validated `Scenario`. Every error names the file, line and field.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, parseYaml, validateAgainst, type PathSegment, type YamlLocator } from '../config/index.ts';
import type { Verdict } from '../verify/index.ts';
import { BUILTIN_TRACKERS, trackerFor, trackerOptionProblems } from '../trackers/index.ts';
import { SCENARIO_SCHEMA, STEP_KINDS } from './schema.ts';
import type { Bus, DiskSpec, Scenario, Step } from './types.ts';
import { parseDuration, parseSize, parseSizeRange } from '../util/units.ts';

/** Scenario files larger than this are refused before parsing. */
const MAX_FILE_BYTES = 1 << 20;
type Raw = Record<string, unknown>;

function convertSteps(raw: Raw[], base: PathSegment[], at: YamlLocator, disks: Set<string>): Step[] {
  return raw.map((r, i) => {
    const segs = [...base, i];
    const kinds = Object.keys(r).filter((k) => k !== 'allowFailure');
    if (kinds.length !== 1) {
      throw at.error(kinds.length === 0 ? `Expected a step kind (${STEP_KINDS.join(', ')})` : `Expected one step kind per item, got ${kinds.map((k) => `\`${k}\``).join(' and ')}`, segs);
    }
    const kind = kinds[0] as Step['kind'];
    const body = (r[kind] ?? {}) as Raw;
    const where = at.where(segs);
    const source = { file: at.file, line: where.line, field: `${segs.map((s) => (typeof s === 'number' ? `[${s}]` : `.${s}`)).join('').replace(/^\./, '')}` };
    const allowFailure = r.allowFailure === true;
    const disk = (key = 'disk'): string => {
      const d = body[key] as string;
      if (!disks.has(d)) throw at.error(`Unknown disk \`${d}\`; declared disks: ${[...disks].join(', ')}`, [...segs, kind, key]);
      return d;
    };
    const optDisk = () => (body.disk === undefined ? null : disk());
    const bytes = (key: string, dflt: number) => {
      if (body[key] === undefined) return dflt;
      const n = parseSize(body[key] as string);
      if (n === null || n === 0) throw at.error(`Expected \`${key}\` to be a positive size`, [...segs, kind, key]);
      return n;
    };
    const ms = (key: string, dflt: number, v: unknown = body[key]) => {
      if (v === undefined) return dflt;
      const n = parseDuration(v as string);
      if (n === null) throw at.error(`Expected \`${key}\` to be a duration such as 10s`, [...segs, kind, key]);
      return n;
    };
    const common = { allowFailure, source };
    switch (kind) {
      case 'checkpoint':
        return { ...common, kind, disk: optDisk() };
      case 'write': {
        const size = parseSizeRange(body.size as string);
        if (!size || size.min === 0 || size.min > size.max) throw at.error('Expected `size` to be a positive size or a range lo..hi with lo <= hi', [...segs, kind, 'size']);
        return { ...common, kind, disk: disk(), count: body.count as number, size, seed: (body.seed as number | undefined) ?? null, align: bytes('align', 512) };
      }
      case 'fio':
        return { ...common, kind, disk: disk(), rw: (body.rw as 'randwrite' | 'write' | 'randrw' | undefined) ?? 'randwrite', bs: bytes('bs', 4096), size: bytes('size', 64 * 1024 * 1024), runtimeMs: ms('runtime', 10_000), seed: (body.seed as number | undefined) ?? null };
      case 'offline':
      case 'online':
      case 'disable':
      case 'enable':
      case 'plug':
        return { ...common, kind, disk: disk() };
      case 'unplug':
        return { ...common, kind, disk: disk(), mode: (body.mode as 'eject' | 'surprise' | undefined) ?? 'eject', timeoutMs: ms('timeout', 20_000) };
      case 'sleep':
        return { ...common, kind, ms: ms('sleep', 0, r.sleep) };
      case 'verify':
        return { ...common, kind, expect: (body.expect as Verdict[] | undefined) ?? null, disk: optDisk() };
      case 'repeat':
        return { ...common, kind, times: body.times as number, steps: convertSteps(body.steps as Raw[], [...segs, 'repeat', 'steps'], at, disks) };
      default:
        return { ...common, kind } as Step;
    }
  });
}

/** Parse scenario text; `file` is used in messages. */
export function parseScenario(text: string, file: string): Scenario {
  const { root, at } = parseYaml(text, file);
  if (root === null || root === undefined || typeof root !== 'object' || Array.isArray(root)) {
    throw new ConfigError('expected a scenario (a mapping with name, guest, tracker, disks, steps)', { file });
  }
  validateAgainst(root, SCENARIO_SCHEMA, at);
  const r = root as Raw;
  const ids = new Set<string>();
  const disks: DiskSpec[] = (r.disks as Raw[]).map((d, i) => {
    const id = d.id as string;
    if (ids.has(id)) throw at.error(`Duplicate disk id \`${id}\``, ['disks', i, 'id']);
    ids.add(id);
    const size = parseSize(d.size as string);
    if (size === null || size < 64 * 1024 * 1024) throw at.error('Expected `size` to be at least 64MiB (room for the tracker metadata and data)', ['disks', i, 'size']);
    if (size % 512 !== 0) throw at.error('Expected `size` to be a multiple of 512', ['disks', i, 'size']);
    return { id, size, bus: (d.bus as Bus | undefined) ?? 'virtio-blk' };
  });
  const tracker = r.tracker as string;
  const trackerOptions = (r.trackerOptions as Raw | undefined) ?? {};
  const t = trackerFor(tracker);
  if (!t) throw at.error(`Unknown tracker \`${tracker}\`; built in: ${[...BUILTIN_TRACKERS.keys()].join(', ')}, or a plugin path`, ['tracker']);
  const [problem] = trackerOptionProblems(t, trackerOptions);
  if (problem) {
    if (!(problem.option in trackerOptions)) throw at.error(problem.message, ['trackerOptions']);
    if (!(problem.option in t.options)) throw at.error(problem.message, ['trackerOptions'], problem.option);
    throw at.error(problem.message, ['trackerOptions', problem.option]);
  }
  const steps = convertSteps(r.steps as Raw[], ['steps'], at, ids);
  return {
    name: r.name as string,
    description: (r.description as string | undefined) ?? '',
    guest: r.guest as string,
    tracker,
    trackerOptions,
    disks,
    expect: (r.expect as Verdict[] | undefined) ?? ['EXACT', 'SUPERSET'],
    seed: (r.seed as number | undefined) ?? null,
    steps,
    file,
  };
}

export async function loadScenario(file: string): Promise<Scenario> {
  let text: string;
  try {
    const buf = await readFile(file);
    if (buf.length > MAX_FILE_BYTES) throw new ConfigError(`the file is larger than ${MAX_FILE_BYTES} bytes`, { file });
    text = buf.toString('utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { file, cause: error });
  }
  return parseScenario(text, file);
}

/** Load many files; names must be unique across them. */
export async function loadScenarios(files: string[]): Promise<Scenario[]> {
  const out: Scenario[] = [];
  const seen = new Map<string, string>();
  for (const f of files) {
    const s = await loadScenario(f);
    const prior = seen.get(s.name);
    if (prior) throw new ConfigError(`scenario name \`${s.name}\` is also used by ${prior}`, { file: f, field: 'name' });
    seen.set(s.name, f);
    out.push(s);
  }
  return out;
}
