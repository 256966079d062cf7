/**
 * Directory indexes ($I30): the entries of an $INDEX_ROOT value or of an "INDX" block, and the
 * file-name collation used to walk the B+ tree. Layout (ntfs-3g layout.h `INDEX_ROOT`,
 * `INDEX_HEADER`, `INDEX_ENTRY`, `INDEX_BLOCK`): index header = entries offset u32, index length
 * u32, allocated size u32, flags u8 (1: has sub-nodes), offsets relative to the header; an entry
 * = file reference u64, length u16 @8, key length u16 @0xA, flags u16 @0xC (1 sub-node, 2 last),
 * key ($FILE_NAME) at 0x10, and the sub-node's VCN in the entry's last 8 bytes. An INDX block
 * carries its own VCN at 0x10 and its index header at 0x18.
 */
import { NtfsFormatError } from './errors.ts';
import type { StructContext } from './record.ts';

export const INDEX_ENTRY_SUBNODE = 1;
export const INDEX_ENTRY_LAST = 2;

export interface IndexEntry {
  /** MFT record number the entry points at (low 48 bits of the reference). */
  record: number;
  /** Sequence number expected in that record (high 16 bits; 0 = not checked). */
  sequence: number;
  /** Name from the $FILE_NAME key; null on the last (key-less) entry. */
  name: string | null;
  /** File-name namespace: 0 POSIX, 1 Win32, 2 DOS, 3 Win32 and DOS. */
  namespace: number;
  /** VCN of the child index block, when the entry has one. */
  subnode: number | null;
}

/** Entries of one node: `b[headerAt..]` holds the index header, `limit` bounds the node. */
export function parseIndexNode(b: Buffer, headerAt: number, limit: number, ctx: StructContext): IndexEntry[] {
  const bad = (what: string, at: number): never => {
    throw new NtfsFormatError(`${ctx.what}: ${what}`, { volume: ctx.volume, offset: ctx.offset + at });
  };
  if (headerAt + 16 > limit) bad('index header runs past the node', headerAt);
  const entriesOffset = b.readUInt32LE(headerAt);
  const indexLength = b.readUInt32LE(headerAt + 4);
  const start = headerAt + entriesOffset;
  const end = headerAt + indexLength;
  if (entriesOffset < 16 || entriesOffset & 7 || end > limit || start >= end) bad(`index entries ${entriesOffset}..${indexLength} do not fit the ${limit - headerAt}-byte node`, headerAt);
  const entries: IndexEntry[] = [];
  let off = start;
  while (true) {
    if (off + 16 > end) bad('index entries end without a last entry', off);
    const len = b.readUInt16LE(off + 8);
    const keyLen = b.readUInt16LE(off + 10);
    const flags = b.readUInt16LE(off + 12);
    if (len < 16 || len & 7 || off + len > end) bad(`index entry length ${len} is invalid`, off + 8);
    let subnode: number | null = null;
    if (flags & INDEX_ENTRY_SUBNODE) {
      if (len < 24) bad(`index entry with a sub-node is only ${len} bytes`, off + 8);
      const vcn = b.readBigInt64LE(off + len - 8);
      if (vcn < 0n || vcn > BigInt(Number.MAX_SAFE_INTEGER)) bad(`sub-node VCN ${vcn} is out of range`, off + len - 8);
      subnode = Number(vcn);
    }
    const last = (flags & INDEX_ENTRY_LAST) !== 0;
    let name: string | null = null;
    let namespace = 0;
    if (!last) {
      if (keyLen < 0x42 || 16 + keyLen > len - (subnode === null ? 0 : 8)) bad(`file-name key of ${keyLen} bytes does not fit the ${len}-byte entry`, off + 10);
      const nameLen = b[off + 16 + 0x40];
      if (0x42 + nameLen * 2 > keyLen) bad(`name of ${nameLen} characters does not fit the ${keyLen}-byte key`, off + 16 + 0x40);
      namespace = b[off + 16 + 0x41];
      name = b.toString('utf16le', off + 16 + 0x42, off + 16 + 0x42 + nameLen * 2);
    }
    const ref = b.readBigUInt64LE(off);
    entries.push({ record: Number(ref & 0xffffffffffffn), sequence: Number(ref >> 48n), name, namespace, subnode });
    if (last) break;
    off += len;
  }
  return entries;
}

/**
 * NTFS file-name collation, ignoring case (ntfs-3g `ntfs_names_full_collate` with IGNORE_CASE):
 * UTF-16 code units mapped through the volume's $UpCase table, compared one by one, then the
 * shorter name first.
 */
export function collateNames(a: string, b: string, upcase: Uint16Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca < upcase.length) ca = upcase[ca];
    if (cb < upcase.length) cb = upcase[cb];
    if (ca !== cb) return ca < cb ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}
