/** What a job is given (`JobSpec`, also the JSON `cbt-harness job run` reads on a remote host) and what it returns. */
import type { GuestConnector, LinuxRefManifest } from '../guest/index.ts';
import type { AccelInfo, EpochRecord, GuestInfo, JobArtifacts, JobStatus, StepRecord, TimelineEvent } from '../report/index.ts';
import type { RunningVm } from '../vm/index.ts';
import type { Verdict } from '../verify/index.ts';
import type { GuestCatalog } from './guests.ts';

/** Bumped whenever JobSpec or JobOutcome change meaning: a host running another harness refuses the job. */
export const JOB_SPEC_VERSION = 2;

export interface JobSpec {
  /** JOB_SPEC_VERSION of the scheduling harness (absent: this process made it). */
  version?: number;
  jobId: string;
  runId: string;
  /** The scenario file's path (for messages) and its text (a remote host needs nothing else). */
  scenarioFile: string;
  scenarioText: string;
  /** The job's seed (derived from the run seed, the scenario and the repeat). */
  seed: number;
  repeat: number;
  /** Created if absent; holds images, console logs and the timeline. */
  workDir: string;
  /** @default 'auto' */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** `auto`: probe KVM anew instead of trusting the host's cached answer (`run --accel-probe`). */
  accelProbe?: 'cached' | 'force';
  /** Keep the qcow2 images after the job (they can be large). @default false */
  keepImages?: boolean;
  /** Guest image cache folder. @default the image module's default */
  imageCacheDir?: string;
  /** Acceptable verdicts for every verify, overriding the scenario's (a run config's matrix entry). */
  expect?: Verdict[];
  /** A prebuilt linux-ref image staged on this host: the folder holding its files, and its manifest. Skips the build. */
  stagedImage?: { dir: string; manifest: LinuxRefManifest };
  /** Guests besides linux-ref this host can boot (built Windows images), by name. */
  guests?: GuestCatalog;
}

/** In-process only (not part of the JSON spec): seams for tests. */
export interface JobHooks {
  /** Replaces the SSH connection to a Windows guest (a fake guest shell where Windows cannot run). */
  connectWindows?: (vm: () => RunningVm | null) => GuestConnector;
}

export interface JobObserver {
  event?(e: TimelineEvent): void;
  step?(s: StepRecord): void | Promise<void>;
  epoch?(e: EpochRecord): void | Promise<void>;
}

export interface JobOutcome {
  jobId: string;
  status: JobStatus;
  error?: string;
  /** The failure was the infrastructure's (VM did not boot…): the scheduler may retry elsewhere. */
  infrastructure?: boolean;
  /** The job's signal stopped it before its steps were done (a Ctrl-C, a job time limit). */
  cancelled?: boolean;
  accel?: AccelInfo;
  guest: GuestInfo;
  steps: StepRecord[];
  epochs: EpochRecord[];
  timeline: TimelineEvent[];
  artifacts: JobArtifacts;
  startedAt: string;
  endedAt: string;
  durationMs: number;
}
