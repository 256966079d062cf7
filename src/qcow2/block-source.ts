import { open, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { ImageOpenError } from './errors.ts';

/**
 * Random-access, read-only bytes. The qcow2 reader only ever talks to this interface, so an image
 * can live in a local file, in memory (tests, fuzzing) or behind a remote protocol later.
 */
export interface BlockSource {
  /** Shown in errors: a path or a URL. */
  readonly name: string;
  /** Length in bytes. */
  readonly size: number;
  /**
   * Fill `buf` from `position`; returns how many bytes were read (fewer only at end of source).
   * Bytes past the end are left untouched.
   */
  read(buf: Uint8Array, position: number): Promise<number>;
  /** Host allocation facts, when the source knows them (local files do). */
  readonly allocation?: HostAllocation | undefined;
  /** A stable identity for loop detection (device and inode for files). */
  readonly identity: string;
  close(): Promise<void>;
}

/** What the host file system knows about which bytes are stored, as QEMU's file-posix asks. */
export interface HostAllocation {
  /** Bytes the file occupies on disk (`st_blocks * 512`). */
  readonly allocatedBytes: number;
  /**
   * Status of the host bytes at `offset`: `data` or `hole`, and where that status ends
   * (at most the source size). `undefined` when the file system cannot say.
   */
  extentAt(offset: number): { hole: boolean; end: number } | undefined;
}

interface HostFileNative {
  seekData(fd: number, offset: number): number;
  seekHole(fd: number, offset: number): number;
}

let nativeLoaded: HostFileNative | null | undefined;
/** The SEEK_DATA/SEEK_HOLE addon (native/hostfile.c), or null when it was not built. */
export function hostFileNative(): HostFileNative | null {
  if (nativeLoaded !== undefined) return nativeLoaded;
  try {
    const require = createRequire(import.meta.url);
    nativeLoaded = require('../../native/build/Release/hostfile.node') as HostFileNative;
  } catch {
    nativeLoaded = null;
  }
  return nativeLoaded;
}

class FileAllocation implements HostAllocation {
  readonly allocatedBytes: number;
  readonly #fd: number;
  readonly #size: number;
  readonly #native: HostFileNative;

  constructor(fd: number, size: number, allocatedBytes: number, native: HostFileNative) {
    this.#fd = fd;
    this.#size = size;
    this.allocatedBytes = allocatedBytes;
    this.#native = native;
  }

  extentAt(offset: number): { hole: boolean; end: number } | undefined {
    if (offset >= this.#size) return { hole: true, end: offset };
    const data = this.#native.seekData(this.#fd, offset);
    if (data === -2) return undefined;
    if (data === -1) return { hole: true, end: this.#size };
    if (data > offset) return { hole: true, end: Math.min(data, this.#size) };
    const hole = this.#native.seekHole(this.#fd, offset);
    if (hole < 0) return undefined;
    return { hole: false, end: Math.min(hole, this.#size) };
  }
}

/** A local file opened read-only. */
export class FileBlockSource implements BlockSource {
  readonly name: string;
  readonly size: number;
  readonly identity: string;
  readonly allocation: HostAllocation | undefined;
  readonly #fh: FileHandle;

  private constructor(name: string, fh: FileHandle, size: number, identity: string, allocation: HostAllocation | undefined) {
    this.name = name;
    this.#fh = fh;
    this.size = size;
    this.identity = identity;
    this.allocation = allocation;
  }

  /** Opens `path` with O_RDONLY: the harness never modifies an image it verifies. */
  static async open(path: string): Promise<FileBlockSource> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new ImageOpenError(`cannot open (${code})`, { image: path, cause: error });
    }
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw new ImageOpenError('is a directory', { image: path });
      const native = hostFileNative();
      const allocation = native && st.isFile() ? new FileAllocation(fh.fd, st.size, st.blocks * 512, native) : undefined;
      return new FileBlockSource(path, fh, st.size, `${st.dev}:${st.ino}`, allocation);
    } catch (error) {
      await fh.close();
      throw error;
    }
  }

  async read(buf: Uint8Array, position: number): Promise<number> {
    let done = 0;
    while (done < buf.length && position + done < this.size) {
      const { bytesRead } = await this.#fh.read(buf, done, buf.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }
}

/** Bytes in memory: tests and the fuzzer open images without touching the disk. */
export class MemoryBlockSource implements BlockSource {
  readonly name: string;
  readonly identity: string;
  readonly #bytes: Uint8Array;
  static #next = 0;

  constructor(name: string, bytes: Uint8Array) {
    this.name = name;
    this.#bytes = bytes;
    this.identity = `memory:${MemoryBlockSource.#next++}`;
  }

  get size(): number {
    return this.#bytes.length;
  }

  async read(buf: Uint8Array, position: number): Promise<number> {
    if (position >= this.#bytes.length) return 0;
    const n = Math.min(buf.length, this.#bytes.length - position);
    buf.set(this.#bytes.subarray(position, position + n));
    return n;
  }

  async close(): Promise<void> {}
}

/** A window [offset, offset + length) of another source, addressed from 0 (a partition, a volume). */
export class SliceBlockSource implements BlockSource {
  readonly name: string;
  readonly size: number;
  readonly identity: string;
  readonly parent: BlockSource;
  readonly offset: number;

  constructor(parent: BlockSource, offset: number, length: number, name = `${parent.name}[${offset}+${length}]`) {
    if (offset < 0 || length < 0 || offset + length > parent.size) {
      throw new RangeError(`slice ${offset}+${length} lies outside ${parent.name} (${parent.size} bytes)`);
    }
    this.parent = parent;
    this.offset = offset;
    this.size = length;
    this.name = name;
    this.identity = `${parent.identity}[${offset}+${length}]`;
  }

  async read(buf: Uint8Array, position: number): Promise<number> {
    if (position >= this.size) return 0;
    const n = Math.min(buf.length, this.size - position);
    return this.parent.read(n === buf.length ? buf : buf.subarray(0, n), this.offset + position);
  }

  /** Closing a slice leaves its parent open. */
  async close(): Promise<void> {}
}

