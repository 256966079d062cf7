/**
 * Typed errors of the NTFS reader. Each names the volume and, where one structure is at fault,
 * the MFT record or the volume byte offset, so a user can look at the bytes that were refused.
 */
import { HarnessError } from '../../util/index.ts';

export interface NtfsErrorOptions {
  volume: string;
  /** Volume-relative byte offset of the structure at fault. */
  offset?: number | undefined;
  cause?: unknown;
}

/** Base class of every NTFS error (exit code 2 at the CLI). */
export class NtfsError extends HarnessError {
  override name = 'NtfsError';
  readonly volume: string;
  readonly offset: number | undefined;

  constructor(message: string, options: NtfsErrorOptions) {
    const where = options.offset === undefined ? options.volume : `${options.volume} at offset ${options.offset} (0x${options.offset.toString(16)})`;
    super(`${where}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.volume = options.volume;
    this.offset = options.offset;
  }
}

/**
 * The volume breaks the on-disk format: bad boot sector, MFT record or index block, a fixup that
 * does not match (torn write), a loop in an attribute list or index tree, a runlist that points
 * outside the volume.
 */
export class NtfsFormatError extends NtfsError {
  override name = 'NtfsFormatError';
}

/** A path component does not exist, or a non-final component is not a directory. */
export class NtfsNotFoundError extends NtfsError {
  override name = 'NtfsNotFoundError';
  readonly path: string;

  constructor(message: string, options: NtfsErrorOptions & { path: string }) {
    super(message, options);
    this.path = options.path;
  }
}

/** Well-formed but beyond this reader: compressed or encrypted content, a foreign collation rule. */
export class NtfsUnsupportedError extends NtfsError {
  override name = 'NtfsUnsupportedError';
}

/** A read larger than the caller's `maxBytes`. */
export class NtfsLimitError extends NtfsError {
  override name = 'NtfsLimitError';
}
