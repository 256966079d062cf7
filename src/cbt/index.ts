export { claimProblems, type Claim, type ClaimState } from './claim.ts';
export { DecoderOptionError, DecoderPluginError, requireOption, type Decoder, type DecodeContext, type DecodeVolume, type NtfsAccess, type NtfsFileInfo, type VolumeSerial, type VolumeFsKind, type DetectedFs } from './decoder.ts';
export { BUILTIN_DECODERS, resolveDecoder, runDecoder } from './registry.ts';
export { BitmapNotFoundError } from './qemu-bitmap.ts';
export { crc32c } from './crc32c.ts';
export { encodeCbtf, parseCbtfHeader, bitmapFromBlocks, guidToBytes, guidToString, normalizeGuid, cbtfHeaderCrc, CBTF_FLAG_CLEAN, CBTF_FLAG_TRACKING_LOST, CBTF_HEADER_SIZE, type CbtfHeader, type CbtfWriteSpec } from './cbtf/format.ts';
export { decodeEraMetadata, EraMetadataError, EraOptionError, type EraDecodeResult, type EraDecodeOptions, type EraSummary } from './dm-era/index.ts';
export { createDecodeContext, type DiskProviders } from './context.ts';
export { defaultProviders } from './providers.ts';
