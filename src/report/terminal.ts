/**
 * Progress while a run goes and a summary table at its end, written to an injected stream (the
 * CLI passes stderr or stdout; this module never prints by itself).
 *   - on a TTY: one live status line, redrawn in place (`\r` + clear line), with finished jobs'
 *     problems printed above it;
 *   - elsewhere (CI logs): one plain line per finished job, nothing redrawn.
 */
import type { Reporter } from './reporter.ts';
import type { EpochRecord, JobRecord, JobRef, RunBegin, RunRecord, StepRecord } from './run-record.ts';
import { buildOf, formatDuration, formatPercent, formatRatio, groupMetrics, overReportRatio, resyncRate } from './metrics.ts';
import { failureSummary } from './junit.ts';
import { asExpected, runOutcome } from './recorder.ts';

export interface TextStream {
  write(chunk: string): unknown;
}

export interface TerminalReporterOptions {
  stream: TextStream;
  /** Live status line. */
  isTTY: boolean;
  /** ANSI colours. @default isTTY */
  color?: boolean;
  /** Width of the status line. @default 100 */
  columns?: number;
}

const ICON: Record<JobRecord['status'], string> = { passed: '✓', failed: '✗', 'infra-error': '!' };

export class TerminalReporter implements Reporter {
  readonly name = 'terminal';
  readonly #out: TextStream;
  readonly #tty: boolean;
  readonly #color: boolean;
  readonly #columns: number;
  #planned = 0;
  #done = 0;
  #counts = { passed: 0, failed: 0, 'infra-error': 0 };
  readonly #running = new Map<string, string>();
  #statusShown = false;

  constructor(options: TerminalReporterOptions) {
    this.#out = options.stream;
    this.#tty = options.isTTY;
    this.#color = options.color ?? options.isTTY;
    this.#columns = Math.max(40, options.columns ?? 100);
  }

  #paint(code: string, text: string): string {
    return this.#color ? `\x1b[${code}m${text}\x1b[0m` : text;
  }

  #red(t: string): string {
    return this.#paint('31', t);
  }

  #statusText(): string {
    const c = this.#counts;
    const running = [...this.#running.entries()].map(([id, what]) => `${id}${what ? ` (${what})` : ''}`);
    let text = `[${this.#done}/${this.#planned}] ✓ ${c.passed}  ✗ ${c.failed}  ! ${c['infra-error']}${running.length ? `  running: ${running.join(', ')}` : ''}`;
    if (text.length > this.#columns - 1) text = `${text.slice(0, this.#columns - 2)}…`;
    return text;
  }

  #redraw(): void {
    if (!this.#tty) return;
    this.#out.write(`\r\x1b[2K${this.#statusText()}`);
    this.#statusShown = true;
  }

  /** A line above the status line (TTY) or a plain line. */
  #line(text: string): void {
    if (this.#tty && this.#statusShown) this.#out.write('\r\x1b[2K');
    this.#out.write(`${text}\n`);
    this.#statusShown = false;
    this.#redraw();
  }

  onBegin(run: RunBegin): void {
    this.#planned = run.jobs.length;
    this.#line(`cbt-harness run ${run.runId}: ${run.jobs.length} job(s) on ${run.hosts.length} host(s), seed ${run.seed}`);
  }

  onJobBegin(job: JobRef): void {
    this.#running.set(job.id, job.host ? `on ${job.host.name}` : '');
    if (!this.#tty) this.#line(`  started ${job.id}${job.host ? ` on ${job.host.name}` : ''}`);
    else this.#redraw();
  }

  onStep(job: JobRef, step: StepRecord): void {
    if (!this.#running.has(job.id)) return;
    this.#running.set(job.id, `${step.kind}${step.ok ? '' : ' failed'}`);
    this.#redraw();
  }

  onEpoch(job: JobRef, epoch: EpochRecord): void {
    if (!this.#running.has(job.id)) return;
    this.#running.set(job.id, `epoch ${epoch.index}: ${epoch.verdict}`);
    if (epoch.verdict === 'MISSED' && !epoch.acceptable) this.#line(this.#red(`  MISSED ${job.id} epoch ${epoch.index}: ${epoch.missedBlocks} block(s) not claimed${epoch.missed[0] ? `, first at block ${epoch.missed[0][0]}` : ''}`));
    else this.#redraw();
  }

  onJobEnd(job: JobRecord): void {
    this.#running.delete(job.id);
    this.#done++;
    this.#counts[job.status]++;
    const verdicts = job.epochs.map((e) => e.verdict).join(',') || '–';
    const ok = asExpected(job);
    const knownBad = job.expectedStatus === 'failed';
    const icon = knownBad ? (ok ? '✓' : '✗') : ICON[job.status];
    const label = knownBad ? (ok ? 'failed as it must' : job.status === 'passed' ? 'NOT CAUGHT' : job.status) : job.status;
    let line = `${icon} ${label.padEnd(11)} ${job.id}  ${buildOf(job)}  ${verdicts}  ${formatDuration(job.durationMs)}`;
    if (job.status === 'failed') line += `\n    ${failureSummary(job).message}`;
    if (knownBad && job.status === 'passed') line += '\n    a known-bad tracker passed: the harness did not catch it';
    if (job.status === 'infra-error') line += `\n    ${job.error ?? ''}`;
    this.#line(ok ? line : this.#red(line));
  }

  onEnd(record: RunRecord): void {
    if (this.#tty && this.#statusShown) this.#out.write('\r\x1b[2K');
    this.#statusShown = false;
    this.#out.write(`${summaryTable(record, (t) => this.#red(t))}\n`);
  }
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => [...r[c]].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 || c === 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n');
}

/** The end-of-run summary: scenario × build rows, then totals. */
export function summaryTable(record: RunRecord, red: (t: string) => string = (t) => t): string {
  const groups = groupMetrics(record.jobs, (j) => `${j.scenario.name}\u0000${buildOf(j)}`);
  const rows: string[][] = [['scenario', 'OS build', 'jobs', 'pass', 'fail', 'infra', 'EXACT', 'SUPERSET', 'RESYNC', 'MISSED', 'over-report', 'resync']];
  const missedRows = new Set<number>();
  for (const [key, m] of [...groups.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const [scenario, build] = key.split('\u0000');
    if (m.unexpectedMissed) missedRows.add(rows.length);
    rows.push([scenario, build, String(m.jobs), String(m.passed), String(m.failed), String(m.infraErrors), String(m.verdicts.EXACT), String(m.verdicts.SUPERSET), String(m.verdicts.RESYNC), String(m.verdicts.MISSED), formatRatio(overReportRatio(m)), formatPercent(resyncRate(m))]);
  }
  const lines = table(rows).split('\n').map((l, i) => (missedRows.has(i) ? red(l) : l));
  const t = record.totals;
  const outcome = runOutcome(record);
  const unexpected = record.jobs.filter((j) => asExpected(j) === false).length;
  const knownBad = t.expectedFailures || t.unexpectedPasses ? `; known-bad: ${t.expectedFailures} caught${t.unexpectedPasses ? `, ${red(`${t.unexpectedPasses} NOT CAUGHT`)}` : ''}` : '';
  const status = (outcome === 'passed' ? 'all as expected' : red(`${unexpected} not as expected, ${t.infraErrors} infrastructure error(s)`)) + knownBad;
  lines.push('');
  lines.push(`run ${record.runId}: ${outcome.toUpperCase()}: ${t.jobs} job(s), ${t.passed} passed, ${t.failed} failed, ${status}; ${t.epochs} epoch(s): ${t.verdicts.EXACT} EXACT, ${t.verdicts.SUPERSET} SUPERSET, ${t.verdicts.RESYNC} RESYNC, ${t.verdicts.MISSED ? red(`${t.verdicts.MISSED} MISSED`) : '0 MISSED'}${t.unexpectedMissed !== t.verdicts.MISSED ? ` (${t.verdicts.MISSED - t.unexpectedMissed} expected)` : ''}; ${formatDuration(record.durationMs)}`);
  return lines.join('\n');
}
