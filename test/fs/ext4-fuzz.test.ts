/**
 * Mutation fuzzing of real ext2/3/4 superblocks (mkfs.ext4): fields mutated, most often with the
 * metadata_csum checksum recomputed so the mutation reaches the checks behind it; volumes
 * truncated anywhere; random superblocks that keep only the magic. Every case must end in a
 * result that keeps the reader's promises or an Ext4Error, within a bounded number and size of
 * reads. FUZZ_SEED picks another sequence.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { crc32c } from '../../src/cbt/crc32c.ts';
import { Ext4Error, readExt4Superblock, type Ext4Superblock } from '../../src/fs/ext4/index.ts';
import { MemoryBlockSource, type BlockSource } from '../../src/qcow2/index.ts';
import { randInt, rng, tempDir } from '../helpers/tools.ts';

class CountingSource implements BlockSource {
  readonly name = 'fuzz.ext4';
  readonly identity = 'fuzz';
  reads = 0;
  largest = 0;
  readonly #inner: MemoryBlockSource;
  constructor(bytes: Buffer) {
    this.#inner = new MemoryBlockSource('fuzz.ext4', bytes);
  }
  get size(): number {
    return this.#inner.size;
  }
  read(buf: Uint8Array, position: number): Promise<number> {
    this.reads++;
    this.largest = Math.max(this.largest, buf.length);
    return this.#inner.read(buf, position);
  }
  async close(): Promise<void> {}
}

/** ext4's superblock checksum: CRC-32C without the final inversion over bytes 0..0x3FB. */
function fixChecksum(sb: Buffer): void {
  sb.writeUInt32LE(~crc32c(sb.subarray(0, 0x3fc)) >>> 0, 0x3fc);
}

/** What every accepted superblock must satisfy, whatever the bytes. */
function promises(sb: Ext4Superblock, bytes: Buffer): string | null {
  if (!Number.isInteger(Math.log2(sb.blockSize)) || sb.blockSize < 1024 || sb.blockSize > 65536) return `block size ${sb.blockSize}`;
  if (!Number.isSafeInteger(sb.blocksCount) || sb.blocksCount < 1 || sb.blocksCount * sb.blockSize > bytes.length) return `${sb.blocksCount} blocks of ${sb.blockSize} in ${bytes.length} bytes`;
  if (sb.firstDataBlock >= sb.blocksCount) return `first data block ${sb.firstDataBlock}`;
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(sb.uuid)) return `uuid ${sb.uuid}`;
  if (sb.serial !== bytes.readBigUInt64LE(1024 + 0x68)) return `serial 0x${sb.serial.toString(16)}`;
  if (sb.volumeName.length > 16) return `volume name ${JSON.stringify(sb.volumeName)}`;
  if (!['ext2', 'ext3', 'ext4'].includes(sb.kind)) return `kind ${sb.kind}`;
  return null;
}

test('fuzz: mutated and truncated superblocks give a sound result or Ext4Error', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-ext4-fuzz-');
  t.teardown(cleanup);
  const images: Buffer[] = [];
  for (const [name, args] of [
    ['csum', ['-b', '4096', '-L', 'fuzz']],
    ['nocsum', ['-b', '1024', '-O', '^metadata_csum,^64bit']],
    ['ext3', ['-t', 'ext3']],
  ] as const) {
    const p = join(dir, `${name}.ext4`);
    await execa('truncate', ['-s', '8M', p]);
    await execa('mkfs.ext4', ['-q', '-F', ...args, p]);
    // The superblock is all the reader looks at: keep the first 64 KiB plus the volume's length as zeros.
    const full = await readFile(p);
    images.push(Buffer.concat([full.subarray(0, 65536), Buffer.alloc(full.length - 65536)]));
  }
  const work = images.map((i) => Buffer.from(i));
  const seed = Number(process.env.FUZZ_SEED ?? 20261203);
  const r = rng(seed);
  const cases = 20000;
  const failures: string[] = [];
  let accepted = 0;
  let rejected = 0;
  // The fields the reader looks at, and values near their limits.
  const fields = [0x04, 0x14, 0x18, 0x38, 0x39, 0x3a, 0x4c, 0x5c, 0x60, 0x64, 0x68, 0x6f, 0x78, 0x80, 0x87, 0x150, 0x153, 0x175, 0x3fc];
  const interesting = [0, 1, 2, 5, 6, 7, 0x10, 0x40, 0x7f, 0x80, 0xef, 0x53, 0xff];
  for (let c = 0; c < cases; c++) {
    const which = randInt(r, 0, images.length - 1);
    const pristine = images[which];
    // Mutated in place and restored after the case: a copy of 8 MiB per case would dominate.
    let b = work[which];
    const sb = b.subarray(1024, 2048);
    const pick = r();
    if (pick < 0.75) {
      const edits = randInt(r, 1, 4);
      for (let e = 0; e < edits; e++) {
        const at = r() < 0.7 ? fields[randInt(r, 0, fields.length - 1)] + randInt(r, 0, 3) : randInt(r, 0, 1023);
        const kind = randInt(r, 0, 3);
        if (kind === 0) sb[at % 1024] ^= 1 << randInt(r, 0, 7);
        else if (kind === 1) sb[at % 1024] = interesting[randInt(r, 0, interesting.length - 1)];
        else if (at + 4 <= 1024) sb.writeUInt32LE(r() < 0.5 ? randInt(r, 0, 0xffffffff) : randInt(r, 0, 70000), at);
        else sb[at % 1024] = randInt(r, 0, 255);
      }
      if (r() < 0.75) fixChecksum(sb);
    } else if (pick < 0.9) {
      b = b.subarray(0, r() < 0.5 ? randInt(r, 0, 4096) : randInt(r, 0, b.length));
    } else {
      for (let i = 0; i < 1024; i++) sb[i] = randInt(r, 0, 255);
      sb.writeUInt16LE(0xef53, 0x38);
      if (r() < 0.5) sb.writeUInt32LE(randInt(r, 0, 6), 0x18);
      if (r() < 0.5) sb.writeUInt32LE(randInt(r, 1, 2048), 0x04);
      if (r() < 0.5) sb.writeUInt32LE(0, 0x14);
      fixChecksum(sb);
    }
    const src = new CountingSource(b);
    const started = performance.now();
    try {
      const result = await readExt4Superblock(src);
      const broken = promises(result, b);
      if (broken) failures.push(`seed=${seed} case ${c}: accepted with ${broken}`);
      accepted++;
    } catch (error) {
      if (!(error instanceof Ext4Error)) failures.push(`seed=${seed} case ${c}: ${(error as Error).stack?.split('\n').slice(0, 3).join(' | ')}`);
      rejected++;
    }
    if (src.reads > 2 || src.largest > 4096) failures.push(`seed=${seed} case ${c}: ${src.reads} reads, largest ${src.largest} bytes`);
    if (performance.now() - started > 1000) failures.push(`seed=${seed} case ${c}: took ${Math.round(performance.now() - started)} ms`);
    pristine.copy(work[which], 1024, 1024, 2048);
  }
  t.log(`seed ${seed}: ${accepted} accepted, ${rejected} hit an Ext4Error`);
  t.deepEqual(failures.slice(0, 20), []);
  t.true(accepted > 2000 && rejected > 2000, `${accepted} accepted, ${rejected} rejected`);
});
