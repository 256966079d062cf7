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
