/** The run record's parts that one job makes: an epoch's record from its verify, the guest block. */
import { epochRecord, type EpochRecord, type GuestInfo, type OsInfo } from '../report/index.ts';
import type { Tracker, VerifyPlan } from '../trackers/index.ts';
import type { Verdict } from '../verify/index.ts';
import type { OpenEpoch } from './machine.ts';
import type { VerifyOutcome } from './oracle.ts';

export function epochOf(out: VerifyOutcome, e: { epoch: OpenEpoch; top: string; expect: Verdict[]; verifyMs: number; verifiedAt: string }): EpochRecord {
  const r = out.result;
  return epochRecord(r, {
    index: e.epoch.index,
    id: e.epoch.id,
    base: e.epoch.base,
    top: e.top,
    expected: e.expect,
    volumeBlocks: Math.ceil(out.claim.volume.length / out.claim.granularity),
    extra: r.extra,
    changed: r.changed,
    truthGranularity: out.truth.granularity,
    startedAt: e.epoch.startedAt,
    verifiedAt: e.verifiedAt,
    verifyMs: e.verifyMs,
  });
}

/** The record's guest: catalogue name, OS build, and the tracker with the decoder that read it. */
export function guestInfo(name: string, os: (OsInfo & { kernel?: string }) | null, tracker: Tracker, facts: { qemu?: string; plan?: VerifyPlan }): GuestInfo {
  const o: OsInfo = os ? { family: os.family, build: os.build, ...(os.kernel ? { kernel: os.kernel } : {}) } : { family: 'other', build: 'unknown' };
  return {
    name,
    os: o,
    tracker: { name: tracker.name, decoder: facts.plan?.decoder ?? tracker.name, version: tracker.driverLabel({ kernel: os?.kernel, build: os?.build, qemu: facts.qemu }) },
  };
}
