// A decoder plugin for a hypothetical tracker that keeps a plain-text list of changed 1 MiB
// blocks in a file on an NTFS volume ("12\n13\n40\n", and "LOST" on the first line when its
// state is not trustworthy). Run it with:
//
//   cbt-harness cbt decode top.qcow2 --decoder ./docs/examples/sidecar-decoder.js \
//       --opt volume=2 --opt path=/cbt/changed.txt --json
//
// The context gives read-only access to the guest-visible disk (ctx.disk.read(buf, offset)), its
// partitions (ctx.volumes(), ctx.volume(n)), NTFS lookup (ctx.ntfs(n).lookup(path) → extents) and
// the --opt values (ctx.options). decode() returns a Claim (see docs/decoders.md).

export const name = 'sidecar-list';
export const description = 'changed 1 MiB blocks listed one per line in a text file';

export async function decode(ctx) {
  const volumeNo = Number(ctx.options.volume ?? '1');
  const volume = await ctx.volume(volumeNo);
  const ntfs = await ctx.ntfs(volumeNo);
  const file = await ntfs.lookup(ctx.options.path ?? '/cbt/changed.txt');
  // Read the file through its extents, as a driver writing raw to them would have.
  const bytes = Buffer.alloc(file.size);
  for (const e of file.extents) {
    const n = Math.min(e.length, file.size - e.fileOffset);
    if (n > 0) await ctx.disk.read(bytes.subarray(e.fileOffset, e.fileOffset + n), volume.offset + e.offset);
  }
  // The text ends at the first NUL: the rest of the pre-allocated file is whatever was there.
  const end = bytes.indexOf(0);
  const lines = bytes.subarray(0, end < 0 ? bytes.length : end).toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  const granularity = 1 << 20;
  const excluded = file.extents.map((e) => [volume.offset + e.offset, e.length]);
  if (lines[0] === 'LOST') {
    return { decoder: name, state: 'lost', reason: 'the tracker wrote LOST', granularity, volume: { offset: volume.offset, length: volume.length }, blocks: [], excluded };
  }
  const ids = [...new Set(lines.filter((l) => /^\d+$/.test(l)).map(Number))].sort((a, b) => a - b);
  const blocks = [];
  for (const id of ids) {
    const last = blocks.at(-1);
    if (last && last[0] + last[1] === id) last[1]++;
    else blocks.push([id, 1]);
  }
  return { decoder: name, state: 'valid', reason: null, granularity, volume: { offset: volume.offset, length: volume.length }, blocks, excluded };
}
