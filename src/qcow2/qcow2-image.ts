/**
 * A qcow2 image file: header, L1/L2 mapping (standard and extended entries), compressed
 * clusters, internal snapshots, bitmaps, refcounts (only to detect metadata preallocation, as
 * QEMU does for block status). Read-only by construction: it only holds a BlockSource.
 *
 * Layout reference: qemu docs/interop/qcow2.txt. Where QEMU's behaviour goes beyond the spec
 * (which entry types are accepted, what block status reports), block/qcow2*.c in QEMU 7.2 is
 * the reference the tests cross-check against.
 */
import { readBitmapDirectory, readBitmapRuns, type BitmapInfo } from './bitmaps.ts';
import type { BlockSource } from './block-source.ts';
import { decompressCluster, DecompressError } from './compressed.ts';
import { offsetBits9to55 } from './entries.ts';
import { Qcow2FormatError, Qcow2UnsupportedError } from './errors.ts';
import { readHeader, type Qcow2Header } from './header.ts';
import type { Layer, LayerRun, RunKind } from './layer.ts';
import { readSnapshots, type SnapshotInfo } from './snapshots.ts';

interface MetaRange {
  what: string;
  start: number;
  end: number;
}

const SECTOR = 512;

export class Qcow2Image {
  readonly src: BlockSource;
  readonly header: Qcow2Header;
  readonly snapshots: SnapshotInfo[];
  readonly bitmaps: BitmapInfo[];
  /** Where guest data lives: the image itself or its external data file. */
  readonly dataSource: BlockSource;
  readonly l2EntryBytes: number;
  readonly l2Entries: number;
  readonly subclusterSize: number;
  readonly #meta: MetaRange[];
  readonly #l2Cache = new Map<number, Buffer>();
  readonly #l2CacheMax: number;
  readonly #l1Cache = new Map<number, Buffer>();
  readonly #cCache = new Map<number, Buffer>();
  #metadataPrealloc: Promise<boolean> | undefined;
  /** csize_shift / cluster_offset_mask of compressed descriptors. */
  readonly #csizeShift: number;

  private constructor(src: BlockSource, header: Qcow2Header, snapshots: SnapshotInfo[], bitmaps: BitmapInfo[], dataSource: BlockSource, meta: MetaRange[]) {
    this.src = src;
    this.header = header;
    this.snapshots = snapshots;
    this.bitmaps = bitmaps;
    this.dataSource = dataSource;
    this.#meta = meta;
    this.l2EntryBytes = header.extendedL2 ? 16 : 8;
    this.l2Entries = header.clusterSize / this.l2EntryBytes;
    this.subclusterSize = header.extendedL2 ? header.clusterSize / 32 : header.clusterSize;
    this.#l2CacheMax = Math.max(16, Math.floor((32 * 1024 * 1024) / header.clusterSize));
    this.#csizeShift = 62 - (header.clusterBits - 8);
  }

  /**
   * Parse `src` as qcow2. `openDataFile` is asked for the external data file when the image
   * uses one (it receives the name from the header extension, or null when none is recorded).
   */
  static async open(src: BlockSource, openDataFile?: (name: string | null) => Promise<BlockSource>): Promise<Qcow2Image> {
    const header = await readHeader(src);
    const image = src.name;
    const cs = header.clusterSize;
    const meta: MetaRange[] = [{ what: 'the header cluster', start: 0, end: cs }];
    const addMeta = (what: string, start: number, bytes: number, fieldOffset: number) => {
      if (bytes === 0) return;
      if (start < cs) throw new Qcow2FormatError(`${what} overlaps the header cluster`, { image, offset: fieldOffset });
      if (start + bytes > src.size) throw new Qcow2FormatError(`truncated: ${what} (${bytes} bytes at ${start}) lies past the end of the file (${src.size})`, { image, offset: fieldOffset });
      for (const m of meta) {
        if (start < m.end && m.start < start + bytes) {
          throw new Qcow2FormatError(`${what} at ${start} overlaps ${m.what} at ${m.start}`, { image, offset: fieldOffset });
        }
      }
      meta.push({ what, start, end: start + bytes });
    };
    addMeta('the L1 table', header.l1TableOffset, header.l1Size * 8, 40);
    addMeta('the refcount table', header.refcountTableOffset, header.refcountTableClusters * cs, 48);
    if (header.refcountTableClusters === 0) throw new Qcow2FormatError('the refcount table has zero clusters', { image, offset: 56 });
    let snapshots: SnapshotInfo[] = [];
    if (header.nbSnapshots > 0) {
      if (header.hasDataFile) throw new Qcow2FormatError('internal snapshots are not allowed with an external data file', { image, offset: 60 });
      const r = await readSnapshots(src, header);
      addMeta('the snapshot table', header.snapshotsOffset, r.tableEnd - header.snapshotsOffset, 64);
      snapshots = r.snapshots;
    }
    let bitmaps: BitmapInfo[] = [];
    if (header.bitmaps) {
      bitmaps = await readBitmapDirectory(src, header);
      addMeta('the bitmap directory', header.bitmaps.directoryOffset, header.bitmaps.directorySize, header.headerLength);
    }
    let dataSource = src;
    if (header.hasDataFile) {
      if (!openDataFile) throw new Qcow2UnsupportedError('the image keeps its data in an external data file, and no way to open it was given', { image });
      dataSource = await openDataFile(header.dataFile);
    }
    return new Qcow2Image(src, header, snapshots, bitmaps, dataSource, meta);
  }

  get name(): string {
    return this.src.name;
  }

  /** The active disk, or the disk as of a snapshot (found by name, then by id). */
  layer(backing: Layer | null, snapshot?: string): Qcow2Layer {
    if (snapshot === undefined) {
      return new Qcow2Layer(this, backing, this.header.l1TableOffset, this.header.l1Size, this.header.virtualSize, 40, null);
    }
    const s = this.findSnapshot(snapshot);
    const required = Math.ceil(s.virtualSize / this.header.clusterSize / this.l2Entries);
    if (s.l1Size < required) {
      throw new Qcow2FormatError(`snapshot ${JSON.stringify(s.name)}: L1 table of ${s.l1Size} entries is too small for its size ${s.virtualSize}`, { image: this.name, offset: s.entryOffset + 8 });
    }
    return new Qcow2Layer(this, backing, s.l1TableOffset, s.l1Size, s.virtualSize, s.entryOffset, s);
  }

  findSnapshot(nameOrId: string): SnapshotInfo {
    const s = this.snapshots.find((x) => x.name === nameOrId) ?? this.snapshots.find((x) => x.id === nameOrId);
    if (!s) {
      const known = this.snapshots.map((x) => `${x.id}:${x.name}`).join(', ') || 'none';
      throw new Qcow2UnsupportedError(`no snapshot named ${JSON.stringify(nameOrId)} (snapshots: ${known})`, { image: this.name });
    }
    return s;
  }

  /** Set bits of a persistent bitmap as `[firstBit, count]` runs. */
  bitmapRuns(bm: BitmapInfo): Promise<Array<[number, number]>> {
    return readBitmapRuns(this.src, this.header, bm);
  }

  /** Load (and cache) an L1 table; validated against the file and the other metadata. */
  async l1Table(offset: number, entries: number, fieldOffset: number): Promise<Buffer> {
    const cached = this.#l1Cache.get(offset);
    if (cached && cached.length >= entries * 8) return cached;
    const bytes = entries * 8;
    if (bytes > 0) {
      if (offset < this.header.clusterSize) throw new Qcow2FormatError('an L1 table overlaps the header cluster', { image: this.name, offset: fieldOffset });
      if (offset + bytes > this.src.size) throw new Qcow2FormatError(`truncated: L1 table of ${entries} entries at ${offset} lies past the end of the file`, { image: this.name, offset: fieldOffset });
    }
    const buf = Buffer.alloc(bytes);
    await this.src.read(buf, offset);
    this.#l1Cache.set(offset, buf);
    return buf;
  }

  /** Load (and cache) the L2 table at `offset`, referenced by the L1 entry at `entryAt`. */
  async l2Table(offset: number, entryAt: number): Promise<Buffer> {
    const hit = this.#l2Cache.get(offset);
    if (hit) {
      this.#l2Cache.delete(offset);
      this.#l2Cache.set(offset, hit);
      return hit;
    }
    const cs = this.header.clusterSize;
    const image = this.name;
    if (offset % cs !== 0) throw new Qcow2FormatError(`L2 table offset ${offset} is not cluster aligned`, { image, offset: entryAt });
    if (offset + cs > this.src.size) throw new Qcow2FormatError(`truncated: L2 table at ${offset} lies past the end of the file (${this.src.size})`, { image, offset: entryAt });
    for (const m of this.#meta) {
      if (offset < m.end && m.start < offset + cs) throw new Qcow2FormatError(`L2 table at ${offset} overlaps ${m.what}`, { image, offset: entryAt });
    }
    const buf = Buffer.alloc(cs);
    await this.src.read(buf, offset);
    if (this.#l2Cache.size >= this.#l2CacheMax) {
      const oldest = this.#l2Cache.keys().next().value as number;
      this.#l2Cache.delete(oldest);
    }
    this.#l2Cache.set(offset, buf);
    return buf;
  }

  /** Throws when a data range of the image file overlaps metadata QEMU keeps apart from data. */
  checkDataRange(host: number, bytes: number, entryAt: number): void {
    const image = this.name;
    const src = this.dataSource;
    if (host + bytes > src.size) {
      throw new Qcow2FormatError(`truncated: data at host offset ${host} (+${bytes}) lies past the end of ${src === this.src ? 'the file' : `the data file ${src.name}`} (${src.size})`, { image, offset: entryAt });
    }
    if (src !== this.src) return;
    for (const m of this.#meta) {
      if (host < m.end && m.start < host + bytes) throw new Qcow2FormatError(`data cluster at host offset ${host} overlaps ${m.what}`, { image, offset: entryAt });
    }
  }

  /** Decompress the cluster whose descriptor says `host`/`csize` (small cache for sequential reads). */
  async compressedCluster(host: number, csize: number, entryAt: number): Promise<Buffer> {
    const hit = this.#cCache.get(host);
    if (hit) return hit;
    const image = this.name;
    const cs = this.header.clusterSize;
    if (host < cs) throw new Qcow2FormatError(`compressed cluster at ${host} points into the header`, { image, offset: entryAt });
    // The stored length is rounded to sectors: only the sector holding the last real byte must
    // start before the end of the file. Past that, QEMU reads zeros, and so do we.
    if (host >= this.src.size || host + csize - SECTOR >= this.src.size) {
      throw new Qcow2FormatError(`truncated: compressed cluster at ${host} (+${csize}) runs past the end of the file (${this.src.size})`, { image, offset: entryAt });
    }
    const data = Buffer.alloc(csize);
    await this.src.read(data, host);
    let out: Buffer;
    try {
      out = decompressCluster(data, this.header.compressionType, cs);
    } catch (error) {
      if (error instanceof DecompressError) {
        throw new Qcow2FormatError(`compressed cluster at host offset ${host}: ${error.message}`, { image, offset: entryAt, cause: error });
      }
      throw error;
    }
    if (this.#cCache.size >= 4) this.#cCache.delete(this.#cCache.keys().next().value as number);
    this.#cCache.set(host, out);
    return out;
  }

  /** Parse a compressed descriptor into host offset and sector-rounded size. */
  compressedDescriptor(hi: number, lo: number): { host: number; csize: number } {
    const v = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
    const shift = BigInt(this.#csizeShift);
    const host = Number(v & ((1n << shift) - 1n));
    const mask = (1n << BigInt(this.header.clusterBits - 8)) - 1n;
    const nbSectors = Number((v >> shift) & mask) + 1;
    return { host, csize: nbSectors * SECTOR - (host % SECTOR) };
  }

  /**
   * QEMU's qcow2_detect_metadata_preallocation(): more refcounted clusters than the host file
   * physically stores means "metadata preallocation", and then block status asks the host
   * file where holes are. Needs the host allocation; false when the source cannot tell.
   */
  metadataPreallocated(): Promise<boolean> {
    this.#metadataPrealloc ??= this.#detectMetadataPrealloc();
    return this.#metadataPrealloc;
  }

  async #detectMetadataPrealloc(): Promise<boolean> {
    const alloc = this.src.allocation;
    if (!alloc) return false;
    const h = this.header;
    const cs = h.clusterSize;
    const realClusters = Math.floor(alloc.allocatedBytes / cs);
    const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
    const endCluster = Math.ceil(this.src.size / cs);
    const bits = 2 ** h.refcountOrder;
    const perBlock = (cs * 8) / bits;
    const table = Buffer.alloc(h.refcountTableClusters * cs);
    await this.src.read(table, h.refcountTableOffset);
    let count = 0;
    const block = Buffer.alloc(cs);
    for (let t = 0; t * perBlock < endCluster && count < threshold; t++) {
      if ((t + 1) * 8 > table.length) break;
      const rb = offsetBits9to55(table.readUInt32BE(t * 8), table.readUInt32BE(t * 8 + 4));
      if (rb === 0) continue;
      if (rb % cs !== 0 || rb + cs > this.src.size) {
        throw new Qcow2FormatError(`refcount block offset ${rb} is invalid`, { image: this.name, offset: h.refcountTableOffset + t * 8 });
      }
      await this.src.read(block, rb);
      const n = Math.min(perBlock, endCluster - t * perBlock);
      for (let i = 0; i < n && count < threshold; i++) {
        if (refcountNonZero(block, i, bits)) count++;
      }
    }
    return count >= threshold;
  }

  async close(): Promise<void> {
    if (this.dataSource !== this.src) await this.dataSource.close();
    await this.src.close();
  }
}

function refcountNonZero(block: Buffer, i: number, bits: number): boolean {
  if (bits >= 8) {
    const bytes = bits / 8;
    for (let b = 0; b < bytes; b++) if (block[i * bytes + b] !== 0) return true;
    return false;
  }
  const bitPos = i * bits;
  const byte = block[bitPos >> 3];
  // Sub-byte refcounts: bit 0 is the least significant bit (qcow2.txt "Refcount block entry").
  return ((byte >> (bitPos & 7)) & ((1 << bits) - 1)) !== 0;
}

/** One image's mapping as of the active L1 table or a snapshot's. */
export class Qcow2Layer implements Layer {
  readonly format = 'qcow2';
  readonly image: Qcow2Image;
  readonly backing: Layer | null;
  readonly virtualSize: number;
  readonly snapshot: SnapshotInfo | null;
  readonly l1Offset: number;
  readonly l1Size: number;
  readonly #l1FieldOffset: number;

  constructor(image: Qcow2Image, backing: Layer | null, l1Offset: number, l1Size: number, virtualSize: number, l1FieldOffset: number, snapshot: SnapshotInfo | null) {
    this.image = image;
    this.backing = backing;
    this.l1Offset = l1Offset;
    this.l1Size = l1Size;
    this.virtualSize = virtualSize;
    this.#l1FieldOffset = l1FieldOffset;
    this.snapshot = snapshot;
  }

  get name(): string {
    return this.image.name;
  }

  get identity(): string {
    return this.snapshot ? `${this.image.src.identity}@${this.snapshot.id}` : this.image.src.identity;
  }

  l1(): Promise<Buffer> {
    return this.image.l1Table(this.l1Offset, this.l1Size, this.#l1FieldOffset);
  }

  /** L2 table covering L1 index `i`, or null when unallocated. */
  async l2At(l1: Buffer, i: number): Promise<Buffer | null> {
    if (i >= this.l1Size) return null;
    const off = offsetBits9to55(l1.readUInt32BE(i * 8), l1.readUInt32BE(i * 8 + 4));
    if (off === 0) return null;
    return this.image.l2Table(off, this.l1Offset + i * 8);
  }

  async *runs(start: number, end: number): AsyncGenerator<LayerRun> {
    end = Math.min(end, this.virtualSize);
    if (start >= end) return;
    const img = this.image;
    const h = img.header;
    const cs = h.clusterSize;
    const perL2 = img.l2Entries * cs;
    const ext = h.extendedL2;
    const scs = img.subclusterSize;
    const hasDataFile = h.hasDataFile;
    const l1 = await this.l1();
    let pending: LayerRun | null = null;
    // Merge adjacent runs of one kind (data only when host-contiguous; compressed never).
    const push = function* (kind: RunKind, s: number, e: number, host: number, csize: number, entry: number): Generator<LayerRun> {
      if (pending && pending.end === s && pending.kind === kind && kind !== 'compressed' && (kind !== 'data' || pending.host + (s - pending.start) === host)) {
        pending.end = e;
        return;
      }
      if (pending) yield pending;
      pending = { kind, start: s, end: e, host, csize, entry };
    };
    let pos = start;
    while (pos < end) {
      const l1i = Math.floor(pos / perL2);
      if (l1i >= this.l1Size) {
        yield* push('unallocated', pos, end, -1, 0, -1);
        break;
      }
      const l2 = await this.l2At(l1, l1i);
      const tableEnd = Math.min(end, (l1i + 1) * perL2);
      if (!l2) {
        yield* push('unallocated', pos, tableEnd, -1, 0, this.l1Offset + l1i * 8);
        pos = tableEnd;
        continue;
      }
      const l2FileOffset = offsetBits9to55(l1.readUInt32BE(l1i * 8), l1.readUInt32BE(l1i * 8 + 4));
      while (pos < tableEnd) {
        const cluster = Math.floor(pos / cs);
        const idx = cluster - l1i * img.l2Entries;
        const eAt = idx * img.l2EntryBytes;
        const hi = l2.readUInt32BE(eAt);
        const lo = l2.readUInt32BE(eAt + 4);
        const entryAt = l2FileOffset + eAt;
        const cStart = cluster * cs;
        const cEnd = Math.min(tableEnd, cStart + cs);
        if (hi & 0x40000000) {
          const { host, csize } = img.compressedDescriptor(hi & 0x3fffffff, lo);
          if (hasDataFile) throw new Qcow2FormatError('compressed cluster in an image with an external data file', { image: img.name, offset: entryAt });
          yield* push('compressed', pos, cEnd, host, csize, entryAt);
          pos = cEnd;
          continue;
        }
        const host = offsetBits9to55(hi, lo);
        const copied = (hi & 0x80000000) !== 0;
        // Offset 0 is "unallocated" except with a data file, where COPIED disambiguates.
        const hasOffset = host !== 0 || (hasDataFile && copied);
        if (hasOffset && host % cs !== 0) {
          throw new Qcow2FormatError(`cluster offset ${host} is not cluster aligned (L2 entry ${idx})`, { image: img.name, offset: entryAt });
        }
        if (!ext) {
          let kind: RunKind;
          if (lo & 1) kind = 'zero';
          else if (hasOffset) kind = 'data';
          else kind = 'unallocated';
          if (kind === 'data') img.checkDataRange(host, cs, entryAt);
          yield* push(kind, pos, cEnd, kind === 'data' ? host + (pos - cStart) : -1, 0, entryAt);
          pos = cEnd;
          continue;
        }
        const bhi = l2.readUInt32BE(eAt + 8);
        const blo = l2.readUInt32BE(eAt + 12);
        const zeroBits = bhi >>> 0;
        const allocBits = blo >>> 0;
        if (hasOffset ? (zeroBits & allocBits) !== 0 : allocBits !== 0) {
          throw new Qcow2FormatError(`invalid subcluster bitmap 0x${zeroBits.toString(16)}:${allocBits.toString(16)} in L2 entry ${idx}`, { image: img.name, offset: entryAt + 8 });
        }
        while (pos < cEnd) {
          const sc = Math.floor((pos - cStart) / scs);
          const scEnd = Math.min(cEnd, cStart + (sc + 1) * scs);
          const bit = 1 << sc;
          let kind: RunKind;
          if (zeroBits & bit) kind = 'zero';
          else if (allocBits & bit) kind = 'data';
          else kind = 'unallocated';
          if (kind === 'data') img.checkDataRange(host + sc * scs, scs, entryAt);
          yield* push(kind, pos, scEnd, kind === 'data' ? host + (pos - cStart) : -1, 0, entryAt);
          pos = scEnd;
        }
      }
    }
    if (pending) yield pending;
  }

  async readData(run: LayerRun, at: number, buf: Uint8Array): Promise<void> {
    const img = this.image;
    if (run.kind === 'data') {
      const n = await img.dataSource.read(buf, run.host + (at - run.start));
      if (n < buf.length) buf.fill(0, n);
      return;
    }
    if (run.kind === 'compressed') {
      const cs = img.header.clusterSize;
      let done = 0;
      while (done < buf.length) {
        const g = at + done;
        const clusterStart = Math.floor(g / cs) * cs;
        // A compressed run is exactly one cluster (never merged).
        const data = await img.compressedCluster(run.host, run.csize, run.entry);
        const from = g - clusterStart;
        const n = Math.min(buf.length - done, cs - from);
        buf.set(data.subarray(from, from + n), done);
        done += n;
      }
      return;
    }
    buf.fill(0);
  }

  async hostZero(run: LayerRun, at: number): Promise<{ zero: boolean; end: number } | undefined> {
    if (run.kind !== 'data') return undefined;
    if (!(await this.image.metadataPreallocated())) return undefined;
    const src = this.image.dataSource;
    const hostAt = run.host + (at - run.start);
    if (hostAt >= src.size) return { zero: true, end: run.end };
    const ext = src.allocation?.extentAt(hostAt);
    if (!ext) return undefined;
    return { zero: ext.hole, end: Math.min(run.end, at + (ext.end - hostAt)) };
  }
}
