/**
 * CBTF — the reference on-disk format for a Windows CBT driver (DESIGN.md; docs/cbtf.md).
 * A pre-allocated file whose extents the driver writes raw at shutdown and removal:
 * a 4096-byte little-endian header, then the bitmap (bit i, LSB first = block i changed).
 */
import { crc32c } from '../crc32c.ts';

export const CBTF_MAGIC = 'CBTFILE1';
export const CBTF_VERSION = 1;
export const CBTF_HEADER_SIZE = 4096;
export const CBTF_FLAG_CLEAN = 1;
export const CBTF_FLAG_TRACKING_LOST = 2;
export const CBTF_MIN_SHIFT = 12;
export const CBTF_MAX_SHIFT = 24;

export interface CbtfHeader {
  magic: string;
  version: number;
  headerSize: number;
  /** Lowercase canonical GUID string (Data1–3 stored little-endian, as Windows writes GUIDs). */
  generation: string;
  sequence: bigint;
  flags: number;
  granularityShift: number;
  volumeSize: bigint;
  volumeSerial: bigint;
  epochId: bigint;
  bitmapOffset: bigint;
  bitmapLength: bigint;
  bitmapCrc: number;
  headerCrc: number;
}

/** Windows GUID bytes → "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". */
export function guidToString(b: Uint8Array): string {
  const h = (x: number) => x.toString(16).padStart(2, '0');
  const d1 = [b[3], b[2], b[1], b[0]].map(h).join('');
  const d2 = [b[5], b[4]].map(h).join('');
  const d3 = [b[7], b[6]].map(h).join('');
  const d4 = [b[8], b[9]].map(h).join('');
  const d5 = Array.from(b.subarray(10, 16), h).join('');
  return `${d1}-${d2}-${d3}-${d4}-${d5}`;
}

/** "xxxxxxxx-…" → 16 bytes in Windows order; throws on a malformed string. */
export function guidToBytes(s: string): Buffer {
  const m = /^\{?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}?$/i.exec(s.trim());
  if (!m) throw new TypeError(`Expected a GUID like 01234567-89ab-cdef-0123-456789abcdef, got \`${s}\``);
  const out = Buffer.alloc(16);
  out.writeUInt32LE(parseInt(m[1], 16), 0);
  out.writeUInt16LE(parseInt(m[2], 16), 4);
  out.writeUInt16LE(parseInt(m[3], 16), 6);
  Buffer.from(m[4] + m[5], 'hex').copy(out, 8);
  return out;
}

export function normalizeGuid(s: string): string {
  return guidToString(guidToBytes(s));
}

export function parseCbtfHeader(buf: Uint8Array): CbtfHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    magic: b.toString('latin1', 0, 8),
    version: b.readUInt32LE(8),
    headerSize: b.readUInt32LE(12),
    generation: guidToString(b.subarray(16, 32)),
    sequence: b.readBigUInt64LE(32),
    flags: b.readUInt32LE(40),
    granularityShift: b.readUInt32LE(44),
    volumeSize: b.readBigUInt64LE(48),
    volumeSerial: b.readBigUInt64LE(56),
    epochId: b.readBigUInt64LE(64),
    bitmapOffset: b.readBigUInt64LE(72),
    bitmapLength: b.readBigUInt64LE(80),
    bitmapCrc: b.readUInt32LE(88),
    headerCrc: b.readUInt32LE(92),
  };
}

/** CRC-32C of the 4096-byte header with the header-CRC field (bytes 92..95) taken as zero. */
export function cbtfHeaderCrc(header: Uint8Array): number {
  const copy = Buffer.from(header.subarray(0, CBTF_HEADER_SIZE));
  copy.fill(0, 92, 96);
  return crc32c(copy);
}

export interface CbtfWriteSpec {
  generation: string;
  sequence?: bigint;
  flags: number;
  granularityShift: number;
  volumeSize: bigint;
  volumeSerial: bigint;
  epochId?: bigint;
  /** Bitmap bytes (length must cover the volume). */
  bitmap: Uint8Array;
  /** Total file size (pre-allocated); at least header + bitmap. @default header + bitmap */
  fileSize?: number;
  /** Deliberately wrong CRCs, for fixtures. */
  corruptHeaderCrc?: boolean;
  corruptBitmapCrc?: boolean;
}

/** Encode a CBTF file: what a correct driver persists. Used by fixtures and docs examples. */
export function encodeCbtf(spec: CbtfWriteSpec): Buffer {
  const size = Math.max(spec.fileSize ?? 0, CBTF_HEADER_SIZE + spec.bitmap.length);
  const out = Buffer.alloc(size);
  out.write(CBTF_MAGIC, 0, 'latin1');
  out.writeUInt32LE(CBTF_VERSION, 8);
  out.writeUInt32LE(CBTF_HEADER_SIZE, 12);
  guidToBytes(spec.generation).copy(out, 16);
  out.writeBigUInt64LE(spec.sequence ?? 1n, 32);
  out.writeUInt32LE(spec.flags >>> 0, 40);
  out.writeUInt32LE(spec.granularityShift, 44);
  out.writeBigUInt64LE(spec.volumeSize, 48);
  out.writeBigUInt64LE(spec.volumeSerial, 56);
  out.writeBigUInt64LE(spec.epochId ?? 0n, 64);
  out.writeBigUInt64LE(BigInt(CBTF_HEADER_SIZE), 72);
  out.writeBigUInt64LE(BigInt(spec.bitmap.length), 80);
  Buffer.from(spec.bitmap).copy(out, CBTF_HEADER_SIZE);
  out.writeUInt32LE((crc32c(spec.bitmap) ^ (spec.corruptBitmapCrc ? 1 : 0)) >>> 0, 88);
  out.writeUInt32LE((cbtfHeaderCrc(out) ^ (spec.corruptHeaderCrc ? 1 : 0)) >>> 0, 92);
  return out;
}

/** Bitmap bytes for `volumeSize` at 2^shift with the given blocks set. */
export function bitmapFromBlocks(volumeSize: bigint | number, shift: number, blocks: Iterable<number>): Buffer {
  const nBlocks = Math.ceil(Number(volumeSize) / 2 ** shift);
  const bm = Buffer.alloc(Math.ceil(nBlocks / 8));
  for (const i of blocks) {
    if (i < 0 || i >= nBlocks) throw new RangeError(`block ${i} outside 0..${nBlocks - 1}`);
    bm[i >> 3] |= 1 << (i & 7);
  }
  return bm;
}
