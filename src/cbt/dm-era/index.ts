/** dm-era (Linux device-mapper era target) metadata decoder. */
export { decodeEraMetadata, readWritesetTree, DEFAULT_CHUNK_BLOCKS, MAX_ERA, MAX_WRITESETS, type EraDecodeOptions, type EraDecodeResult, type EraSummary } from './decode.ts';
export { EraMetadataError, EraOptionError } from './errors.ts';
export { parseEraSuperblock, isAllZero, ERA_SUPERBLOCK_MAGIC, type EraSuperblock, type WritesetRef } from './superblock.ts';
export { EraArraySource, WritesetSource, type EraArraySummary, type WritesetSummary } from './sources.ts';
