/**
 * Typed errors of the qcow2 module. Every one names the image (and, for format errors, the byte
 * offset in the file) so a user can look at the bytes that were refused.
 */
import { HarnessError } from '../util/index.ts';

export interface ImageErrorOptions {
  image: string;
  offset?: number | undefined;
  cause?: unknown;
}

/** Base class: bad input that a user can fix by pointing at another image (exit code 2). */
export class ImageError extends HarnessError {
  override name = 'ImageError';
  readonly image: string;
  readonly offset: number | undefined;

  constructor(message: string, options: ImageErrorOptions) {
    const where = options.offset === undefined ? options.image : `${options.image} at offset ${options.offset} (0x${options.offset.toString(16)})`;
    super(`${where}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.image = options.image;
    this.offset = options.offset;
  }
}

/** The image violates the qcow2 specification (truncated, out-of-range or overlapping tables, …). */
export class Qcow2FormatError extends ImageError {
  override name = 'Qcow2FormatError';
}

/** The image is well formed but uses a feature this reader refuses (encryption, unknown bits). */
export class Qcow2UnsupportedError extends ImageError {
  override name = 'Qcow2UnsupportedError';
}

/** The image (or a file it names: backing file, data file) cannot be opened. */
export class ImageOpenError extends ImageError {
  override name = 'ImageOpenError';
}
