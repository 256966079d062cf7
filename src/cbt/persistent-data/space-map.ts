/**
 * The metadata space map root a superblock embeds (`struct disk_sm_root` in
 * drivers/md/persistent-data/dm-space-map-common.h): the metadata device's size in blocks, how many
 * are allocated, and the roots of the bitmap index and the reference-count tree. The decoder only
 * uses `nrBlocks` to bound block pointers; reference counts are not needed to read the structures.
 */
import { MetadataCorruptError, type CorruptionSite } from './errors.ts';
import { readU64 } from './btree.ts';

export interface SpaceMapRoot {
  nrBlocks: number;
  nrAllocated: number;
  bitmapRoot: number;
  refCountRoot: number;
}

/** Parse the 32 meaningful bytes of the 128-byte `metadata_space_map_root` field at `offset`. */
export function parseSpaceMapRoot(view: DataView, offset: number, site: CorruptionSite): SpaceMapRoot {
  const max = Number.MAX_SAFE_INTEGER;
  const root: SpaceMapRoot = {
    nrBlocks: readU64(view, offset, max, site, 'space map nr_blocks'),
    nrAllocated: readU64(view, offset + 8, max, site, 'space map nr_allocated'),
    bitmapRoot: readU64(view, offset + 16, max, site, 'space map bitmap root'),
    refCountRoot: readU64(view, offset + 24, max, site, 'space map ref count root'),
  };
  if (root.nrAllocated > root.nrBlocks) throw new MetadataCorruptError(site, `space map has ${root.nrAllocated} blocks allocated out of ${root.nrBlocks}`);
  return root;
}
