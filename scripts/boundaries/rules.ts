/**
 * The import-boundary rules of src/ (docs/architecture.md "Modules and who may import whom") as
 * data plus one pure function: `checkFacts(facts, policy)` turns what a file imports and which
 * globals it touches (scan.ts extracts that from the TypeScript AST) into violations.
 *
 * Nothing here reads files or the environment, so the tests can run every rule on hand-made facts.
 */
import { builtinModules } from 'node:module';
import { posix } from 'node:path';

/** How a module specifier appears in the source. */
export type ImportKind =
  | 'import' //          import x from 'm' / import type { T } from 'm'
  | 'side-effect' //     import 'm'
  | 'export' //          export … from 'm'
  | 'dynamic' //         import('m')
  | 'require' //         require('m'), createRequire(…)('m') and friends
  | 'import-equals' //   import x = require('m')
  | 'type-query'; //     typeof import('m') / import('m').T in a type position

export interface ImportFact {
  kind: ImportKind;
  /** The specifier exactly as written. */
  spec: string;
  /** Erased before the code runs: `import type`, `export type`, `import('m')` in a type. */
  typeOnly: boolean;
  line: number;
}

/** A global touched in the file: `process.env` → {name: 'process', prop: 'env'}; bare `process` → prop null. */
export interface GlobalUse {
  name: string;
  prop: string | null;
  line: number;
}

export interface FileFacts {
  /** Path relative to the scanned root, with `/` separators: `src/truth/diff.ts`. */
  file: string;
  imports: ImportFact[];
  /** `import(expr)` or `require(expr)` whose argument is not a string literal. */
  nonLiteral: { kind: 'dynamic' | 'require'; line: number }[];
  /** Calls of `createRequire` (named import, alias, or `<ns>.createRequire`). */
  createRequire: { line: number }[];
  globals: GlobalUse[];
}

export interface Violation {
  file: string;
  line: number;
  rule: RuleId;
  message: string;
}

export type RuleId =
  | 'top-level-file'
  | 'unknown-folder'
  | 'folder-import'
  | 'type-only'
  | 'outside-src'
  | 'effect-module'
  | 'undeclared-module'
  | 'package-imports'
  | 'dynamic-import'
  | 'create-require'
  | 'pure-global'
  | 'cli-only'
  | 'stale-allowance';

export interface Policy {
  /** folder → folders it may import from; its own folder and `util` are always allowed, `*` is everything. */
  allowed: Record<string, readonly string[]>;
  /** folder → folders it may import only types from (`import type`, `export type`). */
  typeOnly: Record<string, readonly string[]>;
  /** Folders without effects: no processes, sockets, threads, HTTP, and no global `process`/`fetch`. */
  pure: readonly string[];
  /** Modules a pure folder may not import at run time (builtins compared without `node:`). */
  effectModules: readonly string[];
  /** Globals a pure folder may not touch. */
  effectGlobals: readonly string[];
  /** Files directly under src/ that may exist (path → why). */
  topLevel: Record<string, string>;
  /** Files whose `import(expr)`/`require(expr)` may be non-literal (path → why). */
  dynamicImport: Record<string, string>;
  /** Files that may call `createRequire` (path → why). */
  createRequire: Record<string, string>;
  /** `path → specifiers` a file may import from outside src/ (relative, as written). */
  outsideSrc: Record<string, readonly string[]>;
  /** `path → properties` of an effect global a file in a pure folder may use (`*` for the bare global). */
  pureGlobals: Record<string, Record<string, readonly string[]>>;
  /** Folders where argv, stdout, console.log and process.exit are allowed. */
  cliFolders: readonly string[];
  /** Packages src/ may import (package.json "dependencies"); null skips the check. */
  dependencies: ReadonlySet<string> | null;
}

/** folder → folders it may import from (its own folder and util/ are always allowed). */
export const ALLOWED: Record<string, readonly string[]> = {
  util: [],
  qcow2: [],
  config: [],
  disk: ['qcow2'],
  'fs/ntfs': ['qcow2'],
  'fs/ext4': ['qcow2'],
  truth: ['qcow2'],
  cbt: ['qcow2', 'disk', 'fs/ntfs', 'fs/ext4', 'truth'],
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

/** Folders whose imports of these other folders must be type-only. */
export const TYPE_ONLY: Record<string, readonly string[]> = { verify: ['truth', 'cbt'] };

/**
 * The pure cores: they compute over bytes they are handed (files are read through node:fs, which
 * is allowed) and never start processes, open sockets or threads, or read the process' state.
 */
export const PURE: readonly string[] = ['util', 'qcow2', 'disk', 'fs/ntfs', 'fs/ext4', 'truth', 'cbt', 'verify', 'trackers', 'config'];

export const EFFECT_MODULES: readonly string[] = [
  'child_process',
  'net',
  'dgram',
  'dns',
  'http',
  'https',
  'http2',
  'tls',
  'worker_threads',
  'cluster',
  'process',
  'inspector',
  'execa',
  'ssh2',
  'dockerode',
];

export const EFFECT_GLOBALS: readonly string[] = ['process', 'fetch', 'WebSocket'];

export const DEFAULT_POLICY: Policy = {
  allowed: ALLOWED,
  typeOnly: TYPE_ONLY,
  pure: PURE,
  effectModules: EFFECT_MODULES,
  effectGlobals: EFFECT_GLOBALS,
  topLevel: {},
  dynamicImport: {
    'src/cbt/registry.ts': 'the decoder plugin loader: `--decoder ./my-decoder.js` imports a user module by path',
  },
  createRequire: {
    'src/qcow2/block-source.ts': 'loads the optional SEEK_DATA/SEEK_HOLE addon (native/hostfile.c); ESM cannot import .node files',
  },
  outsideSrc: {
    'src/qcow2/block-source.ts': ['../../native/build/Release/hostfile.node'],
  },
  pureGlobals: {
    'src/util/log.ts': { process: ['env', 'stderr'] }, // the logger: DEBUG=cbt:* and the one sanctioned stderr writer
    'src/util/process.ts': { process: ['kill'] }, // processAlive: kill(pid, 0) only probes
  },
  cliFolders: ['cli'],
  dependencies: null,
};

/** Folder key of a path relative to the root: `src/fs/ntfs/x.ts` → `fs/ntfs`, `src/cbt/dm-era/x.ts` → `cbt`; `''` for a file directly under src/, null outside src/. */
export function folderOf(file: string): string | null {
  const parts = posix.normalize(file).split('/');
  if (parts[0] !== 'src' || parts.length < 2) return null;
  if (parts.length === 2) return '';
  if (parts[1] === 'fs' && parts.length >= 4) return `fs/${parts[2]}`;
  return parts[1];
}

const BUILTINS = new Set(builtinModules.map((m) => m.replace(/^node:/, '')));

/** `node:fs/promises` → `fs/promises`; `@scope/pkg/sub` → `@scope/pkg`; `execa/x` → `execa`. */
export function moduleName(spec: string): { builtin: boolean; name: string; root: string } {
  if (spec.startsWith('node:')) {
    const name = spec.slice(5);
    return { builtin: true, name, root: name.split('/')[0] };
  }
  const parts = spec.split('/');
  const pkg = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  if (BUILTINS.has(spec) || BUILTINS.has(pkg)) return { builtin: true, name: spec, root: parts[0] };
  return { builtin: false, name: spec, root: pkg };
}

function isPathSpec(spec: string): boolean {
  return spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('file:');
}

/** Where a path specifier lands, relative to the root; null if it cannot be resolved statically. */
function resolveSpec(file: string, spec: string, root: string | undefined): string | null {
  if (spec.startsWith('.')) return posix.normalize(posix.join(posix.dirname(file), spec));
  let abs = spec;
  if (spec.startsWith('file:')) {
    try {
      abs = new URL(spec).pathname;
    } catch {
      return null;
    }
  }
  if (!root) return null;
  return posix.relative(root, abs);
}

export interface CheckResult {
  violations: Violation[];
  /** Allowances that were needed, as `kind:file[:detail]`, for the stale-allowance check. */
  used: Set<string>;
}

/** Every violation in one file. `root` (absolute, `/`-separated) resolves absolute and file: specifiers. */
export function checkFacts(facts: FileFacts, policy: Policy = DEFAULT_POLICY, root?: string): CheckResult {
  const out: Violation[] = [];
  const used = new Set<string>();
  const file = facts.file;
  const add = (line: number, rule: RuleId, message: string) => out.push({ file, line, rule, message });
  const from = folderOf(file);
  if (from === null) return { violations: out, used };

  if (from === '') {
    if (file in policy.topLevel) used.add(`topLevel:${file}`);
    else add(1, 'top-level-file', `a file directly under src/ (put it in a folder of docs/architecture.md, or allowlist it in scripts/boundaries/rules.ts)`);
  } else if (!(from in policy.allowed)) {
    add(1, 'unknown-folder', `folder ${from}/ is not in the import map (add it to ALLOWED in scripts/boundaries/rules.ts and docs/architecture.md)`);
  }
  // A top-level file or an unknown folder is checked as if it were cli/ (no folder limits) after
  // its own violation: one mistake, one line.
  const allowed = from !== '' && from in policy.allowed ? policy.allowed[from] : ['*'];
  const pure = policy.pure.includes(from);
  const isCli = policy.cliFolders.includes(from);

  for (const imp of facts.imports) {
    const { spec, line } = imp;
    if (spec.startsWith('#')) {
      add(line, 'package-imports', `imports ${spec}: package.json "imports" aliases hide which folder is imported`);
      continue;
    }
    if (isPathSpec(spec)) {
      const target = resolveSpec(file, spec, root);
      const to = target === null ? null : folderOf(target);
      if (to === null) {
        if ((policy.outsideSrc[file] ?? []).includes(spec)) used.add(`outsideSrc:${file}:${spec}`);
        else add(line, 'outside-src', `imports ${spec}, outside src/`);
        continue;
      }
      if (to === from) continue;
      if (to === '') {
        if (!allowed.includes('*')) add(line, 'folder-import', `imports ${spec}: ${from}/ may not import a top-level file`);
        continue;
      }
      if (!(to in policy.allowed)) {
        add(line, 'unknown-folder', `imports ${spec}: folder ${to}/ is not in the import map`);
        continue;
      }
      if (to === 'util') continue; // shared leaf helpers: anyone may use them
      if (!allowed.includes('*') && !allowed.includes(to)) {
        add(line, 'folder-import', `imports ${spec}: ${from}/ may not import ${to}/`);
        continue;
      }
      if (policy.typeOnly[from]?.includes(to) && !imp.typeOnly) {
        add(line, 'type-only', `imports ${spec}: ${from}/ may import only types from ${to}/ (use \`import type\`)`);
      }
      continue;
    }
    const mod = moduleName(spec);
    if (!mod.builtin && policy.dependencies && !policy.dependencies.has(mod.root) && !imp.typeOnly) {
      add(line, 'undeclared-module', `imports ${spec}: ${mod.root} is not in package.json "dependencies"`);
    }
    if (pure && !imp.typeOnly && policy.effectModules.includes(mod.root)) {
      add(line, 'effect-module', `imports ${spec}: ${from}/ is a pure core (no processes, sockets, threads)`);
    }
  }

  for (const d of facts.nonLiteral) {
    if (file in policy.dynamicImport) used.add(`dynamicImport:${file}`);
    else add(d.line, 'dynamic-import', `${d.kind === 'dynamic' ? 'import' : 'require'}() of a computed specifier: the checker cannot see what it loads`);
  }
  for (const c of facts.createRequire) {
    if (file in policy.createRequire) used.add(`createRequire:${file}`);
    else add(c.line, 'create-require', 'createRequire: CommonJS loading bypasses the import rules');
  }

  for (const g of facts.globals) {
    const what = g.prop === null ? g.name : `${g.name}.${g.prop}`;
    if (!isCli) {
      const cliOnly =
        (g.name === 'process' && (g.prop === 'argv' || g.prop === 'stdout' || g.prop === 'exit')) || (g.name === 'console' && g.prop === 'log');
      if (cliOnly) add(g.line, 'cli-only', `uses ${what} (only ${policy.cliFolders.join(', ')}/ may read argv, print to stdout or exit)`);
    }
    if (pure && policy.effectGlobals.includes(g.name)) {
      const ok = policy.pureGlobals[file]?.[g.name] ?? [];
      if (ok.includes(g.prop ?? '*')) used.add(`pureGlobals:${file}:${g.name}.${g.prop ?? '*'}`);
      else add(g.line, 'pure-global', `uses ${what}: ${from}/ is a pure core (take it as a parameter)`);
    }
  }
  return { violations: out, used };
}

/** Allowances of `policy` for the files in `present` that no file needed. */
export function staleAllowances(policy: Policy, used: ReadonlySet<string>, present: ReadonlySet<string>): Violation[] {
  const out: Violation[] = [];
  const stale = (file: string, what: string) => {
    if (present.has(file)) out.push({ file, line: 1, rule: 'stale-allowance', message: `${what} is allowlisted but not used (remove it from scripts/boundaries/rules.ts)` });
  };
  for (const f of Object.keys(policy.topLevel)) if (!used.has(`topLevel:${f}`)) stale(f, 'a top-level file');
  for (const f of Object.keys(policy.dynamicImport)) if (!used.has(`dynamicImport:${f}`)) stale(f, 'a computed import()');
  for (const f of Object.keys(policy.createRequire)) if (!used.has(`createRequire:${f}`)) stale(f, 'createRequire');
  for (const [f, specs] of Object.entries(policy.outsideSrc)) for (const s of specs) if (!used.has(`outsideSrc:${f}:${s}`)) stale(f, `import of ${s}`);
  for (const [f, globals] of Object.entries(policy.pureGlobals)) {
    for (const [g, props] of Object.entries(globals)) for (const p of props) if (!used.has(`pureGlobals:${f}:${g}.${p}`)) stale(f, `${g}.${p}`);
  }
  return out;
}
