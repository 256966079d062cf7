/**
 * JUnit XML: one <testcase> per job (scenario × guest × repeat), one <testsuite> per scenario.
 *
 * Chosen for the consumers CI uses:
 *   - GitLab (`artifacts:reports:junit`) reads testsuites/testsuite/testcase with `classname`,
 *     `name`, `file`, `time`; the text of <failure>/<error> is the details it shows; the first
 *     `[[ATTACHMENT|path]]` in <system-out> becomes a link (path relative to the job's artifacts);
 *   - Jenkins (junit plugin) reads the same plus <failure message type>, <properties> and
 *     <system-out>; it splits `classname` at its last dot into package and class, so scenario
 *     names keep their dots out of it;
 *   - GitHub test-report actions (dorny/test-reporter `java-junit`, mikepenz/action-junit-report)
 *     read testsuite counts, testcase `name`/`classname`/`time`/`file` and failure `message`.
 * A failed job is a <failure type="VERDICT"> carrying the verdict and the first missed ranges; an
 * infrastructure error is an <error type="infra-error">. Per-job facts (OS build, driver version,
 * host, accel, seed) are testcase <properties>, as pytest writes them.
 */
import type { Reporter } from './reporter.ts';
import type { EpochRecord, JobRecord, RunRecord } from './run-record.ts';
import { buildOf, driverOf } from './metrics.ts';
import { writeFileAtomic } from './write-file.ts';
import { el, renderXml, type XmlElement } from './xml.ts';

/** Longest <system-out> per testcase. */
const MAX_SYSTEM_OUT = 64 * 1024;

function seconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}

/** xs:dateTime without zone or fraction, as Ant and Surefire write it (the value is UTC). */
function timestamp(iso: string): string {
  return iso.replace(/\.\d+/, '').replace(/Z$|[+-]\d\d:\d\d$/, '');
}

function props(entries: Array<[string, string | number | undefined]>): XmlElement {
  return el('properties', undefined, entries.filter(([, v]) => v !== undefined && v !== '').map(([name, value]) => el('property', { name, value: String(value) })));
}

function rangesText(e: EpochRecord): string {
  if (!e.missed.length) return '';
  const g = e.granularity;
  const shown = e.missed.map(([f, c]) => `blocks ${f}+${c} (bytes ${f * g}..${(f + c) * g})`).join(', ');
  return `first missed ranges (of ${e.missedRanges}, ${g}-byte blocks from the volume start): ${shown}`;
}

function epochLine(e: EpochRecord): string {
  const expected = e.expected.length ? e.expected.join('|') : 'not MISSED';
  const ratio = e.overReportRatio === null ? '–' : e.overReportRatio.toFixed(3);
  const reason = e.claim.reason ? `; claim lost: ${e.claim.reason}` : '';
  return `epoch ${e.index}${e.id !== undefined ? ` (${e.id})` : ''}: ${e.verdict} (expected ${expected})${e.acceptable ? '' : ' NOT ACCEPTABLE'}; changed ${e.changedBlocks}, claimed ${e.claimedBlocks}, missed ${e.missedBlocks}, extra ${e.extraBlocks} blocks of ${e.granularity} bytes; over-report ${ratio}${reason}`;
}

/** The headline of a failed job: its first unacceptable verdict, else its first failed step. */
export function failureSummary(j: JobRecord): { type: string; message: string } {
  const bad = j.epochs.find((e) => !e.acceptable);
  if (bad) {
    const first = bad.missed[0];
    const where = first ? `; first missed blocks ${first[0]}+${first[1]}` : '';
    const what = bad.verdict === 'MISSED' ? `${bad.missedBlocks} changed block(s) not claimed` : `expected ${bad.expected.join('|') || 'not MISSED'}`;
    return { type: bad.verdict, message: `${bad.verdict} in epoch ${bad.index}: ${what}${where}` };
  }
  const step = j.steps.find((s) => !s.ok && !s.allowFailure);
  if (step) return { type: 'step-failed', message: `step ${step.index} (${step.kind}) failed: ${step.error ?? 'no error text'}` };
  return { type: 'failed', message: j.error ?? 'failed' };
}

function caseName(j: JobRecord): string {
  return `${buildOf(j)} [${j.guest.name}, ${driverOf(j)}] #${j.repeat}`;
}

function systemOut(j: JobRecord): string {
  const lines = j.expectedStatus === 'failed' && j.status === 'failed' ? [`known-bad tracker failed as it must: ${failureSummary(j).message}`] : [];
  lines.push(`job ${j.id} on ${j.host ? `${j.host.name} (${j.host.type})` : 'no host'}${j.accel ? `, accel ${j.accel.used}${j.accel.reason ? ` (${j.accel.reason})` : ''}` : ''}, seed ${j.seed}`);
  for (const e of j.epochs) lines.push(epochLine(e));
  for (const s of j.steps) if (!s.ok) lines.push(`step ${s.index} ${s.kind} failed${s.allowFailure ? ' (allowed)' : ''}: ${s.error ?? ''}`);
  for (const a of j.attempts) if (a.outcome !== 'ok') lines.push(`attempt ${a.attempt} on ${a.host}: ${a.outcome}${a.error ? `: ${a.error}` : ''}`);
  // GitLab links the first attachment; the serial console is what a person opens first.
  if (j.artifacts.serialLog) lines.push(`[[ATTACHMENT|${j.artifacts.serialLog}]]`);
  let text = lines.join('\n');
  if (text.length > MAX_SYSTEM_OUT) text = `${text.slice(0, MAX_SYSTEM_OUT)}\n…(cut)`;
  return text;
}

/** What CI sees: a known-bad job that failed passes; one that passed is a failure. */
export function junitOutcome(j: JobRecord): 'pass' | 'failure' | 'error' {
  if (j.status === 'infra-error') return 'error';
  return j.status === (j.expectedStatus ?? 'passed') ? 'pass' : 'failure';
}

function testcase(j: JobRecord): XmlElement {
  const children: Array<XmlElement | undefined> = [
    props([
      ['os.build', buildOf(j)],
      ['guest', j.guest.name],
      ['tracker', j.guest.tracker.name],
      ['tracker.version', j.guest.tracker.version],
      ['host', j.host?.name],
      ['accel', j.accel?.used],
      ['seed', j.seed],
      ['repeat', j.repeat],
      ['verdicts', j.epochs.map((e) => e.verdict).join(',')],
      ['expected.status', j.expectedStatus],
    ]),
  ];
  if (j.expectedStatus === 'failed' && j.status === 'passed') {
    const message = 'known-bad tracker passed: the harness did not catch it';
    children.push(el('failure', { message, type: 'not-caught' }, [[message, ...j.epochs.map(epochLine)].join('\n')]));
  } else if (j.status === 'failed' && j.expectedStatus !== 'failed') {
    const f = failureSummary(j);
    const detail = [f.message, ...j.epochs.filter((e) => !e.acceptable).flatMap((e) => [epochLine(e), rangesText(e)].filter(Boolean)), j.error ? `error: ${j.error}` : ''].filter(Boolean).join('\n');
    children.push(el('failure', { message: f.message, type: f.type }, [detail]));
  } else if (j.status === 'infra-error') {
    const message = `infrastructure error: ${j.error ?? 'unknown'}`;
    children.push(el('error', { message, type: 'infra-error' }, [[message, ...j.attempts.map((a) => `attempt ${a.attempt} on ${a.host}: ${a.outcome}${a.error ? `: ${a.error}` : ''}`)].join('\n')]));
  }
  children.push(el('system-out', undefined, [systemOut(j)]));
  return el('testcase', { classname: j.scenario.name.replace(/\./g, '_'), name: caseName(j), file: j.scenario.file, time: seconds(j.durationMs) }, children);
}

export function junitXml(record: RunRecord): string {
  const byScenario = new Map<string, JobRecord[]>();
  for (const j of record.jobs) {
    const list = byScenario.get(j.scenario.name) ?? [];
    list.push(j);
    byScenario.set(j.scenario.name, list);
  }
  const suites: XmlElement[] = [];
  let id = 0;
  for (const [name, jobs] of byScenario) {
    const failures = jobs.filter((j) => junitOutcome(j) === 'failure').length;
    const errors = jobs.filter((j) => junitOutcome(j) === 'error').length;
    const first = jobs.reduce((a, b) => (a.startedAt <= b.startedAt ? a : b));
    const time = jobs.reduce((s, j) => s + j.durationMs, 0);
    suites.push(
      el('testsuite', { name, tests: jobs.length, failures, errors, skipped: 0, time: seconds(time), timestamp: timestamp(first.startedAt), hostname: 'cbt-harness', id: id++, package: 'cbt-harness' }, [
        props([
          ['run.id', record.runId],
          ['run.seed', record.seed],
          ['scenario.file', jobs[0].scenario.file],
          ['scenario.description', jobs[0].scenario.description],
          ['harness.version', record.harness.version],
        ]),
        ...jobs.map(testcase),
      ]),
    );
  }
  const t = record.totals;
  const failures = record.jobs.filter((j) => junitOutcome(j) === 'failure').length;
  return renderXml(el('testsuites', { name: `cbt-harness run ${record.runId}`, tests: t.jobs, failures, errors: t.infraErrors, skipped: 0, time: seconds(record.durationMs), timestamp: timestamp(record.startedAt) }, suites));
}

export class JunitReporter implements Reporter {
  readonly name = 'junit';
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  async onEnd(record: RunRecord): Promise<void> {
    await writeFileAtomic(this.#file, junitXml(record));
  }
}
