/**
 * Part of npm run bench:decode — a CBTF bitmap for a 2 TiB volume at 64 KiB blocks (32 Mi bits,
 * a 4 MiB bitmap with the ~96 Ki blocks the truth touches set) decoded by the cbtf decoder (CRCs, every validity rule, bitmap to
 * runs), then judged against a truth of 1 Mi changed 4 KiB blocks. Runs in a child so peak RSS is
 * the work's own. There is no reference tool for CBTF; the dm-era half (bench/decode-era.ts)
 * carries the comparison with era_invalidate.
 *
 * The disk is a sparse in-memory view (zeros except the CBTF file) and the NTFS lookup answers
 * with the file's extent: what is timed is the decoder and the verdict, not a 2 TiB image.
 */
import { bitmapFromBlocks, CBTF_FLAG_CLEAN, createDecodeContext, encodeCbtf, resolveDecoder, runDecoder, type DiskProviders } from '../src/cbt/index.ts';
import type { BlockSource, OpenedImage } from '../src/qcow2/index.ts';
import { judge } from '../src/verify/index.ts';
import type { BlockRun } from '../src/truth/index.ts';
import { mulberry32 as prng } from '../src/util/index.ts';

const TiB = 1024 ** 4;
const VOLUME = { offset: 1024 * 1024, length: 2 * TiB };
const SHIFT = 16;
const FILE_AT = VOLUME.offset + 4096 * 1000;


const nBlocks = VOLUME.length / 2 ** SHIFT;
const r = prng(7);
// Truth: 1 Mi changed 4 KiB blocks in clustered runs; the claim sets every 64 KiB block they touch.
const truth: BlockRun[] = [];
let total = 0;
let pos = 0;
while (total < 1024 * 1024) {
  pos += 1 + Math.floor(r() * 8000);
  const len = Math.min(1 + Math.floor(r() * 64), 1024 * 1024 - total);
  truth.push([pos, len]);
  pos += len;
  total += len;
}
const claimed = new Set<number>();
for (const [f, c] of truth) for (let b = Math.floor(f / 16); b <= Math.floor((f + c - 1) / 16); b++) claimed.add(b);
const file = encodeCbtf({ generation: '01234567-89ab-cdef-0123-456789abcdef', flags: CBTF_FLAG_CLEAN, granularityShift: SHIFT, volumeSize: BigInt(VOLUME.length), volumeSerial: 0xabcdefn, bitmap: bitmapFromBlocks(VOLUME.length, SHIFT, claimed) });

const disk: BlockSource = {
  name: 'sparse-2TiB',
  size: VOLUME.offset + VOLUME.length,
  identity: 'bench',
  async read(buf, position) {
    buf.fill(0);
    const a = Math.max(position, FILE_AT);
    const b = Math.min(position + buf.length, FILE_AT + file.length);
    if (a < b) buf.set(file.subarray(a - FILE_AT, b - FILE_AT), a - position);
    return Math.min(buf.length, this.size - position);
  },
  async close() {},
};
const providers: DiskProviders = {
  readVolumes: async () => [{ number: 1, ...VOLUME, type: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7', name: 'data', guid: null }],
  openNtfs: async () => ({ serial: 0xabcdefn, lookup: async () => ({ size: file.length, extents: [{ offset: FILE_AT - VOLUME.offset, length: file.length, fileOffset: 0 }] }) }),
  detectFs: async () => ({ fs: 'ntfs' }),
};
const image = { top: { virtualSize: disk.size, name: 'bench', identity: 'bench' } } as unknown as OpenedImage;

const t0 = performance.now();
const ctx = createDecodeContext(image, { volume: '1', path: '/cbt.dat' }, providers, disk);
const claim = await runDecoder(await resolveDecoder('cbtf'), ctx);
const t1 = performance.now();
const result = judge(claim, { granularity: 4096, changed: truth });
const t2 = performance.now();
if (claim.state !== 'valid' || result.verdict !== 'EXACT') throw new Error(`unexpected: ${claim.state} ${claim.reason} ${result.verdict}`);
const out = {
  volume: '2 TiB at 64 KiB (32 Mi blocks)',
  bitmapBytes: file.length - 4096,
  claimedBlocks: result.claimedBlocks,
  truthBlocks4K: total,
  decodeMs: Math.round(t1 - t0),
  verifyMs: Math.round(t2 - t1),
  verdict: result.verdict,
  peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
process.stderr.write(`cbtf decode ${out.decodeMs} ms + verify vs ${nBlocks} blocks ${out.verifyMs} ms, peak RSS ${out.peakRssMiB} MiB\n`);
