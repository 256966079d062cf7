/**
 * The CBTF decoder: locate the tracker's file through NTFS (on the tracked volume or another
 * one), read it through its extents as the driver wrote it, and apply every validity rule of
 * docs/cbtf.md. Any broken rule gives `state: "lost"` with the reason, never an exception. The
 * tracked volume may hold NTFS, ext2/3/4 or no recognisable file system (rule 7, `ctx.volumeSerial`).
 */
import type { Claim } from '../claim.ts';
import { crc32c } from '../crc32c.ts';
import { DecoderOptionError, requireOption, type DecodeContext, type Decoder, type VolumeSerial } from '../decoder.ts';
import { isHarnessError } from '../../util/index.ts';
import { BlockRunBuilder } from '../../truth/index.ts';
import { CBTF_FLAG_CLEAN, CBTF_FLAG_TRACKING_LOST, CBTF_HEADER_SIZE, CBTF_MAGIC, CBTF_MAX_SHIFT, CBTF_MIN_SHIFT, CBTF_VERSION, cbtfHeaderCrc, normalizeGuid, parseCbtfHeader } from './format.ts';

/** Largest bitmap accepted: 2^40-byte volume at 4 KiB blocks = 2^28 bits = 32 MiB. Bounds memory. */
const MAX_BITMAP_BYTES = 512 * 1024 * 1024;

/** File bytes [from, from + length) read from the disk through the file's extents (holes read as zero). */
async function readFileBytes(ctx: DecodeContext, extents: Array<{ offset: number; length: number; fileOffset: number }>, from: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  for (const e of extents) {
    const a = Math.max(from, e.fileOffset);
    const b = Math.min(from + length, e.fileOffset + e.length);
    if (a >= b) continue;
    const n = await ctx.disk.read(out.subarray(a - from, b - from), e.offset + (a - e.fileOffset));
    if (n < b - a) throw new DecoderOptionError(`the CBTF file's extent at disk offset ${e.offset} lies past the end of the disk`);
  }
  return out;
}

export const cbtfDecoder: Decoder = {
  name: 'cbtf',
  description: 'CBTF file written raw to its pre-recorded extents by a CBT driver (tracking NTFS, ext2/3/4 or a raw volume)',
  options: {
    volume: 'partition number holding the CBTF file (NTFS)',
    path: 'path of the file on that volume, e.g. /System Volume Information/cbt.dat',
    tracked: 'partition number (or offset:length) of the tracked volume: NTFS, ext2/3/4 or raw (default: volume)',
    generation: 'expected generation GUID recorded at the epoch start (checked when given)',
  },
  async decode(ctx: DecodeContext): Promise<Claim> {
    const volNo = Number(requireOption(ctx, 'volume', 'cbtf'));
    if (!Number.isInteger(volNo) || volNo < 1) throw new DecoderOptionError(`Expected \`volume\` to be a partition number, got \`${ctx.options.volume}\``);
    const path = requireOption(ctx, 'path', 'cbtf');
    const trackedSpec = ctx.options.tracked ?? String(volNo);
    const expectedGeneration = ctx.options.generation === undefined ? null : normalizeGuid(ctx.options.generation);
    const fileVolume = await ctx.volume(volNo);
    const tracked = await ctx.region(trackedSpec, 'tracked');
    const ntfs = await ctx.ntfs(volNo);
    const file = await ntfs.lookup(path);
    const extents = file.extents.map((e) => ({ offset: fileVolume.offset + e.offset, length: e.length, fileOffset: e.fileOffset }));
    const allocated = extents.reduce((n, e) => Math.max(n, e.fileOffset + e.length), 0);
    const excluded = extents.map((e) => [e.offset, e.length] as [number, number]);
    const base = { decoder: 'cbtf', volume: tracked, excluded };
    const lost = (reason: string, granularity = 4096, details: Record<string, unknown> = {}): Claim => ({ ...base, state: 'lost', reason, granularity, blocks: [], details: { path, ...details } });

    const fileBytes = Math.min(file.size, allocated);
    if (extents.length === 0) return lost('the file has no extents (resident or empty): a driver cannot write it raw');
    if (fileBytes < CBTF_HEADER_SIZE) return lost(`the file holds ${fileBytes} bytes, less than the ${CBTF_HEADER_SIZE}-byte header`);
    const raw = await readFileBytes(ctx, extents, 0, CBTF_HEADER_SIZE);
    const h = parseCbtfHeader(raw);
    const details: Record<string, unknown> = {
      generation: h.generation,
      sequence: h.sequence.toString(),
      flags: h.flags,
      epochId: h.epochId.toString(),
      volumeSerial: `0x${h.volumeSerial.toString(16)}`,
      generationChecked: expectedGeneration !== null,
    };
    if (h.magic !== CBTF_MAGIC) return lost(`bad magic ${JSON.stringify(h.magic)} (expected ${CBTF_MAGIC})`, 4096, details);
    if (h.version !== CBTF_VERSION) return lost(`unsupported version ${h.version}`, 4096, details);
    if (h.headerSize !== CBTF_HEADER_SIZE) return lost(`header size ${h.headerSize} is not ${CBTF_HEADER_SIZE}`, 4096, details);
    const hcrc = cbtfHeaderCrc(raw);
    if (hcrc !== h.headerCrc) return lost(`header CRC-32C mismatch (stored 0x${h.headerCrc.toString(16)}, computed 0x${hcrc.toString(16)})`, 4096, details);
    if (h.granularityShift < CBTF_MIN_SHIFT || h.granularityShift > CBTF_MAX_SHIFT) return lost(`granularity shift ${h.granularityShift} outside ${CBTF_MIN_SHIFT}..${CBTF_MAX_SHIFT}`, 4096, details);
    const g = 2 ** h.granularityShift;
    if (h.volumeSize !== BigInt(tracked.length)) return lost(`tracked volume size ${h.volumeSize} does not match the volume (${tracked.length} bytes)`, g, details);
    const nBlocks = Math.ceil(tracked.length / g);
    const need = Math.ceil(nBlocks / 8);
    if (h.bitmapOffset !== BigInt(CBTF_HEADER_SIZE)) return lost(`bitmap offset ${h.bitmapOffset} is not ${CBTF_HEADER_SIZE}`, g, details);
    if (h.bitmapLength < BigInt(need)) return lost(`bitmap of ${h.bitmapLength} bytes cannot cover ${nBlocks} blocks (${need} bytes)`, g, details);
    if (h.bitmapLength > BigInt(MAX_BITMAP_BYTES) || Number(h.bitmapOffset + h.bitmapLength) > fileBytes) {
      return lost(`bitmap of ${h.bitmapLength} bytes runs past the file's ${fileBytes} allocated bytes`, g, details);
    }
    const bitmap = await readFileBytes(ctx, extents, CBTF_HEADER_SIZE, Number(h.bitmapLength));
    const bcrc = crc32c(bitmap);
    if (bcrc !== h.bitmapCrc) return lost(`bitmap CRC-32C mismatch (stored 0x${h.bitmapCrc.toString(16)}, computed 0x${bcrc.toString(16)})`, g, details);
    let trackedSerial: VolumeSerial;
    try {
      trackedSerial = await ctx.volumeSerial(tracked);
    } catch (error) {
      if (!isHarnessError(error)) throw error;
      return lost(`cannot read the tracked volume's serial: ${error.message}`, g, details);
    }
    const { fs, name, serial } = trackedSerial;
    details.trackedFs = fs;
    details.trackedFsName = name;
    details.trackedSerial = `0x${serial.toString(16)}`;
    if (serial !== h.volumeSerial) {
      const found = fs === 'none' ? 'no recognisable file system, serial 0' : `${fs}${name !== null && name !== fs ? ` (${name})` : ''} serial 0x${serial.toString(16)}`;
      return lost(`volume serial 0x${h.volumeSerial.toString(16)} is not the tracked volume's (${found})`, g, details);
    }
    if (h.flags & CBTF_FLAG_TRACKING_LOST) return lost('the driver declared TRACKING_LOST', g, details);
    if (!(h.flags & CBTF_FLAG_CLEAN)) return lost('CLEAN is not set: the last persist was not orderly (crash, reset or surprise removal)', g, details);
    if (expectedGeneration !== null && h.generation !== expectedGeneration) {
      return lost(`generation ${h.generation} differs from the one recorded at the epoch start (${expectedGeneration}): tracking restarted`, g, details);
    }
    const runs = new BlockRunBuilder();
    for (let byte = 0; byte < need; byte++) {
      const v = bitmap[byte];
      if (v === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const i = byte * 8 + bit;
        if (i < nBlocks && v & (1 << bit)) runs.add(i, 1);
      }
    }
    return { ...base, state: 'valid', reason: null, granularity: g, blocks: runs.runs, details: { path, ...details } };
  },
};
