/**
 * The verdict on a whole run under a run config's failure policy (gate, nightly):
 *   exit 1 — a job did not end as it should (a failure, or a known-bad tracker that passed), a
 *            MISSED the policy does not allow, or anything worse than the baseline;
 *   exit 2 — otherwise, infrastructure errors (when `failOn.infraError`);
 *   exit 0 — otherwise.
 */
import type { Comparison } from './compare.ts';
import { asExpected } from './recorder.ts';
import type { RunConfig } from './run-config.ts';
import type { RunRecord } from './run-record.ts';

export interface RunEvaluation {
  exitCode: 0 | 1 | 2;
  /** Why the run fails, one line each. */
  problems: string[];
  /** Worth saying, not failing (no baseline yet, infrastructure errors when allowed). */
  notes: string[];
}

export type FailPolicy = Pick<RunConfig, 'failOn'>;

export function evaluateRun(record: RunRecord, policy: FailPolicy, comparison?: Comparison | null): RunEvaluation {
  const problems: string[] = [];
  const notes: string[] = [];
  for (const j of record.jobs) {
    if (asExpected(j) !== false) continue;
    problems.push(j.expectedStatus === 'failed' ? `${j.id}: a known-bad tracker passed; the harness did not catch it` : `${j.id}: failed (${j.epochs.map((e) => e.verdict).join(',') || 'no verdict'})${j.error ? `: ${j.error}` : ''}`);
  }
  if (policy.failOn.missed !== 'never') {
    for (const j of record.jobs) {
      if (j.expectedStatus === 'failed') continue;
      for (const e of j.epochs) {
        if (e.verdict !== 'MISSED') continue;
        const unexpected = !e.expected.includes('MISSED');
        if (unexpected || policy.failOn.missed === 'any') problems.push(`${j.id}: MISSED in epoch ${e.index} (${e.missedBlocks} block(s))${unexpected ? '' : ' although the scenario accepts it'}`);
      }
    }
  }
  if (policy.failOn.regression) {
    if (!comparison) notes.push('no baseline to compare with: regressions not checked');
    else for (const w of comparison.worse) problems.push(`worse than baseline ${comparison.baseline.runId}: ${w.message}`);
  }
  const failing = problems.length;
  const infra = record.jobs.filter((j) => j.status === 'infra-error');
  if (infra.length) (policy.failOn.infraError ? problems : notes).push(`${infra.length} job(s) hit infrastructure errors: ${infra.slice(0, 5).map((j) => j.id).join(', ')}${infra.length > 5 ? ', …' : ''}`);
  const exitCode: RunEvaluation['exitCode'] = failing > 0 ? 1 : problems.length > 0 ? 2 : 0;
  return { exitCode, problems, notes };
}
