/** The only place that writes to stdout/stderr. JSON output is one document on stdout. */
import { once } from 'node:events';
import { formatFields, type Logger } from '../util/log.ts';

export async function writeOut(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

export function printJson(value: unknown): Promise<void> {
  return writeOut(`${JSON.stringify(value)}\n`);
}

/** Streams a JSON array item by item so a huge map never sits in memory as one string. */
export async function printJsonArray<T>(items: AsyncIterable<T>): Promise<void> {
  let first = true;
  let buffer = '[';
  for await (const item of items) {
    buffer += (first ? '' : ',\n') + JSON.stringify(item);
    first = false;
    if (buffer.length > 1 << 16) {
      await writeOut(buffer);
      buffer = '';
    }
  }
  await writeOut(`${buffer}]\n`);
}

/** Human-readable output of a command (stdout). */
export function printText(text: string): Promise<void> {
  return writeOut(`${text}\n`);
}

/** Progress and diagnostics (stderr). */
export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Warnings for the user (one stderr line each, `<prefix>: message key=value`), for modules that take a logger. */
export function userWarnings(prefix: string): Pick<Logger, 'warn'> {
  return { warn: (message, fields) => log(`${prefix}: ${message}${formatFields(fields)}`) };
}
