/**
 * The decoder interface: every tracker format (built-in or a user's plugin) turns a read-only view
 * of a disk into one `Claim`. See docs/decoders.md for the plugin contract.
 */
import type { BlockSource, OpenedImage } from '../qcow2/index.ts';
import type { Claim } from './claim.ts';
import { HarnessError } from '../util/index.ts';

/** A partition of the disk (disk-relative bytes). */
export interface DecodeVolume {
  /** 1-based partition number as Linux numbers it. */
  number: number;
  offset: number;
  length: number;
  /** GPT type GUID or MBR type byte ("0x07"). */
  type: string;
  name: string | null;
  guid: string | null;
}

/** A file found through NTFS: where its bytes are (volume-relative) and how long it is. */
export interface NtfsFileInfo {
  size: number;
  /** Allocated byte ranges in file order: volume-relative `offset`, and where they sit in the file. Holes read as zero. */
  extents: Array<{ offset: number; length: number; fileOffset: number }>;
}

export interface NtfsAccess {
  /** The 64-bit volume serial number from the boot sector. */
  serial: bigint;
  lookup(path: string): Promise<NtfsFileInfo>;
}

/** The file systems whose serial the context can tell apart; `none`: no recognisable file system. */
export type VolumeFsKind = 'ntfs' | 'ext4' | 'none';

/**
 * A volume's serial as the CBTF format defines it: NTFS — the boot sector's u64 at 0x48; ext2/3/4
 * — the first 8 bytes of the superblock's s_uuid read as a little-endian u64; none — 0.
 */
export interface VolumeSerial {
  fs: VolumeFsKind;
  serial: bigint;
  /** The file system as found: 'ntfs', 'ext2', 'ext3' or 'ext4'; null for none. */
  name: string | null;
}

/** What a file-system probe of a volume found; NTFS's serial comes from `ctx.ntfs`, which validates the volume. */
export type DetectedFs = { fs: 'ntfs' } | { fs: 'ext4'; serial: bigint; name: string } | { fs: 'none' };

export interface DecodeContext {
  /** The image chain (qcow2 metadata such as persistent bitmaps). Never written. */
  readonly image: OpenedImage;
  /** The guest-visible disk bytes. Never written. */
  readonly disk: BlockSource;
  /** `--opt key=value` pairs. */
  readonly options: Readonly<Record<string, string>>;
  /** Partitions of the disk (empty when it has no partition table). */
  volumes(): Promise<DecodeVolume[]>;
  /** One partition by number; throws DecoderOptionError when absent. */
  volume(number: number): Promise<DecodeVolume>;
  /** NTFS on a partition (by number) or on any byte range of the disk. */
  ntfs(volume: number | { offset: number; length: number }): Promise<NtfsAccess>;
  /**
   * Which file system a partition (by number) or byte range holds, and its serial (VolumeSerial).
   * Throws the file system's typed error (a HarnessError) when its signature is there but the
   * volume is not well formed.
   */
  volumeSerial(volume: number | { offset: number; length: number }): Promise<VolumeSerial>;
  /** A region given as a partition number ("2") or "offset:length" with byte units. */
  region(spec: string, what: string): Promise<{ offset: number; length: number }>;
}

export interface Decoder {
  /** Name used with `--decoder` and written into the claim. */
  name: string;
  description?: string;
  /** Option name → one-line help. */
  options?: Record<string, string>;
  decode(ctx: DecodeContext): Promise<Claim>;
}

/** A user got an option wrong (missing, malformed, pointing nowhere): exit code 2. */
export class DecoderOptionError extends HarnessError {
  override name = 'DecoderOptionError';
}

/** A plugin could not be loaded or returned something that is not a Claim: exit code 2. */
export class DecoderPluginError extends HarnessError {
  override name = 'DecoderPluginError';
}

export function requireOption(ctx: DecodeContext, key: string, decoder: string): string {
  const v = ctx.options[key];
  if (v === undefined || v === '') throw new DecoderOptionError(`decoder ${decoder} needs --opt ${key}=…`);
  return v;
}

export function checkOptions(ctx: DecodeContext, decoder: Decoder): void {
  if (!decoder.options) return;
  for (const k of Object.keys(ctx.options)) {
    if (!(k in decoder.options)) {
      throw new DecoderOptionError(`decoder ${decoder.name} has no option \`${k}\` (known: ${Object.keys(decoder.options).join(', ') || 'none'})`);
    }
  }
}
