/**
 * MFT file records ("FILE") and the update sequence array (fixups) shared with index blocks
 * ("INDX"). Layout from ntfs-3g include/ntfs-3g/layout.h (`MFT_RECORD`, `ATTR_RECORD`,
 * `NTFS_RECORD`) and the Linux NTFS documentation:
 *
 * record: magic, usa offset u16 @4, usa count u16 @6, sequence u16 @0x10, first attribute u16
 * @0x14, flags u16 @0x16 (1 in use, 2 directory), bytes in use u32 @0x18, bytes allocated u32
 * @0x1C, base record reference u64 @0x20, record number u32 @0x2C (NTFS 3.1).
 * attribute: type u32, length u32 @4, non-resident u8 @8, name length (UTF-16 units) u8 @9, name
 * offset u16 @0xA, flags u16 @0xC; resident: value length u32 @0x10, value offset u16 @0x14;
 * non-resident: lowest VCN @0x10, highest VCN @0x18, mapping pairs offset u16 @0x20, compression
 * unit u8 @0x22, allocated size @0x28, data size @0x30, initialized size @0x38 (s64 each).
 */
import { NtfsFormatError } from './errors.ts';

/** Fixups are applied per 512-byte stride whatever the sector size (ntfs-3g NTFS_BLOCK_SIZE). */
const STRIDE = 512;

export const AT = {
  STANDARD_INFORMATION: 0x10,
  ATTRIBUTE_LIST: 0x20,
  FILE_NAME: 0x30,
  DATA: 0x80,
  INDEX_ROOT: 0x90,
  INDEX_ALLOCATION: 0xa0,
  BITMAP: 0xb0,
  END: 0xffffffff,
} as const;

export const ATTR_FLAG = { COMPRESSED: 0x0001, ENCRYPTED: 0x4000, SPARSE: 0x8000 } as const;

export interface Attribute {
  type: number;
  name: string;
  flags: number;
  instance: number;
  /** MFT record that holds this attribute extent. */
  record: number;
  /** Volume offset of the attribute header (for errors). */
  offset: number;
  nonResident: boolean;
  /** Resident value. */
  value: Buffer | null;
  /** Non-resident fields (0 for resident attributes). */
  lowestVcn: number;
  highestVcn: number;
  mappingPairs: Buffer | null;
  mappingPairsOffset: number;
  compressionUnit: number;
  allocatedSize: number;
  dataSize: number;
  initializedSize: number;
}

export interface MftRecord {
  number: number;
  sequence: number;
  flags: number;
  inUse: boolean;
  directory: boolean;
  /** Record number of the base record; equal to `number` for a base record. */
  base: number;
  attributes: Attribute[];
}

export interface StructContext {
  volume: string;
  /** Volume offset of the structure's first byte. */
  offset: number;
  /** "MFT record 42", "index block VCN 3 of record 5". */
  what: string;
}

/**
 * Check and undo the update sequence array of a multi-sector structure in place: the last two
 * bytes of each 512-byte stride must equal the update sequence number, and are replaced with
 * the saved bytes. A mismatch means a torn or corrupted write.
 */
export function applyFixups(b: Buffer, ctx: StructContext): void {
  const usaOfs = b.readUInt16LE(4);
  const usaCount = b.readUInt16LE(6);
  const bad = (what: string, at = 4): never => {
    throw new NtfsFormatError(`${ctx.what}: ${what}`, { volume: ctx.volume, offset: ctx.offset + at });
  };
  if (b.length % STRIDE !== 0 || usaCount - 1 !== b.length / STRIDE) bad(`update sequence count ${usaCount} does not fit a ${b.length}-byte structure`);
  if (usaOfs & 1 || usaOfs < 8 || usaOfs + usaCount * 2 > STRIDE - 2) bad(`update sequence array at ${usaOfs} (${usaCount} entries) is misplaced`);
  const usn = b.readUInt16LE(usaOfs);
  for (let i = 1; i < usaCount; i++) {
    const end = i * STRIDE - 2;
    const seen = b.readUInt16LE(end);
    if (seen !== usn) bad(`fixup mismatch in stride ${i - 1}: found 0x${seen.toString(16).padStart(4, '0')}, update sequence number is 0x${usn.toString(16).padStart(4, '0')} (torn write?)`, end);
    b[end] = b[usaOfs + 2 * i];
    b[end + 1] = b[usaOfs + 2 * i + 1];
  }
}

function s64(b: Buffer, off: number): bigint {
  return b.readBigInt64LE(off);
}

/** A signed 64-bit size or VCN that must fit a JS number (and be ≥ `min`). */
function safe(v: bigint, min: bigint, what: string, bad: (w: string) => never): number {
  if (v < min || v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`${what} ${v} is out of range`);
  return Number(v);
}

/** Parse a FILE record (fixups already applied) read for record `number`. */
export function parseRecord(b: Buffer, number: number, ctx: StructContext): MftRecord {
  const bad = (what: string, at = 0): never => {
    throw new NtfsFormatError(`${ctx.what}: ${what}`, { volume: ctx.volume, offset: ctx.offset + at });
  };
  const usaOfs = b.readUInt16LE(4);
  const usaEnd = usaOfs + 2 * b.readUInt16LE(6);
  if (usaOfs >= 0x30 && b.readUInt32LE(0x2c) !== number) bad(`the record says it is number ${b.readUInt32LE(0x2c)}`, 0x2c);
  const flags = b.readUInt16LE(0x16);
  const bytesInUse = b.readUInt32LE(0x18);
  const bytesAllocated = b.readUInt32LE(0x1c);
  if (bytesAllocated !== b.length) bad(`bytes allocated ${bytesAllocated} differs from the record size ${b.length}`, 0x1c);
  if (bytesInUse > b.length || bytesInUse < 0x30) bad(`bytes in use ${bytesInUse} is outside 48..${b.length}`, 0x18);
  const first = b.readUInt16LE(0x14);
  if (first & 7 || first < usaEnd || first >= bytesInUse) bad(`first attribute offset ${first} is misplaced`, 0x14);
  // A base record has a zero reference; an extension of $MFT points at record 0 with sequence 1,
  // so test the whole 64-bit value, not its record part.
  const baseRef = b.readBigUInt64LE(0x20);
  const base = baseRef === 0n ? number : Number(baseRef & 0xffffffffffffn);
  const attributes: Attribute[] = [];
  let off = first;
  while (true) {
    if (off + 4 > bytesInUse) bad('attributes run past the bytes in use without an end marker', off);
    const type = b.readUInt32LE(off);
    if (type === AT.END) break;
    if (off + 0x18 > bytesInUse) bad(`attribute 0x${type.toString(16)} header runs past the bytes in use`, off);
    const len = b.readUInt32LE(off + 4);
    if (len < 0x18 || len & 7 || off + len > bytesInUse) bad(`attribute 0x${type.toString(16)} has length ${len}`, off + 4);
    const a = b.subarray(off, off + len);
    const nonResident = a[8] !== 0;
    const nameLen = a[9];
    const nameOff = a.readUInt16LE(0x0a);
    if (nameLen > 0 && nameOff + nameLen * 2 > len) bad(`attribute 0x${type.toString(16)} name runs past the attribute`, off + 0x0a);
    const name = nameLen > 0 ? a.toString('utf16le', nameOff, nameOff + nameLen * 2) : '';
    const attr: Attribute = {
      type,
      name,
      flags: a.readUInt16LE(0x0c),
      instance: a.readUInt16LE(0x0e),
      record: number,
      offset: ctx.offset + off,
      nonResident,
      value: null,
      lowestVcn: 0,
      highestVcn: 0,
      mappingPairs: null,
      mappingPairsOffset: 0,
      compressionUnit: 0,
      allocatedSize: 0,
      dataSize: 0,
      initializedSize: 0,
    };
    const badAttr = (w: string): never => bad(`attribute 0x${type.toString(16)}: ${w}`, off);
    if (!nonResident) {
      const vlen = a.readUInt32LE(0x10);
      const voff = a.readUInt16LE(0x14);
      if (voff + vlen > len) badAttr(`resident value ${voff}+${vlen} runs past the attribute's ${len} bytes`);
      attr.value = a.subarray(voff, voff + vlen);
      attr.dataSize = attr.allocatedSize = attr.initializedSize = vlen;
    } else {
      if (len < 0x40) badAttr(`non-resident header is ${len} bytes`);
      attr.lowestVcn = safe(s64(a, 0x10), 0n, 'lowest VCN', badAttr);
      attr.highestVcn = safe(s64(a, 0x18), -1n, 'highest VCN', badAttr);
      if (attr.highestVcn < attr.lowestVcn - 1) badAttr(`highest VCN ${attr.highestVcn} is below lowest VCN ${attr.lowestVcn}`);
      const mp = a.readUInt16LE(0x20);
      if (mp < 0x40 || mp >= len) badAttr(`mapping pairs offset ${mp} is outside 64..${len - 1}`);
      attr.mappingPairs = a.subarray(mp, len);
      attr.mappingPairsOffset = ctx.offset + off + mp;
      attr.compressionUnit = a[0x22];
      attr.allocatedSize = safe(s64(a, 0x28), 0n, 'allocated size', badAttr);
      attr.dataSize = safe(s64(a, 0x30), 0n, 'data size', badAttr);
      attr.initializedSize = safe(s64(a, 0x38), 0n, 'initialized size', badAttr);
    }
    attributes.push(attr);
    off += len;
  }
  return { number, sequence: b.readUInt16LE(0x10), flags, inUse: (flags & 1) !== 0, directory: (flags & 2) !== 0, base, attributes };
}
