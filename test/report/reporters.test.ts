/**
 * Reporters: the multiplexer survives a broken reporter; the terminal reporter (TTY and plain);
 * createReporters writes run.json, junit.xml and report.html through a real RunRecorder run.
 * JUnit output is checked by xmllint (well-formed) and by a JUnit consumer from npm
 * (test-results-parser, used by testbeats), counting what CI would count.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { createReporters, junitXml, Multiplexer, parseRunRecord, ReporterOptionError, TerminalReporter, type Reporter, type RunRecord } from '../../src/report/index.ts';
import { makeRunRecord } from '../helpers/report-fixtures.ts';
import { tempDir } from '../helpers/tools.ts';
import { reportCli } from '../helpers/report-cli.ts';

class Sink {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

function logger() {
  const lines: string[] = [];
  return { lines, warn: (m: string) => void lines.push(m) };
}

test('multiplexer: a throwing or rejecting reporter is logged, the others still get every hook', async (t) => {
  const log = logger();
  const seen: string[] = [];
  const good: Reporter = { name: 'good', onBegin: () => void seen.push('begin'), onJobEnd: (j) => void seen.push(j.id), onEnd: () => void seen.push('end') };
  const bad: Reporter = {
    name: 'bad',
    onBegin: () => {
      throw new TypeError('boom');
    },
    onJobEnd: async () => {
      throw new Error('async boom');
    },
    onEnd: () => Promise.reject(new Error('end boom')),
  };
  const mux = new Multiplexer([bad, good], log);
  const record = await makeRunRecord({ seed: 3, repeats: 1, builds: undefined, reporter: mux });
  t.deepEqual(seen, ['begin', ...record.jobs.map((j) => j.id), 'end']);
  t.is(mux.failures.length, 2 + record.jobs.length);
  t.regex(log.lines[0], /reporter bad failed in onBegin: TypeError: boom/);
  t.regex(log.lines.at(-1)!, /reporter bad failed in onEnd: Error: end boom/);
});

test('terminal, not a TTY: plain lines per job, no escape codes, a summary table with MISSED rows', async (t) => {
  const out = new Sink();
  const record = await makeRunRecord({ seed: 1, driverVersion: '2.4.1', reporter: new TerminalReporter({ stream: out, isTTY: false }) });
  t.false(out.text.includes('\x1b'), 'no ANSI codes in a log');
  t.false(out.text.includes('\r'));
  const lines = out.text.split('\n');
  t.regex(lines[0], /^cbt-harness run run-2025-01-06-1: 50 job\(s\) on 2 host\(s\), seed 1$/);
  for (const j of record.jobs) t.true(lines.some((l) => l.includes(j.id) && l.includes(j.status)), j.id);
  const failed = record.jobs.find((j) => j.status === 'failed' && j.epochs.some((e) => e.verdict === 'MISSED' && !e.acceptable))!;
  t.true(out.text.includes(`MISSED ${failed.id} epoch`));
  t.regex(out.text, /scenario\s+OS build\s+jobs\s+pass\s+fail\s+infra\s+EXACT\s+SUPERSET\s+RESYNC\s+MISSED\s+over-report\s+resync/);
  t.regex(out.text, new RegExp(`run ${record.runId}: FAILED: ${record.totals.jobs} job\\(s\\), ${record.totals.passed} passed, ${record.totals.failed} failed, ${record.totals.failed} not as expected, ${record.totals.infraErrors} infrastructure error`));
  t.regex(out.text, new RegExp(`${record.totals.verdicts.MISSED} MISSED`));
});

test('terminal on a TTY: one status line redrawn in place, job lines above it, colours, cleared before the summary', async (t) => {
  const out = new Sink();
  await makeRunRecord({ seed: 2, driverVersion: '2.4.1', repeats: 1, reporter: new TerminalReporter({ stream: out, isTTY: true, columns: 80 }) });
  t.true(out.text.includes('\r\x1b[2K['), 'status redrawn with carriage return + clear line');
  t.regex(out.text, /\[\d+\/25\] ✓ \d+ {2}✗ \d+ {2}! \d+/);
  t.true(out.text.includes('\x1b[31m'), 'failures in red');
  // Each status is at most the terminal width.
  for (const seg of out.text.split('\r\x1b[2K')) {
    const status = seg.split('\n')[0];
    if (status.startsWith('[')) t.true([...status].length <= 79, status);
  }
  // The summary starts on a clean line.
  const summaryAt = out.text.indexOf('scenario ');
  t.is(out.text.slice(summaryAt - 5, summaryAt), '\r\x1b[2K');
});

test('createReporters: names, errors, and the files of a run', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-reporters-');
  t.teardown(cleanup);
  t.throws(() => createReporters(['terminal', 'pdf'], { logger: logger() }), { instanceOf: ReporterOptionError, message: /Unknown reporter `pdf`; known: terminal, json, junit, html/ });
  t.throws(() => createReporters(['junit'], { logger: logger() }), { instanceOf: ReporterOptionError, message: /needs an output folder/ });
  t.throws(() => createReporters(['terminal'], { logger: logger() }), { message: /needs a `stream`/ });
  const out = new Sink();
  const log = logger();
  const created = createReporters(['terminal', 'junit', 'html'], { outDir: join(dir, 'out'), stream: out, isTTY: false, logger: log });
  t.deepEqual(created.names, ['terminal', 'json', 'junit', 'html'], 'json is implied by an output folder');
  const record = await makeRunRecord({ seed: 4, repeats: 1, reporter: created.reporter });
  t.deepEqual(log.lines, []);
  const back = parseRunRecord(await readFile(join(dir, 'out/run.json'), 'utf8'), 'run.json');
  t.deepEqual(back, JSON.parse(JSON.stringify(record)) as RunRecord);
  t.is(await readFile(join(dir, 'out/junit.xml'), 'utf8'), junitXml(record));
  t.regex(await readFile(join(dir, 'out/report.html'), 'utf8'), /^<!doctype html>/);
  t.regex(out.text, /all passed|failed/);
});

/** The part of test-results-parser's API used here (typed locally so type-checking does not need the package). */
interface ParsedCase {
  name: string;
  status: string;
  failure: string;
  stack_trace: string;
  metadata: Record<string, unknown>;
}
interface Parsed {
  total: number;
  passed: number;
  failed: number;
  errors: number;
  suites: Array<{ name: string; cases: ParsedCase[] }>;
}
interface JunitConsumer {
  parse(options: { type: 'junit'; files: string[] }): Parsed;
}

async function consumer(): Promise<JunitConsumer | null> {
  const name = 'test-results-parser';
  try {
    return (await import(name)) as JunitConsumer;
  } catch {
    return null;
  }
}

test('JUnit: well-formed for xmllint even with hostile text; a JUnit consumer counts what the record says', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-junit-');
  t.teardown(cleanup);
  const record = await makeRunRecord({ seed: 9, hostile: true, driverVersion: '2.4.1', infraRate: 0.1 });
  // Characters XML cannot carry, in an error text.
  const failedJob = record.jobs.find((j) => j.status === 'failed')!;
  failedJob.error = 'bad bytes: \u0000\u0007\u001b[31m \uD800 end ]]> <![CDATA[';
  const file = join(dir, 'junit.xml');
  const xml = junitXml(record);
  await (await import('node:fs/promises')).writeFile(file, xml);
  const lint = await execa('xmllint', ['--noout', file], { reject: false });
  t.is(lint.exitCode, 0, String(lint.stderr));

  const parser = await consumer();
  if (!parser) {
    t.fail('devDependency test-results-parser is missing (npm install -D test-results-parser)');
    return;
  }
  const parsed = parser.parse({ type: 'junit', files: [file] });
  const tot = record.totals;
  t.is(parsed.total, tot.jobs);
  t.is(parsed.passed, tot.passed);
  t.is(parsed.failed, tot.failed);
  t.is(parsed.errors, tot.infraErrors);
  t.is(parsed.suites.length, new Set(record.jobs.map((j) => j.scenario.name)).size);
  const cases = parsed.suites.flatMap((s) => s.cases);
  t.is(cases.length, record.jobs.length);
  // The scenario name with markup comes back as the same text.
  t.is(parsed.suites[0].name, record.jobs[0].scenario.name);
  // A MISSED failure carries the verdict and the first missed ranges.
  const missedJob = record.jobs.find((j) => j.status === 'failed' && j.epochs.some((e) => e.verdict === 'MISSED' && !e.acceptable && e.missed.length))!;
  const missedCase = cases.find((c) => c.name.endsWith(`#${missedJob.repeat}`) && c.metadata?.['os.build'] === missedJob.guest.os.build && parsed.suites.some((s) => s.name === missedJob.scenario.name && s.cases.includes(c)))!;
  t.truthy(missedCase);
  t.is(missedCase.status, 'FAIL');
  const e = missedJob.epochs.find((x) => x.verdict === 'MISSED' && !x.acceptable)!;
  t.true(missedCase.failure.startsWith(`MISSED in epoch ${e.index}: ${e.missedBlocks} changed block(s) not claimed; first missed blocks ${e.missed[0][0]}+${e.missed[0][1]}`), missedCase.failure);
  t.true(missedCase.stack_trace.includes(`first missed ranges (of ${e.missedRanges}`));
  t.true(missedCase.stack_trace.includes(`blocks ${e.missed[0][0]}+${e.missed[0][1]} (bytes ${e.missed[0][0] * e.granularity}..`));
  t.is(missedCase.metadata['tracker.version'], '2.4.1');
  // The hostile error text survives, with its unrepresentable characters replaced.
  const badCase = cases.find((c) => String(c.stack_trace).includes('bad bytes'));
  t.truthy(badCase);
  t.true(String(badCase!.stack_trace).includes('end ]]> <![CDATA['));
});

test('JUnit and terminal for known-bad trackers: failing as it must is a pass; passing is a failure "not caught"', async (t) => {
  const caught = await makeRunRecord({ seed: 31, missRate: () => 0, infraRate: 0, knownBad: 'caught', repeats: 1 });
  const kb = (xml: string) => xml.slice(xml.indexOf('<testcase classname="known-bad-drop-writes"'), xml.indexOf('</testcase>', xml.indexOf('<testcase classname="known-bad-drop-writes"')));
  const okXml = junitXml(caught);
  t.false(kb(okXml).includes('<failure'));
  t.true(kb(okXml).includes('known-bad tracker failed as it must: MISSED in epoch 0'));
  t.regex(okXml, /<testsuites [^>]*failures="0"/);
  const missed = await makeRunRecord({ seed: 31, missRate: () => 0, infraRate: 0, knownBad: 'not-caught', repeats: 1 });
  const badXml = junitXml(missed);
  t.regex(kb(badXml), /<failure message="known-bad tracker passed: the harness did not catch it" type="not-caught">/);
  t.regex(badXml, /<testsuites [^>]*failures="1"/);
  const out = new Sink();
  new TerminalReporter({ stream: out, isTTY: false }).onEnd(missed);
  t.regex(out.text, /run \S+: FAILED: .*known-bad: 0 caught, 1 NOT CAUGHT/);
});

test('CLI: report render writes junit.xml and report.html from a run record', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-render-');
  t.teardown(cleanup);
  const record = await makeRunRecord({ seed: 32, repeats: 1 });
  await (await import('node:fs/promises')).writeFile(join(dir, 'run.json'), JSON.stringify(record));
  const r = await reportCli(['render', dir]);
  t.is(r.exitCode, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), [join(dir, 'junit.xml'), join(dir, 'report.html')]);
  t.is(await readFile(join(dir, 'junit.xml'), 'utf8'), junitXml(record));
  t.regex(await readFile(join(dir, 'report.html'), 'utf8'), /<title>cbt-harness run-2025-01-06-32/);
  t.is((await reportCli(['render', dir, '--reporter', 'pdf'])).exitCode, 2);
});
