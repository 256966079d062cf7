/**
 * Open an image and its whole backing chain, read-only: format probe, relative backing names
 * resolved against the overlay's folder (as QEMU's path_combine does), loops and excessive
 * depth refused, external data files opened beside the image.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { FileBlockSource, type BlockSource } from './block-source.ts';
import { ImageOpenError, Qcow2FormatError, Qcow2UnsupportedError } from './errors.ts';
import { hasQcow2Magic } from './header.ts';
import type { Layer } from './layer.ts';
import { Qcow2Image, Qcow2Layer } from './qcow2-image.ts';
import { RawLayer } from './raw-image.ts';

export type ImageFormat = 'qcow2' | 'raw';

export interface OpenOptions {
  /** Force the format of the top image instead of probing. */
  format?: ImageFormat | undefined;
  /** Open the top image as of this internal snapshot (name or id). */
  snapshot?: string | undefined;
  /**
   * Deepest backing chain accepted (the top image is depth 0).
   * @default 64
   */
  maxDepth?: number | undefined;
  /** How to open a path; tests and remote executors swap this. @default FileBlockSource.open */
  openSource?: ((path: string) => Promise<BlockSource>) | undefined;
}

/** An opened chain. `layers[0]` is the top; `layers[i].backing === layers[i + 1]`. */
export interface OpenedImage {
  readonly top: Layer;
  readonly layers: Layer[];
  /** The qcow2 file behind each layer (null for raw layers). */
  readonly qcow2: Array<Qcow2Image | null>;
  /** Backing names as QEMU's "full-backing-filename" spells them, top first. */
  readonly backingNames: string[];
  close(): Promise<void>;
}

const PROTOCOLS = /^(json|nbd|nbd\+unix|nbd\+tcp|http|https|ftp|ftps|ssh|iscsi|rbd|gluster|nfs|vxhs|sheepdog|blkdebug|blkverify|null-co|null-aio|host_device|host_cdrom|vvfat|fat|quorum|throttle|copy-on-read|compress|preallocate|replication|luks|vmdk|vdi|vpc|vhdx|qed|parallels|bochs|cloop|dmg):/;

/** QEMU's path_combine(): a relative name is taken relative to the folder part of `base` as given. */
export function pathCombine(base: string, name: string): string {
  if (isAbsolute(name)) return name;
  const slash = base.lastIndexOf('/');
  if (slash < 0) return name;
  return base.slice(0, slash + 1) + name;
}

function checkName(name: string, referrer: string, what: string): string {
  if (name.startsWith('file:')) return name.slice(5);
  if (PROTOCOLS.test(name)) {
    throw new Qcow2UnsupportedError(`${what} ${JSON.stringify(name)} uses a protocol; only local files are supported`, { image: referrer });
  }
  if (name.length === 0) throw new Qcow2FormatError(`${what} name is empty`, { image: referrer });
  return name;
}

export async function openImage(path: string, options: OpenOptions = {}): Promise<OpenedImage> {
  const maxDepth = options.maxDepth ?? 64;
  const openSource = options.openSource ?? FileBlockSource.open;
  const sources: BlockSource[] = [];
  const qcow2: Array<Qcow2Image | null> = [];
  const formats: ImageFormat[] = [];
  const backingNames: string[] = [];
  const seen = new Map<string, string>();
  const closeAll = async () => {
    for (const q of qcow2) if (q && q.dataSource !== q.src) await q.dataSource.close().catch(() => {});
    for (const s of sources) await s.close().catch(() => {});
  };
  try {
    let current = path;
    let shown = path;
    let format: ImageFormat | null = options.format ?? null;
    let referrer: string | null = null;
    for (let depth = 0; ; depth++) {
      if (depth > maxDepth) {
        throw new Qcow2FormatError(`backing chain is deeper than ${maxDepth} images`, { image: path });
      }
      let src: BlockSource;
      try {
        src = await openSource(current);
      } catch (error) {
        if (referrer !== null && error instanceof ImageOpenError) {
          throw new ImageOpenError(`backing file ${JSON.stringify(current)} cannot be opened`, { image: referrer, cause: error });
        }
        throw error;
      }
      sources.push(src);
      const prior = seen.get(src.identity);
      if (prior !== undefined) {
        throw new Qcow2FormatError(`backing chain loops: ${JSON.stringify(current)} is the same file as ${JSON.stringify(prior)}`, { image: referrer ?? path });
      }
      seen.set(src.identity, current);
      const isQcow2 = await hasQcow2Magic(src);
      const fmt: ImageFormat = format ?? (isQcow2 ? 'qcow2' : 'raw');
      if (fmt === 'qcow2' && !isQcow2) {
        throw new Qcow2FormatError('expected a qcow2 image (bad magic)', { image: current, offset: 0 });
      }
      formats.push(fmt);
      if (fmt === 'raw') {
        qcow2.push(null);
        break;
      }
      const imgPath = current;
      const q = await Qcow2Image.open(src, async (name) => {
        if (name === null) {
          throw new Qcow2UnsupportedError('the image needs an external data file but does not name one', { image: imgPath });
        }
        // QEMU 7.2 opens a relative data file name from its working directory; a harness moving
        // images around keeps it beside the image. Try beside the image first, then the cwd.
        const n = checkName(name, imgPath, 'data file');
        const candidates = isAbsolute(n) ? [n] : [resolve(dirname(imgPath), n), resolve(n)];
        try {
          return await openSource(candidates[0]);
        } catch (error) {
          if (candidates.length > 1) {
            const fallback = await openSource(candidates[1]).catch(() => null);
            if (fallback) return fallback;
          }
          throw new ImageOpenError(`external data file ${JSON.stringify(name)} cannot be opened`, { image: imgPath, cause: error });
        }
      });
      qcow2.push(q);
      const b = q.header.backingFile;
      if (b === null) break;
      if (q.header.dataFileRaw) {
        throw new Qcow2FormatError('a raw external data file cannot have a backing file', { image: imgPath });
      }
      const bname = checkName(b, imgPath, 'backing file');
      shown = pathCombine(shown, bname);
      backingNames.push(shown);
      const bf = q.header.backingFormat;
      if (bf !== null && bf !== 'qcow2' && bf !== 'raw') {
        throw new Qcow2UnsupportedError(`backing file format ${JSON.stringify(bf)} is not supported (qcow2, raw)`, { image: imgPath });
      }
      format = bf as ImageFormat | null;
      referrer = imgPath;
      current = isAbsolute(bname) ? bname : resolve(dirname(imgPath), bname);
    }
    // Build layers bottom-up so each knows its backing.
    const layers: Layer[] = new Array(formats.length);
    let below: Layer | null = null;
    for (let i = formats.length - 1; i >= 0; i--) {
      const q = qcow2[i];
      const layer: Layer = q ? q.layer(below, i === 0 ? options.snapshot : undefined) : new RawLayer(sources[i]);
      if (i === 0 && options.snapshot !== undefined && !q) {
        throw new Qcow2UnsupportedError('snapshots exist only in qcow2 images', { image: path });
      }
      layers[i] = layer;
      below = layer;
    }
    return {
      top: layers[0],
      layers,
      qcow2,
      backingNames,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

export { Qcow2Layer };
