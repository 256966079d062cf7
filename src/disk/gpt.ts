/**
 * GUID Partition Table (UEFI 2.10 §5.3): primary header at LBA 1 with its entry array, backup
 * header at the last LBA. Both CRC-32s (header, entry array) are checked; a damaged primary is
 * replaced by the backup and the caller is told in `warnings`.
 *
 * Written by hand rather than with the npm `gpt` package (3.0.0): its table check re-serialises
 * only the non-empty entries, packed together, so any table with a gap (partitions 1 and 3) fails
 * its CRC, and the packing loses the entry index that is the partition number; it CRCs a table
 * padded to 16 KiB instead of `entries × entrySize` bytes; and it trusts the entry count and size
 * read from disk (an entry size of 0 loops 2^32 times).
 */
import { crc32 } from 'node:zlib';
import type { BlockSource } from '../qcow2/index.ts';
import { PartitionTableError } from './errors.ts';
import { readSectors } from './read-sector.ts';
import type { Volume } from './types.ts';

const SIGNATURE = 'EFI PART';
const MIN_HEADER_SIZE = 92;
const MIN_ENTRY_SIZE = 128;
/** Largest entry array read (Linux and every partitioner write 16 KiB; the limit only bounds memory). */
const MAX_TABLE_BYTES = 1 << 20;

export interface GptHeader {
  lba: number;
  alternateLba: bigint;
  firstUsable: bigint;
  lastUsable: bigint;
  diskGuid: string;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

export interface GptResult {
  header: GptHeader;
  diskGuid: string;
  volumes: Volume[];
}

/** Mixed-endian GUID (first three fields little-endian) as a lowercase string. */
export function guidString(b: Buffer, off: number): string {
  const h = (i: number): string => b[off + i].toString(16).padStart(2, '0');
  return `${h(3)}${h(2)}${h(1)}${h(0)}-${h(5)}${h(4)}-${h(7)}${h(6)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`;
}

/** A header that fails a check: why, so the caller can say it in a warning or an error. */
export class GptHeaderProblem {
  readonly reason: string;
  constructor(reason: string) {
    this.reason = reason;
  }
}

/** Parse and check the header in `sector` read from `lba`. */
export function parseGptHeader(sector: Buffer, lba: number, sectorSize: number, diskSectors: number): GptHeader | GptHeaderProblem {
  if (sector.toString('latin1', 0, 8) !== SIGNATURE) return new GptHeaderProblem('no "EFI PART" signature');
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < MIN_HEADER_SIZE || headerSize > sectorSize) return new GptHeaderProblem(`header size ${headerSize} is outside ${MIN_HEADER_SIZE}..${sectorSize}`);
  const stored = sector.readUInt32LE(16);
  const copy = Buffer.from(sector.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  const computed = crc32(copy) >>> 0;
  if (computed !== stored) return new GptHeaderProblem(`header CRC32 is 0x${stored.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')}`);
  const myLba = sector.readBigUInt64LE(24);
  if (myLba !== BigInt(lba)) return new GptHeaderProblem(`header says it lives at LBA ${myLba}, read from LBA ${lba}`);
  const alternateLba = sector.readBigUInt64LE(32);
  const firstUsable = sector.readBigUInt64LE(40);
  const lastUsable = sector.readBigUInt64LE(48);
  const last = BigInt(diskSectors - 1);
  if (firstUsable > lastUsable + 1n || lastUsable > last) return new GptHeaderProblem(`usable LBAs ${firstUsable}..${lastUsable} do not fit a disk of ${diskSectors} sectors`);
  const entriesLba = sector.readBigUInt64LE(72);
  const entryCount = sector.readUInt32LE(80);
  const entrySize = sector.readUInt32LE(84);
  // UEFI: entry size is 128 × 2^n.
  if (entrySize < MIN_ENTRY_SIZE || (entrySize & (entrySize - 1)) !== 0) return new GptHeaderProblem(`partition entry size ${entrySize} is not 128 × 2^n`);
  if (entryCount * entrySize > MAX_TABLE_BYTES) return new GptHeaderProblem(`${entryCount} entries of ${entrySize} bytes exceed the ${MAX_TABLE_BYTES}-byte table limit`);
  const tableSectors = Math.ceil((entryCount * entrySize) / sectorSize);
  if (entriesLba < 2n || entriesLba + BigInt(tableSectors) > last + 1n) return new GptHeaderProblem(`entry array at LBA ${entriesLba} (${tableSectors} sectors) lies outside the disk`);
  const entriesEnd = entriesLba + BigInt(tableSectors);
  if (BigInt(lba) >= entriesLba && BigInt(lba) < entriesEnd) return new GptHeaderProblem(`entry array at LBA ${entriesLba} overlaps the header`);
  return { lba, alternateLba, firstUsable, lastUsable, diskGuid: guidString(sector, 56), entriesLba: Number(entriesLba), entryCount, entrySize, entriesCrc: sector.readUInt32LE(88) };
}

/** Read, CRC-check and decode the entry array a valid header points at. */
export async function readGptEntries(src: BlockSource, header: GptHeader, sectorSize: number, diskSectors: number, warnings: string[]): Promise<Volume[] | GptHeaderProblem> {
  const bytes = header.entryCount * header.entrySize;
  const tableSectors = Math.ceil(bytes / sectorSize);
  const table = tableSectors === 0 ? Buffer.alloc(0) : await readSectors(src, header.entriesLba, tableSectors, sectorSize, 'GPT entry array');
  const stored = header.entriesCrc;
  const computed = crc32(table.subarray(0, bytes)) >>> 0;
  if (stored !== computed) return new GptHeaderProblem(`entry array CRC32 is 0x${stored.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')}`);
  const volumes: Volume[] = [];
  const last = BigInt(diskSectors - 1);
  for (let i = 0; i < header.entryCount; i++) {
    const off = i * header.entrySize;
    const type = guidString(table, off);
    if (type === '00000000-0000-0000-0000-000000000000') continue;
    const first = table.readBigUInt64LE(off + 32);
    const end = table.readBigUInt64LE(off + 40);
    const number = i + 1;
    if (first > end) {
      warnings.push(`GPT entry ${number}: first LBA ${first} is past its last LBA ${end}; skipped`);
      continue;
    }
    if (first > last) {
      warnings.push(`GPT entry ${number}: starts at LBA ${first}, past the last LBA ${last} of the disk; skipped`);
      continue;
    }
    let lastLba = end;
    if (end > last) {
      warnings.push(`GPT entry ${number}: ends at LBA ${end}, past the last LBA ${last} of the disk; truncated`);
      lastLba = last;
    }
    // Name: up to 36 UTF-16LE code units, ended by the first NUL.
    const raw = table.subarray(off + 56, off + 128);
    let n = 0;
    while (n + 1 < raw.length && (raw[n] !== 0 || raw[n + 1] !== 0)) n += 2;
    volumes.push({
      number,
      offset: Number(first) * sectorSize,
      length: (Number(lastLba) - Number(first) + 1) * sectorSize,
      type,
      guid: guidString(table, off + 16),
      name: raw.toString('utf16le', 0, n),
      scheme: 'gpt',
    });
  }
  return volumes;
}

/** One header and its entries, or why not. */
async function tryCopy(src: BlockSource, lba: number, sectorSize: number, diskSectors: number, warnings: string[]): Promise<GptResult | GptHeaderProblem> {
  const sector = await readSectors(src, lba, 1, sectorSize, 'GPT header');
  const header = parseGptHeader(sector, lba, sectorSize, diskSectors);
  if (header instanceof GptHeaderProblem) return header;
  const entryWarnings: string[] = [];
  const volumes = await readGptEntries(src, header, sectorSize, diskSectors, entryWarnings);
  if (volumes instanceof GptHeaderProblem) return volumes;
  warnings.push(...entryWarnings);
  return { header, diskGuid: header.diskGuid, volumes };
}

/**
 * The GPT of a disk: the primary when it is intact, else the backup at the last LBA (with a
 * warning). Returns null when neither copy carries the signature; throws when a copy carries it
 * but no copy is intact.
 */
export async function readGpt(src: BlockSource, sectorSize: number, warnings: string[]): Promise<GptResult | null> {
  const diskSectors = Math.floor(src.size / sectorSize);
  if (diskSectors < 3) return null;
  const lastLba = diskSectors - 1;
  const primary = await tryCopy(src, 1, sectorSize, diskSectors, warnings);
  if (!(primary instanceof GptHeaderProblem)) {
    // Check the backup the primary points at (the last LBA unless the disk was grown).
    const alt = primary.header.alternateLba;
    const altLba = alt >= 2n && alt <= BigInt(lastLba) ? Number(alt) : lastLba;
    const backup = await tryCopy(src, altLba, sectorSize, diskSectors, []);
    if (backup instanceof GptHeaderProblem) warnings.push(`backup GPT at LBA ${altLba} is damaged (${backup.reason}); the primary is intact and was used`);
    return primary;
  }
  const backup = await tryCopy(src, lastLba, sectorSize, diskSectors, warnings);
  if (!(backup instanceof GptHeaderProblem)) {
    warnings.push(`primary GPT at LBA 1 is damaged (${primary.reason}); used the backup GPT at LBA ${lastLba}`);
    return backup;
  }
  const signed = primary.reason !== 'no "EFI PART" signature' || backup.reason !== 'no "EFI PART" signature';
  if (!signed) return null;
  throw new PartitionTableError(`both GPT copies are damaged: primary at LBA 1: ${primary.reason}; backup at LBA ${lastLba}: ${backup.reason}`, { disk: src.name, offset: sectorSize });
}
