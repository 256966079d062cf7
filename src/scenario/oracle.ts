/**
 * The offline oracle of one epoch: decode the tracker's claim from the top image, compute the
 * truth from the epoch base, judge. Runs next to the images (locally or on a remote host through
 * `cbt-harness verify`), never writes to them.
 */
import { createDecodeContext, resolveDecoder, runDecoder, type Claim, type DiskProviders } from '../cbt/index.ts';
import { openImage, type OpenedImage } from '../qcow2/index.ts';
import { diffImages } from '../truth/index.ts';
import { judge, truthGranularityFor, type VerifyResult } from '../verify/index.ts';

export interface DecodeRequest {
  decoder: string;
  options?: Record<string, string>;
  /** Where relative plugin paths are resolved. @default process.cwd() */
  cwd?: string;
  providers: DiskProviders;
}

export async function decodeOpened(image: OpenedImage, req: DecodeRequest): Promise<Claim> {
  const decoder = await resolveDecoder(req.decoder, req.cwd ?? process.cwd());
  const ctx = createDecodeContext(image, req.options ?? {}, req.providers);
  return runDecoder(decoder, ctx);
}

export async function decodeImage(path: string, req: DecodeRequest & { snapshot?: string }): Promise<Claim> {
  const img = await openImage(path, { snapshot: req.snapshot });
  try {
    return await decodeOpened(img, req);
  } finally {
    await img.close();
  }
}

export interface VerifyRequest extends DecodeRequest {
  base: string;
  top: string;
  baseSnapshot?: string;
  /** Truth granularity; default: derived from the claim (≤ 4 KiB, dividing the claim's). */
  truthGranularity?: number;
}

export interface VerifyOutcome {
  result: VerifyResult;
  claim: Claim;
  truth: { granularity: number; changedBlocks: number; writtenBlocks: number; bytesCompared: number; relation: string };
}

export async function verifyImages(req: VerifyRequest): Promise<VerifyOutcome> {
  const top = await openImage(req.top);
  try {
    const base = await openImage(req.base, { snapshot: req.baseSnapshot });
    try {
      const claim = await decodeOpened(top, req);
      const gt = req.truthGranularity ?? truthGranularityFor(claim);
      const diff = await diffImages(base, top, { granularity: gt, range: claim.volume });
      const result = judge(claim, { granularity: gt, changed: diff.changed, written: diff.written });
      return {
        result,
        claim,
        truth: { granularity: gt, changedBlocks: diff.changedBlocks, writtenBlocks: diff.writtenBlocks, bytesCompared: diff.bytesCompared, relation: diff.relation },
      };
    } finally {
      await base.close();
    }
  } finally {
    await top.close();
  }
}
