/** The trackers behind one interface (`Tracker`, docs/architecture.md "Trackers"). */
import { cbtfTracker } from './cbtf.ts';
import { cbtfRefTracker } from './cbtf-ref.ts';
import { dmEraTracker } from './dm-era.ts';
import { isPluginTracker, pluginTracker } from './plugin.ts';
import { qemuBitmapTracker } from './qemu-bitmap.ts';
import type { Tracker } from './tracker.ts';

export const BUILTIN_TRACKERS: ReadonlyMap<string, Tracker> = new Map([dmEraTracker, qemuBitmapTracker, cbtfTracker, cbtfRefTracker].map((t) => [t.name, t]));

/** The tracker of a scenario's `tracker:` (a built-in name or a decoder plugin path); null when unknown. */
export function trackerFor(name: string): Tracker | null {
  return BUILTIN_TRACKERS.get(name) ?? (isPluginTracker(name) ? pluginTracker(name) : null);
}

/**
 * Problems of a scenario's `trackerOptions` for `tracker`: unknown keys, bad values, missing
 * required ones. Each names the option; empty when valid.
 */
export function trackerOptionProblems(tracker: Tracker, options: Readonly<Record<string, unknown>>): Array<{ option: string; message: string }> {
  const out: Array<{ option: string; message: string }> = [];
  const allowed = Object.keys(tracker.options);
  for (const [k, v] of Object.entries(options)) {
    if (!(k in tracker.options)) {
      out.push({ option: k, message: `Unknown option \`${k}\` for tracker ${tracker.name}${allowed.length ? `; allowed: ${allowed.join(', ')}` : ''}` });
      continue;
    }
    const problem = tracker.options[k](v);
    if (problem) out.push({ option: k, message: `Expected \`${k}\` to be ${problem}` });
  }
  for (const k of tracker.required) if (options[k] === undefined) out.push({ option: k, message: `Tracker ${tracker.name} needs the option \`${k}\`` });
  return out;
}

export { DM_ERA_METADATA_MIB, dmEraTracker } from './dm-era.ts';
export { qemuBitmapTracker } from './qemu-bitmap.ts';
export { cbtfTracker } from './cbtf.ts';
export { cbtfRefTracker, CBTF_REF_VARIANTS, parseCbtfFileOption } from './cbtf-ref.ts';
export { isPluginTracker, pluginTracker } from './plugin.ts';
export type { EpochFacts, GuestOs, HostTracking, KnownBadVariant, OptionCheck, SessionFacts, TrackedDiskLayout, Tracker, TrackerGuestSetup, VerifyPlan } from './tracker.ts';
