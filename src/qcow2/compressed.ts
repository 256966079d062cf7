/**
 * Compressed clusters (qcow2.txt "Compressed Clusters Descriptor"): raw deflate (window 2^12, as
 * QEMU's qcow2_compress writes) or a single zstd frame. The stored length is rounded to 512-byte
 * sectors, so trailing bytes after the stream are expected and ignored, as QEMU does.
 */
import { constants, inflateRawSync, zstdDecompressSync } from 'node:zlib';
import type { CompressionType } from './header.ts';
import { HarnessError } from '../util/index.ts';

export class DecompressError extends HarnessError {
  override name = 'DecompressError';
}

/**
 * Length of the first zstd frame in `buf` (RFC 8878 §3.1.1), so trailing sector padding is not
 * mistaken for a second frame. Throws DecompressError when the frame runs past `buf`.
 */
export function zstdFrameLength(buf: Uint8Array): number {
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.length < 6 || view.readUInt32LE(0) !== 0xfd2fb528) throw new DecompressError('no zstd frame magic');
  const fhd = view[4];
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  if (fhd & 0x08) throw new DecompressError('zstd frame header reserved bit set');
  let pos = 5;
  if (!singleSegment) pos += 1;
  pos += [0, 1, 2, 4][dictFlag];
  pos += fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag];
  for (;;) {
    if (pos + 3 > view.length) throw new DecompressError('zstd frame runs past the compressed data');
    const bh = view[pos] | (view[pos + 1] << 8) | (view[pos + 2] << 16);
    pos += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw new DecompressError('zstd block of reserved type');
    pos += type === 1 ? 1 : size;
    if (pos > view.length) throw new DecompressError('zstd block runs past the compressed data');
    if (last) break;
  }
  if (checksum) pos += 4;
  if (pos > view.length) throw new DecompressError('zstd checksum runs past the compressed data');
  return pos;
}

/** Decompress one cluster; the result must be exactly `clusterSize` bytes. */
export function decompressCluster(data: Uint8Array, type: CompressionType, clusterSize: number): Buffer {
  let out: Buffer;
  try {
    if (type === 'zlib') {
      // Z_SYNC_FLUSH: accept input that ends without a final block, as QEMU accepts Z_BUF_ERROR.
      out = inflateRawSync(data, { windowBits: 12, finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
    } else {
      const len = zstdFrameLength(data);
      out = zstdDecompressSync(data.subarray(0, len), { maxOutputLength: clusterSize });
    }
  } catch (error) {
    if (error instanceof DecompressError) throw error;
    const msg = (error as Error).message;
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || error instanceof RangeError) {
      throw new DecompressError(`decompresses to more than the cluster size ${clusterSize}`, { cause: error });
    }
    throw new DecompressError(`${type} stream is corrupt: ${msg}`, { cause: error });
  }
  if (out.length !== clusterSize) {
    throw new DecompressError(`decompresses to ${out.length} bytes instead of the cluster size ${clusterSize}`);
  }
  return out;
}
