/**
 * The `Tracker` interface: everything that differs between change trackers, so that the job
 * runner never names one. A tracker owns its setup options and their checks, what the guest must
 * set up at boot, whether a checkpoint runs in the guest, the host-side part of the epoch protocol
 * (a QEMU dirty bitmap at the snapshot), when the images can be verified, which decoder reads its
 * claim and with which options, the driver label of the record, and its known-bad variants.
 *
 * Pure: no I/O. The host-side actions go through the narrow `HostTracking` the runner gives.
 */

/** Checks one setup option's value; returns what was expected (for the message) or null when valid. */
export type OptionCheck = (value: unknown) => string | null;

/** Guest operating systems a tracker can run on (the guest adapters' `os`). */
export type GuestOs = 'linux-ref' | 'windows';

/** What the guest sets up at boot for this tracker. */
export interface TrackerGuestSetup {
  /** The guest tracks the data disks itself (dm-era in linux-ref, the filter driver in Windows); false: the host tracks (QEMU bitmaps). */
  inGuest: boolean;
  /**
   * linux-ref: which in-guest tracker (dm-era on each whole disk, or cbtf-ref on one volume), its
   * variant, dm-era block size (sectors of 512 bytes), metadata area at the start of each disk
   * (MiB), the metadata device's fault, and cbtf-ref's file and tracked volume.
   */
  linuxRef?: {
    tracker: 'dm-era' | 'cbtf-ref';
    blockSectors: number;
    metadataMiB: number;
    variant: 'normal' | 'drop_writes';
    /** The set-up file's CBT_TRACKER_VARIANT (images/linux-ref/README.md): `normal` or a known-bad variant. */
    trackerVariant: string;
    cbtf?: { fileVolume: string; path: string; tracked: string; blockBytes: number };
  };
  /** Windows: the driver's checkpoint command line (placeholders as in `WindowsAdapterOptions.checkpointCommand`) and how to read the epoch id. */
  windows?: { checkpointCommand?: string; epochIdPattern?: string };
}

/** A scenario disk as a tracker sees it: its id, size and volumes. */
export interface TrackedDiskLayout {
  id: string;
  size: number;
  volumes: ReadonlyArray<{ id: string; index: number; fs: 'ntfs' | 'ext4' | 'none'; size: number | null }>;
}

/** The host-side tracking actions the runner offers (QMP on the running VM). */
export interface HostTracking {
  addDirtyBitmap(diskId: string, name: string, opts: { persistent: boolean; granularity: number }): Promise<void>;
}

/** What the runner knows about the VM sessions since an epoch began (for trackers whose persistence is QEMU's). */
export interface SessionFacts {
  /** QEMU is running now. */
  running: boolean;
  /** The running QEMU (or the last one) was started again by a power cut: the killed one stored nothing. */
  sessionFromPowercut: boolean;
  /** A QEMU exited cleanly since the epoch began (persistent bitmaps were stored). */
  cleanExitSinceEpoch: boolean;
  /** A power cut happened since the epoch began. */
  powercutSinceEpoch: boolean;
}

/** One epoch of one disk, as the tracker needs it to verify. */
export interface EpochFacts {
  /** The tracker's epoch id: the guest's (dm-era era, CBTF epoch) or the host's (bitmap name). */
  id: string;
  index: number;
  diskId: string;
  diskSize: number;
}

export interface VerifyPlan {
  decoder: string;
  options: Record<string, string>;
}

/** A tracker variant that is wrong on purpose, modelled on a real CBT bug (docs/known-bad.md). */
export interface KnownBadVariant {
  /** The trackerOptions that select it, e.g. `{ metadataFault: 'drop-writes' }`. */
  options: Record<string, string>;
  summary: string;
  /** Where the real bug is described (CBT-BUGS.md row, vendor KB, commit). */
  source: string;
}

export interface Tracker {
  readonly name: string;
  readonly description: string;
  /** Guest OSes it runs on. */
  readonly guests: readonly GuestOs[];
  /** Setup options (`trackerOptions` of a scenario) → their checks. */
  readonly options: Readonly<Record<string, OptionCheck>>;
  /** Options a scenario must give. */
  readonly required: readonly string[];
  readonly knownBad: readonly KnownBadVariant[];
  /** A checkpoint step runs the guest's checkpoint command (else the epoch is the host's alone). */
  readonly guestCheckpoint: boolean;
  /**
   * Its claim of a running guest is in guest memory: verify first asks the guest to freeze the
   * tracked volume and persist the claim (a backup product's VSS snapshot and query), and thaws
   * it after the images were read. False: the claim on disk is always current (or the host's).
   */
  readonly verifyFreeze?: boolean;
  /**
   * Checks the options against the scenario's disks and volumes (e.g. that a named volume exists
   * and has the right file system); a message naming the problem, or null.
   */
  checkLayout?(options: Readonly<Record<string, unknown>>, disks: readonly TrackedDiskLayout[]): string | null;
  /** The disks it tracks (checkpoints and verifies address only these); default: every disk. */
  trackedDisks?(options: Readonly<Record<string, unknown>>, disks: readonly TrackedDiskLayout[]): string[];
  /** What the guest sets up at boot, from the scenario's (checked) options. */
  guestSetup(options: Readonly<Record<string, unknown>>): TrackerGuestSetup;
  /**
   * The host side of a checkpoint, while the VM is paused right after the disk's snapshot:
   * returns the epoch id (the guest's id when it has one).
   */
  openEpoch(ctx: { index: number; diskId: string; guestEpochId: string | undefined; options: Readonly<Record<string, unknown>>; host: HostTracking }): Promise<string>;
  /** Why the images cannot be verified in this session state (null: they can). */
  verifyRefusal(session: SessionFacts): string | null;
  /** The decoder and its options that read this epoch's claim. */
  verifyPlan(epoch: EpochFacts, session: SessionFacts, options: Readonly<Record<string, unknown>>): VerifyPlan;
  /** The record's driver label, e.g. `dm-era (kernel 6.1.0-28-amd64)`: from what the job learned of the guest and of QEMU. */
  driverLabel(guest: { kernel?: string; build?: string; qemu?: string }): string;
}
