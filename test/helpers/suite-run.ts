/**
 * Runs `cbt-harness run` over scenario files the way the suite tests do: TCG, the suite's host
 * inventory, a fixed seed, a temporary output folder removed when the test ends.
 */
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { readRunRecord, type RunRecord } from '../../src/report/index.ts';
import { ROOT, runCli, tempDir } from './tools.ts';

const SUITE_HOSTS = join(ROOT, 'test/suite/hosts.suite.yaml');

/** One `run` of `files`; its output folder lives until the test ends. */
export async function suiteRun(t: ExecutionContext, files: string[], extra: string[] = []): Promise<{ exitCode: number; record: RunRecord; stderr: string; out: string }> {
  const { dir, cleanup } = await tempDir('cbt-suite-');
  t.teardown(cleanup);
  const r = await runCli(['run', ...files, '--out', dir, '--json', '--accel', 'tcg', '--seed', '20261123', '--hosts', SUITE_HOSTS, ...extra], { timeout: 25 * 60_000 });
  if (!r.stdout.trim().startsWith('{')) throw new Error(`no run record (exit ${r.exitCode}): ${r.stderr.slice(-3000)}`);
  const record = JSON.parse(r.stdout) as RunRecord;
  // The record on disk is valid against the published schema (readRunRecord validates) and is the one printed.
  const onDisk = await readRunRecord(dir);
  if (onDisk.runId !== record.runId) throw new Error(`run.json holds ${onDisk.runId}, stdout ${record.runId}`);
  return { exitCode: r.exitCode, record, stderr: r.stderr, out: dir };
}

