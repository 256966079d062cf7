/**
 * The one logger: DEBUG-style selection, field formatting, and — through a real child process —
 * that `DEBUG=cbt:*` shows the lines of the hosts module (which used NODE_DEBUG before) and that
 * without DEBUG nothing but warnings reaches stderr.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { debugEnabled, formatFields } from '../../src/util/log.ts';

const run = promisify(execFile);

test('debugEnabled: wildcards, lists and negation in the order given', (t) => {
  t.true(debugEnabled('cbt:hosts', 'cbt:*'));
  t.true(debugEnabled('cbt:scheduler', 'cbt:qmp, cbt:scheduler'));
  t.false(debugEnabled('cbt:ssh', 'cbt:qmp,cbt:scheduler'));
  t.false(debugEnabled('cbt:qmp', '*,-cbt:qmp'));
  t.true(debugEnabled('cbt:vm', '*,-cbt:qmp'));
  t.true(debugEnabled('cbt:qmp', '-cbt:qmp,cbt:*'), 'a later pattern wins');
  t.false(debugEnabled('cbt:hosts', ''));
  t.false(debugEnabled('cbt:hosts', undefined));
  t.false(debugEnabled('xcbt:hosts', 'cbt:*'), 'patterns are anchored');
});

test('formatFields: undefined dropped, strings quoted when they need it, errors by message', (t) => {
  t.is(formatFields({ host: 'h1', n: 3, gone: undefined, why: 'two words', e: new Error('bad "x"'), o: { a: 1 } }), ' host=h1 n=3 why="two words" e="bad \\"x\\"" o={"a":1}');
  t.is(formatFields(), '');
  t.is(formatFields({ empty: '' }), ' empty=""');
});

const script = `
import { LocalExecutor, newRunId } from ${JSON.stringify(new URL('../../src/hosts/index.ts', import.meta.url).pathname)};
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const dir = await mkdtemp(join(tmpdir(), 'cbt-log-test-'));
const ex = new LocalExecutor({ name: 'local', type: 'local', slots: 1, tags: [], workdir: dir }, { runId: newRunId() });
try {
  const job = await ex.openJob('log-job');
  await job.exec(['true']);
  await job.close();
} finally {
  await ex.close();
  await rm(dir, { recursive: true, force: true });
}
`;

async function childStderr(env: NodeJS.ProcessEnv): Promise<string> {
  const { stderr } = await run(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], { env: { PATH: process.env.PATH, ...env } });
  return stderr;
}

test('DEBUG=cbt:* shows host lines with structured fields; no DEBUG shows none', async (t) => {
  const on = await childStderr({ DEBUG: 'cbt:*' });
  t.regex(on, /^\S+Z cbt:hosts debug exec host=local job=log-job exec=\S+ command=true$/m);
  const off = await childStderr({});
  t.is(off, '');
  const other = await childStderr({ DEBUG: 'cbt:qmp' });
  t.notRegex(other, /cbt:hosts/);
});
