/** `cbt-harness image …`: info, map, export, diff (DESIGN.md "CLI contract"). */
import { Command } from 'commander';
import { mapChain, openImage, type OpenedImage, type Qcow2Image } from '../qcow2/index.ts';
import { diffImages } from '../truth/index.ts';
import { exportImage } from './image-export.ts';
import { printJson, printJsonArray, printText } from './output.ts';
import { parseFormat, parsePositiveBytes, parseRange } from './parse.ts';

interface OpenFlags {
  format?: 'qcow2' | 'raw';
  snapshot?: string;
}

export interface ImageInfo {
  format: 'qcow2' | 'raw';
  virtualSize: number;
  clusterSize: number | null;
  version: number | null;
  backingChain: string[];
  snapshots: Array<{ id: string; name: string; virtualSize: number }>;
  bitmaps: Array<{ name: string; granularity: number; inUse: boolean; auto: boolean }>;
  dirty: boolean;
  corrupt: boolean;
  compressionType: 'zlib' | 'zstd' | null;
  extendedL2: boolean;
}

export function imageInfo(img: OpenedImage): ImageInfo {
  const q: Qcow2Image | null = img.qcow2[0];
  if (!q) {
    return { format: 'raw', virtualSize: img.top.virtualSize, clusterSize: null, version: null, backingChain: [], snapshots: [], bitmaps: [], dirty: false, corrupt: false, compressionType: null, extendedL2: false };
  }
  const h = q.header;
  return {
    format: 'qcow2',
    virtualSize: img.top.virtualSize,
    clusterSize: h.clusterSize,
    version: h.version,
    backingChain: img.backingNames,
    snapshots: q.snapshots.map((s) => ({ id: s.id, name: s.name, virtualSize: s.virtualSize })),
    // QEMU disregards the bitmaps extension when its autoclear bit is clear (written by a
    // program unaware of bitmaps); `qemu-img info` then lists none, and neither do we.
    bitmaps: h.bitmapsConsistent ? q.bitmaps.map((b) => ({ name: b.name, granularity: b.granularity, inUse: b.inUse, auto: b.auto })) : [],
    dirty: h.dirty,
    corrupt: h.corrupt,
    compressionType: h.compressionType,
    extendedL2: h.extendedL2,
  };
}

async function withImage<T>(path: string, flags: OpenFlags, fn: (img: OpenedImage) => Promise<T>): Promise<T> {
  const img = await openImage(path, { format: flags.format, snapshot: flags.snapshot });
  try {
    return await fn(img);
  } finally {
    await img.close();
  }
}

function human(info: ImageInfo, path: string): string {
  const lines = [`image: ${path}`, `format: ${info.format}${info.version ? ` v${info.version}` : ''}`, `virtual size: ${info.virtualSize}`];
  if (info.clusterSize) lines.push(`cluster size: ${info.clusterSize}`);
  for (const b of info.backingChain) lines.push(`backing: ${b}`);
  for (const s of info.snapshots) lines.push(`snapshot ${s.id}: ${s.name} (${s.virtualSize} bytes)`);
  for (const b of info.bitmaps) lines.push(`bitmap ${b.name}: granularity ${b.granularity}${b.inUse ? ', in use' : ''}${b.auto ? ', auto' : ''}`);
  if (info.compressionType) lines.push(`compression: ${info.compressionType}`);
  if (info.extendedL2) lines.push('extended L2: yes');
  if (info.dirty) lines.push('dirty: yes');
  if (info.corrupt) lines.push('corrupt: yes');
  return lines.join('\n');
}

export function imageCommand(): Command {
  const image = new Command('image').description('read qcow2/raw images offline (never writes to them)');

  image
    .command('info')
    .argument('<img>', 'image path')
    .option('--json', 'one JSON document on stdout')
    .option('-f, --format <fmt>', 'qcow2 or raw (default: probe)', parseFormat)
    .description('header facts: size, clusters, backing chain, snapshots, bitmaps, flags')
    .action(async (path: string, flags: OpenFlags & { json?: boolean }) => {
      const info = await withImage(path, flags, async (img) => imageInfo(img));
      if (flags.json) await printJson(info);
      else await printText(human(info, path));
    });

  image
    .command('map')
    .argument('<img>', 'image path')
    .option('--json', 'one JSON document on stdout')
    .option('-f, --format <fmt>', 'qcow2 or raw (default: probe)', parseFormat)
    .option('-s, --snapshot <name>', 'map the disk as of an internal snapshot (name or id)')
    .description('allocation extents, as `qemu-img map --output=json`')
    .action(async (path: string, flags: OpenFlags & { json?: boolean }) => {
      await withImage(path, flags, async (img) => {
        const merged = (async function* () {
          let cur: { start: number; length: number; data: boolean; zero: boolean; depth: number } | null = null;
          for await (const e of mapChain(img.top)) {
            if (cur && cur.data === e.data && cur.zero === e.zero && cur.depth === e.depth) {
              cur.length += e.length;
              continue;
            }
            if (cur) yield cur;
            cur = { start: e.start, length: e.length, data: e.data, zero: e.zero, depth: e.depth };
          }
          if (cur) yield cur;
        })();
        if (flags.json) {
          await printJsonArray(merged);
        } else {
          for await (const e of merged) await printText(`${e.start}\t${e.length}\tdepth=${e.depth}\t${e.data ? 'data' : ''}${e.zero ? ' zero' : ''}`);
        }
      });
    });

  image
    .command('export')
    .argument('<img>', 'image path')
    .argument('<out>', 'raw file to write (created or truncated)')
    .option('--json', 'print a summary as JSON')
    .option('-f, --format <fmt>', 'qcow2 or raw (default: probe)', parseFormat)
    .option('-s, --snapshot <name>', 'export the disk as of an internal snapshot (name or id)')
    .description('guest-visible bytes as a raw file, as `qemu-img convert -O raw`')
    .action(async (path: string, out: string, flags: OpenFlags & { json?: boolean }) => {
      const r = await withImage(path, flags, (img) => exportImage(img, out, img.layers.map((l) => l.name)));
      if (flags.json) await printJson(r);
      else await printText(`wrote ${r.virtualSize} bytes to ${out} (${r.dataBytes} bytes of data)`);
    });

  image
    .command('diff')
    .argument('<base>', 'the disk at the epoch start (a backing file of top, or any image)')
    .argument('<top>', 'the disk now')
    .requiredOption('-g, --granularity <bytes>', 'block size of the maps', (v: string) => parsePositiveBytes(v, 'granularity'))
    .option('-r, --range <off:len>', 'compare only this byte range; block 0 starts at its offset', parseRange)
    .option('--base-snapshot <name>', 'read base as of this internal snapshot')
    .option('--top-snapshot <name>', 'read top as of this internal snapshot')
    .option('--base-format <fmt>', 'qcow2 or raw (default: probe)', parseFormat)
    .option('--top-format <fmt>', 'qcow2 or raw (default: probe)', parseFormat)
    .option('--json', 'one JSON document on stdout')
    .description('changed (content differs) and written (allocated above base) blocks')
    .action(
      async (
        basePath: string,
        topPath: string,
        flags: { granularity: number; range?: { offset: number; length: number }; baseSnapshot?: string; topSnapshot?: string; baseFormat?: 'qcow2' | 'raw'; topFormat?: 'qcow2' | 'raw'; json?: boolean },
      ) => {
        const r = await withImage(basePath, { format: flags.baseFormat, snapshot: flags.baseSnapshot }, (base) =>
          withImage(topPath, { format: flags.topFormat, snapshot: flags.topSnapshot }, (top) => diffImages(base, top, { granularity: flags.granularity, range: flags.range })),
        );
        const doc = { granularity: r.granularity, changed: r.changed, written: r.written, changedBlocks: r.changedBlocks, writtenBlocks: r.writtenBlocks };
        if (flags.json) await printJson(doc);
        else await printText(`${r.changedBlocks} changed and ${r.writtenBlocks} written blocks of ${r.granularity} bytes (base is ${r.relation === 'backing' ? 'a backing file of top' : r.relation})`);
      },
    );

  return image;
}
