/**
 * MBR partition tables: the four primary entries of sector 0 and the logical partitions of an
 * extended partition, found by walking its chain of extended boot records (EBRs) the way Linux
 * block/partitions/msdos.c does: in each EBR the data entries are logical partitions (start
 * relative to that EBR), the first extended entry links to the next EBR (start relative to the
 * extended partition). Logical partitions are numbered 5, 6, … in chain order.
 *
 * Written by hand rather than with the npm `mbr` package (1.1.3): it decodes one sector only (no
 * EBR chain, so no logical partitions), guesses exotic layouts (AST/NEC with 8 entries, Disk
 * Manager with 16) from boot-code bytes, and allocates with the deprecated `new Buffer()`.
 */
import type { BlockSource } from '../qcow2/index.ts';
import { readSectors } from './read-sector.ts';
import type { Volume } from './types.ts';

/** Extended partition types Linux follows (DOS 0x05, Win98 LBA 0x0F, Linux 0x85). */
const EXTENDED = new Set([0x05, 0x0f, 0x85]);
export const PROTECTIVE = 0xee;
/** Linux stops an EBR chain after 100 links (msdos.c `loopct`); same bound here. */
const MAX_EBRS = 100;

export interface MbrEntry {
  slot: number;
  status: number;
  type: number;
  start: number;
  sectors: number;
}

/** The four entries of a boot sector; `null` when 0x55AA is missing or an entry's status byte is not 0x00/0x80. */
export function parseMbrSector(sector: Buffer): MbrEntry[] | null {
  if (sector.length < 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) return null;
  const entries: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const off = 446 + 16 * i;
    const status = sector[off];
    // A boot sector of a file system (NTFS, FAT) has code here: Linux rejects such a "table".
    if (status !== 0x00 && status !== 0x80) return null;
    entries.push({ slot: i + 1, status, type: sector[off + 4], start: sector.readUInt32LE(off + 8), sectors: sector.readUInt32LE(off + 12) });
  }
  return entries;
}

export function isExtended(type: number): boolean {
  return EXTENDED.has(type);
}

function hex(type: number): string {
  return `0x${type.toString(16).padStart(2, '0')}`;
}

/** Clamp [start, start+sectors) to the disk; null (with a warning) when it starts past the end. */
function place(what: string, start: number, sectors: number, diskSectors: number, warnings: string[]): { start: number; sectors: number } | null {
  if (start >= diskSectors) {
    warnings.push(`${what}: starts at LBA ${start}, past the end of the disk (${diskSectors} sectors); skipped`);
    return null;
  }
  if (start + sectors > diskSectors) {
    warnings.push(`${what}: ends at LBA ${start + sectors - 1}, past the end of the disk (${diskSectors} sectors); truncated`);
    return { start, sectors: diskSectors - start };
  }
  return { start, sectors };
}

/** Volumes of an MBR disk whose sector 0 parsed to `entries`. */
export async function readMbrVolumes(src: BlockSource, entries: MbrEntry[], sectorSize: number, warnings: string[], signal?: AbortSignal): Promise<Volume[]> {
  const diskSectors = Math.floor(src.size / sectorSize);
  const volumes: Volume[] = [];
  const volume = (number: number, start: number, sectors: number, type: number): Volume => ({
    number,
    offset: start * sectorSize,
    length: sectors * sectorSize,
    type: hex(type),
    guid: null,
    name: null,
    scheme: 'mbr',
  });
  let nextLogical = 5;
  for (const e of entries) {
    if (e.type === 0 || e.sectors === 0) continue;
    if (!isExtended(e.type)) {
      const p = place(`MBR partition ${e.slot}`, e.start, e.sectors, diskSectors, warnings);
      if (p) volumes.push(volume(e.slot, p.start, p.sectors, e.type));
      continue;
    }
    const ext = place(`extended partition ${e.slot}`, e.start, e.sectors, diskSectors, warnings);
    if (!ext) continue;
    const extEnd = ext.start + ext.sectors;
    const seen = new Set<number>();
    let ebr = ext.start;
    for (let hops = 0; ; hops++) {
      signal?.throwIfAborted();
      if (hops >= MAX_EBRS) {
        warnings.push(`extended partition ${e.slot}: EBR chain longer than ${MAX_EBRS} links; stopped`);
        break;
      }
      if (seen.has(ebr)) {
        warnings.push(`extended partition ${e.slot}: EBR chain loops back to LBA ${ebr}; stopped`);
        break;
      }
      seen.add(ebr);
      const sector = await readSectors(src, ebr, 1, sectorSize, `EBR at LBA ${ebr}`);
      const links = parseMbrSector(sector);
      if (!links) {
        warnings.push(`extended partition ${e.slot}: EBR at LBA ${ebr} has no valid table (signature or status bytes); chain stopped`);
        break;
      }
      let next: number | null = null;
      for (const l of links) {
        if (l.type === 0 || l.sectors === 0) continue;
        if (isExtended(l.type)) {
          next ??= ext.start + l.start;
          continue;
        }
        const start = ebr + l.start;
        const number = nextLogical++;
        if (start >= extEnd || start + l.sectors > extEnd) {
          warnings.push(`logical partition ${number} (EBR at LBA ${ebr}): LBA ${start}+${l.sectors} lies outside extended partition ${e.slot} (LBA ${ext.start}..${extEnd - 1}); skipped`);
          continue;
        }
        volumes.push(volume(number, start, l.sectors, l.type));
      }
      if (next === null) break;
      if (next <= ext.start || next >= extEnd) {
        warnings.push(`extended partition ${e.slot}: EBR at LBA ${ebr} links to LBA ${next}, outside the extended partition; chain stopped`);
        break;
      }
      ebr = next;
    }
  }
  return volumes;
}
