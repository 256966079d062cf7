/**
 * dm-era in the reference guest (Linux device-mapper's era target, docs/dm-era.md): the guest
 * stacks dm-era on each tracked disk, with its metadata in the first 64 MiB of the disk and the
 * data after it; a checkpoint is `cbt-ctl checkpoint` (the era advances, a metadata snapshot is
 * taken) and verify reads the metadata with the dm-era decoder, claiming the blocks written in
 * the checkpoint's era or later.
 */
import { parseSize } from '../util/units.ts';
import { oneOf, sizeOption } from './options.ts';
import type { Tracker } from './tracker.ts';

/** Metadata area at the start of each tracked disk (the guest's `cbt.meta`). */
export const DM_ERA_METADATA_MIB = 64;
const MiB = 1024 * 1024;

export const dmEraTracker: Tracker = {
  name: 'dm-era',
  description: 'Linux dm-era in the reference guest: metadata in the first 64 MiB of each tracked disk',
  guests: ['linux-ref'],
  options: {
    metadataFault: oneOf('none', 'drop-writes'),
    /** `late-attach`: a known-bad dm-era that mounts the file systems before it attaches (dattobd #151/#152). */
    variant: oneOf('normal', 'late-attach'),
    blockSize: (v) => {
      const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
      return n !== null && n >= 4096 && n % 4096 === 0 ? null : 'a size of at least 4KiB, a multiple of 4KiB';
    },
  },
  required: [],
  knownBad: [
    {
      options: { metadataFault: 'drop-writes' },
      summary: 'the metadata device silently drops every write (dm-flakey drop_writes): the era bitmaps never reach the disk, so the next load finds nothing changed',
      source: 'persistence that fails without a trace: QEMU store-at-close failing with only a log line (tp-qemu #3658, #2547; CBT-BUGS.md row 12), here without even the line',
    },
    {
      options: { variant: 'late-attach' },
      summary: 'mounts the file systems of the disk first and attaches tracking afterwards: the mount-time writes (the ext4 journal replayed after a crash, the superblock update) are never recorded',
      source: 'dattobd/elastio-snap: writes before tracking resumes at boot, journal replay and fsck (dattobd #151, #152, c5e36cf, #209; CBT-BUGS.md row 14)',
    },
  ],
  guestCheckpoint: true,
  checkLayout(_options, disks) {
    // Volumes of a dm-era disk live in its data area, after the metadata.
    for (const d of disks) {
      const fixed = d.volumes.reduce((n, v) => n + (v.size ?? 32 * MiB), 0);
      if (d.volumes.length && fixed + 2 * MiB > d.size - DM_ERA_METADATA_MIB * MiB) return `dm-era keeps its metadata in the first ${DM_ERA_METADATA_MIB}MiB of ${d.id}: its volumes need ${fixed + 2 * MiB} bytes of the ${d.size - DM_ERA_METADATA_MIB * MiB} left`;
    }
    return null;
  },
  guestSetup(options) {
    return {
      inGuest: true,
      linuxRef: {
        tracker: 'dm-era',
        blockSectors: sizeOption(options, 'blockSize', 65536) / 512,
        metadataMiB: DM_ERA_METADATA_MIB,
        variant: options.metadataFault === 'drop-writes' ? 'drop_writes' : 'normal',
        trackerVariant: typeof options.variant === 'string' ? options.variant : 'normal',
      },
    };
  },
  async openEpoch({ guestEpochId, diskId }) {
    if (guestEpochId === undefined) throw new TypeError(`dm-era: no era from the guest's checkpoint of ${diskId}`);
    return guestEpochId;
  },
  verifyRefusal() {
    // The metadata is on the disk: the runner pauses the VM while it reads the images.
    return null;
  },
  verifyPlan(epoch) {
    const meta = DM_ERA_METADATA_MIB * MiB;
    return { decoder: 'dm-era', options: { metadata: `0:${meta}`, data: `${meta}:${epoch.diskSize - meta}`, since: epoch.id } };
  },
  driverLabel(guest) {
    return `dm-era (kernel ${guest.kernel ?? 'unknown'})`;
  },
};
