/**
 * A Windows volume filter driver persisting a CBTF file (docs/cbtf.md): the driver tracks in
 * guest memory and writes the file raw, through its pre-recorded extents, when it persists. The
 * checkpoint is the driver's own control command (`checkpoint`, with the adapter's placeholders);
 * verify locates the file through NTFS on the data disk and applies the CBTF validity rules.
 */
import { text } from './options.ts';
import type { Tracker } from './tracker.ts';

const partition = (v: unknown): string | null => (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 128 ? null : 'a partition number 1..128');

export const cbtfTracker: Tracker = {
  name: 'cbtf',
  description: 'a Windows CBT filter driver persisting a CBTF file through its extents (docs/cbtf.md)',
  guests: ['windows'],
  options: {
    /** The driver's checkpoint command in the guest, e.g. `C:\cbt\cbtctl.exe checkpoint --volume {volume}`. */
    checkpoint: text,
    /** Regular expression with one group that finds the epoch id in the checkpoint's output. */
    epochIdPattern: (v) => {
      if (typeof v !== 'string') return 'a regular expression';
      try {
        return new RegExp(v).source.length > 0 ? null : 'a regular expression';
      } catch {
        return 'a valid regular expression';
      }
    },
    /** Partition number of the NTFS volume holding the CBTF file. */
    volume: partition,
    /** Path of the file on that volume. */
    path: text,
    /** Partition number of the tracked volume (default: `volume`). */
    tracked: partition,
  },
  required: ['volume', 'path'],
  knownBad: [],
  guestCheckpoint: true,
  guestSetup(options) {
    return { inGuest: true, windows: { ...(typeof options.checkpoint === 'string' ? { checkpointCommand: options.checkpoint } : {}), ...(typeof options.epochIdPattern === 'string' ? { epochIdPattern: options.epochIdPattern } : {}) } };
  },
  async openEpoch({ guestEpochId, diskId }) {
    if (guestEpochId === undefined) throw new TypeError(`cbtf: no epoch id from the driver's checkpoint of ${diskId}`);
    return guestEpochId;
  },
  verifyRefusal() {
    return null;
  },
  verifyPlan(epoch, _session, options) {
    const volume = String(options.volume ?? 1);
    return {
      decoder: 'cbtf',
      options: {
        volume,
        path: String(options.path),
        tracked: String(options.tracked ?? volume),
        // The driver's checkpoint answers the generation GUID it recorded in the file.
        ...(/^\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?$/i.test(epoch.id) ? { generation: epoch.id } : {}),
      },
    };
  },
  driverLabel(guest) {
    return `CBTF filter driver (${guest.build ?? 'Windows'})`;
  },
};
