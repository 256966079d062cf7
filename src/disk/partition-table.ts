/**
 * Partition table → volumes. Order of trust, as Linux block/partitions does it:
 * 1. sector 0 with a protective (0xEE) entry → the disk is GPT; primary header, else backup;
 *    no intact copy is an error;
 * 2. sector 0 with a valid MBR → MBR (a stray GPT signature beside it is ignored with a warning);
 * 3. no valid MBR → an intact GPT is still used (with a warning), else no table at all.
 */
import type { BlockSource } from '../qcow2/index.ts';
import { PartitionTableError } from './errors.ts';
import { readGpt, type GptResult } from './gpt.ts';
import { PROTECTIVE, parseMbrSector, readMbrVolumes } from './mbr.ts';
import { readSectors } from './read-sector.ts';
import type { PartitionTable, ReadPartitionTableOptions, Volume } from './types.ts';

export async function readPartitionTable(src: BlockSource, options: ReadPartitionTableOptions = {}): Promise<PartitionTable> {
  const given = options.sectorSize;
  if (given !== undefined && given !== 512 && given !== 4096) {
    throw new TypeError(`Expected \`sectorSize\` to be 512 or 4096, got \`${String(given)}\` (${typeof given})`);
  }
  let sectorSize: 512 | 4096 = given ?? 512;
  const signal = options.signal;
  signal?.throwIfAborted();
  const warnings: string[] = [];
  const none: PartitionTable = { scheme: 'none', diskGuid: null, diskSignature: null, sectorSize, volumes: [], warnings };
  const gptTable = (gpt: GptResult): PartitionTable => ({ scheme: 'gpt', diskGuid: gpt.diskGuid, diskSignature: null, sectorSize, volumes: gpt.volumes, warnings });
  if (src.size < sectorSize) {
    warnings.push(`the disk (${src.size} bytes) is smaller than one ${sectorSize}-byte sector`);
    return none;
  }
  const sector0 = await readSectors(src, 0, 1, sectorSize, 'MBR');
  const entries = parseMbrSector(sector0);
  const protective = entries?.some((e) => e.type === PROTECTIVE) ?? false;

  if (protective) {
    let gpt = await readGpt(src, sectorSize, warnings);
    if (!gpt && given === undefined && src.size >= 3 * 4096) {
      // A 4Kn disk read with the default: its headers sit at byte 4096 and the last 4 KiB.
      gpt = await readGpt(src, 4096, warnings);
      if (gpt) {
        sectorSize = 4096;
        warnings.push('no GPT with 512-byte sectors; found one with 4096-byte sectors and used it');
      }
    }
    signal?.throwIfAborted();
    if (!gpt) throw new PartitionTableError('the MBR is protective (type 0xEE) but neither LBA 1 nor the last LBA holds a GPT header', { disk: src.name, offset: sectorSize });
    return gptTable(gpt);
  }
  if (entries && entries.every((e) => e.type === 0 || e.sectors === 0) && isFileSystemBootSector(sector0)) {
    warnings.push('sector 0 is the boot sector of a file system (whole-disk NTFS or FAT), not a partition table');
    return none;
  }
  if (entries) {
    let stray = false;
    try {
      const lba1 = await readSectors(src, 1, 1, sectorSize, 'LBA 1');
      stray = lba1.toString('latin1', 0, 8) === 'EFI PART';
    } catch (error) {
      if (!(error instanceof PartitionTableError)) throw error;
    }
    if (stray) warnings.push('LBA 1 holds a GPT header but the MBR is not protective: the MBR was used, the GPT ignored');
    const volumes = await readMbrVolumes(src, entries, sectorSize, warnings, signal);
    volumes.sort((a, b) => a.number - b.number);
    return { scheme: 'mbr', diskGuid: null, diskSignature: `0x${sector0.readUInt32LE(440).toString(16).padStart(8, '0')}`, sectorSize, volumes, warnings };
  }
  const gpt = await readGpt(src, sectorSize, warnings);
  signal?.throwIfAborted();
  if (gpt) {
    warnings.unshift('sector 0 holds no protective MBR; the GPT was used anyway');
    return gptTable(gpt);
  }
  return none;
}

/** NTFS ("NTFS    " OEM id) or FAT ("FAT" at the BPB's file-system type) boot sector. */
function isFileSystemBootSector(sector: Buffer): boolean {
  return sector.toString('latin1', 3, 11) === 'NTFS    ' || sector.toString('latin1', 0x36, 0x39) === 'FAT' || sector.toString('latin1', 0x52, 0x55) === 'FAT';
}

/** The volume with this partition number, or undefined. */
export function findVolume(table: Pick<PartitionTable, 'volumes'>, number: number): Volume | undefined {
  return table.volumes.find((v) => v.number === number);
}
