/**
 * Errors of the persistent-data reader. `MetadataCorruptError` means the bytes on the metadata
 * device are not a well-formed persistent-data structure (bad checksum, impossible tree, a block
 * past the end): a decoder turns it into a `lost` claim with the message as reason. It is never a
 * bug and never an I/O failure. `MetadataIoError` means the block source itself failed.
 */
import { HarnessError, InfrastructureHarnessError } from '../../util/index.ts';

/** Which structure a block belongs to, as a user reads it in a reason ("era array", "writeset for era 7"). */
export interface CorruptionSite {
  structure: string;
  /** Metadata block number (4 KiB units) holding the bad bytes, when one block is to blame. */
  block?: number | undefined;
}

export class MetadataCorruptError extends HarnessError {
  override name = 'MetadataCorruptError';
  readonly structure: string;
  readonly block: number | undefined;

  constructor(site: CorruptionSite, message: string) {
    super(site.block === undefined ? `${site.structure}: ${message}` : `${site.structure}: block ${site.block}: ${message}`);
    this.structure = site.structure;
    this.block = site.block;
  }
}

/** Reading the metadata device failed (the source threw). */
export class MetadataIoError extends InfrastructureHarnessError {
  override name = 'MetadataIoError';
  readonly source: string;
  readonly position: number;

  constructor(source: string, position: number, length: number, cause: unknown) {
    super(`${source}: read of ${length} bytes at offset ${position} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.source = source;
    this.position = position;
  }
}
