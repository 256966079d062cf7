/**
 * `cbtf-ref`: the reference CBTF tracker of the Linux reference guest (docs/cbtf.md "The protocol",
 * images/linux-ref/README.md). It behaves as a correct Windows volume filter: tracking state in
 * guest memory only (dm-era over the tracked volume, its metadata on a RAM disk), the CBTF file
 * found or pre-allocated on an NTFS volume at load, its extents learned from the file system, CLEAN
 * cleared on disk through them before any write passes, and the bitmap persisted raw to those
 * extents at `post-fs` (after the file systems unmounted), `offline` and `remove`. Verify of a
 * running guest freezes the tracked volume and has the claim persisted first (`cbt-ctl freeze`).
 *
 * Its known-bad variants are the real CBT bugs of ../shared/CBT-BUGS.md, each wrong in one way.
 * Verify reads the file with the ordinary `cbtf` decoder: no special path for this tracker.
 */
import { parseSize } from '../util/units.ts';
import { oneOf, sizeOption } from './options.ts';
import type { KnownBadVariant, OptionCheck, TrackedDiskLayout, Tracker } from './tracker.ts';

/** `data0p1:/cbt/cbt.bin` → volume id and absolute path. */
export function parseCbtfFileOption(v: string): { volume: string; path: string } | null {
  const m = /^([a-z0-9][a-z0-9-]*p[1-9][0-9]*):(\/[A-Za-z0-9._/-]*[A-Za-z0-9._-])$/.exec(v);
  if (!m || m[2].split('/').some((p) => p === '..' || p === '.')) return null;
  return { volume: m[1], path: m[2] };
}

const fileOption: OptionCheck = (v) => (typeof v === 'string' && parseCbtfFileOption(v) ? null : "`<volume>:<path>`, e.g. 'data0p1:/cbt/cbt.bin' (letters, digits, . _ - /)");
const volumeOption: OptionCheck = (v) => (typeof v === 'string' && /^[a-z0-9][a-z0-9-]*p[1-9][0-9]*$/.test(v) ? null : 'a volume id such as data0p2');
const granularityOption: OptionCheck = (v) => {
  const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
  return n !== null && n >= 4096 && n <= 16 * 1024 * 1024 && (n & (n - 1)) === 0 ? null : 'a power of two from 4KiB to 16MiB (the CBTF granularity shift is 12..24)';
};

export const CBTF_REF_VARIANTS: readonly KnownBadVariant[] = [
  {
    options: { variant: 'flush-before-fs' },
    summary: 'persists at the first shutdown notification (pre-fs: before the file systems flush), marks CLEAN and stops tracking: the file systems\' own shutdown writes are never claimed',
    source: 'a Windows filter persisting at IoRegisterShutdownNotification instead of the last IRP_MJ_SHUTDOWN (OSR NTDEV 281828, 291519; CBT-BUGS.md row 22); dattobd at shutdown with the root file system (#60, #145, row 15)',
  },
  {
    options: { variant: 'stale-clean' },
    summary: 'never clears CLEAN on disk (not at load, not at checkpoint): after a power cut its file still says "clean" with a stale bitmap',
    source: 'trusting an in-use marker after a crash: QEMU persistent bitmaps after kill -9 (Launchpad 1814418, 74da6b9435) and dm-era ignoring the crash state (de89afc1e40f); CBT-BUGS.md rows 6, 11',
  },
  {
    options: { variant: 'late-attach' },
    summary: 'mounts the file systems first and only then attaches tracking: mount-time writes (journal replay, superblock update) escape',
    source: 'dattobd/elastio-snap: writes before tracking resumes (journal replay, fsck; #151, #152, c5e36cf, #209; CBT-BUGS.md row 14)',
  },
  {
    options: { variant: 'resize-blind' },
    summary: 'keeps the bitmap length it had at load: after the volume grows, writes past the old end are never claimed although the header states the new size',
    source: 'VMware CBT unreliable after extending a disk (KB 2090639); QEMU hbitmap orig_size not updated on truncate (fixed in 4.1); CBT-BUGS.md rows 1, 10',
  },
  {
    options: { variant: 'no-persist-offline' },
    summary: 'persists nothing when the volume goes offline (its in-memory state is dropped) and trusts its on-disk file again at online: the writes before the offline are lost',
    source: 'tracking that stops on a teardown it does not handle: blksnap filter detached on rescan (#46, 83121db), dattobd writes while dormant (PR #351); CBT-BUGS.md rows 16, 19',
  },
  {
    options: { variant: 'tracks-own-file' },
    summary: 'also marks the blocks of its own CBTF file as changed when the file lies on the tracked volume: over-reports (SUPERSET), never misses',
    source: 'dattobd tracking its own COW file writes (#364; CBT-BUGS.md row 17): safe but wasteful',
  },
];

function layoutVolume(disks: readonly TrackedDiskLayout[], id: string): { disk: TrackedDiskLayout; volume: TrackedDiskLayout['volumes'][number] } | null {
  for (const d of disks) for (const v of d.volumes) if (v.id === id) return { disk: d, volume: v };
  return null;
}

function options(o: Readonly<Record<string, unknown>>): { file: { volume: string; path: string }; tracked: string; blockBytes: number; variant: string } {
  const file = parseCbtfFileOption(String(o.file));
  if (!file) throw new TypeError(`cbtf-ref: option \`file\` was not checked: ${String(o.file)}`);
  return { file, tracked: String(o.tracked), blockBytes: sizeOption(o, 'granularity', 65536), variant: typeof o.variant === 'string' ? o.variant : 'normal' };
}

export const cbtfRefTracker: Tracker = {
  name: 'cbtf-ref',
  description: 'the reference CBTF tracker of linux-ref: in-memory tracking, the CBTF file persisted raw through its extents at post-fs, offline and remove (docs/cbtf.md)',
  guests: ['linux-ref'],
  options: {
    /** `<volume>:<path>` of the CBTF file on an NTFS volume, e.g. `data0p1:/cbt/cbt.bin`. */
    file: fileOption,
    /** The tracked volume, e.g. `data0p2` (may be the file's own volume). */
    tracked: volumeOption,
    /** Bytes per bitmap bit. @default 64KiB */
    granularity: granularityOption,
    variant: oneOf('normal', ...CBTF_REF_VARIANTS.map((v) => v.options.variant)),
  },
  required: ['file', 'tracked'],
  knownBad: CBTF_REF_VARIANTS,
  guestCheckpoint: true,
  checkLayout(o, disks) {
    const { file, tracked } = options(o);
    const f = layoutVolume(disks, file.volume);
    if (!f) return `cbtf-ref: the file's volume \`${file.volume}\` is not declared under any disk's \`volumes\``;
    if (f.volume.fs !== 'ntfs') return `cbtf-ref: the file's volume \`${file.volume}\` must be ntfs (it is ${f.volume.fs}): the file is found through NTFS, as a Windows driver finds it`;
    const t = layoutVolume(disks, tracked);
    if (!t) return `cbtf-ref: the tracked volume \`${tracked}\` is not declared under any disk's \`volumes\``;
    if (t.disk.id !== f.disk.id) return `cbtf-ref: the file (${file.volume}) and the tracked volume (${tracked}) must be on the same disk (verify reads one disk's GPT)`;
    return null;
  },
  trackedDisks(o, disks) {
    const t = layoutVolume(disks, options(o).tracked);
    return t ? [t.disk.id] : [];
  },
  guestSetup(o) {
    const { file, tracked, blockBytes, variant } = options(o);
    return {
      inGuest: true,
      linuxRef: { tracker: 'cbtf-ref', blockSectors: blockBytes / 512, metadataMiB: 0, variant: 'normal', trackerVariant: variant, cbtf: { fileVolume: file.volume, path: file.path, tracked, blockBytes } },
    };
  },
  async openEpoch({ guestEpochId, diskId }) {
    if (guestEpochId === undefined) throw new TypeError(`cbtf-ref: no generation from the guest's checkpoint of ${diskId}`);
    return guestEpochId;
  },
  // A correct tracker clears CLEAN again as soon as it loads, so the file of a running guest
  // always reads "not clean": verify asks it for its claim the way a backup product does.
  verifyFreeze: true,
  verifyRefusal() {
    return null;
  },
  verifyPlan(epoch, _session, o) {
    const { file, tracked } = options(o);
    const partition = (id: string) => id.slice(id.lastIndexOf('p') + 1);
    return {
      decoder: 'cbtf',
      options: {
        volume: partition(file.volume),
        path: file.path,
        tracked: partition(tracked),
        // The checkpoint answers the generation GUID it wrote: a restart without a trusted prior state changes it.
        ...(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(epoch.id) ? { generation: epoch.id } : {}),
      },
    };
  },
  driverLabel(guest) {
    return `cbtf-ref (linux-ref, kernel ${guest.kernel ?? 'unknown'})`;
  },
};
