/** POSIX sh quoting for the few commands this module builds itself (exec upload, env export). */

/** Single-quote `s` for a POSIX shell: `it's` → `'it'\''s'`. */
export function shQuote(s: string): string {
  if (s.includes('\0')) throw new TypeError('a shell argument cannot contain a NUL byte');
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `export A='1' B='2'; ` for a POSIX shell, names checked. */
export function exportPrefix(env: Record<string, string>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(env)) {
    if (!ENV_NAME.test(k)) throw new TypeError(`Expected environment variable names to match ${ENV_NAME}, got \`${k}\``);
    if (typeof v !== 'string') throw new TypeError(`Expected environment variable \`${k}\` to be a string, got \`${String(v)}\` (${typeof v})`);
    parts.push(`${k}=${shQuote(v)}`);
  }
  return parts.length === 0 ? '' : `export ${parts.join(' ')}; `;
}
