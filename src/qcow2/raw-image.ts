/** A raw image: guest byte i is file byte i. Holes are reported the way QEMU's file-posix does. */
import type { BlockSource } from './block-source.ts';
import type { Layer, LayerRun } from './layer.ts';

export class RawLayer implements Layer {
  readonly format = 'raw';
  readonly backing = null;
  readonly src: BlockSource;

  constructor(src: BlockSource) {
    this.src = src;
  }

  get name(): string {
    return this.src.name;
  }

  get identity(): string {
    return this.src.identity;
  }

  get virtualSize(): number {
    return this.src.size;
  }

  async *runs(start: number, end: number): AsyncGenerator<LayerRun> {
    end = Math.min(end, this.src.size);
    if (start < end) yield { kind: 'data', start, end, host: start, csize: 0, entry: -1 };
  }

  async readData(run: LayerRun, at: number, buf: Uint8Array): Promise<void> {
    const n = await this.src.read(buf, run.host + (at - run.start));
    if (n < buf.length) buf.fill(0, n);
  }

  async hostZero(run: LayerRun, at: number): Promise<{ zero: boolean; end: number } | undefined> {
    const ext = this.src.allocation?.extentAt(at);
    if (!ext) return undefined;
    return { zero: ext.hole, end: Math.min(run.end, ext.end) };
  }

  async close(): Promise<void> {
    await this.src.close();
  }
}
