/**
 * Reading run records back (compare, trend, re-rendering): a run directory or a `run.json`,
 * size-bounded, parsed, version-checked and validated against the published schema.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { ReportInputError } from './errors.ts';
import { RUN_RECORD_SCHEMA } from './run-record-schema.ts';
import { SCHEMA_VERSION, type RunRecord } from './run-record.ts';

/** Records larger than this are refused before reading. */
export const MAX_RECORD_BYTES = 256 * 2 ** 20;

let validator: ReturnType<Ajv2020['compile']> | undefined;

/** Schema errors of `value` (empty when it is a valid run record). */
export function runRecordErrors(value: unknown): ErrorObject[] {
  validator ??= new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictTuples: false }).compile(RUN_RECORD_SCHEMA);
  return validator(value) ? [] : [...(validator.errors ?? [])];
}

function describe(e: ErrorObject): string {
  const at = e.instancePath || '/';
  if (e.keyword === 'additionalProperties') return `${at}: unknown field \`${(e.params as { additionalProperty: string }).additionalProperty}\``;
  if (e.keyword === 'required') return `${at}: missing field \`${(e.params as { missingProperty: string }).missingProperty}\``;
  return `${at}: ${e.message ?? e.keyword}`;
}

/** Validates a parsed record; `file` names it in errors. */
export function validateRunRecord(value: unknown, file: string): RunRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ReportInputError(file, 'not a run record (expected a JSON object)');
  const version = (value as { schemaVersion?: unknown }).schemaVersion;
  if (version !== SCHEMA_VERSION) {
    const newer = typeof version === 'number' && version > SCHEMA_VERSION;
    throw new ReportInputError(file, `run record schemaVersion ${JSON.stringify(version)} ${newer ? 'is newer than' : 'is not'} the version this harness reads (${SCHEMA_VERSION})`);
  }
  const errors = runRecordErrors(value);
  if (errors.length > 0) {
    // Deepest errors first: the summary of a oneOf says less than its branches.
    const lines = [...new Set(errors.map(describe))].slice(0, 8);
    throw new ReportInputError(file, `not a valid run record (${errors.length} schema error${errors.length === 1 ? '' : 's'}):\n  ${lines.join('\n  ')}`);
  }
  const record = value as RunRecord;
  const seen = new Set<string>();
  for (const job of record.jobs) {
    if (seen.has(job.id)) throw new ReportInputError(file, `duplicate job id \`${job.id}\``);
    seen.add(job.id);
  }
  return record;
}

export function parseRunRecord(text: string, file: string): RunRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ReportInputError(file, `not JSON: ${(error as Error).message}`, { cause: error });
  }
  return validateRunRecord(value, file);
}

/** The record file of a run directory, or `path` itself when it is a file. */
export async function recordPath(path: string): Promise<string> {
  let st;
  try {
    st = await stat(path);
  } catch (error) {
    throw new ReportInputError(path, `cannot read: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (error as Error).message}`, { cause: error });
  }
  if (!st.isDirectory()) return path;
  const file = join(path, 'run.json');
  try {
    await stat(file);
  } catch (error) {
    throw new ReportInputError(path, 'a run directory must hold run.json (the run record); none found', { cause: error });
  }
  return file;
}

/** Reads a run record from a run directory or a record file. */
export async function readRunRecord(path: string, options: { signal?: AbortSignal } = {}): Promise<RunRecord> {
  const file = await recordPath(path);
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new ReportInputError(file, 'not a regular file');
    if (st.size > MAX_RECORD_BYTES) throw new ReportInputError(file, `the record is ${st.size} bytes; at most ${MAX_RECORD_BYTES} are read`);
    text = await readFile(file, { encoding: 'utf8', signal: options.signal });
  } catch (error) {
    if (error instanceof ReportInputError) throw error;
    if ((error as Error).name === 'AbortError') throw error;
    throw new ReportInputError(file, `cannot read: ${(error as Error).message}`, { cause: error });
  }
  return parseRunRecord(text, file);
}
