/** A loaded, validated scenario. */
import type { Verdict } from '../verify/index.ts';
import type { SizeRange } from '../util/units.ts';

export type Bus = 'virtio-blk' | 'virtio-scsi' | 'nvme';

export type VolumeFs = 'ntfs' | 'ext4' | 'none';

/** One GPT partition of a data disk and its file system, made by the guest on the scenario's first boot. */
export interface VolumeSpec {
  /** `<disk>p<n>`, e.g. `data0p1`. */
  id: string;
  /** Partition number, 1-based, in declaration order. */
  index: number;
  fs: VolumeFs;
  /** Bytes; null for the last volume without a size: the rest of the disk. */
  size: number | null;
}

export interface DiskSpec {
  id: string;
  size: number;
  bus: Bus;
  /** GPT volumes; empty: the disk is one raw space (the default). */
  volumes: VolumeSpec[];
}

export type FileOp = 'create' | 'overwrite' | 'append' | 'truncate' | 'delete' | 'rename';
export const FILE_OPS: readonly FileOp[] = ['create', 'overwrite', 'append', 'truncate', 'delete', 'rename'];

/** Where a step came from, for messages. */
export interface StepSource {
  file: string;
  line: number | undefined;
  /** `steps[3]` or `steps[2].repeat.steps[0]`. */
  field: string;
}

interface StepBase {
  allowFailure: boolean;
  source: StepSource;
}

export type Step = StepBase &
  (
    | { kind: 'checkpoint'; disk: string | null }
    | { kind: 'write'; disk: string; volume: string | null; count: number; size: SizeRange; seed: number | null; align: number }
    | { kind: 'fio'; disk: string; volume: string | null; rw: 'randwrite' | 'write' | 'randrw'; bs: number; size: number; runtimeMs: number; seed: number | null }
    | { kind: 'files'; disk: string; volume: string; count: number; size: SizeRange; ops: FileOp[]; fsync: 'none' | 'some' | 'all'; seed: number | null }
    | { kind: 'resize'; disk: string; size: number }
    | { kind: 'reset' | 'powercut' | 'reboot' | 'shutdown' | 'start' | 'powerbutton' | 'hibernate' }
    | { kind: 'offline' | 'online' | 'disable' | 'enable' | 'plug'; disk: string }
    | { kind: 'unplug'; disk: string; mode: 'eject' | 'surprise'; timeoutMs: number }
    | { kind: 'sleep'; ms: number }
    | { kind: 'verify'; expect: Verdict[] | null; disk: string | null }
    | { kind: 'repeat'; times: number; steps: Step[] }
  );

export type StepKind = Step['kind'];

export interface Scenario {
  name: string;
  description: string;
  guest: string;
  tracker: string;
  trackerOptions: Record<string, unknown>;
  disks: DiskSpec[];
  expect: Verdict[];
  seed: number | null;
  steps: Step[];
  file: string;
}

/** Every step, with repeats unrolled `times` times (the order the runner executes them). */
export function* flattenSteps(steps: readonly Step[]): Generator<Step> {
  for (const s of steps) {
    if (s.kind === 'repeat') for (let i = 0; i < s.times; i++) yield* flattenSteps(s.steps);
    else yield s;
  }
}
