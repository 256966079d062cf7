/**
 * Named logger `cbt:vm` on stderr: debug lines only when DEBUG names it (`DEBUG=cbt:*`), like the
 * `debug` package and the other modules' loggers; warnings always.
 */
type Fields = Record<string, unknown>;

function enabled(name: string): boolean {
  const spec = process.env.DEBUG ?? '';
  let on = false;
  for (const raw of spec.split(/[\s,]+/)) {
    if (!raw) continue;
    const neg = raw.startsWith('-');
    const re = new RegExp(`^${(neg ? raw.slice(1) : raw).replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    if (re.test(name)) on = !neg;
  }
  return on;
}

function line(name: string, level: string, message: string, fields?: Fields): string {
  let s = `${new Date().toISOString()} ${name} ${level} ${message}`;
  for (const [k, v] of Object.entries(fields ?? {})) if (v !== undefined) s += ` ${k}=${typeof v === 'string' && !/[\s"=]/.test(v) ? v : JSON.stringify(v instanceof Error ? v.message : v)}`;
  return `${s}\n`;
}

export function createLogger(name: string): { debug(m: string, f?: Fields): void; warn(m: string, f?: Fields): void } {
  const on = enabled(name);
  return {
    debug: (m, f) => {
      if (on) process.stderr.write(line(name, 'debug', m, f));
    },
    warn: (m, f) => {
      process.stderr.write(line(name, 'warn', m, f));
    },
  };
}
