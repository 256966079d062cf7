/**
 * Test oracles for the Windows adapter's quoting, made without a real PowerShell (none installs
 * from Debian or npm here — see docs/windows-guest.md):
 * - `scanVerbatim`: PowerShell's verbatim-string rules as its tokenizer implements them
 *   (ScanStringLiteral: any of ' U+2018 U+2019 U+201A U+201B ends the string unless another one
 *   follows, whose character is then taken), written independently of src/guest/powershell.ts;
 * - `loadPsParser`: the tree-sitter PowerShell grammar (npm `tree-sitter-powershell`, run as WASM
 *   by `web-tree-sitter`) for syntax checks of whole scripts — a third-party grammar, stricter
 *   than PowerShell in places (bare comma lists in command arguments), blind to Unicode quotes;
 * - `commandLineToArgv`: the Microsoft C runtime / CommandLineToArgvW argument rules.
 * - `list2cmdline`: Python's `subprocess.list2cmdline`, a maintained implementation of the quoting side.
 */
import { createRequire } from 'node:module';
import { execa } from 'execa';

export const PS_QUOTE_CHARS = new Set(['\u0027', '\u2018', '\u2019', '\u201A', '\u201B']);

/** Scan a verbatim string starting at `text[start]` (a quote char); its value and the index after it, or null if unterminated. */
export function scanVerbatim(text: string, start: number): { value: string; end: number } | null {
  const units = [...text.slice(start)];
  if (!PS_QUOTE_CHARS.has(units[0])) throw new Error(`no quote at ${start}`);
  let value = '';
  let used = units[0].length;
  for (let i = 1; i < units.length; i++) {
    const c = units[i];
    if (PS_QUOTE_CHARS.has(c)) {
      if (i + 1 < units.length && PS_QUOTE_CHARS.has(units[i + 1])) {
        value += units[i + 1];
        used += c.length + units[i + 1].length;
        i++;
        continue;
      }
      return { value, end: start + used + c.length };
    }
    value += c;
    used += c.length;
  }
  return null;
}

export interface PsParser {
  /** Error and missing nodes as `type@offset:text`. */
  errors(source: string): string[];
  /** Nodes of a type, with their text. */
  nodes(source: string, type: string): Array<{ start: number; end: number; text: string }>;
}

let parserPromise: Promise<PsParser | null> | null = null;

/** The slice of web-tree-sitter's API used here (typed locally: the package is optional). */
interface TsNode {
  type: string;
  startIndex: number;
  endIndex: number;
  text: string;
  isError: boolean;
  isMissing: boolean;
  children: Array<TsNode | null>;
}
interface TsModule {
  Parser: { init(): Promise<void>; new (): { setLanguage(l: unknown): void; parse(s: string): { rootNode: TsNode; delete(): void } | null } };
  Language: { load(path: string): Promise<unknown> };
}

/** The tree-sitter PowerShell parser, or null when the packages are not installed. */
export function loadPsParser(): Promise<PsParser | null> {
  parserPromise ??= (async () => {
    let mod: TsModule;
    let wasm: string;
    try {
      const name = 'web-tree-sitter';
      mod = (await import(name)) as TsModule;
      wasm = createRequire(import.meta.url).resolve('tree-sitter-powershell/tree-sitter-powershell.wasm');
    } catch {
      return null;
    }
    await mod.Parser.init();
    const lang = await mod.Language.load(wasm);
    const parser = new mod.Parser();
    parser.setLanguage(lang);
    const walk = (n: TsNode, f: (n: TsNode) => void): void => {
      f(n);
      for (const c of n.children) if (c) walk(c, f);
    };
    return {
      errors(source) {
        const tree = parser.parse(source);
        if (!tree) return ['parse failed'];
        const out: string[] = [];
        walk(tree.rootNode, (n) => {
          if (n.isError || n.isMissing) out.push(`${n.type}@${n.startIndex}:${JSON.stringify(n.text.slice(0, 60))}`);
        });
        tree.delete();
        return out;
      },
      nodes(source, type) {
        const tree = parser.parse(source);
        if (!tree) return [];
        const out: Array<{ start: number; end: number; text: string }> = [];
        walk(tree.rootNode, (n) => {
          if (n.type === type) out.push({ start: n.startIndex, end: n.endIndex, text: n.text });
        });
        tree.delete();
        return out;
      },
    };
  })();
  return parserPromise;
}

/**
 * Split the arguments part of a Windows command line as the Microsoft C runtime does (2008+
 * rules; CommandLineToArgvW agrees for everything after the program name): space/tab separate;
 * `"` toggles quoting; 2n backslashes + `"` → n backslashes and a toggle; 2n+1 backslashes + `"`
 * → n backslashes and a literal quote; other backslashes are literal; `""` inside quotes is a
 * literal quote.
 */
export function commandLineToArgv(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    while (i < n && (line[i] === ' ' || line[i] === '\t')) i++;
    if (i >= n) return args;
    let cur = '';
    let quoted = false;
    while (i < n) {
      const c = line[i];
      if (c === '\\') {
        let k = 0;
        while (i < n && line[i] === '\\') {
          k++;
          i++;
        }
        if (i < n && line[i] === '"') {
          cur += '\\'.repeat(Math.floor(k / 2));
          if (k % 2 === 1) {
            cur += '"';
            i++;
          }
        } else cur += '\\'.repeat(k);
        continue;
      }
      if (c === '"') {
        if (quoted && line[i + 1] === '"') {
          cur += '"';
          i += 2;
          continue;
        }
        quoted = !quoted;
        i++;
        continue;
      }
      if (!quoted && (c === ' ' || c === '\t')) break;
      cur += c;
      i++;
    }
    args.push(cur);
  }
}

/** Python's subprocess.list2cmdline for each argument list (one python3 process). */
export async function list2cmdline(lists: string[][]): Promise<string[]> {
  const r = await execa('python3', ['-c', 'import json,sys,subprocess; print(json.dumps([subprocess.list2cmdline(a) for a in json.load(sys.stdin)]))'], { input: JSON.stringify(lists) });
  return JSON.parse(r.stdout) as string[];
}

/** Values that have broken quoting somewhere: every quote kind, expansions, separators, control characters, non-ASCII, length. */
export const HOSTILE: readonly string[] = [
  '',
  "'",
  "''",
  "it's",
  '\u2018',
  '\u2019',
  '\u201A',
  '\u201B',
  "'\u2019\u2018\u201A\u201B",
  "a'\u2019b",
  "x'",
  "'x",
  '\u2019\u2019',
  "'; Stop-Computer -Force; '",
  '\u2019; Stop-Computer -Force; \u2018',
  '$(Stop-Computer -Force)',
  '$env:PATH',
  '${x}',
  '@(1)',
  '`whoami`',
  '`',
  '`n`0',
  'a;b',
  'a & b | c > d < e',
  '"',
  '""',
  '"quoted"',
  '\u201C\u201D\u201E',
  '%PATH%',
  '%',
  '^&^|',
  '!x!',
  'line1\nline2',
  '\r\n',
  '\r',
  'tab\there',
  '#comment',
  '<# block #>',
  "@'\n'@",
  '@"\n"@',
  'C:\\Program Files\\x y\\',
  '\\\\?\\Volume{0e6f4c0a-1d2b-4c3d-9e8f-0a1b2c3d4e5f}\\',
  '\\',
  '\\\\"',
  'trailing\\\\',
  'ünïcödé 日本語 😀',
  '\u00A0nbsp',
  '\u202Ertl',
  '\uFEFFbom',
  '\u2028sep',
  'x'.repeat(20_000),
];
