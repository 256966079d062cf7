/**
 * The run record: one JSON document per `cbt-harness run` (`DIR/run.json`). Its shape is
 * published as a JSON Schema (reports/schema/run-record.json, from `RUN_RECORD_SCHEMA`) and
 * documented field by field in docs/reports.md.
 *
 * Versioning: `schemaVersion` is an integer. Adding an optional field keeps it; renaming,
 * removing or changing the meaning of a field bumps it. Readers accept `SCHEMA_VERSION` only
 * (and say which version they found).
 *
 * Conventions: times are ISO 8601 UTC strings (`startedAt`), durations integer milliseconds
 * (`durationMs`); block counts and ranges are in claim blocks (`granularity` bytes) from the
 * tracked volume's start; paths of images are host paths, paths of artifacts are relative to the
 * run directory.
 */
import type { Verdict } from '../verify/index.ts';

export const SCHEMA_VERSION = 1;

/** `[firstBlock, count]`, like the verify module's runs. */
export type BlockRange = [number, number];

export type JobStatus = 'passed' | 'failed' | 'infra-error';
export const JOB_STATUSES: readonly JobStatus[] = ['passed', 'failed', 'infra-error'];

export type HostType = 'local' | 'ssh' | 'docker';

/** One host of the inventory used by the run: what a report may show (no address, no key). */
export interface HostInfo {
  name: string;
  type: HostType;
  tags: string[];
  /** Jobs that may run at once on it. */
  slots?: number;
  /** Why no job was placed on it: it could not be reached (or swept) when the run began. */
  down?: string;
}

export interface ScenarioInfo {
  name: string;
  /** The scenario file, as given (relative to the working directory or absolute). */
  file: string;
  description?: string;
}

export interface OsInfo {
  family: 'linux' | 'windows' | 'other';
  /**
   * The OS build as reports group it: "Windows 11 23H2 22631.3007", "Windows Server 2022
   * 20348.2227", "Linux 6.1.0-28-amd64". Equal strings are the same build.
   */
  build: string;
  /** Product name without the build number ("Windows 11 23H2", "Debian 12"). */
  name?: string;
  /** Linux: `uname -r`. */
  kernel?: string;
}

export interface TrackerInfo {
  /** What is tracking: "dm-era", "qemu-bitmap", "cbtf", a plugin name. */
  name: string;
  /** The decoder that read its claim (the same as `name` unless a plugin). */
  decoder: string;
  /** Driver or tracker version ("2.4.1", the kernel for dm-era, the QEMU version for bitmaps). */
  version: string;
}

export interface GuestInfo {
  /** Name in the guest catalog ("linux-ref", "win11-23h2"). */
  name: string;
  os: OsInfo;
  tracker: TrackerInfo;
}

export interface AccelInfo {
  /** What the VM ran with. */
  used: 'kvm' | 'tcg' | 'hvf' | 'whpx' | 'none';
  /** What was asked for. */
  requested?: 'auto' | 'kvm' | 'tcg' | 'hvf' | 'whpx';
  /** Why this accelerator ("KVM boot probe stalled in early boot; fell back to TCG"). */
  reason?: string;
}

/** One attempt of a job on a host (the scheduler's `AttemptRecord`). */
export interface AttemptInfo {
  host: string;
  /** 1 for the first attempt. */
  attempt: number;
  startedAt: string;
  durationMs: number;
  /** `superseded`: a concurrent copy (speculation) gave the job its outcome first; this one was stopped or discarded. */
  outcome: 'ok' | 'infrastructure' | 'error' | 'cancelled' | 'superseded';
  /** `Name: message` of the error, when there was one. */
  error?: string;
  /** A backup copy started while another attempt of the job ran (`limits.speculate`). */
  speculative?: boolean;
}

/** One scenario step as it ran. */
export interface StepRecord {
  /** Position in the scenario, from 0. */
  index: number;
  /** Step kind from the scenario ("boot", "workload", "checkpoint", "hard-reset", "verify"…). */
  kind: string;
  /** Its arguments as the scenario gave them (after defaults), JSON values only. */
  args?: Record<string, unknown>;
  startedAt: string;
  durationMs: number;
  ok: boolean;
  /** `Name: message`, when it failed. */
  error?: string;
  /** The scenario allowed this step to fail (its failure does not fail the job). */
  allowFailure?: boolean;
}

/** Missed and extra blocks across the volume, bucketed into `cells` cells for drawing. */
export interface BlockMap {
  /** Blocks in the tracked volume (claim blocks). */
  blocks: number;
  /** Number of cells (≤ 512). */
  cells: number;
  /** Claim blocks per cell (the last cell may hold fewer). */
  blocksPerCell: number;
  /**
   * One hex digit per cell: `0` when none of the cell's blocks is missed, else the share that
   * is, in 15ths rounded up (`1` = at least one, `f` = all). Empty string when none is missed.
   */
  missed: string;
  /** Same for blocks claimed but not changed. Empty string when unknown or none. */
  extra: string;
  /** Same for changed blocks (the truth). Empty string when unknown. */
  changed?: string;
}

export interface ClaimInfo {
  state: 'valid' | 'lost';
  /** Why the claim is lost (or null). */
  reason: string | null;
}

/** One epoch: the interval between two backups, and its verdict. */
export interface EpochRecord {
  /** From 0 within the job. */
  index: number;
  /** The tracker's own id of the epoch (dm-era era, CBTF epoch id, bitmap name), if any. */
  id?: string;
  /** The epoch base and top images, host paths. */
  base: string;
  top: string;
  verdict: Verdict;
  /** Verdicts the scenario accepts here; empty: anything but MISSED. */
  expected: Verdict[];
  acceptable: boolean;
  /** Claim blocks holding a changed truth block. */
  changedBlocks: number;
  claimedBlocks: number;
  missedBlocks: number;
  extraBlocks: number;
  /** Truth blocks dropped because they lie in the tracker's metadata. */
  excludedTruthBlocks?: number;
  /** Claim granularity in bytes: the unit of every count and range of this epoch. */
  granularity: number;
  /** Truth granularity in bytes (divides `granularity`). */
  truthGranularity?: number;
  /**
   * claimed / changed; 1 when both are 0; null when undefined (RESYNC: nothing is claimed;
   * or nothing changed but something is claimed).
   */
  overReportRatio: number | null;
  claim: ClaimInfo;
  /** The first missed ranges (at most `MAX_MISSED_RANGES`). */
  missed: BlockRange[];
  /** How many missed ranges there were in all (≥ `missed.length`). */
  missedRanges: number;
  map?: BlockMap;
  startedAt?: string;
  /** When the verdict was reached. */
  verifiedAt?: string;
  /** Time to verify (decode + truth + judge). */
  verifyMs?: number;
}

export type TimelineEvent =
  | { at: string; kind: 'qmp'; event: string; data?: Record<string, unknown> }
  | { at: string; kind: 'guest'; command: string; exitCode: number | null; durationMs: number; stderr?: string }
  | { at: string; kind: 'host'; command: string; exitCode: number | null; durationMs: number; stderr?: string }
  | { at: string; kind: 'step'; step: number; stepKind: string; phase: 'begin' | 'end'; ok?: boolean }
  | { at: string; kind: 'epoch'; epoch: number; phase: 'begin' | 'snapshot' | 'verify' }
  | { at: string; kind: 'verdict'; epoch: number; verdict: Verdict; acceptable: boolean }
  | { at: string; kind: 'fault'; fault: string; detail?: string }
  | { at: string; kind: 'note'; message: string }
  /**
   * A stage of the guest's shutdown order or of a volume teardown, with its tracker hook
   * (`pre-fs`, `fs-unmounted`, `post-fs`, `power-off`, `offline`, `remove`): `uptimeS` is the
   * guest's clock when it ran; `at` is when the host learnt of it (console or command answer).
   */
  | { at: string; kind: 'phase'; phase: string; uptimeS: number };

export type TimelineKind = TimelineEvent['kind'];

export interface ArtifactRef {
  /** "serial", "timeline", "qemu-log", "image-map"… */
  name: string;
  /** Relative to the run directory, `/`-separated. */
  path: string;
}

export interface JobArtifacts {
  /** Guest serial console log. */
  serialLog?: string;
  /** The full timeline (JSON lines), when the record's was cut. */
  timeline?: string;
  other?: ArtifactRef[];
}

export interface JobRecord {
  /** Unique in the run: `scenario/guest/repeat`. */
  id: string;
  scenario: ScenarioInfo;
  guest: GuestInfo;
  /** The host of the last attempt (null when it never ran). */
  host: { name: string; type: HostType } | null;
  accel?: AccelInfo;
  /** The job's seed (workload randomness), derived from the run seed. */
  seed: number;
  /** From 1. */
  repeat: number;
  status: JobStatus;
  /**
   * Present when the job is a known-bad tracker that must fail (`mustFail` in the run config):
   * then `failed` is the good outcome and `passed` means the harness did not catch it.
   */
  expectedStatus?: 'failed';
  /** Why it failed or could not run, in a line. */
  error?: string;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  attempts: AttemptInfo[];
  steps: StepRecord[];
  epochs: EpochRecord[];
  /** In time order. At most `MAX_TIMELINE_EVENTS`; see `timelineDropped`. */
  timeline: TimelineEvent[];
  /** Events left out of `timeline` (the artifact `timeline` has them all). */
  timelineDropped?: number;
  artifacts: JobArtifacts;
}

export type VerdictCounts = Record<Verdict, number>;

export interface Totals {
  jobs: number;
  passed: number;
  failed: number;
  infraErrors: number;
  epochs: number;
  verdicts: VerdictCounts;
  /** Epochs whose verdict was not acceptable. */
  unacceptable: number;
  /** MISSED epochs that neither the scenario (`expected`) nor the job (`expectedStatus`) expected. */
  unexpectedMissed: number;
  /** Known-bad jobs that failed, as they must. */
  expectedFailures: number;
  /** Known-bad jobs that passed: the harness did not catch them. */
  unexpectedPasses: number;
}

export interface HarnessInfo {
  version: string;
  /** git commit of the harness, when known. */
  commit?: string;
  node?: string;
}

export interface RunRecord {
  schemaVersion: typeof SCHEMA_VERSION;
  runId: string;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  harness: HarnessInfo;
  /** The run seed. */
  seed: number;
  /** The run config (gate, nightly) when the run came from one. */
  config?: { name: string; file: string };
  /** Free labels (CI pipeline, branch). Strings only. */
  labels?: Record<string, string>;
  hosts: HostInfo[];
  /** Whether the run was cancelled (jobs not run are `infra-error`). */
  cancelled?: boolean;
  jobs: JobRecord[];
  totals: Totals;
}

/** What a reporter learns at the start: the record without jobs and totals, and the plan. */
export interface RunBegin {
  runId: string;
  startedAt: string;
  harness: HarnessInfo;
  seed: number;
  config?: { name: string; file: string };
  labels?: Record<string, string>;
  hosts: HostInfo[];
  /** The planned jobs. */
  jobs: JobRef[];
}

/** A job as known before it ends. */
export interface JobRef {
  id: string;
  scenario: ScenarioInfo;
  guest: GuestInfo;
  repeat: number;
  seed: number;
  host?: { name: string; type: HostType } | null;
  accel?: AccelInfo;
  /** `failed` for a known-bad tracker that must fail. */
  expectedStatus?: 'failed';
}

export const MAX_MISSED_RANGES = 16;
export const MAX_TIMELINE_EVENTS = 2000;
export const MAX_MAP_CELLS = 512;
