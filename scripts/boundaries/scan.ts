/**
 * Reads src/ and extracts, from each file's TypeScript AST (ts.createSourceFile, no type
 * checking), every module it loads and the effect globals it touches; rules.ts judges them.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import ts from 'typescript';
import { checkFacts, DEFAULT_POLICY, staleAllowances, type FileFacts, type ImportFact, type Policy, type Violation } from './rules.ts';

/** Globals worth recording: the effect globals plus those the cli-only rule looks at. */
const WATCHED = new Set(['process', 'console', 'fetch', 'WebSocket']);
const SOURCE_EXT = new Set(['.ts', '.mts', '.cts', '.tsx', '.js', '.mjs', '.cjs']);

function scriptKind(file: string): ts.ScriptKind {
  const ext = extname(file);
  if (ext === '.tsx') return ts.ScriptKind.TSX;
  if (ext === '.js' || ext === '.mjs' || ext === '.cjs') return ts.ScriptKind.JS;
  return ts.ScriptKind.TS;
}

function literalText(node: ts.Node | undefined): string | null {
  if (node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) return node.text;
  return null;
}

/** `x` is the name being declared or a property name, not a reference to a global. */
function isNameNotReference(node: ts.Identifier): boolean {
  const p = node.parent;
  if (ts.isPropertyAccessExpression(p) && p.name === node) return true;
  if (ts.isQualifiedName(p) && p.right === node) return true;
  if (ts.isLabeledStatement(p) && p.label === node) return true;
  if (
    (ts.isVariableDeclaration(p) ||
      ts.isParameter(p) ||
      ts.isFunctionDeclaration(p) ||
      ts.isFunctionExpression(p) ||
      ts.isClassDeclaration(p) ||
      ts.isClassExpression(p) ||
      ts.isMethodDeclaration(p) ||
      ts.isPropertyDeclaration(p) ||
      ts.isPropertyAssignment(p) ||
      ts.isPropertySignature(p) ||
      ts.isMethodSignature(p) ||
      ts.isGetAccessor(p) ||
      ts.isSetAccessor(p) ||
      ts.isEnumMember(p) ||
      ts.isInterfaceDeclaration(p) ||
      ts.isTypeAliasDeclaration(p) ||
      ts.isEnumDeclaration(p) ||
      ts.isModuleDeclaration(p)) &&
    p.name === node
  ) {
    return true;
  }
  if (ts.isBindingElement(p) && (p.name === node || p.propertyName === node)) return true;
  if (ts.isImportSpecifier(p) || ts.isExportSpecifier(p) || ts.isImportClause(p) || ts.isNamespaceImport(p) || ts.isNamespaceExport(p)) return true;
  if (ts.isBreakOrContinueStatement(p)) return true;
  return false;
}

/** The property read off `expr` when `expr` is `<expr>.p`, `<expr>?.p` or `<expr>['p']`. */
function propertyOf(expr: ts.Expression): string | null {
  const p = expr.parent;
  if (ts.isPropertyAccessExpression(p) && p.expression === expr) return p.name.text;
  if (ts.isElementAccessExpression(p) && p.expression === expr) return literalText(p.argumentExpression) ?? '[computed]';
  return null;
}

const MODULE_SPECS = new Set(['module', 'node:module']);

/** What `text` (the file `file`, relative to the root with `/`) imports and touches. */
export function extractFacts(file: string, text: string): FileFacts {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, scriptKind(file));
  const facts: FileFacts = { file, imports: [], nonLiteral: [], createRequire: [], globals: [] };
  const lineOf = (node: ts.Node) => sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
  const addImport = (kind: ImportFact['kind'], spec: string, typeOnly: boolean, node: ts.Node) => facts.imports.push({ kind, spec, typeOnly, line: lineOf(node) });

  // Names under which createRequire and the require functions it made are bound
  // (`<namespace>.createRequire` is matched by its property name).
  const createRequireNames = new Set(['createRequire']);
  const requireNames = new Set(['require']);

  const isCreateRequireCallee = (e: ts.Expression): boolean =>
    (ts.isIdentifier(e) && createRequireNames.has(e.text)) ||
    (ts.isPropertyAccessExpression(e) && e.name.text === 'createRequire') ||
    (ts.isElementAccessExpression(e) && literalText(e.argumentExpression) === 'createRequire');

  const isRequireCallee = (e: ts.Expression): boolean =>
    (ts.isIdentifier(e) && requireNames.has(e.text)) || (ts.isCallExpression(e) && isCreateRequireCallee(e.expression));

  function recordGlobal(name: string, at: ts.Expression) {
    facts.globals.push({ name, prop: propertyOf(at), line: lineOf(at) });
  }

  function visit(node: ts.Node, inType: boolean): void {
    if (ts.isImportDeclaration(node)) {
      const spec = literalText(node.moduleSpecifier);
      if (spec !== null) {
        const clause = node.importClause;
        addImport(clause ? 'import' : 'side-effect', spec, clause?.isTypeOnly ?? false, node);
        if (MODULE_SPECS.has(spec) && clause && !clause.isTypeOnly) {
          const nb = clause.namedBindings;
          if (nb && ts.isNamedImports(nb)) {
            for (const el of nb.elements) if ((el.propertyName ?? el.name).text === 'createRequire') createRequireNames.add(el.name.text);
          }
        }
      }
      return;
    }
    if (ts.isExportDeclaration(node)) {
      const spec = literalText(node.moduleSpecifier);
      if (spec !== null) addImport('export', spec, node.isTypeOnly, node);
      return;
    }
    if (ts.isImportEqualsDeclaration(node)) {
      if (ts.isExternalModuleReference(node.moduleReference)) {
        const spec = literalText(node.moduleReference.expression);
        if (spec !== null) addImport('import-equals', spec, node.isTypeOnly, node);
        else facts.nonLiteral.push({ kind: 'require', line: lineOf(node) });
      }
      return;
    }
    if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      const spec = ts.isLiteralTypeNode(arg) ? literalText(arg.literal) : null;
      if (spec !== null) addImport('type-query', spec, true, node);
      ts.forEachChild(node, (c) => visit(c, true));
      return;
    }
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword) {
        const spec = literalText(node.arguments[0]);
        if (spec !== null) addImport('dynamic', spec, false, node);
        else facts.nonLiteral.push({ kind: 'dynamic', line: lineOf(node) });
      } else if (isCreateRequireCallee(callee)) {
        facts.createRequire.push({ line: lineOf(node) });
        if (ts.isVariableDeclaration(node.parent) && node.parent.initializer === node && ts.isIdentifier(node.parent.name)) requireNames.add(node.parent.name.text);
      } else if (isRequireCallee(callee)) {
        const spec = literalText(node.arguments[0]);
        if (spec !== null) addImport('require', spec, false, node);
        else facts.nonLiteral.push({ kind: 'require', line: lineOf(node) });
      } else if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'getBuiltinModule') {
        // process.getBuiltinModule('node:child_process') loads a builtin without an import.
        const spec = literalText(node.arguments[0]);
        if (spec !== null) addImport('require', spec, false, node);
        else facts.nonLiteral.push({ kind: 'require', line: lineOf(node) });
      }
    }
    if (!inType && ts.isIdentifier(node)) {
      if (WATCHED.has(node.text) && !isNameNotReference(node)) recordGlobal(node.text, node);
      else if ((node.text === 'globalThis' || node.text === 'global') && !isNameNotReference(node)) {
        const prop = propertyOf(node);
        if (prop !== null && WATCHED.has(prop)) recordGlobal(prop, node.parent as ts.Expression);
      }
    }
    const childInType = inType || ts.isTypeNode(node) || ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node);
    ts.forEachChild(node, (c) => visit(c, childInType));
  }
  visit(sf, false);
  return facts;
}

/** Source files under `root/src`, relative to `root`, `/`-separated, sorted. */
export function listSources(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && SOURCE_EXT.has(extname(e.name))) out.push(relative(root, p).split(sep).join('/'));
    }
  };
  walk(join(root, 'src'));
  return out.sort();
}

/** The default policy with the dependencies of `root/package.json` (none if it has no package.json). */
export function policyFor(root: string, base: Policy = DEFAULT_POLICY): Policy {
  const pkgFile = join(root, 'package.json');
  if (!existsSync(pkgFile)) return base;
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { dependencies?: Record<string, string> };
  return { ...base, dependencies: new Set(Object.keys(pkg.dependencies ?? {})) };
}

export interface ScanResult {
  files: number;
  violations: Violation[];
}

/** Every violation under `root/src`, sorted by file and line. Throws if `root/src` is not a directory. */
export function scanTree(root: string, policy: Policy = policyFor(root)): ScanResult {
  const files = listSources(root);
  const rootPosix = root.split(sep).join('/');
  const violations: Violation[] = [];
  const used = new Set<string>();
  for (const file of files) {
    const r = checkFacts(extractFacts(file, readFileSync(join(root, file), 'utf8')), policy, rootPosix);
    violations.push(...r.violations);
    for (const u of r.used) used.add(u);
  }
  violations.push(...staleAllowances(policy, used, new Set(files)));
  violations.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line));
  return { files: files.length, violations };
}

export function formatViolation(v: Violation): string {
  return `${v.file}:${v.line}: ${v.rule}: ${v.message}`;
}
