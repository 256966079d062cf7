/**
 * npm run bench:suite — every scenario of the library once under TCG, wall time split into:
 *   boot    the first boot, the final power-off, and the steps that restart the guest (reboot,
 *           reset, power cut, start, shutdown, power button): QEMU and the guest's own shutdown/boot;
 *   guest   guest commands of the other steps (writes, fio, checkpoints, offline/online…);
 *   verify  the offline verification of each epoch;
 *   sleep   scenario `sleep` steps;
 *   harness everything else: scenario loading, disk creation, QMP snapshots, SSH set-up, records.
 * Target: harness overhead < 10 % of wall time.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJob, type JobOutcome } from '../src/scenario/job.ts';
import { ROOT } from './util.ts';

const RESTARTS = new Set(['reboot', 'reset', 'powercut', 'start', 'shutdown', 'powerbutton']);

function split(out: JobOutcome) {
  const wall = out.durationMs;
  const t0 = Date.parse(out.startedAt);
  const first = out.steps[0];
  const last = out.steps.at(-1);
  // Before the first step: disks, QEMU, the guest's boot. After the last: the guest's power-off.
  let boot = first ? Date.parse(first.startedAt) - t0 : wall;
  if (last) boot += Math.max(0, Date.parse(out.endedAt) - (Date.parse(last.startedAt) + last.durationMs));
  let guest = 0;
  let verify = 0;
  let sleep = 0;
  let harness = 0;
  let prevEnd: number | null = null;
  for (const s of out.steps) {
    const a = Date.parse(s.startedAt);
    const b = a + s.durationMs;
    if (prevEnd !== null) harness += Math.max(0, a - prevEnd); // between steps: the runner's own work
    prevEnd = b;
    if (RESTARTS.has(s.kind)) {
      boot += s.durationMs;
      continue;
    }
    // Inside a step: what the guest commands took, what verification took; the rest is the harness.
    let g = 0;
    for (const ev of out.timeline) if (ev.kind === 'guest' && Date.parse(ev.at) >= a && Date.parse(ev.at) <= b) g += ev.durationMs;
    const v = s.kind === 'verify' ? out.epochs.filter((e) => e.verifiedAt && Date.parse(e.verifiedAt) >= a && Date.parse(e.verifiedAt) <= b + 5).reduce((n, e) => n + (e.verifyMs ?? 0), 0) : 0;
    const z = s.kind === 'sleep' ? s.durationMs : 0;
    g = Math.min(g, s.durationMs - v - z);
    guest += g;
    verify += v;
    sleep += z;
    harness += Math.max(0, s.durationMs - g - v - z);
  }
  return { wall, boot, guest: Math.round(guest), verify, sleep, harness: Math.round(harness), overheadPct: +((100 * harness) / wall).toFixed(1) };
}

const files = (await readdir(join(ROOT, 'scenarios'))).filter((f) => f.endsWith('.yaml')).sort();
const rows: Array<Record<string, unknown>> = [];
let total = { wall: 0, harness: 0 };
for (const f of files) {
  const file = join(ROOT, 'scenarios', f);
  const workDir = await mkdtemp(join(tmpdir(), 'cbt-bench-suite-'));
  try {
    const out = await runJob({ jobId: f.replace(/\.yaml$/, ''), runId: 'bench-suite', scenarioFile: file, scenarioText: await readFile(file, 'utf8'), seed: 1, repeat: 0, workDir, accel: 'tcg' });
    const s = split(out);
    total = { wall: total.wall + s.wall, harness: total.harness + s.harness };
    rows.push({ scenario: f.replace(/\.yaml$/, ''), status: out.status, ...s });
    process.stderr.write(`${f}: ${out.status} wall ${s.wall} ms, boot ${s.boot}, guest ${s.guest}, verify ${s.verify}, harness ${s.harness} (${s.overheadPct} %)\n`);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
const overall = +((100 * total.harness) / total.wall).toFixed(1);
process.stdout.write(`${JSON.stringify({ scenarios: rows, harnessOverheadPct: overall }, null, 2)}\n`);
process.stderr.write(`harness overhead over the library: ${overall} % of wall time (target < 10 %)\n`);
