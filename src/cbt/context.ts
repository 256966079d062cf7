/**
 * A DecodeContext over an opened image: the guest-visible disk, its partitions, NTFS lookup and
 * volume serials, all read-only. Partition, NTFS and file-system detection are supplied as
 * providers (src/disk, src/fs/ntfs, src/fs/ext4 by default; tests may pass their own).
 */
import { guestDisk, SliceBlockSource, type BlockSource, type OpenedImage } from '../qcow2/index.ts';
import { DecoderOptionError, type DecodeContext, type DecodeVolume, type DetectedFs, type NtfsAccess, type VolumeSerial } from './decoder.ts';

export interface DiskProviders {
  /** Partitions of a disk (empty array when it has no partition table). */
  readVolumes(disk: BlockSource): Promise<DecodeVolume[]>;
  /** NTFS on a volume's bytes. */
  openNtfs(volume: BlockSource): Promise<NtfsAccess>;
  /** Which file system a volume's bytes hold (its signature, then its superblock for ext2/3/4). */
  detectFs(volume: BlockSource): Promise<DetectedFs>;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

function bytes(text: string, what: string): number {
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new DecoderOptionError(`Expected ${what} in bytes (e.g. 1048576 or 1MiB), got \`${text}\``);
  return Number(m[1]) * unit;
}

/** `disk` defaults to the guest-visible disk of the image's top layer. */
export function createDecodeContext(image: OpenedImage, options: Record<string, string>, providers: DiskProviders, disk: BlockSource = guestDisk(image.top)): DecodeContext {
  let volumes: Promise<DecodeVolume[]> | undefined;
  const ntfsCache = new Map<string, Promise<NtfsAccess>>();
  const serialCache = new Map<string, Promise<VolumeSerial>>();
  const slice = (v: { offset: number; length: number }) => new SliceBlockSource(disk, v.offset, v.length, `${disk.name} [${v.offset}+${v.length}]`);
  const ctx: DecodeContext = {
    image,
    disk,
    options: Object.freeze({ ...options }),
    volumes() {
      volumes ??= providers.readVolumes(disk);
      return volumes;
    },
    async volume(number: number) {
      const all = await ctx.volumes();
      const v = all.find((x) => x.number === number);
      if (!v) throw new DecoderOptionError(`the disk has no partition ${number} (partitions: ${all.map((x) => x.number).join(', ') || 'none'})`);
      return v;
    },
    async ntfs(volume) {
      const v = typeof volume === 'number' ? await ctx.volume(volume) : volume;
      const key = `${v.offset}:${v.length}`;
      let p = ntfsCache.get(key);
      if (!p) {
        p = providers.openNtfs(slice(v));
        ntfsCache.set(key, p);
      }
      return p;
    },
    async volumeSerial(volume) {
      const v = typeof volume === 'number' ? await ctx.volume(volume) : volume;
      const key = `${v.offset}:${v.length}`;
      let p = serialCache.get(key);
      if (!p) {
        p = (async (): Promise<VolumeSerial> => {
          const found = await providers.detectFs(slice(v));
          if (found.fs === 'ntfs') return { fs: 'ntfs', serial: (await ctx.ntfs(v)).serial, name: 'ntfs' };
          if (found.fs === 'ext4') return { fs: 'ext4', serial: found.serial, name: found.name };
          return { fs: 'none', serial: 0n, name: null };
        })();
        serialCache.set(key, p);
      }
      return p;
    },
    async region(spec: string, what: string) {
      const i = spec.indexOf(':');
      let r: { offset: number; length: number };
      if (i < 0) {
        const n = Number(spec);
        if (!/^\d+$/.test(spec.trim()) || n < 1) throw new DecoderOptionError(`Expected \`${what}\` to be a partition number or <offset>:<length>, got \`${spec}\``);
        const v = await ctx.volume(n);
        r = { offset: v.offset, length: v.length };
      } else {
        r = { offset: bytes(spec.slice(0, i), `${what} offset`), length: bytes(spec.slice(i + 1), `${what} length`) };
      }
      if (r.length === 0 || r.offset + r.length > disk.size) {
        throw new DecoderOptionError(`\`${what}\` region ${r.offset}:${r.length} does not fit the ${disk.size}-byte disk`);
      }
      return r;
    },
  };
  return ctx;
}
