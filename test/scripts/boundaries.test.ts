/**
 * scripts/check-boundaries.ts: a probe tree breaking every rule reports each violation at its
 * file and line and nothing else; a clean probe tree passes; the real src/ passes.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { execa } from 'execa';
import { checkFacts, DEFAULT_POLICY, type FileFacts } from '../../scripts/boundaries/rules.ts';
import { extractFacts, scanTree } from '../../scripts/boundaries/scan.ts';
import { tempDir } from '../helpers/tools.ts';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cliScript = join(repo, 'scripts/check-boundaries.ts');

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
}

async function runCheck(root: string) {
  const r = await execa(process.execPath, [cliScript, root], { reject: false });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** `file:line: rule` of each output line. */
function keys(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const m = /^([^:]+):(\d+): ([a-z-]+): /.exec(l);
      return m ? `${m[1]}:${m[2]}: ${m[3]}` : `unparsed ${l}`;
    });
}

const PACKAGE = JSON.stringify({ name: 'probe', dependencies: { execa: '*', ssh2: '*', dockerode: '*' }, devDependencies: { typescript: '*' } });

/** The line number of each statement is the index in the array + 1. */
const lines = (...l: string[]) => `${l.join('\n')}\n`;

const BAD: Record<string, string> = {
  'package.json': PACKAGE,
  'src/truth/x.ts': lines(
    "import { spawn } from 'node:child_process';", // 1 effect-module
    "import { execa } from 'execa';", // 2 effect-module
    "import { Client } from 'ssh2';", // 3 effect-module
    "import 'node:net';", // 4 effect-module (side effect)
    "import { createRequire as cr } from 'node:module';", // 5 —
    "import { startVm } from '../vm/index.ts';", // 6 folder-import
    "import { thing } from '../mystery/a.ts';", // 7 unknown-folder
    "import type { Socket } from 'node:net';", // 8 — (type-only: no effect)
    "import { readChain } from '../qcow2/index.ts';", // 9 — (allowed)
    "export { default as Docker } from 'dockerode';", // 10 effect-module (re-export)
    'const req = cr(import.meta.url);', // 11 create-require
    "const legacy = req('node:dgram');", // 12 effect-module (require)
    "const name = 'node:' + 'worker_threads';", // 13 —
    'const mod = await import(name);', // 14 dynamic-import
    "const lit = await import('node:http');", // 15 effect-module (dynamic)
    'export const home = process.env.HOME;', // 16 pure-global
    'export const out = globalThis.process.stdout;', // 17 pure-global + cli-only
    'console.log(spawn, execa, Client, startVm, thing, readChain, legacy, mod, lit, Socket);', // 18 cli-only
    "export const cbt = require('../cbt/index.ts');", // 19 folder-import (require)
    "export const cp = process.getBuiltinModule('node:child_process');", // 20 effect-module + pure-global
    "export type V = typeof import('../vm/index.ts');", // 21 folder-import (type-only still obeys the map)
    "export const s = 'process.stdout console.log(1) import(\"node:net\")';", // 22 — (a string)
  ),
  'src/stray.ts': lines('export const x = 1;'),
  'src/mystery/a.ts': lines('export const thing = 1;'),
  'src/verify/v.ts': lines(
    "import type { BlockRun } from '../truth/index.ts';", // 1 —
    "import { diffImages } from '../truth/index.ts';", // 2 type-only
    "import { type Claim } from '../cbt/index.ts';", // 3 type-only (inline `type` still loads the module)
    'export type T = [BlockRun, Claim, typeof diffImages];',
  ),
  'src/cbt/other.ts': lines('export const load = (p: string) => import(p);'), // 1 dynamic-import
  'src/qcow2/n.ts': lines("import x from '../../native/thing.node';", 'export { x };'), // 1 outside-src
  'src/vm/v.ts': lines(
    "import pad from 'left-pad';", // 1 undeclared-module
    "import ts from 'typescript';", // 2 undeclared-module (a devDependency)
    "import '#internal';", // 3 package-imports
    'if (process.env.X) process.exit(1);', // 4 cli-only (process.env is fine outside pure cores)
    'export { pad, ts };',
  ),
  'src/util/log.ts': lines('process.stderr.write(process.env.DEBUG ?? "");', 'export const dir = process.cwd();'), // 2 pure-global
  'src/util/process.ts': lines('export const alive = () => true;'), // stale-allowance: no process.kill any more
};

const EXPECTED = [
  'src/cbt/other.ts:1: dynamic-import',
  'src/mystery/a.ts:1: unknown-folder',
  'src/qcow2/n.ts:1: outside-src',
  'src/stray.ts:1: top-level-file',
  'src/truth/x.ts:1: effect-module',
  'src/truth/x.ts:2: effect-module',
  'src/truth/x.ts:3: effect-module',
  'src/truth/x.ts:4: effect-module',
  'src/truth/x.ts:6: folder-import',
  'src/truth/x.ts:7: unknown-folder',
  'src/truth/x.ts:10: effect-module',
  'src/truth/x.ts:11: create-require',
  'src/truth/x.ts:12: effect-module',
  'src/truth/x.ts:14: dynamic-import',
  'src/truth/x.ts:15: effect-module',
  'src/truth/x.ts:16: pure-global',
  'src/truth/x.ts:17: cli-only',
  'src/truth/x.ts:17: pure-global',
  'src/truth/x.ts:18: cli-only',
  'src/truth/x.ts:19: folder-import',
  'src/truth/x.ts:20: effect-module',
  'src/truth/x.ts:20: pure-global',
  'src/truth/x.ts:21: folder-import',
  'src/util/log.ts:2: pure-global',
  'src/util/process.ts:1: stale-allowance',
  'src/verify/v.ts:2: type-only',
  'src/verify/v.ts:3: type-only',
  'src/vm/v.ts:1: undeclared-module',
  'src/vm/v.ts:2: undeclared-module',
  'src/vm/v.ts:3: package-imports',
  'src/vm/v.ts:4: cli-only',
];

const CLEAN: Record<string, string> = {
  'package.json': PACKAGE,
  'src/cli/main.ts': lines("import { run } from '../scenario/run.ts';", "import { execa } from 'execa';", 'console.log(process.argv, run, execa);', 'process.exit(0);'),
  'src/scenario/run.ts': lines("import { diff } from '../truth/ok.ts';", "import { spawn } from 'node:child_process';", 'export const run = () => [diff, spawn, process.cwd()];'),
  'src/truth/ok.ts': lines("import { readFile } from 'node:fs/promises';", "import type { Socket } from 'node:net';", "import { read } from '../qcow2/index.ts';", "import { log } from '../util/log.ts';", 'export const diff = (s: Socket) => [readFile, read, log, s];'),
  'src/qcow2/index.ts': lines('export const read = 1;'),
  'src/util/log.ts': lines('export const log = (m: string) => { if (process.env.DEBUG) process.stderr.write(m); };'),
  'src/cbt/registry.ts': lines('export const load = (p: string) => import(p);'),
  'src/verify/v.ts': lines("import type { diff } from '../truth/ok.ts';", 'export type D = typeof diff;'),
};

let badRoot: string;
let cleanRoot: string;
let bad: { exitCode: number | undefined; stdout: string; stderr: string };
let cleanups: (() => Promise<void>)[] = [];

test.before(async () => {
  const a = await tempDir('cbt-bounds-bad-');
  const b = await tempDir('cbt-bounds-clean-');
  cleanups = [a.cleanup, b.cleanup];
  badRoot = a.dir;
  cleanRoot = b.dir;
  await writeTree(badRoot, BAD);
  await writeTree(cleanRoot, CLEAN);
  bad = await runCheck(badRoot);
});
test.after.always(async () => {
  for (const c of cleanups) await c();
});

for (const key of EXPECTED) {
  test(`probe: reports ${key}`, (t) => {
    t.true(keys(bad.stdout).includes(key), bad.stdout);
  });
}

test('probe: nothing beyond the expected violations, in file and line order, exit 1', (t) => {
  t.deepEqual(keys(bad.stdout), EXPECTED);
  t.is(bad.exitCode, 1, bad.stderr);
  t.regex(bad.stderr, new RegExp(`${EXPECTED.length} violation`));
});

test('probe: each line is file:line: rule: message', (t) => {
  const first = bad.stdout.split('\n')[0];
  t.is(first, 'src/cbt/other.ts:1: dynamic-import: import() of a computed specifier: the checker cannot see what it loads');
});

test('a clean probe tree passes with exit 0 (allowlisted plugin loader and logger included)', async (t) => {
  const r = await runCheck(cleanRoot);
  t.is(r.stdout, '');
  t.is(r.exitCode, 0, r.stderr);
});

test('the same computed import() is allowed only in the allowlisted file', async (t) => {
  // src/cbt/registry.ts passes in the clean tree; the same text in src/cbt/other.ts fails above.
  t.is(BAD['src/cbt/other.ts'], CLEAN['src/cbt/registry.ts']);
  t.true(keys(bad.stdout).includes('src/cbt/other.ts:1: dynamic-import'));
  t.false(keys((await runCheck(cleanRoot)).stdout).some((k) => k.startsWith('src/cbt/registry.ts')));
});

test('exit 2 when the root has no src/', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-bounds-empty-');
  try {
    const r = await runCheck(dir);
    t.is(r.exitCode, 2);
    t.regex(r.stderr, /src is not a directory/);
  } finally {
    await cleanup();
  }
});

test('the real src/ has no violations', async (t) => {
  const { files, violations } = scanTree(repo);
  t.true(files > 100, `scanned ${files} files`);
  t.deepEqual(violations, []);
  const r = await runCheck(repo);
  t.is(r.exitCode, 0, r.stdout + r.stderr);
});

test('every allowance names a file that exists (so the stale-allowance check sees it)', (t) => {
  const files = [
    ...Object.keys(DEFAULT_POLICY.topLevel),
    ...Object.keys(DEFAULT_POLICY.dynamicImport),
    ...Object.keys(DEFAULT_POLICY.createRequire),
    ...Object.keys(DEFAULT_POLICY.outsideSrc),
    ...Object.keys(DEFAULT_POLICY.pureGlobals),
  ];
  t.true(files.length > 0);
  for (const f of files) t.true(existsSync(join(repo, f)), f);
});

test('extractFacts: import forms and their type-only flag', (t) => {
  const f = extractFacts(
    'src/x/a.ts',
    lines(
      "import type { A } from './a.ts';",
      "import { type B } from './b.ts';",
      "export type { C } from './c.ts';",
      "export * from './d.ts';",
      "import './e.ts';",
      "const f = await import(`./f.ts`);",
      "type G = import('./g.ts').G;",
    ),
  );
  t.deepEqual(
    f.imports.map((i) => [i.kind, i.spec, i.typeOnly, i.line]),
    [
      ['import', './a.ts', true, 1],
      ['import', './b.ts', false, 2],
      ['export', './c.ts', true, 3],
      ['export', './d.ts', false, 4],
      ['side-effect', './e.ts', false, 5],
      ['dynamic', './f.ts', false, 6],
      ['type-query', './g.ts', true, 7],
    ],
  );
});

test('extractFacts: globals are references, not names, strings or types', (t) => {
  const f = extractFacts(
    'src/x/a.ts',
    lines(
      'const o = { process: 1, console: 2 };', // 1 property names
      'o.process; o.console;', // 2 property accesses
      "const s = 'process.env';", // 3 string
      'type P = typeof process;', // 4 type position
      'function f(fetch: number) { return fetch; }', // 5 parameter name (its use is still seen)
      "process['stdout'];", // 6
      'const { env } = process;', // 7 bare
    ),
  );
  t.deepEqual(
    f.globals.map((g) => [g.name, g.prop, g.line]),
    [
      ['fetch', null, 5],
      ['process', 'stdout', 6],
      ['process', null, 7],
    ],
  );
});

test('checkFacts: util/ is open to every folder, the own folder always allowed, cli/ may import anything', (t) => {
  const facts = (file: string, ...specs: string[]): FileFacts => ({
    file,
    imports: specs.map((spec, i) => ({ kind: 'import', spec, typeOnly: false, line: i + 1 })),
    nonLiteral: [],
    createRequire: [],
    globals: [],
  });
  t.deepEqual(checkFacts(facts('src/qcow2/a.ts', '../util/log.ts', './b.ts', '../qcow2/c.ts')).violations, []);
  t.deepEqual(checkFacts(facts('src/cli/a.ts', '../vm/index.ts', '../hosts/index.ts', 'node:child_process')).violations, []);
  t.deepEqual(
    checkFacts(facts('src/fs/ntfs/a.ts', '../../qcow2/index.ts', '../../disk/index.ts')).violations.map((v) => `${v.line}: ${v.rule}: ${v.message}`),
    ['2: folder-import: imports ../../disk/index.ts: fs/ntfs/ may not import disk/'],
  );
  t.deepEqual(
    checkFacts(facts('src/fs/ext4/a.ts', '../../qcow2/index.ts', '../ntfs/index.ts', '../../cbt/index.ts')).violations.map((v) => `${v.line}: ${v.rule}: ${v.message}`),
    ['2: folder-import: imports ../ntfs/index.ts: fs/ext4/ may not import fs/ntfs/', '3: folder-import: imports ../../cbt/index.ts: fs/ext4/ may not import cbt/'],
  );
  t.deepEqual(checkFacts(facts('src/cbt/a.ts', '../fs/ext4/index.ts', '../fs/ntfs/index.ts')).violations, []);
  t.true(DEFAULT_POLICY.pure.includes('fs/ext4'));
});
