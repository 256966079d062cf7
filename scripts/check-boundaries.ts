/**
 * Import boundaries between src/ folders (docs/architecture.md "Who may import whom"), and
 * "only cli/ touches argv and stdout". Run in `npm run lint`; exits 1 listing every violation.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** folder → folders it may import from (its own folder is always allowed). */
export const ALLOWED: Record<string, string[]> = {
  util: [],
  qcow2: [],
  config: [],
  disk: ['qcow2'],
  'fs/ntfs': ['qcow2'],
  truth: ['qcow2'],
  cbt: ['qcow2', 'disk', 'fs/ntfs', 'truth'],
  verify: ['truth', 'cbt'],
  qmp: [],
  ssh: [],
  vm: ['qmp'],
  guest: ['ssh', 'vm', 'qmp'],
  hosts: ['ssh', 'vm', 'qmp', 'guest', 'config'],
  scheduler: ['hosts'],
  trackers: [],
  scenario: ['config', 'qcow2', 'disk', 'fs/ntfs', 'truth', 'cbt', 'verify', 'qmp', 'vm', 'guest', 'ssh', 'hosts', 'scheduler', 'report', 'trackers'],
  report: ['verify', 'config'],
  cli: ['*'],
};

/** Folders whose imports of other folders must be type-only. */
const TYPE_ONLY: Record<string, string[]> = { verify: ['truth', 'cbt'] };

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

function folderOf(file: string): string | null {
  const rel = relative(src, file).split('/');
  if (rel.length < 2) return null;
  if (rel[0] === 'fs' && rel.length >= 3) return `fs/${rel[1]}`;
  return rel[0];
}

function* walk(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.name.endsWith('.ts')) yield p;
  }
}

export function check(): string[] {
  const problems: string[] = [];
  const importRe = /^\s*(import|export)\s+(type\s+)?[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const file of walk(src)) {
    const from = folderOf(file);
    if (!from) continue;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(importRe)) {
      const spec = m[3] ?? m[4];
      const typeOnly = Boolean(m[2]);
      if (!spec.startsWith('.')) continue;
      const target = folderOf(resolve(dirname(file), spec));
      if (!target || target === from) continue;
      const allowed = ALLOWED[from];
      if (target === 'util') continue; // shared leaf helpers (logger, PRNG): anyone may use them
      const where = `${relative(root, file)}: imports ${spec}`;
      if (!allowed) problems.push(`${where} (folder ${from} has no entry in ALLOWED)`);
      else if (!allowed.includes('*') && !allowed.includes(target)) problems.push(`${where} (${from}/ may not import ${target}/)`);
      else if (TYPE_ONLY[from]?.includes(target) && !typeOnly) problems.push(`${where} (${from}/ may import only types from ${target}/)`);
    }
    if (from !== 'cli') {
      for (const [re, what] of [
        [/process\.argv/, 'reads process.argv'],
        [/process\.stdout/, 'writes to stdout'],
        [/console\.log\(/, 'prints with console.log'],
        [/process\.exit\(/, 'calls process.exit'],
      ] as const) {
        if (re.test(text)) problems.push(`${relative(root, file)}: ${what} (only cli/ may)`);
      }
    }
  }
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = check();
  for (const p of problems) process.stderr.write(`${p}\n`);
  if (problems.length > 0) process.exitCode = 1;
  else process.stderr.write('import boundaries: ok\n');
}
