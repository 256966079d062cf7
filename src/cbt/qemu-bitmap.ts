/**
 * The hypervisor's own tracker: a persistent dirty bitmap in the qcow2 bitmaps extension
 * (qcow2.txt "Bitmaps"). Lost when QEMU did not store it cleanly (`in_use`), or when a program
 * unaware of bitmaps touched the image (autoclear "bitmaps consistent" bit clear), or when the
 * bitmap is gone.
 */
import type { Claim } from './claim.ts';
import { DecoderOptionError, type DecodeContext, type Decoder } from './decoder.ts';

/** The bitmap asked for is not in the image (and `absent=resync` was not given): bad input, exit 2. */
export class BitmapNotFoundError extends DecoderOptionError {
  override name = 'BitmapNotFoundError';
  readonly image: string;
  /** The name asked for (undefined: any bitmap, and the image has none). */
  readonly bitmap: string | undefined;
  /** The names the image does hold. */
  readonly available: string[];

  constructor(image: string, bitmap: string | undefined, available: string[]) {
    const has = available.length ? `it has ${available.map((n) => JSON.stringify(n)).join(', ')}` : 'it has none';
    super(`${image}: ${bitmap === undefined ? 'no persistent bitmap' : `no bitmap ${JSON.stringify(bitmap)}`} (${has}; --opt absent=resync to judge it lost)`);
    this.image = image;
    this.bitmap = bitmap;
    this.available = available;
  }
}

export const qemuBitmapDecoder: Decoder = {
  name: 'qemu-bitmap',
  description: 'QEMU persistent dirty bitmap stored in the top qcow2 image',
  options: {
    name: 'bitmap name (default: the only bitmap of the image)',
    layer: 'which image of the chain holds the bitmap, 0 = top (default 0)',
    absent: 'error (default): a bitmap that is not in the image is bad input; resync: a lost claim (RESYNC), for a scenario that knows a power cut lost it',
  },
  async decode(ctx: DecodeContext): Promise<Claim> {
    const layerIndex = ctx.options.layer === undefined ? 0 : Number(ctx.options.layer);
    if (!Number.isInteger(layerIndex) || layerIndex < 0 || layerIndex >= ctx.image.layers.length) {
      throw new DecoderOptionError(`Expected \`layer\` to be 0..${ctx.image.layers.length - 1}, got \`${ctx.options.layer}\``);
    }
    const absent = ctx.options.absent ?? 'error';
    if (absent !== 'error' && absent !== 'resync') throw new DecoderOptionError(`Expected \`absent\` to be error or resync, got \`${absent}\``);
    const q = ctx.image.qcow2[layerIndex];
    const size = ctx.image.top.virtualSize;
    const lost = (reason: string, granularity = 65536, details: Record<string, unknown> = {}): Claim => ({
      decoder: 'qemu-bitmap',
      state: 'lost',
      reason,
      granularity,
      volume: { offset: 0, length: size },
      blocks: [],
      excluded: [],
      details,
    });
    if (!q) throw new DecoderOptionError(`image ${ctx.image.layers[layerIndex].name} is not qcow2: it has no persistent bitmaps`);
    const all = q.bitmaps;
    const wanted = ctx.options.name;
    if (wanted === undefined && all.length > 1) {
      throw new DecoderOptionError(`image has ${all.length} bitmaps (${all.map((b) => b.name).join(', ')}): choose one with --opt name=…`);
    }
    const bm = wanted === undefined ? all[0] : all.find((b) => b.name === wanted);
    if (!bm) {
      if (absent === 'error') throw new BitmapNotFoundError(ctx.image.layers[layerIndex].name, wanted, all.map((b) => b.name));
      return lost(wanted === undefined ? 'the image holds no persistent bitmap' : `bitmap ${JSON.stringify(wanted)} is absent from the image`);
    }
    const details = { bitmap: bm.name, auto: bm.auto, inUse: bm.inUse, consistent: q.header.bitmapsConsistent };
    if (!q.header.bitmapsConsistent) {
      return lost('the bitmaps extension is inconsistent (autoclear bit clear: a program unaware of bitmaps modified the image)', bm.granularity, details);
    }
    if (bm.inUse) return lost(`bitmap ${JSON.stringify(bm.name)} is in_use: QEMU did not store it cleanly (killed or crashed)`, bm.granularity, details);
    const blocks = await q.bitmapRuns(bm);
    return {
      decoder: 'qemu-bitmap',
      state: 'valid',
      reason: null,
      granularity: bm.granularity,
      volume: { offset: 0, length: q.header.virtualSize },
      blocks,
      excluded: [],
      details,
    };
  },
};
