/** Read-only pieces of the Linux persistent-data library (drivers/md/persistent-data/). */
export { MetadataCorruptError, MetadataIoError, type CorruptionSite } from './errors.ts';
export { SALT, crc32cRaw, blockChecksum, sealBlock } from './checksum.ts';
export { MetadataBlockReader, METADATA_BLOCK_SIZE } from './block-reader.ts';
export { BtreeNode, btreeLeaves, readU64, MAX_BTREE_DEPTH, type BtreeWalkOptions } from './btree.ts';
export { ArrayCursor, arrayMaxEntries, ARRAY_BLOCK_HEADER_SIZE, type ArrayBlock, type ArrayCursorOptions } from './array.ts';
export { bitsetCursor, bitsetWords, BITS_PER_WORD } from './bitset.ts';
export { parseSpaceMapRoot, type SpaceMapRoot } from './space-map.ts';
