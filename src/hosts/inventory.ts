/**
 * Host inventory loader: YAML → validated, defaulted `Inventory`. Errors name the file, line,
 * column and field (`hosts[1].slots`), in the words of the schema.
 */
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { describeValue, fieldName, parseYaml, pathSegments, type YamlLocator } from '../config/index.ts';
import { InventoryError } from './errors.ts';
import { HOSTS_SCHEMA } from './inventory-schema.ts';
import type { DockerConnection, DockerHostSpec, HostSpec, Inventory, LocalHostSpec, SshHostSpec } from './types.ts';

/** Inventory files larger than this are refused before parsing. */
const MAX_FILE_BYTES = 4 * 2 ** 20;

let validator: ReturnType<Ajv['compile']> | undefined;
function validate(value: unknown): ErrorObject[] {
  validator ??= new Ajv({ allErrors: true, verbose: true, discriminator: true, strict: true, strictTypes: false }).compile(HOSTS_SCHEMA);
  return validator(value) ? [] : [...(validator.errors ?? [])];
}

function hostLabel(root: unknown, segs: Array<string | number>): string {
  if (segs[0] !== 'hosts' || typeof segs[1] !== 'number') return '';
  const name = (root as { hosts?: Array<{ name?: unknown }> }).hosts?.[segs[1]]?.name;
  return typeof name === 'string' ? ` (host \`${name}\`)` : '';
}

/** One message per ajv error, in the words a user of the file understands. */
function explain(e: ErrorObject, root: unknown, at: YamlLocator<InventoryError>): InventoryError {
  const segs = pathSegments(e.instancePath);
  const last = segs.at(-1);
  const name = typeof last === 'string' ? last : fieldName(segs);
  const desc = (e.parentSchema as { description?: string } | undefined)?.description;
  const where = hostLabel(root, segs);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys((e.parentSchema as { properties?: object }).properties ?? {}).join(', ');
      return at.error(`Unknown key \`${key}\`${where}; allowed keys: ${allowed}`, segs, key);
    }
    case 'required': {
      const key = (e.params as { missingProperty: string }).missingProperty;
      const type = (e.data as { type?: unknown })?.type;
      return at.error(`Missing required key \`${key}\`${typeof type === 'string' ? ` for a host of type ${type}` : ''}${where}`, segs);
    }
    case 'type':
    case 'minimum':
    case 'maximum': {
      const s = e.parentSchema as { type?: string; minimum?: number; maximum?: number; description?: string };
      let expected: string = e.keyword === 'type' ? `${/^[aeiou]/.test(String(s.type)) ? 'an' : 'a'} ${s.type}` : 'a number';
      if (s.type === 'integer') {
        if (e.keyword === 'maximum') expected = `an integer of at most ${s.maximum}`;
        else if (s.minimum === 1 && (s.maximum === undefined || s.maximum > 1000)) expected = 'a positive integer';
        else if (s.minimum !== undefined && s.maximum !== undefined) expected = `an integer from ${s.minimum} to ${s.maximum}`;
        else expected = 'an integer';
      }
      return at.error(`Expected \`${name}\` to be ${expected}, got ${describeValue(e.data)}${where}`, segs);
    }
    case 'const':
    case 'enum': {
      const allowed = e.keyword === 'const' ? [(e.params as { allowedValue: unknown }).allowedValue] : (e.params as { allowedValues: unknown[] }).allowedValues;
      return at.error(`Expected \`${name}\` to be one of ${allowed.map((a) => `\`${String(a)}\``).join(', ')}, got ${describeValue(e.data)}${where}`, segs);
    }
    case 'discriminator': {
      return at.error(`Expected \`type\` to be one of \`local\`, \`ssh\`, \`docker\`, got ${describeValue((e.data as { type?: unknown })?.type)}${where}`, segs, 'type');
    }
    case 'pattern':
    case 'minLength':
    case 'anyOf': {
      // anyOf appears only for hostKey (a fingerprint or a list of them).
      const d = desc ?? (e.keyword === 'minLength' ? 'a non-empty string' : 'valid');
      return at.error(`Expected \`${name}\` to be ${d}, got ${describeValue(e.data)}${where}`, segs);
    }
    case 'minItems':
      return at.error(`Expected \`${name}\` to list at least ${(e.params as { limit: number }).limit} item(s)${where}`, segs);
    case 'uniqueItems':
      return at.error(`Expected \`${name}\` to have no duplicates, got ${describeValue(e.data)}${where}`, segs);
    default:
      return at.error(`${e.message ?? 'invalid'}${where}`, segs);
  }
}

/** ajv reports, for one bad value, the failing branch's details and then the summary; keep the most specific. */
function pickErrors(errors: ErrorObject[]): ErrorObject[] {
  const byPath = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    const list = byPath.get(e.instancePath) ?? [];
    list.push(e);
    byPath.set(e.instancePath, list);
  }
  const out: ErrorObject[] = [];
  for (const [path, list] of byPath) {
    // An anyOf summary whose branches failed deeper or at the same path: report the summary only once.
    const anyOf = list.find((e) => e.keyword === 'anyOf');
    if (anyOf) {
      out.push(anyOf);
      continue;
    }
    // Errors at a deeper path make an oneOf summary at this path redundant.
    const deeper = [...byPath.keys()].some((p) => p !== path && p.startsWith(`${path}/`));
    for (const e of list) if (!(e.keyword === 'oneOf' && deeper)) out.push(e);
  }
  // An unknown `type` fails both the enum and the discriminator: one message is enough.
  const enumTypes = new Set(out.filter((e) => e.keyword === 'enum' && e.instancePath.endsWith('/type')).map((e) => e.instancePath.slice(0, -'/type'.length)));
  for (let i = out.length - 1; i >= 0; i--) if (out[i].keyword === 'discriminator' && enumTypes.has(out[i].instancePath)) out.splice(i, 1);
  // Children of an anyOf (hostKey list items) are covered by its summary.
  const anyOfPaths = out.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath);
  return out.filter((e) => e.keyword === 'anyOf' || !anyOfPaths.some((p) => e.instancePath.startsWith(`${p}/`) || (e.instancePath === p && e.keyword !== 'anyOf')));
}

export interface ParseInventoryOptions {
  /** Default workdir of `local` hosts. @default `<tmpdir>/cbt-harness` */
  localWorkdir?: string;
}

function dockerConnection(raw: Record<string, unknown>, segs: Array<string | number>, at: YamlLocator<InventoryError>): DockerConnection {
  const has = (k: string) => raw[k] !== undefined;
  if (has('socketPath')) {
    for (const k of Object.keys(raw)) if (k !== 'socketPath') throw at.error(`\`${k}\` cannot be combined with \`socketPath\` (a unix socket needs nothing else)`, segs, k);
    return { socketPath: raw.socketPath as string };
  }
  if (!has('host')) throw at.error('Expected either `socketPath` or `host` (with `port` and `protocol`)', segs);
  const protocol = (raw.protocol as 'http' | 'https' | 'ssh' | undefined) ?? (has('cert') || has('ca') ? 'https' : 'http');
  const host = raw.host as string;
  if (protocol === 'ssh') {
    for (const k of ['ca', 'cert', 'key']) if (has(k)) throw at.error(`\`${k}\` is for protocol https, not ssh`, segs, k);
    if (!has('username')) throw at.error('Missing required key `username` for protocol ssh', segs);
    if (!has('hostKey')) throw at.error('Missing required key `hostKey` for protocol ssh (pin the engine host\'s key: unknown keys are refused)', segs);
    const hk = raw.hostKey as string | string[];
    return { protocol, host, port: (raw.port as number | undefined) ?? 22, username: raw.username as string, identity: raw.identity as string | undefined, hostKey: typeof hk === 'string' ? [hk] : hk };
  }
  for (const k of ['username', 'identity', 'hostKey']) if (has(k)) throw at.error(`\`${k}\` is for protocol ssh, not ${protocol}`, segs, k);
  return { protocol, host, port: (raw.port as number | undefined) ?? (protocol === 'https' ? 2376 : 2375), ca: raw.ca as string | undefined, cert: raw.cert as string | undefined, key: raw.key as string | undefined };
}

/** Parses inventory text; `file` is used in messages only. */
export function parseInventory(text: string, file: string, options: ParseInventoryOptions = {}): Inventory {
  const { root, at } = parseYaml(text, file, InventoryError);
  if (root === null || root === undefined) throw new InventoryError('the file is empty; expected a `hosts:` list', { file });
  const errors = pickErrors(validate(root));
  if (errors.length > 0) {
    const unique = new Map<string, InventoryError>();
    for (const e of errors.map((x) => explain(x, root, at))) if (!unique.has(e.message)) unique.set(e.message, e);
    const explained = [...unique.values()];
    explained.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    const first = explained[0];
    if (explained.length === 1) throw first;
    // All problems in one go: fixing a file one error per run is tedious.
    const all = new InventoryError(`${explained.length} problems:\n${explained.map((e) => `  ${e.message}`).join('\n')}`, { file, line: first.line, column: first.column, field: undefined });
    throw all;
  }
  const seen = new Map<string, number>();
  const hosts: HostSpec[] = [];
  const rawHosts = (root as { hosts: Array<Record<string, unknown>> }).hosts;
  rawHosts.forEach((raw, i) => {
    const segs = ['hosts', i];
    const name = raw.name as string;
    if (seen.has(name)) throw at.error(`Duplicate host name \`${name}\` (also hosts[${seen.get(name)}])`, segs, 'name');
    seen.set(name, i);
    const base = { name, slots: raw.slots as number, tags: (raw.tags as string[] | undefined) ?? [] };
    if (raw.type === 'local') {
      hosts.push({ ...base, type: 'local', workdir: (raw.workdir as string | undefined) ?? options.localWorkdir ?? join(tmpdir(), 'cbt-harness') } satisfies LocalHostSpec);
    } else if (raw.type === 'ssh') {
      const hk = raw.hostKey as string | string[];
      hosts.push({
        ...base,
        type: 'ssh',
        address: raw.address as string,
        port: (raw.port as number | undefined) ?? 22,
        user: (raw.user as string | undefined) ?? 'root',
        identity: raw.identity as string,
        hostKey: typeof hk === 'string' ? [hk] : hk,
        workdir: (raw.workdir as string | undefined) ?? '/var/lib/cbt-harness',
        connectTimeoutMs: (raw.connectTimeoutMs as number | undefined) ?? 20000,
      } satisfies SshHostSpec);
    } else {
      hosts.push({
        ...base,
        type: 'docker',
        docker: dockerConnection(raw.docker as Record<string, unknown>, [...segs, 'docker'], at),
        image: (raw.image as string | undefined) ?? 'cbt-harness-worker:latest',
        cacheVolume: (raw.cacheVolume as string | undefined) ?? 'cbt-harness-cache',
        kvm: (raw.kvm as 'auto' | 'always' | 'never' | undefined) ?? 'auto',
        labels: (raw.labels as Record<string, string> | undefined) ?? {},
      } satisfies DockerHostSpec);
    }
  });
  return { file, hosts };
}

export async function loadInventory(path: string, options: ParseInventoryOptions = {}): Promise<Inventory> {
  let text: string;
  try {
    const buf = await readFile(path);
    if (buf.length > MAX_FILE_BYTES) throw new InventoryError(`the file is ${buf.length} bytes; an inventory is at most ${MAX_FILE_BYTES}`, { file: path });
    text = buf.toString('utf8');
  } catch (error) {
    if (error instanceof InventoryError) throw error;
    throw new InventoryError(`cannot read the inventory: ${(error as Error).message}`, { file: path, cause: error });
  }
  return parseInventory(text, path, options);
}
