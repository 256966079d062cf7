/**
 * Mutation fuzzing of a real volume (mkntfs + ntfscp + ntfsfallocate): MFT records, INDX blocks
 * and the boot sector are mutated, most often with their fixups kept valid so the mutation
 * reaches the parsers behind them. Every case must end in a result or an NtfsError, within a
 * bounded number of reads. FUZZ_SEED picks another sequence.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { NtfsError, openNtfs } from '../../src/fs/ntfs/index.ts';
import { MemoryBlockSource, type BlockSource } from '../../src/qcow2/index.ts';
import { editWithFixups, mkntfs, ntfscp, scanIndx } from '../helpers/ntfs-fixtures.ts';
import { randInt, rng, tempDir } from '../helpers/tools.ts';

class CountingSource implements BlockSource {
  readonly name = 'fuzz.ntfs';
  readonly identity = 'fuzz';
  reads = 0;
  readonly #inner: MemoryBlockSource;
  constructor(bytes: Buffer) {
    this.#inner = new MemoryBlockSource('fuzz.ntfs', bytes);
  }
  get size(): number {
    return this.#inner.size;
  }
  read(buf: Uint8Array, position: number): Promise<number> {
    this.reads++;
    return this.#inner.read(buf, position);
  }
  async close(): Promise<void> {}
}

const PATHS = ['/small.txt', '/Name_33.txt', '/frag.bin', '/sub.bin', '/NAME_7.TXT', '/missing'];

test('fuzz: mutated MFT records, index blocks and boot sector give a result or NtfsError', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-ntfs-fuzz-');
  t.teardown(cleanup);
  const img = await mkntfs(join(dir, 'fuzz.ntfs'), 8);
  const put = async (name: string, content: Buffer): Promise<void> => {
    const p = join(dir, `src-${name}`);
    await writeFile(p, content);
    await ntfscp(img, p, name);
  };
  await put('small.txt', Buffer.from('small\n'));
  await put('sub.bin', Buffer.alloc(200_000, 0x5a));
  for (let i = 0; i < 60; i++) await put(`Name_${i}.txt`, Buffer.alloc(1200, i));
  await put('frag.bin', Buffer.alloc(0));
  await put('pad.bin', Buffer.alloc(0));
  for (let k = 0; k < 8; k++) {
    await execa('ntfsfallocate', ['-o', String(k * 16384), '-l', '16384', img, '/frag.bin']);
    await execa('ntfsfallocate', ['-o', String(k * 16384), '-l', '16384', img, '/pad.bin']);
  }
  const pristine = await readFile(img);
  const vol = await openNtfs(new MemoryBlockSource('pristine', pristine));
  const mft = await vol.lookup('/$MFT');
  const recSize = vol.mftRecordSize;
  const records: number[] = [];
  for (let n = 0; n * recSize < mft.size; n++) {
    const pos = n * recSize;
    const e = mft.extents.find((x) => x.fileOffset <= pos && pos < x.fileOffset + x.length);
    if (e && pristine.toString('latin1', e.offset + pos - e.fileOffset, e.offset + pos - e.fileOffset + 4) === 'FILE') records.push(e.offset + pos - e.fileOffset);
  }
  const indx = scanIndx(pristine);
  t.true(records.length > 70 && indx.length > 0, `${records.length} records, ${indx.length} index blocks`);

  const seed = Number(process.env.FUZZ_SEED ?? 20261125);
  const r = rng(seed);
  const cases = 3000;
  const b = Buffer.from(pristine);
  const failures: string[] = [];
  let accepted = 0;
  let rejected = 0;
  const interesting = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x18, 0x20, 0x30, 0x40, 0x80, 0x90, 0xa0];
  const mutate = (s: Buffer): void => {
    const edits = randInt(r, 1, 4);
    for (let e = 0; e < edits; e++) {
      // Headers hold most fields: bias towards the first 0x100 bytes.
      const at = r() < 0.6 ? randInt(r, 0, Math.min(0xff, s.length - 1)) : randInt(r, 0, s.length - 1);
      const kind = randInt(r, 0, 3);
      if (kind === 0) s[at] ^= 1 << randInt(r, 0, 7);
      else if (kind === 1) s[at] = interesting[randInt(r, 0, interesting.length - 1)];
      else if (kind === 2 && at + 2 <= s.length) s.writeUInt16LE(randInt(r, 0, 0xffff), at);
      else if (at + 4 <= s.length) s.writeUInt32LE(r() < 0.5 ? randInt(r, 0, 0xffffffff) : randInt(r, 0, 4096), at);
    }
  };
  for (let c = 0; c < cases; c++) {
    const pick = r();
    let off: number;
    let size: number;
    if (pick < 0.55) [off, size] = [records[randInt(r, 0, records.length - 1)], recSize];
    else if (pick < 0.95) [off, size] = [indx[randInt(r, 0, indx.length - 1)], 4096];
    else [off, size] = [0, 512];
    if (off !== 0 && r() < 0.75) editWithFixups(b, off, size, mutate);
    else mutate(b.subarray(off, off + size));
    const src = new CountingSource(b);
    let ok = true;
    try {
      const v = await openNtfs(src);
      for (const p of PATHS) {
        try {
          const f = await v.lookup(p);
          await f.read({ maxBytes: 1024 * 1024 });
        } catch (error) {
          if (!(error instanceof NtfsError)) throw error;
          if (p !== '/missing') ok = false;
        }
      }
    } catch (error) {
      ok = false;
      if (!(error instanceof NtfsError)) failures.push(`seed=${seed} case ${c} at ${off}: ${(error as Error).stack?.split('\n').slice(0, 3).join(' | ')}`);
    }
    if (ok) accepted++;
    else rejected++;
    if (src.reads > 5000) failures.push(`seed=${seed} case ${c} at ${off}: ${src.reads} reads`);
    pristine.copy(b, off, off, off + size);
  }
  t.log(`seed ${seed}: ${accepted} cases read every path, ${rejected} hit an NtfsError`);
  t.deepEqual(failures, []);
  t.true(accepted > 300 && rejected > 300, `${accepted} accepted, ${rejected} rejected`);
});
