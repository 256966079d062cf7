/**
 * PowerShell and Windows command-line quoting. No real PowerShell can be installed here (not in
 * Debian; npm's `pwsh` downloads a binary at install time), so literals are checked against an
 * independent scanner of PowerShell's verbatim-string rules and against the tree-sitter PowerShell
 * grammar, encodings by decoding them back, and Windows argument quoting against Python's
 * list2cmdline and the C runtime's splitting rules.
 */
import test from 'ava';
import { MAX_COMMAND_LINE, PowerShellQuoteError, psCommandLine, psDecode, psEncode, psQuote, psScriptOf, readableStderr, winArg, winCommandLine } from '../../src/guest/index.ts';
import { commandLineToArgv, HOSTILE, list2cmdline, loadPsParser, scanVerbatim } from '../helpers/guest-powershell.ts';
import { randInt, rng } from '../helpers/tools.ts';

const ALPHABET = ["'", '\u2018', '\u2019', '\u201A', '\u201B', '"', '\u201C', '`', '$', '(', ')', '{', '}', ';', '&', '|', '%', '\\', ' ', '\t', '\n', '\r', 'a', 'Z', '0', 'é', '日', '😀', '#', '@', '<', '>'];

function randomString(r: () => number, max: number): string {
  let s = '';
  const n = randInt(r, 0, max);
  for (let i = 0; i < n; i++) s += ALPHABET[randInt(r, 0, ALPHABET.length - 1)];
  return s;
}

test('psQuote: every hostile value scans back to itself as exactly one verbatim string', (t) => {
  const r = rng(7);
  const values = [...HOSTILE, ...Array.from({ length: 2000 }, () => randomString(r, 24))];
  for (const v of values) {
    const lit = psQuote(v);
    // Followed by more code: the string must end exactly where the literal ends.
    const src = `$x = ${lit}; $y = 'tail'`;
    const scanned = scanVerbatim(src, 5);
    t.truthy(scanned, JSON.stringify(v.slice(0, 40)));
    t.is(scanned?.value, v);
    t.is(scanned?.end, 5 + lit.length);
  }
});

test('the oracle can fail: doubling only ASCII quotes lets a Unicode quote end the string', (t) => {
  const naive = (v: string): string => `'${v.replace(/'/g, "''")}'`;
  const v = '\u2019; Stop-Computer -Force; \u2018';
  const lit = naive(v);
  const scanned = scanVerbatim(`${lit};`, 0);
  t.not(scanned?.value, v);
  t.true((scanned?.end ?? 0) < lit.length, 'the naive literal ends early: the rest would run as code');
});

test('psQuote refuses NUL and non-strings with PowerShellQuoteError', (t) => {
  t.throws(() => psQuote('a\0b'), { instanceOf: PowerShellQuoteError, message: /NUL/ });
  t.throws(() => psQuote(42 as unknown as string), { instanceOf: PowerShellQuoteError });
  t.throws(() => winArg('a\0'), { instanceOf: PowerShellQuoteError, message: /NUL/ });
});

test('tree-sitter PowerShell grammar: each quoted value is one verbatim string token in a clean parse', async (t) => {
  const parser = await loadPsParser();
  // Both are devDependencies that `npm ci` installs: a missing grammar is a broken setup, not a skip.
  if (!parser) return t.fail('web-tree-sitter / tree-sitter-powershell cannot be loaded (run npm ci)');
  for (const v of HOSTILE) {
    const lit = psQuote(v);
    const src = `$x = ${lit}\nWrite-Output $x`;
    t.deepEqual(parser.errors(src), [], JSON.stringify(v.slice(0, 40)));
    const strings = parser.nodes(src, 'verbatim_string_characters');
    t.is(strings.length, 1, JSON.stringify(v.slice(0, 40)));
    t.is(strings[0]?.text, lit);
  }
  // And it does report broken code (the check can fail).
  t.notDeepEqual(parser.errors(`$x = 'it's'`), []);
});

test('psEncode: UTF-16LE base64 that decodes back to the same script, any characters', (t) => {
  const r = rng(11);
  for (const v of [...HOSTILE, ...Array.from({ length: 500 }, () => randomString(r, 64)), '\uD800 lone surrogate \uDC00']) {
    const enc = psEncode(v);
    t.regex(enc, /^[A-Za-z0-9+/]*={0,2}$/);
    t.is(Buffer.from(enc, 'base64').length, v.length * 2);
    t.is(psDecode(enc), v);
  }
  t.is(psEncode('dir'), 'ZABpAHIA'); // as [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes('dir')) prints
  t.throws(() => psDecode('not base64!'), { instanceOf: PowerShellQuoteError });
  t.throws(() => psDecode('AAAA'), { instanceOf: PowerShellQuoteError, message: /UTF-16LE/ });
});

test('psCommandLine: only base64 and fixed words reach the remote shell; the script round-trips; too long is refused', (t) => {
  for (const v of HOSTILE.slice(0, -1)) {
    const script = `$v = ${psQuote(v)}; [Console]::Out.Write($v)`;
    const line = psCommandLine(script);
    t.regex(line, /^powershell\.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -InputFormat Text -OutputFormat Text -EncodedCommand [A-Za-z0-9+/]+=*$/);
    t.is(psScriptOf(line), script);
  }
  const long = `$v = ${psQuote('x'.repeat(20_000))}`;
  t.throws(() => psCommandLine(long), { instanceOf: PowerShellQuoteError, message: new RegExp(`more than the ${MAX_COMMAND_LINE}`) });
  t.throws(() => psCommandLine('1', { powershell: 'C:\\Program Files\\pwsh.exe' }), { instanceOf: PowerShellQuoteError });
  t.throws(() => psCommandLine('1', { powershell: 'powershell.exe & calc' }), { instanceOf: PowerShellQuoteError });
  t.regex(psCommandLine('1', { powershell: 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' }), /^C:\\Windows\\System32/);
});

test('winArg equals Python list2cmdline and splits back to the same arguments under the C runtime rules', async (t) => {
  const r = rng(23);
  const lists: string[][] = [HOSTILE.filter((v) => v.length < 1000), ['a b', 'c"d', 'e\\', 'f\\"', '', '\\\\server\\share\\', 'x y\\\\']];
  for (let i = 0; i < 500; i++) lists.push(Array.from({ length: randInt(r, 1, 6) }, () => randomString(r, 12)));
  const expected = await list2cmdline(lists);
  for (const [i, args] of lists.entries()) {
    const line = winCommandLine(args);
    t.is(line, expected[i], JSON.stringify(args));
    t.deepEqual(commandLineToArgv(line), args, JSON.stringify(args));
  }
});

test('readableStderr: CLIXML error records become text, progress records are dropped, plain text passes', (t) => {
  const clixml =
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj>' +
    '<S S="Error">Set-Disk : The disk &lt;3&gt; is &amp; was offline_x000D__x000A_</S><S S="Error">    + FullyQualifiedErrorId : 41009_x000D__x000A_</S><S S="warning">careful</S></Objs>';
  t.is(readableStderr(clixml), 'Set-Disk : The disk <3> is & was offline\n    + FullyQualifiedErrorId : 41009\nwarning: careful');
  t.is(readableStderr('CBT-ERROR not-found no disk\r\n'), 'CBT-ERROR not-found no disk\r\n');
  t.is(readableStderr(`CBT-ERROR command boom\r\n${clixml}`), 'CBT-ERROR command boom\nSet-Disk : The disk <3> is & was offline\n    + FullyQualifiedErrorId : 41009\nwarning: careful');
});
