/**
 * Offline decoder of dm-era metadata (drivers/md/dm-era-target.c): which data blocks were written
 * in era `since` or later, from a copy of the metadata device.
 *
 * dm-era keeps, per era, a writeset (a bitset of the blocks written in it). `checkpoint` archives
 * the current writeset into the writeset tree under its era and opens a new one for era + 1; a
 * background digest later folds archived writesets into the era array (one u32 per block: the
 * last era it was written in) and drops them from the tree. The current writeset is committed
 * (bits flushed, superblock rewritten) before a write to a newly marked block is let through
 * (`process_deferred_bios`), so the on-disk metadata never under-reports a completed write.
 *
 * So "every block written in era ≥ since" is the union of:
 * 1. the blocks whose era-array entry is ≥ since,
 * 2. the bits of every archived writeset whose era is ≥ since,
 * 3. the bits of the superblock's current writeset, when current_era ≥ since (live metadata only:
 *    thin-provisioning-tools' `era_invalidate` leaves this one out; see docs/dm-era.md).
 *
 * Damaged metadata is a `lost` result whose reason names the structure and block, never an
 * exception: a verifier reports it as RESYNC. Exceptions are for I/O failures and bad options.
 */
import type { BlockSource } from '../../qcow2/index.ts';
import { BlockRunBuilder, type BlockRun } from '../../truth/index.ts';
import { btreeLeaves, METADATA_BLOCK_SIZE, MetadataBlockReader, MetadataCorruptError, MetadataIoError, readU64 } from '../persistent-data/index.ts';
import { EraMetadataError, EraOptionError } from './errors.ts';
import { EraArraySource, WritesetSource, type EraArraySummary, type WritesetSummary } from './sources.ts';
import { isAllZero, parseEraSuperblock, type EraSuperblock, type WritesetRef } from './superblock.ts';

/** Eras are u32 on disk. */
export const MAX_ERA = 0xffff_ffff;
/**
 * Most archived writesets accepted. dm-era digests archived writesets into the era array in the
 * background, so a live tree holds a handful; this bounds the decoder's memory (one cursor each).
 */
export const MAX_WRITESETS = 4096;
/** Volume blocks merged per step: a 128 KiB bitmap. */
export const DEFAULT_CHUNK_BLOCKS = 1 << 20;
/** Array blocks buffered across all claiming sources at once (bytes). */
const READ_BUDGET = 16 * 1024 * 1024;

export interface EraDecodeOptions {
  /** Claim every block written in this era or later (a u32; 0 claims every block). */
  since: number;
  /**
   * Read the writeset tree and era array held by the metadata snapshot (`take_metadata_snap`)
   * instead of the live ones, as `era_invalidate --metadata-snapshot` does. The live current
   * writeset is then not part of the claim (the snapshot does not hold it).
   * @default false
   */
  metadataSnapshot?: boolean;
  signal?: AbortSignal;
  /**
   * Volume blocks merged per step (a positive multiple of 64); memory is chunkBlocks / 8 bytes.
   * @default DEFAULT_CHUNK_BLOCKS
   */
  chunkBlocks?: number;
}

/** What the metadata says about its eras, for reports. Fields stay null where decoding stopped. */
export interface EraSummary {
  since: number;
  /** Which roots were read: the live superblock's, or the metadata snapshot's. */
  source: 'live' | 'snapshot';
  /** The superblock's current writeset (era = current era), or null when none is open. */
  current: WritesetSummary | null;
  /** The writeset tree, in era order. */
  archived: WritesetSummary[];
  eraArray: EraArraySummary | null;
  /** Blocks in the claim. */
  claimedBlocks: number;
  /** Metadata blocks read. */
  metadataBlocksRead: number;
}

export interface EraDecodeResult {
  state: 'valid' | 'lost';
  /** Why the metadata cannot be trusted (names the structure and block); null when valid. */
  reason: string | null;
  /** Data block size in bytes (the claim's granularity); null if the superblock was unreadable. */
  blockSizeBytes: number | null;
  /** Data blocks tracked; null if the superblock was unreadable. */
  nrBlocks: number | null;
  currentEra: number | null;
  /** Block of the metadata snapshot's superblock copy, or null when there is none. */
  metadataSnap: number | null;
  /** Every block written in era ≥ since, as sorted merged runs (empty when lost). */
  blocks: BlockRun[];
  eras: EraSummary;
  /** The live superblock as parsed (null if it was unreadable). */
  superblock: EraSuperblock | null;
}

function checkOptions(opts: EraDecodeOptions): { since: number; chunkBlocks: number } {
  if (typeof opts !== 'object' || opts === null) throw new EraOptionError(`Expected options to be an object, got \`${String(opts)}\``);
  const { since } = opts;
  if (typeof since !== 'number' || !Number.isInteger(since) || since < 0 || since > MAX_ERA) {
    throw new EraOptionError(`Expected \`since\` to be an era, an integer from 0 to ${MAX_ERA}, got \`${String(since)}\` (${typeof since})`);
  }
  const chunkBlocks = opts.chunkBlocks ?? DEFAULT_CHUNK_BLOCKS;
  if (!Number.isInteger(chunkBlocks) || chunkBlocks < 64 || chunkBlocks % 64 !== 0 || chunkBlocks > 2 ** 30) {
    throw new EraOptionError(`Expected \`chunkBlocks\` to be a multiple of 64 from 64 to ${2 ** 30}, got \`${String(chunkBlocks)}\``);
  }
  return { since, chunkBlocks };
}

/** The writeset tree's entries (era → writeset), in era order. */
export async function readWritesetTree(reader: MetadataBlockReader, root: number, currentEra: number): Promise<Array<WritesetRef & { era: number }>> {
  const structure = 'writeset tree';
  const out: Array<WritesetRef & { era: number }> = [];
  // Values are `struct writeset_disk` { __le32 nr_bits; __le64 root; } packed: 12 bytes.
  for await (const leaf of btreeLeaves(reader, root, { structure, valueSize: 12, maxKey: MAX_ERA })) {
    const site = { structure, block: leaf.location };
    for (let i = 0; i < leaf.nrEntries; i++) {
      const era = leaf.key(i);
      const off = leaf.valueOffset(i);
      const nrBits = leaf.view.getUint32(off, true);
      const wsRoot = readU64(leaf.view, off + 4, Number.MAX_SAFE_INTEGER, site, `bitset root of era ${era}`);
      if (era > currentEra) throw new MetadataCorruptError(site, `holds a writeset for era ${era}, after the current era ${currentEra}`);
      if (out.length >= MAX_WRITESETS) throw new MetadataCorruptError({ structure }, `holds more than ${MAX_WRITESETS} writesets (decoder limit)`);
      out.push({ era, nrBits, root: wsRoot });
    }
  }
  return out;
}

/** Emit the set bits of `bitmap` (block `base` + i for bit i) as runs. */
function emitRuns(bitmap: Uint32Array, nWords: number, base: number, out: BlockRunBuilder): void {
  let runStart = -1;
  for (let k = 0; k < nWords; k++) {
    const w = bitmap[k];
    if (w === 0) {
      if (runStart >= 0) {
        out.add(runStart, base + k * 32 - runStart);
        runStart = -1;
      }
      continue;
    }
    if (w === 0xffffffff) {
      if (runStart < 0) runStart = base + k * 32;
      continue;
    }
    for (let b = 0; b < 32; b++) {
      if ((w >>> b) & 1) {
        if (runStart < 0) runStart = base + k * 32 + b;
      } else if (runStart >= 0) {
        out.add(runStart, base + k * 32 + b - runStart);
        runStart = -1;
      }
    }
  }
  if (runStart >= 0) out.add(runStart, base + nWords * 32 - runStart);
}

/**
 * Decode the dm-era metadata on `src` (the whole metadata device, 4 KiB blocks) and claim every
 * data block written in era ≥ `opts.since`. Damage is a `lost` result; throws `EraOptionError`
 * for bad options and `EraMetadataError` when `src` cannot be read.
 */
export async function decodeEraMetadata(src: BlockSource, opts: EraDecodeOptions): Promise<EraDecodeResult> {
  const { since, chunkBlocks } = checkOptions(opts);
  const reader = new MetadataBlockReader(src, opts.signal);
  const result: EraDecodeResult = {
    state: 'valid',
    reason: null,
    blockSizeBytes: null,
    nrBlocks: null,
    currentEra: null,
    metadataSnap: null,
    blocks: [],
    eras: { since, source: opts.metadataSnapshot ? 'snapshot' : 'live', current: null, archived: [], eraArray: null, claimedBlocks: 0, metadataBlocksRead: 0 },
    superblock: null,
  };
  try {
    result.blocks = await decodeInto(reader, result, since, chunkBlocks, opts);
    result.eras.claimedBlocks = result.blocks.reduce((n, r) => n + r[1], 0);
  } catch (error) {
    if (error instanceof MetadataCorruptError) {
      result.state = 'lost';
      result.reason = error.message;
      result.blocks = [];
      result.eras.claimedBlocks = 0;
    } else if (error instanceof MetadataIoError) {
      throw new EraMetadataError(`cannot read dm-era metadata: ${error.message}`, { source: src.name, cause: error });
    } else {
      throw error;
    }
  } finally {
    result.eras.metadataBlocksRead = reader.blocksRead;
  }
  return result;
}

async function decodeInto(reader: MetadataBlockReader, result: EraDecodeResult, since: number, chunkBlocks: number, opts: EraDecodeOptions): Promise<BlockRun[]> {
  // 1. The live superblock: geometry, current era and writeset, roots, the snapshot pointer.
  if (reader.deviceBlocks < 1) {
    throw new MetadataCorruptError({ structure: 'superblock' }, `metadata device is ${reader.src.size} bytes, smaller than one ${METADATA_BLOCK_SIZE}-byte block`);
  }
  const sbBytes = await reader.read(0, { structure: 'superblock' });
  if (isAllZero(sbBytes)) throw new MetadataCorruptError({ structure: 'superblock', block: 0 }, 'all zeroes: the metadata device was never formatted (dm-era would start afresh)');
  const sb = parseEraSuperblock(sbBytes, 0);
  result.superblock = sb;
  result.blockSizeBytes = sb.dataBlockSectors * 512;
  result.nrBlocks = sb.nrBlocks;
  result.currentEra = sb.currentEra;
  result.metadataSnap = sb.metadataSnap;
  if (sb.spaceMap.nrBlocks > reader.deviceBlocks) {
    throw new MetadataCorruptError(
      { structure: 'superblock', block: 0 },
      `the metadata space map covers ${sb.spaceMap.nrBlocks} blocks but the device holds only ${reader.deviceBlocks} (truncated)`,
    );
  }
  reader.narrowLimit(sb.spaceMap.nrBlocks, 'the metadata space map');

  // 2. Which roots: live, or the snapshot copy (only its two roots stay maintained, dm-era-target.c
  //    `struct superblock_disk`; its nr_blocks and current_era are those of the snapshot's time).
  let roots: { writesetTreeRoot: number; eraArrayRoot: number; nrBlocks: number; currentEra: number; current: WritesetRef | null };
  if (opts.metadataSnapshot) {
    if (sb.metadataSnap === null) throw new MetadataCorruptError({ structure: 'superblock', block: 0 }, 'no metadata snapshot is held (metadata_snap is 0)');
    const snapBytes = await reader.read(sb.metadataSnap, { structure: 'superblock', block: 0 });
    const snap = parseEraSuperblock(snapBytes, sb.metadataSnap, 'metadata snapshot superblock');
    roots = { writesetTreeRoot: snap.writesetTreeRoot, eraArrayRoot: snap.eraArrayRoot, nrBlocks: snap.nrBlocks, currentEra: snap.currentEra, current: null };
  } else {
    roots = { writesetTreeRoot: sb.writesetTreeRoot, eraArrayRoot: sb.eraArrayRoot, nrBlocks: sb.nrBlocks, currentEra: sb.currentEra, current: sb.currentWriteset };
  }
  const { nrBlocks, currentEra } = roots;

  // 3. The writeset tree (small: a few entries), then every writeset's source.
  const tree = await readWritesetTree(reader, roots.writesetTreeRoot, currentEra);
  const claimedCount = 1 + tree.filter((w) => w.era >= since).length + (roots.current && currentEra >= since ? 1 : 0);
  const batch = Math.max(1, Math.min(64, Math.floor(READ_BUDGET / (claimedCount * METADATA_BLOCK_SIZE))));
  const archived = tree.map((w) => new WritesetSource(reader, w, `writeset for era ${w.era}`, w.era >= since, nrBlocks, w.era >= since ? batch : 64));
  result.eras.archived = archived.map((s) => s.summary);
  const current = roots.current ? new WritesetSource(reader, { era: currentEra, ...roots.current }, `current writeset (era ${currentEra})`, currentEra >= since, nrBlocks, batch) : null;
  result.eras.current = current?.summary ?? null;
  const eraArray = new EraArraySource(reader, roots.eraArrayRoot, nrBlocks, since, currentEra, batch);
  result.eras.eraArray = eraArray.summary;

  // 4. Writesets outside the claim are still read in full: damage anywhere makes the metadata
  //    untrustworthy (era_invalidate refuses it too). One at a time (a full 64-block batch each),
  //    so memory stays flat.
  const claiming: WritesetSource[] = [];
  for (const ws of current ? [...archived, current] : archived) {
    if (ws.summary.claimed) claiming.push(ws);
    else await ws.finish();
  }

  // 5. Merge the claiming sources chunk by chunk, streaming runs into the builder.
  const out = new BlockRunBuilder();
  const bitmap = new Uint32Array(chunkBlocks / 32);
  for (let start = 0; start < nrBlocks; start += chunkBlocks) {
    opts.signal?.throwIfAborted();
    const end = Math.min(nrBlocks, start + chunkBlocks);
    bitmap.fill(0);
    await eraArray.fill(bitmap, start, end);
    for (const ws of claiming) await ws.fill(bitmap, start, end);
    emitRuns(bitmap, Math.ceil((end - start) / 32), start, out);
  }
  await eraArray.finish();
  for (const ws of claiming) await ws.finish();
  return out.runs;
}
