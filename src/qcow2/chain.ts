/**
 * Reading through a backing chain, and block status as `qemu-img map` reports it.
 */
import type { BlockSource } from './block-source.ts';
import type { Layer, LayerRun } from './layer.ts';

/** Guest bytes [offset, offset + buf.length) of `layer` with its backing chain; zeros past the end. */
export async function readChain(layer: Layer, offset: number, buf: Uint8Array): Promise<void> {
  const end = offset + buf.length;
  const lend = Math.min(end, layer.virtualSize);
  if (lend < end) buf.fill(0, Math.max(0, lend - offset));
  if (offset >= lend) return;
  for await (const run of layer.runs(offset, lend)) {
    const sub = buf.subarray(run.start - offset, run.end - offset);
    if (run.kind === 'data' || run.kind === 'compressed') await layer.readData(run, run.start, sub);
    else if (run.kind === 'unallocated' && layer.backing) await readChain(layer.backing, run.start, sub);
    else sub.fill(0);
  }
}

/**
 * Follows one layer's runs for monotonically increasing positions without re-walking its
 * tables from the start at each query.
 */
export class RunCursor {
  readonly layer: Layer;
  #gen: AsyncGenerator<LayerRun> | null = null;
  #run: LayerRun | null = null;
  readonly #end: number;

  constructor(layer: Layer, end: number = layer.virtualSize) {
    this.layer = layer;
    this.#end = Math.min(end, layer.virtualSize);
  }

  /** The run containing `pos` (which must be below the layer's size and the cursor's end). */
  async at(pos: number): Promise<LayerRun> {
    const r = this.#run;
    if (r && r.start <= pos && pos < r.end) return r;
    if (!this.#gen || !r || pos < r.start) {
      await this.#gen?.return(undefined);
      this.#gen = this.layer.runs(pos, this.#end);
    }
    for (;;) {
      const next = await this.#gen.next();
      if (next.done) {
        // Exhausted before `pos`: restart exactly at `pos`.
        this.#gen = this.layer.runs(pos, this.#end);
        const again = await this.#gen.next();
        if (again.done) throw new RangeError(`no run at ${pos} in ${this.layer.name}`);
        this.#run = again.value;
        return again.value;
      }
      if (next.value.end > pos) {
        this.#run = next.value;
        return next.value;
      }
    }
  }

  async close(): Promise<void> {
    await this.#gen?.return(undefined);
    this.#gen = null;
  }
}

/** One extent of `qemu-img map --output=json`. */
export interface MapExtent {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  depth: number;
  present: boolean;
}

interface Status {
  data: boolean;
  zero: boolean;
  allocated: boolean;
  end: number;
}

/** Block status of one layer at `pos` (QEMU's bdrv_co_block_status for that node alone). */
async function layerStatus(cursor: RunCursor, pos: number, end: number): Promise<Status> {
  const layer = cursor.layer;
  const run = await cursor.at(pos);
  let segEnd = Math.min(run.end, end);
  switch (run.kind) {
    case 'data': {
      const hz = await layer.hostZero(run, pos);
      if (!hz) return { data: true, zero: false, allocated: true, end: segEnd };
      segEnd = Math.min(segEnd, Math.max(hz.end, pos + 1));
      // raw: the host file alone answers (hole = zero, not data). qcow2 with metadata
      // preallocation: data, plus zero where the host file has a hole.
      if (layer.format === 'raw') return { data: !hz.zero, zero: hz.zero, allocated: true, end: segEnd };
      return { data: true, zero: hz.zero, allocated: true, end: segEnd };
    }
    case 'compressed':
      return { data: true, zero: false, allocated: true, end: segEnd };
    case 'zero':
      return { data: false, zero: true, allocated: true, end: segEnd };
    case 'unallocated': {
      const b = layer.backing;
      // No backing, or past the end of a shorter backing file: reads as zero at this layer.
      if (!b || pos >= b.virtualSize) return { data: false, zero: true, allocated: false, end: segEnd };
      return { data: false, zero: false, allocated: false, end: segEnd };
    }
  }
}

/**
 * Extents of [start, end) as `qemu-img map --output=json` reports them: for each byte, the first
 * layer (depth 0 = top) whose status says data or zero. Adjacent extents with equal
 * data/zero/depth/present are merged.
 */
export async function* mapChain(top: Layer, start = 0, end = top.virtualSize): AsyncGenerator<MapExtent> {
  end = Math.min(end, top.virtualSize);
  const cursors: RunCursor[] = [];
  for (let l: Layer | null = top; l; l = l.backing) cursors.push(new RunCursor(l));
  let pending: MapExtent | null = null;
  try {
    let pos = start;
    while (pos < end) {
      let segEnd = end;
      let depth = 0;
      let st: Status;
      for (;;) {
        st = await layerStatus(cursors[depth], pos, segEnd);
        segEnd = st.end;
        if (st.data || st.zero) break;
        depth++;
      }
      const e: MapExtent = { start: pos, length: segEnd - pos, data: st.data, zero: st.zero, depth, present: st.allocated };
      if (pending && pending.start + pending.length === e.start && pending.data === e.data && pending.zero === e.zero && pending.depth === e.depth && pending.present === e.present) {
        pending.length += e.length;
      } else {
        if (pending) yield pending;
        pending = e;
      }
      pos = segEnd;
    }
    if (pending) yield pending;
  } finally {
    for (const c of cursors) await c.close();
  }
}

/**
 * The guest-visible disk of a layer (with its backing chain) as a BlockSource: what partition
 * tables, file systems and tracker decoders read. Read-only; closing it closes nothing.
 */
export function guestDisk(layer: Layer, name = `${layer.name} (guest disk)`): BlockSource {
  return {
    name,
    size: layer.virtualSize,
    identity: `guest:${layer.identity}`,
    async read(buf: Uint8Array, position: number): Promise<number> {
      if (position >= layer.virtualSize) return 0;
      const n = Math.min(buf.length, layer.virtualSize - position);
      await readChain(layer, position, n === buf.length ? buf : buf.subarray(0, n));
      return n;
    },
    async close(): Promise<void> {},
  };
}
