/** The run record: generated records validate against the published schema (ajv, draft 2020-12); readers refuse bad input with typed errors. */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { RUN_RECORD_SCHEMA, readRunRecord, ReportInputError, RunRecorder, epochRecord, blockMap, decodeCells, computeTotals, MAX_MISSED_RANGES, type RunRecord } from '../../src/report/index.ts';
import { judge } from '../../src/verify/index.ts';
import { makeRunRecord } from '../helpers/report-fixtures.ts';
import { ROOT, tempDir } from '../helpers/tools.ts';

const published = JSON.parse(await readFile(join(ROOT, 'reports/schema/run-record.json'), 'utf8')) as object;

test('the published schema equals the one in the code (regenerate with `cbt-harness report schema > reports/schema/run-record.json`)', (t) => {
  t.deepEqual(published, JSON.parse(JSON.stringify(RUN_RECORD_SCHEMA)));
});

test('generated records of every verdict mix validate against the published schema with a fresh ajv', async (t) => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictTuples: false });
  const validate = ajv.compile(published);
  for (const seed of [1, 2, 3, 4]) {
    const record = await makeRunRecord({ seed, hostile: seed === 4, driverVersion: seed % 2 ? '2.4.1' : '2.4.0', infraRate: 0.2 });
    const ok = validate(JSON.parse(JSON.stringify(record)));
    t.true(ok, JSON.stringify(validate.errors?.slice(0, 3)));
    t.true(record.totals.jobs > 0);
    const verdicts = new Set(record.jobs.flatMap((j) => j.epochs.map((e) => e.verdict)));
    if (seed === 1) t.true(verdicts.has('MISSED') && verdicts.has('RESYNC') && verdicts.has('EXACT') && verdicts.has('SUPERSET'), [...verdicts].join());
  }
});

test('the schema rejects what it must: unknown fields, a bad verdict, a path leaving the run dir', async (t) => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictTuples: false });
  const validate = ajv.compile(published);
  const base = JSON.parse(JSON.stringify(await makeRunRecord({ seed: 5, builds: undefined, repeats: 1 }))) as RunRecord;
  const mutate = (f: (r: RunRecord) => void) => {
    const r = structuredClone(base);
    f(r);
    return validate(r);
  };
  t.true(mutate(() => {}));
  t.false(mutate((r) => ((r as unknown as Record<string, unknown>).extra = 1)));
  t.false(mutate((r) => ((r.jobs[0].epochs[0] as unknown as { verdict: string }).verdict = 'FINE')));
  t.false(mutate((r) => (r.jobs[0].artifacts.serialLog = '../../etc/passwd')));
  t.false(mutate((r) => (r.jobs[0].artifacts.serialLog = '/etc/passwd')));
  t.false(mutate((r) => (r.jobs[0].timeline.push({ at: 'yesterday', kind: 'note', message: 'x' }))));
  t.false(mutate((r) => (r.jobs[0].status = 'ok' as never)));
});

test('readRunRecord: a run dir or a file; typed errors naming the file for missing, non-JSON, wrong version, invalid', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-report-');
  t.teardown(cleanup);
  const record = await makeRunRecord({ seed: 6, repeats: 1 });
  await mkdir(join(dir, 'run'));
  await writeFile(join(dir, 'run/run.json'), JSON.stringify(record));
  t.is((await readRunRecord(join(dir, 'run'))).runId, record.runId);
  t.is((await readRunRecord(join(dir, 'run/run.json'))).jobs.length, record.jobs.length);
  const cases: Array<[string, string, RegExp]> = [
    ['notjson.json', '{"schemaVersion":1,', /not JSON/],
    ['v2.json', JSON.stringify({ ...record, schemaVersion: 2 }), /schemaVersion 2 is newer/],
    ['array.json', '[]', /not a run record/],
    ['bad.json', JSON.stringify({ ...record, jobs: [{ ...record.jobs[0], status: 'ok' }] }), /not a valid run record.*\n.*\/jobs\/0\/status/],
    ['dup.json', JSON.stringify({ ...record, jobs: [record.jobs[0], record.jobs[0]] }), /duplicate job id/],
  ];
  for (const [name, text, re] of cases) {
    await writeFile(join(dir, name), text);
    const e = await t.throwsAsync(readRunRecord(join(dir, name)), { instanceOf: ReportInputError });
    t.regex(e!.message, re, name);
    t.true(e!.message.startsWith(join(dir, name)), e!.message);
  }
  await t.throwsAsync(readRunRecord(join(dir, 'nothing-here')), { instanceOf: ReportInputError, message: /no such file/ });
  await t.throwsAsync(readRunRecord(dir), { instanceOf: ReportInputError, message: /must hold run\.json/ });
});

test('epochRecord from a real judge() result: counts, bounded missed ranges, RESYNC ratio null, acceptability', (t) => {
  const volume = { offset: 0, length: 1024 * 65536 };
  const changed: Array<[number, number]> = [];
  for (let i = 0; i < 40; i++) changed.push([i * 24, 2]);
  const claim = { decoder: 't', state: 'valid' as const, reason: null, granularity: 65536, volume, blocks: [[0, 1], [900, 10]] as Array<[number, number]>, excluded: [] };
  const result = judge(claim, { granularity: 65536, changed });
  const e = epochRecord(result, { index: 0, base: '/b', top: '/t', volumeBlocks: 1024 });
  t.is(e.verdict, 'MISSED');
  t.false(e.acceptable);
  t.is(e.missed.length, MAX_MISSED_RANGES);
  t.is(e.missedRanges, result.missed.length);
  t.deepEqual(e.missed[0], result.missed[0]);
  t.is(e.missedBlocks, result.missedBlocks);
  t.truthy(e.map);
  // The map shows missed blocks where they are: cells 0.. up to block 960, none past it.
  const cells = decodeCells(e.map!.missed, e.map!.cells);
  const cellOf = (b: number) => Math.floor(b / e.map!.blocksPerCell);
  t.true(cells[cellOf(24)] > 0);
  t.is(cells[cellOf(1000)], 0);
  const lost = epochRecord(judge({ ...claim, state: 'lost', reason: 'in_use' }, { granularity: 65536, changed }), { index: 1, base: '/b', top: '/t', expected: ['RESYNC'] });
  t.is(lost.verdict, 'RESYNC');
  t.is(lost.overReportRatio, null);
  t.true(lost.acceptable);
  t.deepEqual(lost.claim, { state: 'lost', reason: 'in_use' });
  const exact = epochRecord(judge({ ...claim, blocks: [] }, { granularity: 65536, changed: [] }), { index: 2, base: '/b', top: '/t' });
  t.is(exact.verdict, 'EXACT');
  t.is(exact.overReportRatio, 1);
  const inf = epochRecord(judge(claim, { granularity: 65536, changed: [] }), { index: 3, base: '/b', top: '/t' });
  t.is(inf.verdict, 'SUPERSET');
  t.is(inf.overReportRatio, null);
});

test('blockMap: levels by share, full cell f, empty string when none', (t) => {
  const m = blockMap({ blocks: 100, cells: 10, missed: [[0, 10], [15, 1]], extra: [] });
  t.is(m.cells, 10);
  t.is(m.blocksPerCell, 10);
  t.is(m.missed, 'f200000000');
  t.is(m.extra, '');
  const odd = blockMap({ blocks: 7, cells: 256, missed: [[6, 5]] });
  t.is(odd.cells, 7);
  t.is(odd.missed, '000000f');
  t.is(blockMap({ blocks: 0, missed: [[0, 1]] }).cells, 0);
});

test('RunRecorder: plan order, derived status, infra-error for unfinished jobs, timeline sorted and capped', async (t) => {
  const calls: string[] = [];
  const job = (id: string) => ({ id, scenario: { name: 's', file: 's.yaml' }, guest: { name: 'g', os: { family: 'linux' as const, build: 'Linux 6.1' }, tracker: { name: 'dm-era', decoder: 'dm-era', version: '6.1' } }, repeat: 1, seed: 1 });
  let clock = 0;
  const rec = new RunRecorder({ runId: 'r1', startedAt: new Date(0).toISOString(), harness: { version: 'x' }, seed: 1, hosts: [], jobs: [job('a'), job('b'), job('c')] }, { onBegin: () => void calls.push('begin'), onJobBegin: (j) => void calls.push(`jb:${j.id}`), onStep: (j, s) => void calls.push(`step:${j.id}:${s.kind}`), onEpoch: (j, e) => void calls.push(`epoch:${j.id}:${e.verdict}`), onJobEnd: (j) => void calls.push(`je:${j.id}:${j.status}`), onEnd: (r) => void calls.push(`end:${r.totals.jobs}`) }, { now: () => new Date(clock), maxTimelineEvents: 3 });
  await rec.begin();
  await rec.jobBegin(job('b'));
  for (let i = 0; i < 10; i++) rec.event('b', { at: new Date(1000 - i).toISOString(), kind: 'qmp', event: `E${i}` });
  await rec.step('b', { index: 0, kind: 'boot', startedAt: new Date(0).toISOString(), durationMs: 5.4, ok: false, allowFailure: true });
  await rec.epoch('b', epochRecord(judge({ decoder: 't', state: 'valid', reason: null, granularity: 4096, volume: { offset: 0, length: 4096 * 8 }, blocks: [], excluded: [] }, { granularity: 4096, changed: [[1, 1]] }), { index: 0, base: '/b', top: '/t', expected: ['MISSED'] }));
  clock = 5000;
  const b = await rec.jobEnd('b');
  t.is(b.status, 'passed', 'a failing step with allowFailure and an expected MISSED pass');
  t.is(b.timeline.filter((e) => e.kind === 'qmp').length, 3);
  t.is(b.timelineDropped, 7);
  t.true(b.timeline.every((e, i, a) => i === 0 || Date.parse(a[i - 1].at) <= Date.parse(e.at)));
  t.is(b.durationMs, 5000);
  await rec.jobBegin(job('a'));
  await rec.step('a', { index: 0, kind: 'boot', startedAt: new Date(0).toISOString(), durationMs: 1, ok: false, error: 'x'.repeat(10000) });
  const a = await rec.jobEnd('a');
  t.is(a.status, 'failed');
  t.true(a.steps[0].error!.length <= 4096);
  await t.throwsAsync(rec.jobEnd('a'), { message: /ended twice/ });
  // Speculation: the copy that lost ends after the job was recorded; the record lists it too.
  rec.amendAttempts('a', [{ host: 'h1', attempt: 1, startedAt: new Date(0).toISOString(), durationMs: 10.6, outcome: 'superseded', error: 'SchedulerError: job a: superseded by another attempt' }, { host: 'h2', attempt: 2, startedAt: new Date(0).toISOString(), durationMs: 4, outcome: 'ok', speculative: true }]);
  t.throws(() => rec.amendAttempts('c', []), { message: /was not begun/ });
  rec.cancel();
  const record = await rec.end();
  t.deepEqual(record.jobs[0].attempts.map((x) => [x.host, x.outcome, x.durationMs, x.speculative ?? false]), [['h1', 'superseded', 11, false], ['h2', 'ok', 4, true]]);
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  t.true(ajv.validate(published, record), JSON.stringify(ajv.errors));
  t.deepEqual(record.jobs.map((j) => `${j.id}:${j.status}`), ['a:failed', 'b:passed', 'c:infra-error']);
  t.regex(record.jobs[2].error!, /cancelled/);
  t.true(record.cancelled);
  t.deepEqual(record.totals, computeTotals(record.jobs));
  t.is(record.totals.unexpectedMissed, 0);
  t.is(record.totals.verdicts.MISSED, 1);
  t.deepEqual(calls, ['begin', 'jb:b', 'step:b:boot', 'epoch:b:MISSED', 'je:b:passed', 'jb:a', 'step:a:boot', 'je:a:failed', 'jb:c', 'je:c:infra-error', 'end:3']);
});

test('docs/reports.md documents every field of the run record and of the run config', async (t) => {
  const doc = await readFile(join(ROOT, 'docs/reports.md'), 'utf8');
  const { RUN_CONFIG_SCHEMA } = await import('../../src/report/index.ts');
  const names = new Set<string>();
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if (k === 'properties' && v && typeof v === 'object') for (const p of Object.keys(v)) names.add(p);
        walk(v);
      }
    }
  };
  walk(RUN_RECORD_SCHEMA);
  walk(RUN_CONFIG_SCHEMA);
  names.delete('$schema');
  // Each name must appear as a word inside some `code span` of the doc (`guest.os`, `data?`, `failOn.missed`…).
  const code = [...doc.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`]+)`/g)].map((m) => m[1]).join('\n');
  const missing = [...names].filter((n) => !new RegExp(`(^|[^A-Za-z0-9_])${n}([^A-Za-z0-9_]|$)`, 'm').test(code));
  t.deepEqual(missing, []);
});
