/**
 * Building PowerShell commands that no shell layer can re-interpret.
 *
 * Every Windows guest command travels as `powershell.exe … -EncodedCommand <base64 of UTF-16LE>`:
 * the command line the SSH server hands to its default shell (cmd.exe or powershell.exe, as
 * configured in `HKLM:\SOFTWARE\OpenSSH` DefaultShell) then holds only `[A-Za-z0-9+/= .-]`, so
 * neither the Windows command-line parser (CommandLineToArgvW rules) nor a shell's own quoting
 * can change it. Values inside the script are single-quoted literals (`psQuote`); arguments of
 * native programs started from the script are quoted for CommandLineToArgvW (`winArg`).
 *
 * Quoting rules follow PowerShell's tokenizer (System.Management.Automation tokenizer.cs,
 * `ScanStringLiteral`): inside a verbatim string every character stands for itself except the
 * five single-quote characters `'` U+2018 U+2019 U+201A U+201B, any of which ends the string
 * unless another of them follows, in which case the second one is taken literally.
 */
import { HarnessError } from '../util/index.ts';

/** A value that cannot be written as a PowerShell or Windows command-line literal, or a command too long. */
export class PowerShellQuoteError extends HarnessError {
  override name = 'PowerShellQuoteError';
}

/** The characters PowerShell's tokenizer treats as single quotes. */
const SINGLE_QUOTE_RE = /['\u2018\u2019\u201A\u201B]/g;

/**
 * A PowerShell single-quoted (verbatim) string literal whose value is exactly `value`.
 * Each single-quote character is doubled with itself (`'` → `''`, `’` → `’’`); `$`, backticks,
 * double quotes, `;`, `%`, newlines and everything else stand for themselves. NUL is refused:
 * no Windows name or path can hold it, and the tokenizer treats it as a possible end of input.
 */
export function psQuote(value: string): string {
  if (typeof value !== 'string') throw new PowerShellQuoteError(`Expected a string to quote for PowerShell, got \`${String(value)}\` (${typeof value})`);
  if (value.includes('\0')) throw new PowerShellQuoteError(`a PowerShell string literal cannot hold a NUL character (value starting ${JSON.stringify(value.slice(0, 40))})`);
  return `'${value.replace(SINGLE_QUOTE_RE, (q) => q + q)}'`;
}

/** A PowerShell integer literal, checked (no exponent, no hex, no suffix surprises). */
export function psInt(value: number, what = 'value'): string {
  if (!Number.isSafeInteger(value)) throw new PowerShellQuoteError(`Expected \`${what}\` to be a safe integer, got \`${String(value)}\` (${typeof value})`);
  return String(value);
}

/** `$true` / `$false`. */
export function psBool(value: boolean): string {
  return value ? '$true' : '$false';
}

/** The `-EncodedCommand` payload: base64 of the script's UTF-16LE code units. */
export function psEncode(script: string): string {
  if (typeof script !== 'string') throw new PowerShellQuoteError(`Expected a script string, got ${typeof script}`);
  return Buffer.from(script, 'utf16le').toString('base64');
}

/** Inverse of `psEncode` (for logs and tests); throws on a payload that is not UTF-16LE base64. */
export function psDecode(payload: string): string {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload) || payload.length % 4 !== 0) throw new PowerShellQuoteError('an -EncodedCommand payload must be padded base64');
  const bytes = Buffer.from(payload, 'base64');
  if (bytes.length % 2 !== 0) throw new PowerShellQuoteError('an -EncodedCommand payload must decode to UTF-16LE (an even number of bytes)');
  return bytes.toString('utf16le');
}

/**
 * CreateProcess takes at most 32767 characters of command line; Win32-OpenSSH wraps ours as
 * `<shell> -c <command>` (or `/c`), so keep a margin for the shell path and option.
 */
export const MAX_COMMAND_LINE = 32_000;

export interface PowerShellCommandOptions {
  /** The program the remote shell starts. @default 'powershell.exe' (Windows PowerShell 5.1, in every supported Windows) */
  powershell?: string;
  /** @default MAX_COMMAND_LINE */
  maxLength?: number;
}

const EXE_RE = /^[A-Za-z0-9_.:\\-]+$/;

/**
 * The remote command for `script`: `powershell.exe -NoLogo -NoProfile -NonInteractive
 * -ExecutionPolicy Bypass -InputFormat Text -OutputFormat Text -EncodedCommand <payload>`.
 * Throws `PowerShellQuoteError` naming the limit when the command line would be too long:
 * large data goes through stdin, never through the command line.
 */
export function psCommandLine(script: string, opts: PowerShellCommandOptions = {}): string {
  const exe = opts.powershell ?? 'powershell.exe';
  // The program name is not quoted (its shell may be cmd or PowerShell), so it must need none.
  if (!EXE_RE.test(exe)) throw new PowerShellQuoteError(`Expected \`powershell\` to be a program path of [A-Za-z0-9_.:\\\\-] (no spaces: use the 8.3 name or put it on PATH), got \`${exe}\``);
  const max = opts.maxLength ?? MAX_COMMAND_LINE;
  const line = `${exe} -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -InputFormat Text -OutputFormat Text -EncodedCommand ${psEncode(script)}`;
  if (line.length > max) {
    throw new PowerShellQuoteError(`PowerShell command line would be ${line.length} characters (script of ${script.length}), more than the ${max} Windows allows through OpenSSH; pass bulk data on stdin`);
  }
  return line;
}

/** Parse a command line made by `psCommandLine` back into its script (tests, logs). */
export function psScriptOf(commandLine: string): string {
  const m = /-EncodedCommand ([A-Za-z0-9+/=]+)$/.exec(commandLine);
  if (!m) throw new PowerShellQuoteError('not an -EncodedCommand command line');
  return psDecode(m[1]);
}

/**
 * One argument for a Windows program's command line, as the Microsoft C runtime and
 * CommandLineToArgvW split it (only space and tab separate arguments): wrapped in double quotes
 * when it is empty or holds a space or tab; a double quote becomes `\"` with the backslashes
 * before it doubled; trailing backslashes are doubled when the argument is wrapped. The same
 * output as Python's `subprocess.list2cmdline`, which the tests use as an oracle.
 */
export function winArg(arg: string): string {
  if (typeof arg !== 'string') throw new PowerShellQuoteError(`Expected a command-line argument string, got \`${String(arg)}\` (${typeof arg})`);
  if (arg.includes('\0')) throw new PowerShellQuoteError('a Windows command-line argument cannot hold a NUL character');
  const wrap = arg === '' || /[ \t]/.test(arg);
  let out = wrap ? '"' : '';
  let slashes = 0;
  for (const ch of arg) {
    if (ch === '\\') {
      slashes++;
      continue;
    }
    out += ch === '"' ? `${'\\'.repeat(slashes * 2)}\\"` : '\\'.repeat(slashes) + ch;
    slashes = 0;
  }
  return wrap ? `${out}${'\\'.repeat(slashes * 2)}"` : out + '\\'.repeat(slashes);
}

/** `winArg` of each, space-separated. */
export function winCommandLine(args: readonly string[]): string {
  return args.map(winArg).join(' ');
}

/** `_x000D__x000A_` → CR LF: the escapes of PowerShell's CLIXML serializer. */
function unescapeClixml(s: string): string {
  return s
    .replace(/_x([0-9A-Fa-f]{4})_/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)))
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCodePoint(Number(d)))
    .replace(/&#x([0-9A-Fa-f]+);/g, (_, h: string) => String.fromCodePoint(Number.parseInt(h, 16)))
    .replace(/&amp;/g, '&');
}

/**
 * Readable text of a Windows PowerShell stderr. PowerShell 5.1 whose stderr is redirected
 * serializes its error, warning and progress streams as `#< CLIXML` documents; keep the text of
 * `<S S="Error">`/`<S S="warning">` records, drop progress objects, and pass other lines through.
 */
export function readableStderr(stderr: string): string {
  if (!stderr.includes('#< CLIXML')) return stderr;
  const out: string[] = [];
  for (const part of stderr.split('#< CLIXML')) {
    const end = part.lastIndexOf('</Objs>');
    const head = part.indexOf('<Objs');
    if (head < 0 || end < 0) {
      if (part.trim()) out.push(part.trim());
      continue;
    }
    if (part.slice(0, head).trim()) out.push(part.slice(0, head).trim());
    const xml = part.slice(head, end);
    for (const m of xml.matchAll(/<S S="([A-Za-z]+)">([\s\S]*?)<\/S>/g)) {
      const kind = m[1].toLowerCase();
      if (kind === 'error' || kind === 'warning' || kind === 'verbose' || kind === 'debug' || kind === 'information') out.push((kind === 'error' ? '' : `${kind}: `) + unescapeClixml(m[2]).replace(/\r?\n$/, ''));
    }
    if (part.slice(end + 7).trim()) out.push(part.slice(end + 7).trim());
  }
  return out.join('\n').replace(/\r\n/g, '\n');
}
