/**
 * A tiny named logger shared by the modules (`cbt:qmp`, `cbt:ssh`, `cbt:vm`…): lines on stderr.
 * Debug lines are printed only when the env var DEBUG names the logger, like the `debug`
 * package: `DEBUG=cbt:*`, `DEBUG=cbt:qmp,cbt:ssh`, `DEBUG=*,-cbt:qmp`. Warnings always.
 */

export type LogFields = Record<string, unknown>;

export interface Logger {
  readonly name: string;
  readonly enabled: boolean;
  debug(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
}

function patternToRegExp(p: string): RegExp {
  return new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/** Is `name` enabled by a DEBUG-style spec (comma/space separated, `*` wildcard, `-` negation)? */
export function debugEnabled(name: string, spec: string | undefined = process.env.DEBUG): boolean {
  if (!spec) return false;
  let on = false;
  for (const raw of spec.split(/[\s,]+/)) {
    if (!raw) continue;
    const negate = raw.startsWith('-');
    const re = patternToRegExp(negate ? raw.slice(1) : raw);
    if (re.test(name)) on = !negate;
  }
  return on;
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** ` key=value` pairs of the defined fields, values quoted when they need it. */
export function formatFields(fields?: LogFields): string {
  let text = '';
  if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) text += ` ${k}=${formatValue(v)}`;
  return text;
}

function format(name: string, level: string, message: string, fields?: LogFields): string {
  return `${new Date().toISOString()} ${name} ${level} ${message}${formatFields(fields)}\n`;
}

export function createLogger(name: string): Logger {
  const enabled = debugEnabled(name);
  return {
    name,
    enabled,
    debug(message, fields) {
      if (enabled) process.stderr.write(format(name, 'debug', message, fields));
    },
    warn(message, fields) {
      process.stderr.write(format(name, 'warn', message, fields));
    },
  };
}
