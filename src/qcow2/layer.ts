/**
 * A layer is one image of a backing chain seen at its own level: which guest byte ranges it
 * stores (data, compressed), declares zero, or leaves to its backing file. qcow2 images, qcow2
 * internal snapshots and raw files all implement it.
 */

export type RunKind = 'data' | 'zero' | 'unallocated' | 'compressed';

export interface LayerRun {
  kind: RunKind;
  /** Guest byte range [start, end). */
  start: number;
  end: number;
  /** data: host offset of `start` in the data source; compressed: host offset of the stream. */
  host: number;
  /** compressed: bytes to read at `host` (sector-rounded, may run past the stream). */
  csize: number;
  /** File offset of the table entry that described the run's first cluster (-1 if none), for errors. */
  entry: number;
}

export interface Layer {
  /** The path (or name) the layer was opened from. */
  readonly name: string;
  readonly format: 'qcow2' | 'raw';
  /** Same value for the same file opened twice (device and inode), plus the snapshot viewed. */
  readonly identity: string;
  readonly virtualSize: number;
  readonly backing: Layer | null;
  /**
   * Runs of equal kind covering [start, end) in ascending order; `end` is clamped to
   * `virtualSize`. Data runs are host-contiguous.
   */
  runs(start: number, end: number): AsyncGenerator<LayerRun>;
  /** Guest bytes [at, at + buf.length) of a data or compressed run. */
  readData(run: LayerRun, at: number, buf: Uint8Array): Promise<void>;
  /**
   * Whether QEMU would ask the host file about a data run ("BDRV_BLOCK_RECURSE"): raw files
   * always, qcow2 only with metadata preallocation. Returns the host extent status at `at`.
   */
  hostZero(run: LayerRun, at: number): Promise<{ zero: boolean; end: number } | undefined>;
}
