/**
 * `image export`: the guest-visible bytes of a disk as a raw file, byte-identical to
 * `qemu-img convert -O raw`. Zero extents (and all-zero chunks) are left as holes.
 */
import { open, stat } from 'node:fs/promises';
import { mapChain, readChain, ImageError, type OpenedImage } from '../qcow2/index.ts';

export interface ExportResult {
  output: string;
  virtualSize: number;
  /** Bytes actually written (non-zero data). */
  dataBytes: number;
}

const CHUNK = 4 * 1024 * 1024;

function allZero(buf: Buffer): boolean {
  // Compare 8 bytes at a time via a BigUint64 view where aligned; fall back per byte.
  const words = Math.floor(buf.length / 8);
  const view = new BigUint64Array(buf.buffer, buf.byteOffset, buf.byteOffset % 8 === 0 ? words : 0);
  for (let i = 0; i < view.length; i++) if (view[i] !== 0n) return false;
  for (let i = view.length * 8; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

export async function exportImage(img: OpenedImage, output: string, inputPaths: string[]): Promise<ExportResult> {
  // Never write over an image under test.
  const out = await stat(output).catch(() => null);
  if (out) {
    for (const p of inputPaths) {
      const s = await stat(p).catch(() => null);
      if (s && s.dev === out.dev && s.ino === out.ino) {
        throw new ImageError('refusing to export over an image of the chain being read', { image: output });
      }
    }
  }
  const fh = await open(output, 'w');
  let dataBytes = 0;
  try {
    const size = img.top.virtualSize;
    const buf = Buffer.alloc(CHUNK);
    for await (const e of mapChain(img.top)) {
      if (!e.data) continue; // reads as zero: leave a hole
      for (let a = e.start; a < e.start + e.length; a += CHUNK) {
        const n = Math.min(CHUNK, e.start + e.length - a);
        const b = buf.subarray(0, n);
        await readChain(img.top, a, b);
        if (allZero(b)) continue;
        let done = 0;
        while (done < n) {
          const { bytesWritten } = await fh.write(b, done, n - done, a + done);
          done += bytesWritten;
        }
        dataBytes += n;
      }
    }
    await fh.truncate(size);
    return { output, virtualSize: size, dataBytes };
  } finally {
    await fh.close();
  }
}
