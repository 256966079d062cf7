/**
 * QEMU's persistent dirty bitmaps (qcow2 "Bitmaps" extension): the host tracks, not the guest.
 * A checkpoint adds a persistent bitmap named `cbt-epoch-<n>` to the disk's new overlay while the
 * VM is paused at the snapshot; QEMU stores it only when it exits cleanly, and marks it in_use
 * while it holds it, so the image can be verified after a clean exit, or right after a power cut
 * (the killed QEMU stored nothing: absent or in_use is the honest answer, RESYNC).
 */
import { powerOfTwoSize, sizeOption } from './options.ts';
import type { Tracker } from './tracker.ts';

export const qemuBitmapTracker: Tracker = {
  name: 'qemu-bitmap',
  description: "QEMU's persistent dirty bitmaps in the qcow2 overlay (the host tracks)",
  guests: ['linux-ref', 'windows'],
  options: { granularity: powerOfTwoSize(512) },
  required: [],
  knownBad: [],
  guestCheckpoint: false,
  guestSetup() {
    return { inGuest: false };
  },
  async openEpoch({ index, diskId, options, host }) {
    const name = `cbt-epoch-${index}`;
    await host.addDirtyBitmap(diskId, name, { persistent: true, granularity: sizeOption(options, 'granularity', 65536) });
    return name;
  },
  verifyRefusal(s) {
    if (s.running && !(s.sessionFromPowercut && !s.cleanExitSinceEpoch)) {
      return 'QEMU stores persistent bitmaps only when it exits: verify a qemu-bitmap scenario after shutdown or powerbutton (or right after a powercut)';
    }
    return null;
  },
  verifyPlan(epoch, session) {
    // A power cut since the checkpoint killed the QEMU that held the epoch's bitmap before it was
    // stored: its absence is the honest RESYNC. Otherwise a missing bitmap is the harness's bug.
    return { decoder: 'qemu-bitmap', options: { name: epoch.id, ...(session.powercutSinceEpoch ? { absent: 'resync' } : {}) } };
  },
  driverLabel(guest) {
    return `QEMU ${guest.qemu ?? '(version unknown)'} persistent dirty bitmap`;
  },
};
