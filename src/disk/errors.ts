/**
 * Typed errors of the partition-table module. The message names the disk and, where one byte
 * range is at fault, its offset, so a user can look at the bytes that were refused.
 */
import { HarnessError } from '../util/index.ts';

export interface PartitionTableErrorOptions {
  disk: string;
  offset?: number | undefined;
  cause?: unknown;
}

/** The disk's partition table is unreadable or contradicts itself (exit code 2 at the CLI). */
export class PartitionTableError extends HarnessError {
  override name = 'PartitionTableError';
  readonly disk: string;
  readonly offset: number | undefined;

  constructor(message: string, options: PartitionTableErrorOptions) {
    const where = options.offset === undefined ? options.disk : `${options.disk} at offset ${options.offset} (0x${options.offset.toString(16)})`;
    super(`${where}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.disk = options.disk;
    this.offset = options.offset;
  }
}
