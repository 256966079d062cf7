/**
 * The qcow2 header and its extensions (qemu docs/interop/qcow2.txt, "Header" and
 * "Header extensions"). Validation follows what QEMU's qcow2_do_open() refuses, plus the bounds
 * a reader that must never allocate from an untrusted number needs.
 */
import type { BlockSource } from './block-source.ts';
import { Qcow2FormatError, Qcow2UnsupportedError } from './errors.ts';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_TABLE = 0x6803f857;
const EXT_BITMAPS = 0x23852875;
const EXT_CRYPTO = 0x0537be77;
const EXT_DATA_FILE = 0x44415441;

/** QEMU's implementation limits (block/qcow2.h), reused as allocation bounds. */
export const LIMITS = {
  maxL1Bytes: 32 * 1024 * 1024,
  maxRefcountTableBytes: 8 * 1024 * 1024,
  maxSnapshots: 65536,
  maxSnapshotExtraData: 1024,
  maxBitmaps: 65535,
  maxBitmapDirectoryBytes: 1024 * 65535,
  maxBitmapNameBytes: 1023,
  maxBitmapTableEntries: 0x8000000,
  maxBackingNameBytes: 1023,
};

export type CompressionType = 'zlib' | 'zstd';

export interface FeatureName {
  type: 'incompatible' | 'compatible' | 'autoclear';
  bit: number;
  name: string;
}

export interface BitmapsExtension {
  nbBitmaps: number;
  directorySize: number;
  directoryOffset: number;
}

export interface UnknownExtension {
  type: number;
  offset: number;
  length: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  virtualSize: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: CompressionType;
  backingFile: string | null;
  backingFormat: string | null;
  dataFile: string | null;
  featureNames: FeatureName[];
  bitmaps: BitmapsExtension | null;
  unknownExtensions: UnknownExtension[];
  /** Derived: extended L2 entries (32 subclusters per cluster). */
  extendedL2: boolean;
  dirty: boolean;
  corrupt: boolean;
  lazyRefcounts: boolean;
  hasDataFile: boolean;
  dataFileRaw: boolean;
  bitmapsConsistent: boolean;
}

const dec = new TextDecoder('utf-8', { fatal: false });

/** A u64 that must fit a JavaScript number (all offsets and sizes below 8 PiB do). */
function u64(buf: Buffer, at: number, image: string, field: string): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Qcow2FormatError(`${field} ${v} is beyond what this reader addresses (2^53 bytes)`, { image, offset: at });
  }
  return Number(v);
}

async function readExact(src: BlockSource, offset: number, length: number, what: string): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const n = await src.read(buf, offset);
  if (n < length) {
    throw new Qcow2FormatError(`truncated: ${what} needs ${length} bytes but the file ends at ${src.size}`, { image: src.name, offset });
  }
  return buf;
}

/** True when the first bytes of `src` carry the qcow2 magic. */
export async function hasQcow2Magic(src: BlockSource): Promise<boolean> {
  if (src.size < 4) return false;
  const b = Buffer.alloc(4);
  await src.read(b, 0);
  return b.readUInt32BE(0) === QCOW2_MAGIC;
}

export async function readHeader(src: BlockSource): Promise<Qcow2Header> {
  const image = src.name;
  if (src.size < 72) {
    throw new Qcow2FormatError(`truncated: ${src.size} bytes is shorter than a qcow2 header (72)`, { image, offset: 0 });
  }
  const fixed = await readExact(src, 0, Math.min(src.size, 112), 'the header');
  if (fixed.readUInt32BE(0) !== QCOW2_MAGIC) throw new Qcow2FormatError('not a qcow2 image (bad magic)', { image, offset: 0 });
  const version = fixed.readUInt32BE(4);
  if (version !== 2 && version !== 3) {
    throw new Qcow2UnsupportedError(`qcow2 version ${version} is not supported (2 and 3 are)`, { image, offset: 4 });
  }
  const clusterBits = fixed.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) {
    throw new Qcow2FormatError(`cluster_bits ${clusterBits} is outside 9..21 (512 B to 2 MiB clusters)`, { image, offset: 20 });
  }
  const clusterSize = 2 ** clusterBits;
  const backingFileOffset = u64(fixed, 8, image, 'backing_file_offset');
  const backingFileSize = fixed.readUInt32BE(16);
  const virtualSize = u64(fixed, 24, image, 'size');
  const cryptMethod = fixed.readUInt32BE(32);
  const l1Size = fixed.readUInt32BE(36);
  const l1TableOffset = u64(fixed, 40, image, 'l1_table_offset');
  const refcountTableOffset = u64(fixed, 48, image, 'refcount_table_offset');
  const refcountTableClusters = fixed.readUInt32BE(56);
  const nbSnapshots = fixed.readUInt32BE(60);
  const snapshotsOffset = u64(fixed, 64, image, 'snapshots_offset');

  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = 4;
  let headerLength = 72;
  let compressionByte = 0;
  if (version === 3) {
    if (fixed.length < 104) throw new Qcow2FormatError('truncated: a version 3 header needs 104 bytes', { image, offset: 0 });
    incompatibleFeatures = fixed.readBigUInt64BE(72);
    compatibleFeatures = fixed.readBigUInt64BE(80);
    autoclearFeatures = fixed.readBigUInt64BE(88);
    refcountOrder = fixed.readUInt32BE(96);
    headerLength = fixed.readUInt32BE(100);
    if (headerLength < 104) throw new Qcow2FormatError(`header_length ${headerLength} is below 104`, { image, offset: 100 });
    if (headerLength > clusterSize) throw new Qcow2FormatError(`header_length ${headerLength} exceeds the cluster size ${clusterSize}`, { image, offset: 100 });
    if (headerLength > 104) {
      if (fixed.length < 105) throw new Qcow2FormatError('truncated: header_length says the compression type is present', { image, offset: 104 });
      compressionByte = fixed[104];
    }
  }
  if (refcountOrder > 6) throw new Qcow2FormatError(`refcount_order ${refcountOrder} exceeds 6`, { image, offset: 96 });

  if (backingFileOffset > clusterSize) {
    throw new Qcow2FormatError(`backing_file_offset ${backingFileOffset} lies outside the header cluster`, { image, offset: 8 });
  }

  // Extensions live between the header and the backing file name (or the end of cluster 0).
  const extEnd = backingFileOffset !== 0 ? backingFileOffset : clusterSize;
  const firstClusterLen = Math.min(clusterSize, Math.max(extEnd, backingFileOffset + Math.min(backingFileSize, LIMITS.maxBackingNameBytes)));
  const first = Buffer.alloc(firstClusterLen);
  await src.read(first, 0);

  let backingFormat: string | null = null;
  let dataFile: string | null = null;
  const featureNames: FeatureName[] = [];
  let bitmaps: BitmapsExtension | null = null;
  let bitmapsExtPresent = false;
  const unknownExtensions: UnknownExtension[] = [];
  let cryptoExt = false;
  const seen = new Set<number>();
  let off = headerLength;
  while (off < extEnd) {
    if (off + 8 > extEnd || off + 8 > src.size) {
      throw new Qcow2FormatError('header extension area ends inside an extension header', { image, offset: off });
    }
    const type = first.readUInt32BE(off);
    const len = first.readUInt32BE(off + 4);
    const dataOff = off + 8;
    if (len > extEnd - dataOff) throw new Qcow2FormatError(`header extension 0x${type.toString(16)} of ${len} bytes runs past the extension area`, { image, offset: off });
    if (type === EXT_END) break;
    if (dataOff + len > src.size) throw new Qcow2FormatError('truncated inside a header extension', { image, offset: off });
    const data = first.subarray(dataOff, dataOff + len);
    if (seen.has(type) && type !== EXT_FEATURE_TABLE) {
      // The spec allows each extension at most once; QEMU keeps the last. Refuse the ambiguity.
      if (type === EXT_BACKING_FORMAT || type === EXT_BITMAPS || type === EXT_DATA_FILE || type === EXT_CRYPTO) {
        throw new Qcow2FormatError(`header extension 0x${type.toString(16)} appears twice`, { image, offset: off });
      }
    }
    seen.add(type);
    switch (type) {
      case EXT_BACKING_FORMAT:
        if (len > 15) throw new Qcow2FormatError(`backing format name of ${len} bytes is too long`, { image, offset: off });
        backingFormat = dec.decode(data);
        break;
      case EXT_FEATURE_TABLE:
        for (let i = 0; i + 48 <= len; i += 48) {
          const t = data[i];
          const raw = data.subarray(i + 2, i + 48);
          const nul = raw.indexOf(0);
          featureNames.push({
            type: t === 0 ? 'incompatible' : t === 1 ? 'compatible' : 'autoclear',
            bit: data[i + 1],
            name: dec.decode(nul < 0 ? raw : raw.subarray(0, nul)),
          });
        }
        break;
      case EXT_BITMAPS: {
        if (len !== 24) throw new Qcow2FormatError(`bitmaps extension has length ${len}, expected 24`, { image, offset: off });
        bitmapsExtPresent = true;
        const nb = data.readUInt32BE(0);
        const reserved = data.readUInt32BE(4);
        const dirSize = data.readBigUInt64BE(8);
        const dirOffset = data.readBigUInt64BE(16);
        if (reserved !== 0) throw new Qcow2FormatError('bitmaps extension reserved field is not zero', { image, offset: dataOff + 4 });
        if (nb === 0) throw new Qcow2FormatError('bitmaps extension with zero bitmaps', { image, offset: dataOff });
        if (nb > LIMITS.maxBitmaps) throw new Qcow2FormatError(`bitmaps extension lists ${nb} bitmaps, more than ${LIMITS.maxBitmaps}`, { image, offset: dataOff });
        if (dirSize > BigInt(LIMITS.maxBitmapDirectoryBytes)) throw new Qcow2FormatError(`bitmap directory of ${dirSize} bytes exceeds ${LIMITS.maxBitmapDirectoryBytes}`, { image, offset: dataOff + 8 });
        if (dirOffset > BigInt(Number.MAX_SAFE_INTEGER) || Number(dirOffset) % clusterSize !== 0) {
          throw new Qcow2FormatError(`bitmap directory offset ${dirOffset} is not cluster aligned`, { image, offset: dataOff + 16 });
        }
        bitmaps = { nbBitmaps: nb, directorySize: Number(dirSize), directoryOffset: Number(dirOffset) };
        break;
      }
      case EXT_CRYPTO:
        cryptoExt = true;
        break;
      case EXT_DATA_FILE:
        if (len > 4096) throw new Qcow2FormatError(`data file name of ${len} bytes is too long`, { image, offset: off });
        dataFile = dec.decode(data);
        break;
      default:
        unknownExtensions.push({ type, offset: off, length: len });
    }
    off = dataOff + Math.ceil(len / 8) * 8;
  }

  const unknownIncompat = incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknownIncompat !== 0n) {
    const names: string[] = [];
    for (let bit = 0; bit < 64; bit++) {
      if ((unknownIncompat >> BigInt(bit)) & 1n) {
        const named = featureNames.find((f) => f.type === 'incompatible' && f.bit === bit);
        names.push(named ? `${named.name} (bit ${bit})` : `unknown incompatible feature bit ${bit}`);
      }
    }
    throw new Qcow2UnsupportedError(`refusing an image with unsupported incompatible features: ${names.join(', ')}`, { image, offset: 72 });
  }
  if (cryptMethod !== 0 || cryptoExt) {
    const kind = cryptMethod === 1 ? 'AES' : cryptMethod === 2 ? 'LUKS' : `method ${cryptMethod}`;
    throw new Qcow2UnsupportedError(`encrypted images (${kind}) are not supported: the harness reads images without keys`, { image, offset: 32 });
  }

  let compressionType: CompressionType = 'zlib';
  if (compressionByte === 1) compressionType = 'zstd';
  else if (compressionByte !== 0) throw new Qcow2UnsupportedError(`unknown compression type ${compressionByte}`, { image, offset: 104 });
  const compressionBit = (incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n;
  if (compressionType === 'zlib' && compressionBit) {
    throw new Qcow2FormatError('compression type bit is set but the compression type is zlib', { image, offset: 72 });
  }
  if (compressionType !== 'zlib' && !compressionBit) {
    throw new Qcow2FormatError(`compression type is ${compressionType} but the incompatible compression bit is clear`, { image, offset: 72 });
  }

  const extendedL2 = (incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
  if (extendedL2 && clusterBits < 14) {
    throw new Qcow2FormatError(`extended L2 entries need clusters of at least 16 KiB, not ${clusterSize}`, { image, offset: 20 });
  }
  const hasDataFile = (incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
  if (!hasDataFile && dataFile !== null) {
    // QEMU ignores a data file name without the incompatible bit; so do we.
    dataFile = null;
  }

  let backingFile: string | null = null;
  if (backingFileOffset !== 0) {
    if (backingFileSize > LIMITS.maxBackingNameBytes || backingFileSize > clusterSize - backingFileOffset) {
      throw new Qcow2FormatError(`backing file name of ${backingFileSize} bytes is too long`, { image, offset: 16 });
    }
    if (backingFileOffset + backingFileSize > src.size) {
      throw new Qcow2FormatError('truncated inside the backing file name', { image, offset: backingFileOffset });
    }
    backingFile = dec.decode(first.subarray(backingFileOffset, backingFileOffset + backingFileSize));
  }

  const entryLen = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / entryLen;
  if (l1Size * 8 > LIMITS.maxL1Bytes) {
    throw new Qcow2FormatError(`l1_size ${l1Size} exceeds QEMU's limit of ${LIMITS.maxL1Bytes / 8} entries`, { image, offset: 36 });
  }
  const l1Required = Math.ceil(virtualSize / clusterSize / l2Entries);
  if (l1Size < l1Required) {
    throw new Qcow2FormatError(`L1 table of ${l1Size} entries is too small for a virtual size of ${virtualSize} (needs ${l1Required})`, { image, offset: 36 });
  }
  if (l1Size > 0 && l1TableOffset % clusterSize !== 0) {
    throw new Qcow2FormatError(`L1 table offset ${l1TableOffset} is not cluster aligned`, { image, offset: 40 });
  }
  if (refcountTableOffset % clusterSize !== 0) {
    throw new Qcow2FormatError(`refcount table offset ${refcountTableOffset} is not cluster aligned`, { image, offset: 48 });
  }
  if (refcountTableClusters * clusterSize > LIMITS.maxRefcountTableBytes) {
    throw new Qcow2FormatError(`refcount table of ${refcountTableClusters} clusters exceeds ${LIMITS.maxRefcountTableBytes} bytes`, { image, offset: 56 });
  }
  if (nbSnapshots > LIMITS.maxSnapshots) {
    throw new Qcow2FormatError(`${nbSnapshots} snapshots exceed the limit of ${LIMITS.maxSnapshots}`, { image, offset: 60 });
  }
  if (nbSnapshots > 0 && snapshotsOffset % clusterSize !== 0) {
    throw new Qcow2FormatError(`snapshot table offset ${snapshotsOffset} is not cluster aligned`, { image, offset: 64 });
  }
  const dataFileRaw = hasDataFile && (autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
  const bitmapsConsistent = bitmapsExtPresent && (autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n;

  return {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    cryptMethod,
    l1Size,
    l1TableOffset,
    refcountTableOffset,
    refcountTableClusters,
    nbSnapshots,
    snapshotsOffset,
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLength,
    compressionType,
    backingFile,
    backingFormat,
    dataFile,
    featureNames,
    bitmaps,
    unknownExtensions,
    extendedL2,
    dirty: (incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    corrupt: (incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n,
    lazyRefcounts: (compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
    hasDataFile,
    dataFileRaw,
    bitmapsConsistent,
  };
}

export { readExact };
