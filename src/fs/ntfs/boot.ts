/**
 * The NTFS boot sector ($Boot, sector 0 of the volume). Layout (ntfs-3g include/ntfs-3g/layout.h
 * `NTFS_BOOT_SECTOR`, Linux Documentation/filesystems/ntfs3.rst): OEM id "NTFS    " at 3, BIOS
 * parameter block at 0x0B (bytes per sector u16, sectors per cluster u8), total sectors u64 at
 * 0x28, $MFT LCN u64 at 0x30, $MFTMirr LCN at 0x38, clusters per MFT record s8 at 0x40 and per
 * index block s8 at 0x44 (negative n means 2^-n bytes), volume serial u64 at 0x48.
 */
import { NtfsFormatError } from './errors.ts';

export interface NtfsBoot {
  bytesPerSector: number;
  clusterSize: number;
  /** Sectors the volume spans, from the boot sector (the backup boot sector is not counted). */
  totalSectors: number;
  /** Clusters of the volume: every LCN must be below this. */
  totalClusters: number;
  mftLcn: number;
  mftMirrLcn: number;
  mftRecordSize: number;
  indexBlockSize: number;
  serial: bigint;
}

/** Largest cluster NTFS allows (Windows 10 1709+: 2 MiB). */
const MAX_CLUSTER = 2 * 1024 * 1024;

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** A size in "clusters per X" form: positive = clusters, negative n = 2^-n bytes. */
function clustersOrLog(raw: number, clusterSize: number): number {
  const v = raw > 127 ? raw - 256 : raw;
  if (v > 0) return v * clusterSize;
  const shift = -v;
  return shift >= 9 && shift <= 16 ? 2 ** shift : 0;
}

export function parseBoot(b: Buffer, volume: string, volumeSize: number): NtfsBoot {
  const bad = (what: string): never => {
    throw new NtfsFormatError(`boot sector: ${what}`, { volume, offset: 0 });
  };
  if (b.length < 512) bad(`volume too small (${volumeSize} bytes)`);
  if (b.toString('latin1', 3, 11) !== 'NTFS    ') bad(`OEM id is ${JSON.stringify(b.toString('latin1', 3, 11))}, not "NTFS    "`);
  const bytesPerSector = b.readUInt16LE(0x0b);
  if (!isPow2(bytesPerSector) || bytesPerSector < 256 || bytesPerSector > 4096) bad(`bytes per sector ${bytesPerSector} is not a power of two in 256..4096`);
  const spcRaw = b[0x0d];
  // Values above 0x80 encode 2^(256 - v) sectors (clusters of 128 KiB and more).
  const sectorsPerCluster = spcRaw <= 0x80 ? spcRaw : 2 ** Math.min(256 - spcRaw, 31);
  if (!isPow2(sectorsPerCluster)) bad(`sectors per cluster byte 0x${spcRaw.toString(16)} is not a power of two`);
  const clusterSize = bytesPerSector * sectorsPerCluster;
  if (clusterSize > MAX_CLUSTER) bad(`cluster size ${clusterSize} exceeds ${MAX_CLUSTER}`);
  const total = b.readBigUInt64LE(0x28);
  if (total === 0n || total > BigInt(Number.MAX_SAFE_INTEGER) / BigInt(bytesPerSector)) bad(`total sectors ${total} is out of range`);
  const totalSectors = Number(total);
  if (totalSectors * bytesPerSector > volumeSize) bad(`the boot sector says ${totalSectors} sectors of ${bytesPerSector} bytes, the volume has only ${volumeSize} bytes`);
  const totalClusters = Math.floor((totalSectors * bytesPerSector) / clusterSize);
  const mft = b.readBigUInt64LE(0x30);
  const mftMirr = b.readBigUInt64LE(0x38);
  if (mft >= BigInt(totalClusters)) bad(`$MFT LCN ${mft} is past the last cluster ${totalClusters - 1}`);
  if (mftMirr >= BigInt(totalClusters)) bad(`$MFTMirr LCN ${mftMirr} is past the last cluster ${totalClusters - 1}`);
  const mftRecordSize = clustersOrLog(b[0x40], clusterSize);
  if (!isPow2(mftRecordSize) || mftRecordSize < 512 || mftRecordSize > 65536) bad(`MFT record size byte 0x${b[0x40].toString(16)} gives ${mftRecordSize} bytes, not a power of two in 512..65536`);
  const indexBlockSize = clustersOrLog(b[0x44], clusterSize);
  if (!isPow2(indexBlockSize) || indexBlockSize < 512 || indexBlockSize > 65536) bad(`index block size byte 0x${b[0x44].toString(16)} gives ${indexBlockSize} bytes, not a power of two in 512..65536`);
  return { bytesPerSector, clusterSize, totalSectors, totalClusters, mftLcn: Number(mft), mftMirrLcn: Number(mftMirr), mftRecordSize, indexBlockSize, serial: b.readBigUInt64LE(0x48) };
}
