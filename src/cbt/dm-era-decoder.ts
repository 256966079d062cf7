/**
 * dm-era (Linux device-mapper era target) as a decoder: the metadata region holds the
 * persistent-data structures, the data region is the tracked volume.
 */
import { SliceBlockSource } from '../qcow2/index.ts';
import type { Claim } from './claim.ts';
import { DecoderOptionError, requireOption, type DecodeContext, type Decoder } from './decoder.ts';
import { decodeEraMetadata } from './dm-era/index.ts';

export const dmEraDecoder: Decoder = {
  name: 'dm-era',
  description: 'Linux dm-era metadata (persistent-data B-trees, writesets and era array)',
  options: {
    metadata: 'metadata device: partition number or offset:length',
    data: 'tracked data device: partition number or offset:length',
    since: 'claim blocks written in this era or later (default 0: every block ever written)',
    snapshot: '"true" to read the metadata snapshot instead of the live roots',
  },
  async decode(ctx: DecodeContext): Promise<Claim> {
    const meta = await ctx.region(requireOption(ctx, 'metadata', 'dm-era'), 'metadata');
    const data = await ctx.region(requireOption(ctx, 'data', 'dm-era'), 'data');
    const sinceText = ctx.options.since ?? '0';
    const since = Number(sinceText);
    if (!/^\d+$/.test(sinceText) || !Number.isSafeInteger(since) || since > 0xffffffff) {
      throw new DecoderOptionError(`Expected \`since\` to be an era (0..4294967295), got \`${sinceText}\``);
    }
    const snapshot = ctx.options.snapshot === 'true';
    const src = new SliceBlockSource(ctx.disk, meta.offset, meta.length, `${ctx.disk.name} (dm-era metadata)`);
    const r = await decodeEraMetadata(src, { since, metadataSnapshot: snapshot });
    const granularity = r.blockSizeBytes ?? 512;
    const details: Record<string, unknown> = { since, currentEra: r.currentEra, nrBlocks: r.nrBlocks, metadataSnap: r.metadataSnap, source: r.eras.source };
    // The era device may be shorter than the region given (a partition rounded up): blocks past
    // nr_blocks were never reachable through the tracker, so the tracked volume ends there.
    const tracked = r.nrBlocks !== null && r.blockSizeBytes !== null ? Math.min(data.length, r.nrBlocks * r.blockSizeBytes) : data.length;
    return {
      decoder: 'dm-era',
      state: r.state,
      reason: r.reason,
      granularity,
      volume: { offset: data.offset, length: tracked },
      blocks: r.state === 'valid' ? r.blocks : [],
      excluded: [[meta.offset, meta.length]],
      details,
    };
  },
};
