/**
 * Typed errors of the dm-era decoder. Damaged metadata is never an error: it is a `lost` result
 * with a reason. These are for what the caller must fix: an unreadable device, bad options.
 */
import { HarnessError } from '../../util/index.ts';

/** The metadata device could not be read (the block source threw), or the decode was misused. */
export class EraMetadataError extends HarnessError {
  override name = 'EraMetadataError';
  /** The metadata source's name (path or URL). */
  readonly source: string | undefined;

  constructor(message: string, options: { source?: string | undefined; cause?: unknown } = {}) {
    super(options.source === undefined ? message : `${options.source}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.source = options.source;
  }
}

/** A caller's option is out of range (`since`, `chunkBlocks`, a metadata or data range). */
export class EraOptionError extends EraMetadataError {
  override name = 'EraOptionError';
}
