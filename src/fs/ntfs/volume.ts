/**
 * Just enough NTFS to find a file by path and say where its bytes are: the boot sector, the MFT
 * read through its own runlist (it may be fragmented), MFT records with fixups, attribute lists
 * spreading attributes over extension records, runlists, and $I30 directory indexes (B+ trees of
 * INDX blocks) searched with the volume's $UpCase table. Read-only; nothing is cached between
 * volumes. References: ntfs-3g (include/ntfs-3g/layout.h, libntfs-3g/{mft,attrib,runlist,dir,
 * index,collate}.c) and Linux Documentation/filesystems/ntfs3.rst for the on-disk layout.
 */
import type { BlockSource } from '../../qcow2/index.ts';
import { parseBoot, type NtfsBoot } from './boot.ts';
import { NtfsFormatError, NtfsLimitError, NtfsNotFoundError, NtfsUnsupportedError } from './errors.ts';
import { collateNames, parseIndexNode, type IndexEntry } from './index-node.ts';
import { applyFixups, AT, ATTR_FLAG, parseRecord, type Attribute, type MftRecord } from './record.ts';
import { decodeRunlist, findRun, type Run } from './runlist.ts';

/** Well-known MFT records. */
const MFT_RECORD = 0;
const ROOT_RECORD = 5;
const UPCASE_RECORD = 10;
/** Largest attribute list read (Windows keeps them under 256 KiB). */
const MAX_ATTRIBUTE_LIST = 1024 * 1024;
/** Deepest directory B+ tree walked (a 2^32-entry directory is far shallower). */
const MAX_INDEX_DEPTH = 32;
/** Most path components resolved (Windows paths are at most 32767 characters). */
const MAX_PATH_COMPONENTS = 16384;
const RECORD_CACHE = 4096;

export interface OpenNtfsOptions {
  signal?: AbortSignal;
}

export interface LookupOptions {
  signal?: AbortSignal;
}

export interface NtfsReadOptions {
  /**
   * Refuse (NtfsLimitError) a read that would return more bytes than this.
   * @default 268435456 (256 MiB)
   */
  maxBytes?: number;
  signal?: AbortSignal;
}

/** One allocated piece of a file: `length` bytes at volume offset `offset`, file offset `fileOffset`. */
export interface NtfsExtent {
  offset: number;
  length: number;
  fileOffset: number;
}

export interface NtfsFile {
  /** The path as looked up. */
  path: string;
  mftRecord: number;
  sequence: number;
  directory: boolean;
  /** Bytes of the unnamed $DATA stream (0 for a directory or a file without one). */
  size: number;
  allocatedSize: number;
  /** Bytes actually written; past it the file reads as zeros. */
  initializedSize: number;
  /** The data lives inside the MFT record: no extents. */
  resident: boolean;
  compressed: boolean;
  encrypted: boolean;
  sparse: boolean;
  /** The $DATA runlist, merged over all attribute extents; `lcn: null` is a sparse run. */
  runs: Run[];
  /**
   * Volume-relative byte ranges holding the file's bytes [0, size), allocated runs only, in file
   * order, adjacent pieces merged. The last one ends at `size`, not at the cluster boundary.
   */
  extents: NtfsExtent[];
  /** The whole file (bounded by `maxBytes`). Sparse holes and bytes past `initializedSize` read as zeros. */
  read(options?: NtfsReadOptions): Promise<Buffer>;
  /** Bytes [position, position + length) of the file, clipped at its size. */
  readRange(position: number, length: number, options?: NtfsReadOptions): Promise<Buffer>;
}

/** All extents of one attribute (type + name) merged into one stream. */
interface Stream {
  resident: boolean;
  value: Buffer | null;
  runs: Run[];
  flags: number;
  allocatedSize: number;
  dataSize: number;
  initializedSize: number;
}

function checkSignal(signal: AbortSignal | undefined): void {
  signal?.throwIfAborted();
}

export class NtfsVolume {
  readonly source: BlockSource;
  readonly boot: NtfsBoot;
  /** The 64-bit volume serial number (boot sector offset 0x48). */
  readonly serial: bigint;
  /** `0x` and 16 lowercase hex digits. */
  readonly serialHex: string;
  readonly clusterSize: number;
  readonly bytesPerSector: number;
  readonly mftRecordSize: number;
  #mftRuns: Run[] = [];
  #mftRecords = 0;
  #upcase: Uint16Array = new Uint16Array(0);
  readonly #cache = new Map<number, MftRecord>();

  private constructor(source: BlockSource, boot: NtfsBoot) {
    this.source = source;
    this.boot = boot;
    this.serial = boot.serial;
    this.serialHex = `0x${boot.serial.toString(16).padStart(16, '0')}`;
    this.clusterSize = boot.clusterSize;
    this.bytesPerSector = boot.bytesPerSector;
    this.mftRecordSize = boot.mftRecordSize;
  }

  /** Open the NTFS volume on `source` (a partition: `SliceBlockSource`). */
  static async open(source: BlockSource, options: OpenNtfsOptions = {}): Promise<NtfsVolume> {
    const { signal } = options;
    checkSignal(signal);
    const head = Buffer.alloc(512);
    const n = await source.read(head, 0);
    if (n < 512) throw new NtfsFormatError(`boot sector: the volume holds only ${n} bytes`, { volume: source.name, offset: 0 });
    const vol = new NtfsVolume(source, parseBoot(head, source.name, source.size));
    await vol.#loadMft(signal);
    await vol.#loadUpcase(signal);
    return vol;
  }

  /** 1. read record 0 straight from the MFT LCN; 2. map $MFT's $DATA from its first extent; 3. follow its attribute list for further extents. */
  async #loadMft(signal: AbortSignal | undefined): Promise<void> {
    const size = this.mftRecordSize;
    const at = this.boot.mftLcn * this.clusterSize;
    const buf = await this.#readVolume(at, size, '$MFT record 0');
    const rec = this.#parse(buf, MFT_RECORD, at);
    if (!rec.inUse || rec.base !== MFT_RECORD) throw new NtfsFormatError('$MFT record 0 is not an in-use base record', { volume: this.source.name, offset: at });
    const first = rec.attributes.find((a) => a.type === AT.DATA && a.name === '' && a.nonResident && a.lowestVcn === 0);
    if (!first) throw new NtfsFormatError('$MFT record 0 has no non-resident $DATA starting at VCN 0', { volume: this.source.name, offset: at });
    this.#setMft(this.#buildStream([first], '$MFT $DATA', true));
    this.#cache.set(MFT_RECORD, rec);
    // Extension records holding the rest of the runlist are read through the runs known so far.
    const all = await this.#attributes(rec, signal);
    this.#setMft(this.#buildStream(all.filter((a) => a.type === AT.DATA && a.name === ''), '$MFT $DATA'));
  }

  #setMft(s: Stream): void {
    if (s.resident) throw new NtfsFormatError('$MFT $DATA is resident', { volume: this.source.name });
    this.#mftRuns = s.runs;
    this.#mftRecords = Math.floor(Math.min(s.initializedSize, s.dataSize) / this.mftRecordSize);
  }

  async #loadUpcase(signal: AbortSignal | undefined): Promise<void> {
    const rec = await this.#record(UPCASE_RECORD, signal);
    const data = this.#buildStream((await this.#attributes(rec, signal)).filter((a) => a.type === AT.DATA && a.name === ''), '$UpCase $DATA');
    if (data.dataSize === 0 || data.dataSize > 131072 || data.dataSize % 2 !== 0) {
      throw new NtfsFormatError(`$UpCase is ${data.dataSize} bytes, expected an even size up to 131072`, { volume: this.source.name });
    }
    const bytes = await this.#readStream(data, 0, data.dataSize, '$UpCase', signal);
    this.#upcase = new Uint16Array(data.dataSize / 2);
    for (let i = 0; i < this.#upcase.length; i++) this.#upcase[i] = bytes.readUInt16LE(2 * i);
  }

  /** Compare two names as this volume's directories order them (case-insensitive via $UpCase). */
  collate(a: string, b: string): number {
    return collateNames(a, b, this.#upcase);
  }

  // ---- byte access ---------------------------------------------------------------------------

  async #readVolume(offset: number, length: number, what: string): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    await this.#readVolumeInto(buf, offset, what);
    return buf;
  }

  async #readVolumeInto(buf: Buffer, offset: number, what: string): Promise<void> {
    const end = this.boot.totalSectors * this.bytesPerSector;
    if (offset < 0 || offset + buf.length > end) throw new NtfsFormatError(`${what}: ${buf.length} bytes at ${offset} lie outside the ${end}-byte volume`, { volume: this.source.name, offset });
    let done = 0;
    while (done < buf.length) {
      const n = await this.source.read(buf.subarray(done), offset + done);
      if (n <= 0) throw new NtfsFormatError(`${what}: short read (${done} of ${buf.length} bytes)`, { volume: this.source.name, offset: offset + done });
      done += n;
    }
  }

  /** Bytes [pos, pos + out.length) of a non-resident stream: sparse runs read as zeros. */
  async #readRunsInto(runs: Run[], pos: number, out: Buffer, what: string, signal: AbortSignal | undefined): Promise<void> {
    const cs = this.clusterSize;
    let done = 0;
    while (done < out.length) {
      checkSignal(signal);
      const at = pos + done;
      const i = findRun(runs, Math.floor(at / cs));
      if (i < 0) throw new NtfsFormatError(`${what}: byte ${at} lies past its runlist`, { volume: this.source.name });
      const r = runs[i];
      const n = Math.min(out.length - done, (r.vcn + r.clusters) * cs - at);
      if (r.lcn === null) out.fill(0, done, done + n);
      else await this.#readVolumeInto(out.subarray(done, done + n), r.lcn * cs + (at - r.vcn * cs), what);
      done += n;
    }
  }

  /** Bytes of a stream, zeros past its initialized size; caller bounds [pos, pos+len) by the data size. */
  async #readStream(s: Stream, pos: number, len: number, what: string, signal: AbortSignal | undefined): Promise<Buffer> {
    if (s.resident) return Buffer.from(s.value!.subarray(pos, pos + len));
    const out = Buffer.alloc(len);
    const stored = Math.max(0, Math.min(pos + len, s.initializedSize) - pos);
    if (stored > 0) await this.#readRunsInto(s.runs, pos, out.subarray(0, stored), what, signal);
    return out;
  }

  // ---- MFT records and attributes ------------------------------------------------------------

  #parse(buf: Buffer, number: number, offset: number | undefined): MftRecord {
    const ctx = { volume: this.source.name, offset: offset ?? 0, what: `MFT record ${number}` };
    const magic = buf.toString('latin1', 0, 4);
    if (magic !== 'FILE') {
      const why = magic === 'BAAD' ? 'marked BAAD (a multi-sector transfer failed)' : `magic is ${JSON.stringify(magic)}, not "FILE"`;
      throw new NtfsFormatError(`${ctx.what}: ${why}`, { volume: ctx.volume, offset });
    }
    applyFixups(buf, ctx);
    return parseRecord(buf, number, ctx);
  }

  /** Volume offset of byte `pos` of a non-resident stream (undefined in a hole or past the runs). */
  #runOffset(runs: Run[], pos: number): number | undefined {
    const i = findRun(runs, Math.floor(pos / this.clusterSize));
    const r = runs[i];
    return r && r.lcn !== null ? r.lcn * this.clusterSize + (pos - r.vcn * this.clusterSize) : undefined;
  }

  #recordOffset(n: number): number | undefined {
    return this.#runOffset(this.#mftRuns, n * this.mftRecordSize);
  }

  async #record(n: number, signal: AbortSignal | undefined): Promise<MftRecord> {
    const hit = this.#cache.get(n);
    if (hit) return hit;
    checkSignal(signal);
    if (n >= this.#mftRecords) throw new NtfsFormatError(`MFT record ${n} is past the MFT's ${this.#mftRecords} records`, { volume: this.source.name });
    const buf = Buffer.alloc(this.mftRecordSize);
    await this.#readRunsInto(this.#mftRuns, n * this.mftRecordSize, buf, `MFT record ${n}`, signal);
    const rec = this.#parse(buf, n, this.#recordOffset(n));
    if (this.#cache.size >= RECORD_CACHE) this.#cache.clear();
    this.#cache.set(n, rec);
    return rec;
  }

  /**
   * Every attribute extent of a base record: its own, plus those its $ATTRIBUTE_LIST places in
   * extension records (each must name this record as its base, so lists cannot chain or loop).
   */
  async #attributes(base: MftRecord, signal: AbortSignal | undefined): Promise<Attribute[]> {
    const listAttrs = base.attributes.filter((a) => a.type === AT.ATTRIBUTE_LIST);
    if (listAttrs.length === 0) return base.attributes;
    const where = { volume: this.source.name, offset: listAttrs[0].offset };
    if (listAttrs.length > 1) throw new NtfsFormatError(`MFT record ${base.number} has ${listAttrs.length} attribute lists`, where);
    const list = this.#buildStream(listAttrs, `MFT record ${base.number} $ATTRIBUTE_LIST`);
    if (list.dataSize > MAX_ATTRIBUTE_LIST) throw new NtfsFormatError(`MFT record ${base.number}: attribute list of ${list.dataSize} bytes exceeds ${MAX_ATTRIBUTE_LIST}`, where);
    const b = await this.#readStream(list, 0, list.dataSize, `MFT record ${base.number} $ATTRIBUTE_LIST`, signal);
    const out = [...base.attributes];
    const taken = new Set(base.attributes.map((a) => `${a.record}:${a.instance}`));
    let off = 0;
    while (off + 0x1a <= b.length) {
      const type = b.readUInt32LE(off);
      const len = b.readUInt16LE(off + 4);
      const nameLen = b[off + 6];
      const nameOff = b[off + 7];
      if (len < 0x1a || off + len > b.length || (nameLen > 0 && nameOff + nameLen * 2 > len)) {
        throw new NtfsFormatError(`MFT record ${base.number}: attribute list entry at ${off} has length ${len}`, where);
      }
      const ref = b.readBigUInt64LE(off + 0x10);
      const recNo = Number(ref & 0xffffffffffffn);
      const seq = Number(ref >> 48n);
      const instance = b.readUInt16LE(off + 0x18);
      const name = nameLen > 0 ? b.toString('utf16le', off + nameOff, off + nameOff + nameLen * 2) : '';
      off += len;
      if (recNo === base.number || taken.has(`${recNo}:${instance}`)) continue;
      const ext = await this.#record(recNo, signal);
      if (!ext.inUse || ext.base !== base.number || (seq !== 0 && seq !== ext.sequence)) {
        throw new NtfsFormatError(`MFT record ${base.number}: attribute list points at record ${recNo}, which is not an in-use extension of it (base ${ext.base}, sequence ${ext.sequence}, expected ${seq})`, where);
      }
      const a = ext.attributes.find((x) => x.type === type && x.instance === instance && x.name === name);
      if (!a) throw new NtfsFormatError(`MFT record ${base.number}: attribute list names attribute 0x${type.toString(16)} instance ${instance} in record ${recNo}, which does not hold it`, where);
      taken.add(`${recNo}:${instance}`);
      out.push(a);
    }
    return out;
  }

  /**
   * Merge the extents of one attribute; they must cover VCN 0.. without gaps or overlaps, and
   * (unless `partial`: $MFT's first extent while bootstrapping) reach the data size.
   */
  #buildStream(extents: Attribute[], what: string, partial = false): Stream {
    if (extents.length === 0) return { resident: true, value: Buffer.alloc(0), runs: [], flags: 0, allocatedSize: 0, dataSize: 0, initializedSize: 0 };
    const bad = (w: string, a: Attribute): never => {
      throw new NtfsFormatError(`${what}: ${w}`, { volume: this.source.name, offset: a.offset });
    };
    if (!extents[0].nonResident) {
      if (extents.length > 1) bad(`${extents.length} extents, the first one resident`, extents[1]);
      const a = extents[0];
      return { resident: true, value: a.value, runs: [], flags: a.flags, allocatedSize: a.dataSize, dataSize: a.dataSize, initializedSize: a.dataSize };
    }
    const sorted = [...extents].sort((x, y) => x.lowestVcn - y.lowestVcn);
    const head = sorted[0];
    if (head.lowestVcn !== 0) bad(`no extent starts at VCN 0 (first at ${head.lowestVcn})`, head);
    const runs: Run[] = [];
    let next = 0;
    const maxVcn = Math.floor(Number.MAX_SAFE_INTEGER / this.clusterSize);
    for (const a of sorted) {
      if (!a.nonResident) bad('resident and non-resident extents mixed', a);
      if (a.lowestVcn !== next) bad(`extent in record ${a.record} starts at VCN ${a.lowestVcn}, expected ${next}`, a);
      const decoded = decodeRunlist(a.mappingPairs!, 0, a.mappingPairs!.length, a.lowestVcn, a.highestVcn, {
        volume: this.source.name,
        offset: a.mappingPairsOffset,
        totalClusters: this.boot.totalClusters,
        maxVcn,
      });
      runs.push(...decoded);
      next = decoded.length === 0 ? a.lowestVcn : decoded.at(-1)!.vcn + decoded.at(-1)!.clusters;
    }
    const compressed = (head.flags & (ATTR_FLAG.COMPRESSED | ATTR_FLAG.ENCRYPTED)) !== 0;
    if (head.initializedSize > head.dataSize) bad(`initialized size ${head.initializedSize} exceeds data size ${head.dataSize}`, head);
    if (!compressed && !partial && next * this.clusterSize < head.dataSize) bad(`runlist covers ${next * this.clusterSize} bytes, data size is ${head.dataSize}`, head);
    return { resident: false, value: null, runs, flags: head.flags, allocatedSize: head.allocatedSize, dataSize: head.dataSize, initializedSize: head.initializedSize };
  }

  // ---- directories ---------------------------------------------------------------------------

  /** The entry named `name` in directory `dir`, or null. */
  async #findChild(dir: MftRecord, name: string, signal: AbortSignal | undefined): Promise<IndexEntry | null> {
    const attrs = await this.#attributes(dir, signal);
    const rootAttr = attrs.find((a) => a.type === AT.INDEX_ROOT && a.name === '$I30');
    if (!rootAttr) return null;
    const at = { volume: this.source.name, offset: rootAttr.offset };
    if (rootAttr.nonResident || !rootAttr.value || rootAttr.value.length < 0x20) throw new NtfsFormatError(`MFT record ${dir.number}: $INDEX_ROOT is not a resident value of at least 32 bytes`, at);
    const root = rootAttr.value;
    if (root.readUInt32LE(0) !== AT.FILE_NAME) throw new NtfsFormatError(`MFT record ${dir.number}: $I30 indexes attribute 0x${root.readUInt32LE(0).toString(16)}, not $FILE_NAME`, at);
    if (root.readUInt32LE(4) !== 1) throw new NtfsUnsupportedError(`MFT record ${dir.number}: $I30 collation rule ${root.readUInt32LE(4)} is not COLLATION_FILE_NAME (1)`, at);
    const blockSize = root.readUInt32LE(8);
    let alloc: Stream | null = null;
    const vcnShift = blockSize >= this.clusterSize ? Math.log2(this.clusterSize) : 9;
    let entries = parseIndexNode(root, 0x10, root.length, { volume: this.source.name, offset: rootAttr.offset, what: `MFT record ${dir.number} $INDEX_ROOT` });
    const seen = new Set<number>();
    for (let depth = 0; ; depth++) {
      checkSignal(signal);
      let child: number | null = null;
      let candidate: IndexEntry | null = null;
      for (const e of entries) {
        if (e.name === null) {
          child = e.subnode;
          break;
        }
        const c = collateNames(name, e.name, this.#upcase);
        if (c === 0) {
          if (e.name === name) return e;
          candidate ??= e;
          continue;
        }
        if (candidate) return candidate;
        if (c < 0) {
          child = e.subnode;
          break;
        }
      }
      if (candidate) return candidate;
      if (child === null) return null;
      if (depth >= MAX_INDEX_DEPTH) throw new NtfsFormatError(`MFT record ${dir.number}: index tree deeper than ${MAX_INDEX_DEPTH}`, at);
      if (seen.has(child)) throw new NtfsFormatError(`MFT record ${dir.number}: index tree loops back to VCN ${child}`, at);
      seen.add(child);
      if (!alloc) {
        if ((blockSize & (blockSize - 1)) !== 0 || blockSize < 512 || blockSize > 65536) throw new NtfsFormatError(`MFT record ${dir.number}: index block size ${blockSize} is not a power of two in 512..65536`, at);
        const extents = attrs.filter((a) => a.type === AT.INDEX_ALLOCATION && a.name === '$I30');
        if (extents.length === 0) throw new NtfsFormatError(`MFT record ${dir.number}: index entry points at VCN ${child} but there is no $INDEX_ALLOCATION`, at);
        alloc = this.#buildStream(extents, `MFT record ${dir.number} $INDEX_ALLOCATION`);
        if (alloc.resident) throw new NtfsFormatError(`MFT record ${dir.number}: $INDEX_ALLOCATION is resident`, at);
      }
      const pos = child * 2 ** vcnShift;
      if (pos + blockSize > alloc.dataSize) throw new NtfsFormatError(`MFT record ${dir.number}: index block VCN ${child} lies past the ${alloc.dataSize}-byte $INDEX_ALLOCATION`, at);
      const what = `MFT record ${dir.number} index block VCN ${child}`;
      const block = await this.#readStream(alloc, pos, blockSize, what, signal);
      const ctx = { volume: this.source.name, offset: this.#runOffset(alloc.runs, pos) ?? 0, what };
      if (block.toString('latin1', 0, 4) !== 'INDX') throw new NtfsFormatError(`${what}: magic is ${JSON.stringify(block.toString('latin1', 0, 4))}, not "INDX"`, ctx);
      applyFixups(block, ctx);
      const own = block.readBigInt64LE(0x10);
      if (own !== BigInt(child)) throw new NtfsFormatError(`${what}: the block says it is VCN ${own}`, { volume: ctx.volume, offset: ctx.offset + 0x10 });
      entries = parseIndexNode(block, 0x18, blockSize, ctx);
    }
  }

  // ---- public --------------------------------------------------------------------------------

  /**
   * The file or directory at `path` (`/` or `\` separated, from the root; names compared without
   * case per $UpCase, long or DOS names). Throws NtfsNotFoundError when a component is missing.
   */
  async lookup(path: string, options: LookupOptions = {}): Promise<NtfsFile> {
    const { signal } = options;
    const parts = path.split(/[/\\]+/).filter((p) => p !== '' && p !== '.');
    if (parts.length > MAX_PATH_COMPONENTS) throw new NtfsNotFoundError(`path has ${parts.length} components, more than ${MAX_PATH_COMPONENTS}`, { volume: this.source.name, path });
    const root = await this.#record(ROOT_RECORD, signal);
    if (!root.inUse || !root.directory) throw new NtfsFormatError('MFT record 5 (the root directory) is not an in-use directory', { volume: this.source.name, offset: this.#recordOffset(ROOT_RECORD) });
    const stack: MftRecord[] = [root];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      const here = stack.at(-1)!;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const shown = `/${parts.slice(0, i + 1).join('/')}`;
      if (!here.directory) throw new NtfsNotFoundError(`${path}: /${parts.slice(0, i).join('/')} is not a directory`, { volume: this.source.name, path });
      const e = await this.#findChild(here, part, signal);
      if (!e) throw new NtfsNotFoundError(`${path}: ${shown} not found`, { volume: this.source.name, path });
      const rec = await this.#record(e.record, signal);
      if (!rec.inUse || rec.base !== rec.number) throw new NtfsFormatError(`${shown}: directory entry points at MFT record ${e.record}, which is not an in-use base record`, { volume: this.source.name, offset: this.#recordOffset(e.record) });
      if (e.sequence !== 0 && e.sequence !== rec.sequence) throw new NtfsFormatError(`${shown}: directory entry expects sequence ${e.sequence} in MFT record ${e.record}, found ${rec.sequence} (stale entry)`, { volume: this.source.name, offset: this.#recordOffset(e.record) });
      if (stack.length > MAX_PATH_COMPONENTS) throw new NtfsNotFoundError(`${path}: too deep`, { volume: this.source.name, path });
      stack.push(rec);
    }
    return this.#file(path, stack.at(-1)!, signal);
  }

  async #file(path: string, rec: MftRecord, signal: AbortSignal | undefined): Promise<NtfsFile> {
    const attrs = await this.#attributes(rec, signal);
    const s = this.#buildStream(attrs.filter((a) => a.type === AT.DATA && a.name === ''), `MFT record ${rec.number} $DATA`);
    const compressed = (s.flags & ATTR_FLAG.COMPRESSED) !== 0;
    const encrypted = (s.flags & ATTR_FLAG.ENCRYPTED) !== 0;
    const cs = this.clusterSize;
    const extents: NtfsExtent[] = [];
    if (!s.resident && !compressed) {
      for (const r of s.runs) {
        if (r.lcn === null) continue;
        const fileOffset = r.vcn * cs;
        if (fileOffset >= s.dataSize) break;
        const length = Math.min(r.clusters * cs, s.dataSize - fileOffset);
        const offset = r.lcn * cs;
        const last = extents.at(-1);
        if (last && last.offset + last.length === offset && last.fileOffset + last.length === fileOffset) last.length += length;
        else extents.push({ offset, length, fileOffset });
      }
    }
    const volume = this.source.name;
    const readRange = async (position: number, length: number, options: NtfsReadOptions = {}): Promise<Buffer> => {
      const maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
      if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(length) || length < 0) {
        throw new RangeError(`Expected \`position\` and \`length\` to be non-negative integers, got \`${position}\` and \`${length}\``);
      }
      const end = Math.min(position + length, s.dataSize);
      const n = Math.max(0, end - position);
      if (n > maxBytes) throw new NtfsLimitError(`${path}: reading ${n} bytes exceeds maxBytes ${maxBytes}`, { volume });
      if (n > 0 && (compressed || encrypted)) throw new NtfsUnsupportedError(`${path}: ${compressed ? 'compressed' : 'encrypted'} data cannot be read`, { volume });
      return this.#readStream(s, position, n, `${path} $DATA`, options.signal);
    };
    return {
      path,
      mftRecord: rec.number,
      sequence: rec.sequence,
      directory: rec.directory,
      size: s.dataSize,
      allocatedSize: s.allocatedSize,
      initializedSize: s.initializedSize,
      resident: s.resident,
      compressed,
      encrypted,
      sparse: (s.flags & ATTR_FLAG.SPARSE) !== 0,
      runs: s.runs,
      extents,
      read: (options?: NtfsReadOptions) => readRange(0, s.dataSize, options),
      readRange,
    };
  }
}

/** Open the NTFS volume on `volume` (a partition: `new SliceBlockSource(disk, offset, length)`). */
export function openNtfs(volume: BlockSource, options?: OpenNtfsOptions): Promise<NtfsVolume> {
  return NtfsVolume.open(volume, options);
}
