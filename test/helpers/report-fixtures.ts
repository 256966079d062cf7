/**
 * Realistic run records for report tests: several OS builds and driver versions, scenarios with
 * faults, repeats, a verdict mix that depends on (build, driver) so trends and comparisons have
 * something to find. Built through the real `RunRecorder` and `epochRecord`, from `VerifyResult`s
 * shaped like `judge` returns them.
 */
import { RunRecorder, epochRecord, type EpochInput } from '../../src/report/recorder.ts';
import type { GuestInfo, JobRef, RunRecord, TimelineEvent, TrackerInfo } from '../../src/report/run-record.ts';
import type { Reporter } from '../../src/report/reporter.ts';
import type { Verdict, VerifyResult } from '../../src/verify/index.ts';
import { randInt, rng } from './tools.ts';

export interface BuildSpec {
  guest: string;
  family: 'linux' | 'windows';
  build: string;
  name: string;
  kernel?: string;
}

export const BUILDS: BuildSpec[] = [
  { guest: 'linux-ref', family: 'linux', build: 'Linux 6.1.0-28-amd64', name: 'Debian 12', kernel: '6.1.0-28-amd64' },
  { guest: 'win10-22h2', family: 'windows', build: 'Windows 10 22H2 19045.3930', name: 'Windows 10 22H2' },
  { guest: 'win11-23h2', family: 'windows', build: 'Windows 11 23H2 22631.3007', name: 'Windows 11 23H2' },
  { guest: 'win11-24h2', family: 'windows', build: 'Windows 11 24H2 26100.2605', name: 'Windows 11 24H2' },
  { guest: 'ws2022', family: 'windows', build: 'Windows Server 2022 20348.2227', name: 'Windows Server 2022' },
];

export const DRIVER_VERSIONS = ['2.3.0', '2.4.0', '2.4.1'];

export const SCENARIOS = [
  { name: 'clean-reboot', file: 'scenarios/clean-reboot.yaml', description: 'orderly reboot between two backups', fault: 'reboot' },
  { name: 'hard-reset', file: 'scenarios/hard-reset.yaml', description: 'system_reset while writing', fault: 'system_reset' },
  { name: 'power-cut', file: 'scenarios/power-cut.yaml', description: 'QEMU killed mid-write, restarted from the images', fault: 'kill' },
  { name: 'volume-offline', file: 'scenarios/volume-offline.yaml', description: 'volume taken offline and back', fault: 'offline' },
  { name: 'hot-unplug', file: 'scenarios/hot-unplug.yaml', description: 'disk hot-unplugged and re-attached', fault: 'device_del' },
];

export interface FixtureOptions {
  seed?: number;
  runId?: string;
  /** @default '2025-01-06T02:00:00.000Z' */
  startedAt?: string;
  builds?: BuildSpec[];
  /** Driver version of every Windows guest in this run. @default '2.4.0' */
  driverVersion?: string;
  scenarios?: typeof SCENARIOS;
  /** @default 2 */
  repeats?: number;
  /** @default 3 */
  epochsPerJob?: number;
  /** Probability of MISSED for an epoch of (build, driver). @default built-in table */
  missRate?: (build: string, driver: string, scenario: string) => number;
  /** Probability of RESYNC. @default 0.1 (0.6 for power-cut) */
  resyncRate?: (build: string, driver: string, scenario: string) => number;
  /** Probability that a job ends in infra-error. @default 0.03 */
  infraRate?: number;
  /** Put markup and quotes in names, errors and stderr (escaping tests). */
  hostile?: boolean;
  /** Timeline events per job besides steps and verdicts. @default 12 */
  eventsPerJob?: number;
  /** Volume size in claim blocks. @default 4096 */
  volumeBlocks?: number;
  /** Add a known-bad tracker job (must fail) on the first build: caught (MISSED) or not (EXACT). */
  knownBad?: 'caught' | 'not-caught';
  reporter?: Reporter;
}

/** The default verdict mix: Windows 11 24H2 with driver 2.4.1 misses blocks after faults. */
export function defaultMissRate(build: string, driver: string, scenario: string): number {
  if (build.includes('24H2') && driver === '2.4.1' && scenario !== 'clean-reboot') return 0.5;
  if (driver === '2.3.0' && scenario === 'hot-unplug') return 0.3;
  return 0;
}

function tracker(b: BuildSpec, driver: string): TrackerInfo {
  if (b.family === 'linux') return { name: 'dm-era', decoder: 'dm-era', version: b.kernel ?? '6.1' };
  return { name: 'cbtf', decoder: 'cbtf', version: driver };
}

function verifyResult(r: () => number, verdict: Verdict, blocks: number): VerifyResult {
  const changedBlocks = randInt(r, 1, Math.max(1, Math.floor(blocks / 8)));
  if (verdict === 'RESYNC') return { verdict, missedBlocks: 0, extraBlocks: 0, changedBlocks, claimedBlocks: 0, granularity: 65536, missed: [], extra: [], changed: [], overReportRatio: 0, reason: 'generation changed: tracking restarted', excludedTruthBlocks: 2 };
  const missed: Array<[number, number]> = [];
  let missedBlocks = 0;
  if (verdict === 'MISSED') {
    let at = randInt(r, 0, blocks / 4);
    const n = randInt(r, 1, 24);
    for (let i = 0; i < n && at < blocks; i++) {
      const c = Math.min(randInt(r, 1, 16), blocks - at);
      missed.push([at, c]);
      missedBlocks += c;
      at += c + randInt(r, 1, blocks / 32);
    }
  }
  const extraBlocks = verdict === 'EXACT' ? 0 : randInt(r, 1, Math.max(1, Math.floor(changedBlocks / 2)));
  const claimedBlocks = changedBlocks - Math.min(missedBlocks, changedBlocks) + extraBlocks;
  const finalVerdict: Verdict = missedBlocks > 0 ? 'MISSED' : extraBlocks > 0 ? 'SUPERSET' : 'EXACT';
  return { verdict: finalVerdict, missedBlocks, extraBlocks, changedBlocks: Math.max(changedBlocks, missedBlocks), claimedBlocks, granularity: 65536, missed, extra: [], changed: [], overReportRatio: claimedBlocks / Math.max(changedBlocks, missedBlocks), reason: null, excludedTruthBlocks: 2 };
}

function iso(base: number, offsetMs: number): string {
  return new Date(base + offsetMs).toISOString();
}

/** A valid run record (and the reporter calls of a real run, when `reporter` is given). */
export async function makeRunRecord(options: FixtureOptions = {}): Promise<RunRecord> {
  const seed = options.seed ?? 1;
  const r = rng(seed);
  const t0 = Date.parse(options.startedAt ?? '2025-01-06T02:00:00.000Z');
  const runId = options.runId ?? `run-${new Date(t0).toISOString().slice(0, 10)}-${seed}`;
  const builds = options.builds ?? BUILDS;
  const driver = options.driverVersion ?? '2.4.0';
  const scenarios = (options.scenarios ?? SCENARIOS).map((s) => (options.hostile ? { ...s, name: `${s.name}<script>alert("x")</script>`, description: `a & b <i>"quoted"</i> 'single'` } : s));
  const repeats = options.repeats ?? 2;
  const epochsPerJob = options.epochsPerJob ?? 3;
  const missRate = options.missRate ?? defaultMissRate;
  const resyncRate = options.resyncRate ?? ((_b: string, _d: string, s: string) => (s === 'power-cut' ? 0.6 : 0.1));
  const infraRate = options.infraRate ?? 0.03;
  const blocks = options.volumeBlocks ?? 4096;
  const hosts = [
    { name: 'lab-1', type: 'ssh' as const, tags: ['kvm'], slots: 4 },
    { name: 'dock-1', type: 'docker' as const, tags: ['kvm'], slots: 2 },
  ];
  const refs: JobRef[] = [];
  for (const s of scenarios) {
    for (const b of builds) {
      for (let rep = 1; rep <= repeats; rep++) {
        const guest: GuestInfo = { name: b.guest, os: { family: b.family, build: b.build, name: b.name, ...(b.kernel ? { kernel: b.kernel } : {}) }, tracker: tracker(b, driver) };
        refs.push({ id: `${s.name}/${b.guest}/${rep}`, scenario: { name: s.name, file: s.file, description: s.description }, guest, repeat: rep, seed: (seed * 7919 + refs.length) >>> 0 });
      }
    }
  }
  if (options.knownBad) {
    const b = builds[0];
    const guest: GuestInfo = { name: b.guest, os: { family: b.family, build: b.build, name: b.name }, tracker: tracker(b, driver) };
    refs.push({ id: `known-bad-drop-writes/${b.guest}/1`, scenario: { name: 'known-bad-drop-writes', file: 'scenarios/known-bad/dm-era-drop-writes-reboot.yaml', description: 'metadata writes dropped' }, guest, repeat: 1, seed: 99, expectedStatus: 'failed' });
  }
  let clock = 0;
  const now = () => new Date(t0 + clock);
  const rec = new RunRecorder(
    { runId, startedAt: iso(t0, 0), harness: { version: '0.1.0', node: 'v24.0.0' }, seed, hosts, jobs: refs, labels: { pipeline: `p${seed}` } },
    options.reporter ?? {},
    { now },
  );
  await rec.begin();
  for (const ref of refs) {
    const host = hosts[randInt(r, 0, hosts.length - 1)];
    const knownBad = ref.expectedStatus === 'failed';
    const sc = knownBad ? { name: ref.scenario.name, fault: 'reboot' } : scenarios.find((s) => s.name === ref.scenario.name)!;
    const jobStart = clock;
    await rec.jobBegin({ ...ref, host: { name: host.name, type: host.type }, accel: { used: 'tcg', requested: 'auto', reason: 'KVM boot probe stalled in early boot; fell back to TCG' } }, iso(t0, clock));
    if (!knownBad && r() < infraRate) {
      clock += 30_000;
      const err = options.hostile ? 'InfrastructureError: host lab-1: ssh: <b>connection reset</b> & "gone"' : 'InfrastructureError: host lab-1: connection reset by peer';
      await rec.jobEnd(ref.id, { status: 'infra-error', error: err, host: { name: host.name, type: host.type }, attempts: [1, 2, 3].map((a) => ({ host: host.name, attempt: a, startedAt: iso(t0, jobStart + a * 10_000), durationMs: 10_000, outcome: 'infrastructure' as const, error: err })), endedAt: iso(t0, clock) });
      continue;
    }
    let stepIndex = 0;
    const step = async (kind: string, args: Record<string, unknown>, dur: number, ok = true, error?: string) => {
      rec.event(ref.id, { at: iso(t0, clock), kind: 'step', step: stepIndex, stepKind: kind, phase: 'begin' });
      clock += dur;
      await rec.step(ref.id, { index: stepIndex, kind, args, startedAt: iso(t0, clock - dur), durationMs: dur, ok, ...(error ? { error } : {}) });
      rec.event(ref.id, { at: iso(t0, clock), kind: 'step', step: stepIndex, stepKind: kind, phase: 'end', ok });
      stepIndex++;
    };
    await step('boot', { accel: 'auto' }, 7_500);
    rec.event(ref.id, { at: iso(t0, clock), kind: 'qmp', event: 'RESUME' });
    const events = options.eventsPerJob ?? 12;
    for (let ep = 0; ep < epochsPerJob; ep++) {
      rec.event(ref.id, { at: iso(t0, clock), kind: 'epoch', epoch: ep, phase: 'begin' });
      await step('checkpoint', {}, 400);
      rec.event(ref.id, { at: iso(t0, clock), kind: 'qmp', event: 'STOP' });
      rec.event(ref.id, { at: iso(t0, clock + 50), kind: 'epoch', epoch: ep, phase: 'snapshot' });
      rec.event(ref.id, { at: iso(t0, clock + 100), kind: 'qmp', event: 'RESUME' });
      for (let i = 0; i < Math.max(1, Math.floor(events / epochsPerJob)); i++) {
        const bad = options.hostile && i === 0;
        rec.event(ref.id, { at: iso(t0, clock + 200 + i * 10), kind: 'guest', command: bad ? `echo '<script>alert(1)</script>' > /tmp/x` : `fio --name=w${i} --rw=randwrite --size=64M --seed=${ref.seed + i}`, exitCode: 0, durationMs: 900, ...(bad ? { stderr: '</pre><script>alert("stderr")</script>' } : {}) });
      }
      await step('workload', { tool: 'fio', size: '64M' }, 5_000);
      rec.event(ref.id, { at: iso(t0, clock), kind: 'fault', fault: sc.fault, detail: `${sc.fault} at epoch ${ep}` });
      if (sc.fault === 'system_reset') rec.event(ref.id, { at: iso(t0, clock + 5), kind: 'qmp', event: 'RESET', data: { guest: false, reason: 'host-qmp-system-reset' } });
      await step(sc.fault === 'reboot' ? 'reboot' : 'fault', { fault: sc.fault }, 3_000);
      rec.event(ref.id, { at: iso(t0, clock), kind: 'epoch', epoch: ep, phase: 'verify' });
      const pMiss = missRate(ref.guest.os.build, ref.guest.tracker.version, sc.name);
      const pResync = resyncRate(ref.guest.os.build, ref.guest.tracker.version, sc.name);
      const x = r();
      let verdict: Verdict = x < pMiss ? 'MISSED' : x < pMiss + pResync ? 'RESYNC' : r() < 0.5 ? 'EXACT' : 'SUPERSET';
      if (knownBad) verdict = options.knownBad === 'caught' ? 'MISSED' : 'EXACT';
      const result = verifyResult(r, verdict, blocks);
      const expected: Verdict[] = sc.name === 'power-cut' ? ['EXACT', 'SUPERSET', 'RESYNC'] : [];
      const extra: Array<[number, number]> = result.extraBlocks ? [[randInt(r, blocks / 2, blocks - result.extraBlocks - 1), result.extraBlocks]] : [];
      const changedStart = randInt(r, 0, blocks / 2);
      const input: EpochInput = { index: ep, id: String(ep + 1), base: `/var/lib/cbt-harness/${runId}/${ref.id.replace(/[^A-Za-z0-9._-]+/g, '_')}/disk.e${ep}.qcow2`, top: `/var/lib/cbt-harness/${runId}/${ref.id.replace(/[^A-Za-z0-9._-]+/g, '_')}/disk.e${ep + 1}.qcow2`, expected, volumeBlocks: blocks, extra, changed: [[changedStart, Math.min(result.changedBlocks, blocks - changedStart)]], truthGranularity: 4096, startedAt: iso(t0, clock - 8_400), verifiedAt: iso(t0, clock + 1_200), verifyMs: 1_200 };
      clock += 1_200;
      await rec.epoch(ref.id, epochRecord(result, input));
    }
    await step('shutdown', {}, 2_000);
    clock += 500;
    await rec.jobEnd(ref.id, {
      host: { name: host.name, type: host.type },
      attempts: [{ host: host.name, attempt: 1, startedAt: iso(t0, jobStart), durationMs: clock - jobStart, outcome: 'ok' }],
      artifacts: { serialLog: `jobs/${ref.id.replace(/[^A-Za-z0-9._-]+/g, '_')}/serial.log`, timeline: `jobs/${ref.id.replace(/[^A-Za-z0-9._-]+/g, '_')}/timeline.jsonl` },
      endedAt: iso(t0, clock),
    });
  }
  return rec.end(iso(t0, clock + 1000));
}

/** Timeline events of a record, all jobs, for assertions. */
export function allEvents(record: RunRecord): TimelineEvent[] {
  return record.jobs.flatMap((j) => j.timeline);
}
