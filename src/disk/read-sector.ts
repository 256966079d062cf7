import type { BlockSource } from '../qcow2/index.ts';
import { PartitionTableError } from './errors.ts';

/** Read `count` whole sectors at `lba`; a read past the end of the disk is a table error. */
export async function readSectors(src: BlockSource, lba: number, count: number, sectorSize: number, what: string): Promise<Buffer> {
  const offset = lba * sectorSize;
  const length = count * sectorSize;
  if (!Number.isSafeInteger(offset) || offset + length > src.size) {
    throw new PartitionTableError(`${what} (${length} bytes at LBA ${lba}) lies past the end of the ${src.size}-byte disk`, { disk: src.name, offset: Number.isSafeInteger(offset) ? offset : undefined });
  }
  const buf = Buffer.alloc(length);
  let done = 0;
  try {
    while (done < length) {
      const n = await src.read(buf.subarray(done), offset + done);
      if (n <= 0) break;
      done += n;
    }
  } catch (error) {
    throw new PartitionTableError(`cannot read ${what}: ${(error as Error).message}`, { disk: src.name, offset, cause: error });
  }
  if (done < length) throw new PartitionTableError(`short read of ${what}: ${done} of ${length} bytes`, { disk: src.name, offset });
  return buf;
}
