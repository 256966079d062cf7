/**
 * CLI error contract through the real `bin/cbt-harness`: every expected failure is exactly one
 * line on stderr, no stack, with the right exit code (2 bad input or infrastructure, 3 a bug);
 * and every error class in src/ is a HarnessError.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { HarnessError, InfrastructureHarnessError } from '../../src/util/index.ts';
import { qemuImg, ROOT, runCli, tempDir } from '../helpers/tools.ts';

let dir: string;
let cleanup: () => Promise<void>;
let good: string;
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-clierr-'));
  good = join(dir, 'good.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', good, '4M']);
  await qemuImg(['bitmap', '--add', '-g', '65536', good, 'cbt-0']);
  await writeFile(join(dir, 'bad.json'), '{bad');
  await writeFile(join(dir, 'empty.json'), '{}');
  await mkdir(join(dir, 'run'));
  await writeFile(join(dir, 'run/run.json'), '{}');
});
test.after.always(async () => {
  await cleanup?.();
});

/** One line, no stack frame, matching every pattern. */
function oneLine(t: ExecutionContext, stderr: string, ...patterns: RegExp[]): void {
  const lines = stderr.split('\n').filter((l) => l !== '');
  t.is(lines.length, 1, `exactly one line on stderr, got:\n${stderr}`);
  t.regex(lines[0] ?? '', /^cbt-harness: /);
  t.notRegex(stderr, /^\s+at /m, 'no stack');
  for (const p of patterns) t.regex(lines[0] ?? '', p);
}

const cases: Array<{ title: string; args: () => string[]; code: number; words: RegExp[] }> = [
  { title: 'run --accel warp', args: () => ['run', '--accel', 'warp', 'x.yaml'], code: 2, words: [/--accel/, /warp/, /auto, kvm, tcg/] },
  { title: 'run --config with scenario files', args: () => ['run', '--config', join(ROOT, 'harness/gate.yaml'), 'a.yaml'], code: 2, words: [/--config/, /not both/, /a\.yaml/] },
  { title: 'run --repeat 0', args: () => ['run', '--repeat', '0', 'x.yaml'], code: 2, words: [/--repeat/, /positive integer/] },
  { title: 'run a missing scenario', args: () => ['run', '/nonexistent.yaml'], code: 2, words: [/\/nonexistent\.yaml/, /cannot read/] },
  { title: 'report render --reporter pdf', args: () => ['report', 'render', join(dir, 'run'), '--reporter', 'pdf'], code: 2, words: [/--reporter/, /pdf/, /junit, html/] },
  { title: 'image export into a missing folder', args: () => ['image', 'export', good, '/nonexistent/out.raw'], code: 2, words: [/cannot open \/nonexistent\/out\.raw: no such file or directory/] },
  { title: 'image info of a missing image', args: () => ['image', 'info', '/nonexistent.qcow2'], code: 2, words: [/ImageOpenError/, /\/nonexistent\.qcow2/] },
  { title: 'job run of a missing spec', args: () => ['job', 'run', '/nonexistent.json'], code: 2, words: [/\/nonexistent\.json/, /no such file/] },
  { title: 'job run of a spec that is not JSON', args: () => ['job', 'run', join(dir, 'bad.json')], code: 2, words: [/bad\.json/, /not JSON/] },
  { title: 'job run of a spec without fields', args: () => ['job', 'run', join(dir, 'empty.json')], code: 2, words: [/empty\.json/, /jobId/] },
  { title: 'job run of a folder', args: () => ['job', 'run', dir], code: 2, words: [/is a directory/] },
  { title: 'an unknown command', args: () => ['nope'], code: 2, words: [/unknown command 'nope'/, /--help/] },
  { title: 'an unknown option', args: () => ['image', 'info', '--bogus', 'x'], code: 2, words: [/unknown option '--bogus'/, /cbt-harness image info --help/] },
  { title: 'a missing argument', args: () => ['image', 'map'], code: 2, words: [/missing required argument 'img'/] },
  { title: 'a bad choice', args: () => ['report', 'schema', 'bogus'], code: 2, words: [/bogus/, /run-record, run-config/] },
  { title: 'verify with a bitmap name that does not exist', args: () => ['verify', '--base', good, '--top', good, '--decoder', 'qemu-bitmap', '--opt', 'name=typo', '--json'], code: 2, words: [/BitmapNotFoundError/, /"typo"/, /"cbt-0"/] },
  { title: 'decode with a bad absent option', args: () => ['cbt', 'decode', good, '--decoder', 'qemu-bitmap', '--opt', 'absent=maybe'], code: 2, words: [/absent/, /error or resync/] },
  { title: 'demo into a missing folder', args: () => ['demo', '--keep', '/nonexistent/demo'], code: 2, words: [/qemu-img/, /\/nonexistent\/demo/] },
  { title: 'a hosts inventory that is missing', args: () => ['hosts', 'check', '--hosts', '/nonexistent-hosts.yaml'], code: 2, words: [/\/nonexistent-hosts\.yaml/] },
];

for (const c of cases) {
  test(`${c.title}: exit ${c.code}, one line`, async (t) => {
    const r = await runCli(c.args());
    t.is(r.exitCode, c.code, r.stderr);
    oneLine(t, r.stderr, ...c.words);
  });
}

test('--debug adds the stack to an expected failure', async (t) => {
  const r = await runCli(['--debug', 'image', 'info', '/nonexistent.qcow2']);
  t.is(r.exitCode, 2);
  t.regex(r.stderr, /^cbt-harness: ImageOpenError: /);
  t.regex(r.stderr, /^\s+at /m);
});

test('an internal error (CBT_HARNESS_CRASH=1) exits 3 with "please report" and the stack', async (t) => {
  const r = await runCli(['image', 'info', good], { env: { CBT_HARNESS_CRASH: '1' } });
  t.is(r.exitCode, 3);
  t.regex(r.stderr.split('\n')[0], /^cbt-harness: internal error: Error: crash requested by CBT_HARNESS_CRASH=1 \(this is a bug, please report it\)$/);
  t.regex(r.stderr, /^\s+at /m, 'with the stack');
});

test('verify --json carries the reason the text output has', async (t) => {
  const args = ['verify', '--base', good, '--top', good, '--decoder', 'qemu-bitmap', '--opt', 'name=typo', '--opt', 'absent=resync'];
  const text = await runCli(args);
  t.is(text.exitCode, 0, text.stderr);
  t.regex(text.stdout, /^RESYNC: .*\(bitmap "typo" is absent from the image\)$/);
  const json = await runCli([...args, '--json']);
  t.is(json.exitCode, 0, json.stderr);
  t.like(JSON.parse(json.stdout), { verdict: 'RESYNC', reason: 'bitmap "typo" is absent from the image' });
  const exact = JSON.parse((await runCli(['verify', '--base', good, '--top', good, '--decoder', 'qemu-bitmap', '--json'])).stdout);
  t.false('reason' in exact, 'no reason, no field');
});

/** Every .ts file under src/ but the CLI's entry point (importing it would run the CLI). */
function sourceFiles(d: string): string[] {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(d, e.name)) : e.name.endsWith('.ts') && join(d, e.name) !== join(ROOT, 'src/cli/bin.ts') ? [join(d, e.name)] : []));
}

test('every error class exported from src/ is a HarnessError (infrastructure ones an InfrastructureHarnessError)', async (t) => {
  const classes = new Map<string, { cls: new (...a: never[]) => Error; file: string }>();
  const declared = new Set<string>();
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/export class (\w+) extends \w*Error\b/g)) declared.add(m[1]);
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const [name, v] of Object.entries(mod)) {
      if (typeof v === 'function' && v.prototype instanceof Error) classes.set(name, { cls: v as new (...a: never[]) => Error, file: relative(ROOT, file) });
    }
  }
  for (const name of declared) t.true(classes.has(name), `${name} is declared but not exported`);
  t.true(classes.size >= 50, `found ${classes.size} error classes`);
  for (const [name, { cls, file }] of classes) {
    if (name === 'HarnessError') continue;
    t.true(cls.prototype instanceof HarnessError, `${name} (${file}) is a HarnessError`);
  }
  const infra = ['SshError', 'QmpError', 'VmError', 'LineTooLongError', 'JobInfrastructureError', 'InfrastructureFailed', 'InfrastructureError', 'CommandTimeoutError', 'WorkerImageError', 'TestbedError', 'ImageBuildError', 'MetadataIoError', 'GuestError'];
  for (const name of infra) t.true(classes.get(name)!.cls.prototype instanceof InfrastructureHarnessError, `${name} is infrastructure`);
  for (const name of ['ConfigError', 'ImageError', 'DecoderOptionError', 'BitmapNotFoundError', 'CheckFailed', 'UsageError']) {
    const e = Object.create(classes.get(name)!.cls.prototype) as HarnessError;
    t.false(e instanceof InfrastructureHarnessError, `${name} is input`);
  }
  t.is(new (classes.get('HostOperationError')!.cls as unknown as new (h: string, m: string) => HarnessError)('h1', 'bad path').category, 'input');
  t.is(new (classes.get('HostError')!.cls as unknown as new (h: string, m: string) => HarnessError)('h1', 'down').category, 'infrastructure');
  t.is(new HarnessError('x').category, 'input');
});
