/**
 * Scenario files: YAML → validated `Scenario`. Every error names the file, line and field.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, parseYaml, validateAgainst, type PathSegment, type YamlLocator } from '../config/index.ts';
import type { Verdict } from '../verify/index.ts';
import { BUILTIN_TRACKERS, trackerFor, trackerOptionProblems } from '../trackers/index.ts';
import { SCENARIO_SCHEMA, STEP_KINDS } from './schema.ts';
import { FILE_OPS, type Bus, type DiskSpec, type FileOp, type Scenario, type Step, type VolumeFs, type VolumeSpec } from './types.ts';
import { parseDuration, parseSize, parseSizeRange } from '../util/units.ts';

/** Scenario files larger than this are refused before parsing. */
const MAX_FILE_BYTES = 1 << 20;
type Raw = Record<string, unknown>;

/** Volume id → its disk and spec, for steps that address a volume. */
type VolumeIndex = ReadonlyMap<string, { disk: DiskSpec; volume: VolumeSpec }>;

function convertSteps(raw: Raw[], base: PathSegment[], at: YamlLocator, disks: Set<string>, volumes: VolumeIndex): Step[] {
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
    /** A disk or one of its volumes (raw bytes of the volume): the disk id, and the volume id or null. */
    const space = (): { disk: string; volume: string | null } => {
      const v = volumes.get(body.disk as string);
      return v ? { disk: v.disk.id, volume: v.volume.id } : { disk: disk(), volume: null };
    };
    const sizeRange = (dflt: string) => {
      const size = parseSizeRange((body.size as string | undefined) ?? dflt);
      if (!size || size.min === 0 || size.min > size.max) throw at.error('Expected `size` to be a positive size or a range lo..hi with lo <= hi', [...segs, kind, 'size']);
      return size;
    };
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
      case 'write':
        return { ...common, kind, ...space(), count: body.count as number, size: sizeRange(''), seed: (body.seed as number | undefined) ?? null, align: bytes('align', 512) };
      case 'fio':
        return { ...common, kind, ...space(), rw: (body.rw as 'randwrite' | 'write' | 'randrw' | undefined) ?? 'randwrite', bs: bytes('bs', 4096), size: bytes('size', 64 * 1024 * 1024), runtimeMs: ms('runtime', 10_000), seed: (body.seed as number | undefined) ?? null };
      case 'offline':
      case 'online':
      case 'disable':
      case 'enable':
      case 'plug':
        return { ...common, kind, disk: disk() };
      case 'unplug':
        return { ...common, kind, disk: disk(), mode: (body.mode as 'eject' | 'surprise' | undefined) ?? 'eject', timeoutMs: ms('timeout', 20_000) };
      case 'files': {
        const id = body.volume as string;
        const v = volumes.get(id);
        if (!v) throw at.error(`Unknown volume \`${id}\`; declared volumes: ${[...volumes.keys()].join(', ') || 'none (give a disk `volumes`)'}`, [...segs, kind, 'volume']);
        if (v.volume.fs === 'none') throw at.error(`Volume \`${id}\` has no file system (fs: none): a files step needs ntfs or ext4`, [...segs, kind, 'volume']);
        const size = sizeRange('4KiB..1MiB');
        if (size.max > 1024 * 1024 * 1024) throw at.error('Expected file sizes of at most 1GiB', [...segs, kind, 'size']);
        return { ...common, kind, disk: v.disk.id, volume: id, count: (body.count as number | undefined) ?? 100, size, ops: (body.ops as FileOp[] | undefined) ?? [...FILE_OPS], fsync: (body.fsync as 'none' | 'some' | 'all' | undefined) ?? 'some', seed: (body.seed as number | undefined) ?? null };
      }
      case 'resize': {
        const d = disk();
        const size = parseSize(body.size as string);
        if (size === null || size % 512 !== 0) throw at.error('Expected `size` to be a multiple of 512', [...segs, kind, 'size']);
        return { ...common, kind, disk: d, size };
      }
      case 'sleep':
        return { ...common, kind, ms: ms('sleep', 0, r.sleep) };
      case 'verify':
        return { ...common, kind, expect: (body.expect as Verdict[] | undefined) ?? null, disk: optDisk() };
      case 'repeat':
        return { ...common, kind, times: body.times as number, steps: convertSteps(body.steps as Raw[], [...segs, 'repeat', 'steps'], at, disks, volumes) };
      default:
        return { ...common, kind } as Step;
    }
  });
}

/** Room the GPT takes: 1 MiB before the first partition (alignment), 33 sectors of backup at the end. */
const GPT_HEAD = 1024 * 1024;
const GPT_TAIL = 33 * 512;
const MiB = 1024 * 1024;

function convertVolumes(disk: string, diskSize: number, raw: Raw[], at: YamlLocator, base: PathSegment[]): VolumeSpec[] {
  let used = GPT_HEAD;
  return raw.map((v, i) => {
    const fs = (v.fs as VolumeFs | undefined) ?? 'none';
    let size: number | null = null;
    if (v.size !== undefined) {
      size = parseSize(v.size as string);
      if (size === null || size < MiB || size % MiB !== 0) throw at.error('Expected a volume `size` of at least 1MiB, in whole MiB (GPT alignment)', [...base, i, 'size']);
    } else if (i !== raw.length - 1) {
      throw at.error('Only the last volume may omit `size` (it takes the rest of the disk)', [...base, i]);
    }
    const min = fs === 'ntfs' ? 8 * MiB : fs === 'ext4' ? 32 * MiB : MiB;
    const bytes = size ?? diskSize - used - GPT_TAIL;
    if (bytes < min) throw at.error(`Volume ${i + 1} of ${disk} would hold ${bytes} bytes; ${fs} needs at least ${min / MiB}MiB`, [...base, i]);
    used += size ?? bytes;
    if (used + GPT_TAIL > diskSize) throw at.error(`The volumes of ${disk} need ${used + GPT_TAIL} bytes with the GPT; the disk has ${diskSize}`, [...base, i, 'size']);
    return { id: `${disk}p${i + 1}`, index: i + 1, fs, size };
  });
}

/** Each resize grows its disk (in step order, repeats unrolled). */
function checkResizes(steps: readonly Step[], disks: readonly DiskSpec[], at: YamlLocator): void {
  const size = new Map(disks.map((d) => [d.id, d.size]));
  const walk = (list: readonly Step[]): void => {
    for (const s of list) {
      if (s.kind === 'repeat') {
        for (let i = 0; i < s.times; i++) walk(s.steps);
      } else if (s.kind === 'resize') {
        const now = size.get(s.disk)!;
        if (s.size <= now) throw new ConfigError(`resize of ${s.disk} to ${s.size} bytes does not grow it (it has ${now} by then)`, { file: at.file, line: s.source.line, field: s.source.field });
        size.set(s.disk, s.size);
      }
    }
  };
  walk(steps);
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
    return { id, size, bus: (d.bus as Bus | undefined) ?? 'virtio-blk', volumes: convertVolumes(id, size, (d.volumes as Raw[] | undefined) ?? [], at, ['disks', i, 'volumes']) };
  });
  const volumes = new Map<string, { disk: DiskSpec; volume: VolumeSpec }>();
  for (const [i, d] of disks.entries()) {
    for (const v of d.volumes) {
      if (ids.has(v.id)) throw at.error(`Volume id \`${v.id}\` is also a disk id`, ['disks', i, 'id']);
      volumes.set(v.id, { disk: d, volume: v });
    }
  }
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
  const steps = convertSteps(r.steps as Raw[], ['steps'], at, ids, volumes);
  checkResizes(steps, disks, at);
  const setupProblem = t.checkLayout?.(trackerOptions, disks);
  if (setupProblem) throw at.error(setupProblem, ['trackerOptions']);
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
