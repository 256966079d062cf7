/**
 * YAML files validated by a JSON Schema, with errors that name the file, line, column and field
 * (`steps[3].write.count`) in the words of the schema. Shared by every configuration loader.
 */
import { Ajv, type AnySchema, type ErrorObject } from 'ajv';
import { isMap, isScalar, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import { ConfigError, type ConfigErrorOptions } from './errors.ts';

export type PathSegment = string | number;

/** `/steps/1/write` → ['steps', 1, 'write'] */
export function pathSegments(instancePath: string): PathSegment[] {
  if (!instancePath) return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** ['steps', 1, 'write'] → `steps[1].write` */
export function fieldName(segs: readonly PathSegment[]): string {
  let out = '';
  for (const s of segs) out += typeof s === 'number' ? `[${s}]` : out ? `.${s}` : s;
  return out;
}

export function describeValue(v: unknown): string {
  const type = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
  let text = typeof v === 'string' ? v : JSON.stringify(v);
  if (text === undefined) text = String(v);
  if (text.length > 60) text = `${text.slice(0, 57)}...`;
  return `\`${text}\` (${type})`;
}

type ErrorFactory<E extends ConfigError> = new (message: string, options: ConfigErrorOptions) => E;

/** Maps a path in the parsed value back to the YAML source. */
export class YamlLocator<E extends ConfigError = ConfigError> {
  readonly file: string;
  readonly doc: Document;
  readonly lines: LineCounter;
  readonly #make: ErrorFactory<E>;

  constructor(file: string, doc: Document, lines: LineCounter, make: ErrorFactory<E>) {
    this.file = file;
    this.doc = doc;
    this.lines = lines;
    this.#make = make;
  }

  /** Line/column of the node at `segs`, or of the key `key` inside it (1-based). */
  where(segs: readonly PathSegment[], key?: string): { line?: number; column?: number } {
    let node = (segs.length ? this.doc.getIn(segs, true) : this.doc.contents) as YamlNode | undefined;
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === key);
      if (pair && isScalar(pair.key)) node = pair.key;
    }
    const range = node?.range;
    if (!range) return segs.length ? this.where(segs.slice(0, -1)) : {};
    const pos = this.lines.linePos(range[0]);
    return { line: pos.line, column: pos.col };
  }

  error(message: string, segs: readonly PathSegment[], key?: string): E {
    const field = fieldName(key === undefined ? segs : [...segs, key]);
    return new this.#make(message, { file: this.file, field: field || undefined, ...this.where(segs, key) });
  }
}

export interface ParsedYaml<E extends ConfigError = ConfigError> {
  root: unknown;
  at: YamlLocator<E>;
}

/** Parse YAML text keeping positions; syntax errors and duplicate keys become errors with a line. */
export function parseYaml<E extends ConfigError = ConfigError>(text: string, file: string, make: ErrorFactory<E> = ConfigError as unknown as ErrorFactory<E>): ParsedYaml<E> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const pos = lines.linePos(e.pos[0]);
    throw new make(`not valid YAML: ${e.message.split('\n')[0]}`, { file, line: pos.line, column: pos.col, cause: e });
  }
  const root = doc.toJS({ maxAliasCount: 100 }) as unknown;
  return { root, at: new YamlLocator<E>(file, doc, lines, make) };
}

const validators = new WeakMap<object, ReturnType<Ajv['compile']>>();

function expectedText(s: { type?: string | string[]; minimum?: number; maximum?: number; description?: string }, keyword: string): string {
  const type = Array.isArray(s.type) ? s.type.join(' or ') : s.type;
  if (type === 'integer') {
    if (keyword === 'maximum') return `an integer of at most ${s.maximum}`;
    if (s.minimum === 1 && (s.maximum === undefined || s.maximum > 1000)) return 'a positive integer';
    if (s.minimum !== undefined && s.maximum !== undefined) return `an integer from ${s.minimum} to ${s.maximum}`;
    if (s.minimum === 0) return 'a non-negative integer';
    return 'an integer';
  }
  if (keyword !== 'type') return s.description ?? 'valid';
  return `${/^[aeiou]/.test(String(type)) ? 'an' : 'a'} ${type}`;
}

/** One message per ajv error, in the words a user of the file understands. */
export function explainSchemaError<E extends ConfigError>(e: ErrorObject, at: YamlLocator<E>): E {
  const segs = pathSegments(e.instancePath);
  const last = segs.at(-1);
  const name = typeof last === 'string' ? last : fieldName(segs);
  const parent = (e.parentSchema ?? {}) as { type?: string; minimum?: number; maximum?: number; description?: string; properties?: object };
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(parent.properties ?? {}).join(', ');
      return at.error(`Unknown key \`${key}\`${allowed ? `; allowed keys: ${allowed}` : ''}`, segs, key);
    }
    case 'required':
      return at.error(`Missing required key \`${(e.params as { missingProperty: string }).missingProperty}\``, segs);
    case 'type':
    case 'minimum':
    case 'maximum':
      return at.error(`Expected \`${name}\` to be ${expectedText(parent, e.keyword)}, got ${describeValue(e.data)}`, segs);
    case 'const':
    case 'enum': {
      const allowed = e.keyword === 'const' ? [(e.params as { allowedValue: unknown }).allowedValue] : (e.params as { allowedValues: unknown[] }).allowedValues;
      return at.error(`Expected \`${name}\` to be one of ${allowed.map((a) => `\`${String(a)}\``).join(', ')}, got ${describeValue(e.data)}`, segs);
    }
    case 'pattern':
    case 'minLength':
    case 'anyOf':
    case 'oneOf':
      return at.error(`Expected \`${name}\` to be ${parent.description ?? (e.keyword === 'minLength' ? 'a non-empty string' : 'valid')}, got ${describeValue(e.data)}`, segs);
    case 'minItems':
      return at.error(`Expected \`${name}\` to list at least ${(e.params as { limit: number }).limit} item(s)`, segs);
    case 'maxProperties':
    case 'minProperties':
      return at.error(`Expected \`${name}\` to be ${parent.description ?? `an object with ${e.message}`}, got ${describeValue(e.data)}`, segs);
    case 'uniqueItems':
      return at.error(`Expected \`${name}\` to have no duplicates, got ${describeValue(e.data)}`, segs);
    default:
      return at.error(e.message ?? 'invalid', segs);
  }
}

/** ajv reports a failing branch's details and its summary; keep the most specific per path. */
function pickErrors(errors: ErrorObject[]): ErrorObject[] {
  const paths = new Set(errors.map((e) => e.instancePath));
  return errors.filter((e) => {
    if (e.keyword !== 'oneOf' && e.keyword !== 'anyOf') return true;
    // A oneOf/anyOf summary is useful only when no branch reported anything deeper.
    return ![...paths].some((p) => p !== e.instancePath && p.startsWith(`${e.instancePath}/`));
  });
}

/** Validate `root` against `schema`; throws the first (most specific) error with its position. */
export function validateAgainst<E extends ConfigError>(root: unknown, schema: AnySchema & object, at: YamlLocator<E>): void {
  let v = validators.get(schema);
  if (!v) {
    v = new Ajv({ allErrors: true, verbose: true, strict: true, strictTypes: false }).compile(schema);
    validators.set(schema, v);
  }
  if (v(root)) return;
  const errors = pickErrors([...(v.errors ?? [])]);
  // Deepest first: "steps[2].write.count" beats "steps[2]".
  errors.sort((a, b) => b.instancePath.split('/').length - a.instancePath.split('/').length);
  throw explainSchemaError(errors[0], at);
}
