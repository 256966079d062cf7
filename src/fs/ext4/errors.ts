/**
 * Typed errors of the ext2/3/4 superblock reader. Each names the volume and the volume byte
 * offset of the field at fault, so a user can look at the bytes that were refused.
 */
import { HarnessError } from '../../util/index.ts';

export interface Ext4ErrorOptions {
  volume: string;
  /** Volume-relative byte offset of the field at fault. */
  offset?: number | undefined;
  cause?: unknown;
}

/** Base class of every ext2/3/4 error (exit code 2 at the CLI). */
export class Ext4Error extends HarnessError {
  override name = 'Ext4Error';
  readonly volume: string;
  readonly offset: number | undefined;

  constructor(message: string, options: Ext4ErrorOptions) {
    const where = options.offset === undefined ? options.volume : `${options.volume} at offset ${options.offset} (0x${options.offset.toString(16)})`;
    super(`${where}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.volume = options.volume;
    this.offset = options.offset;
  }
}

/**
 * The superblock breaks the on-disk format: no 0xEF53 magic, a block size outside 1 KiB..64 KiB,
 * a block count of zero or larger than the volume, a first data block past the end, a
 * metadata_csum checksum that does not match.
 */
export class Ext4FormatError extends Ext4Error {
  override name = 'Ext4FormatError';
}
