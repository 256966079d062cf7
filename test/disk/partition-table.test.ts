/**
 * Partition tables made by sgdisk and sfdisk, read back and compared with what those tools say
 * (`sgdisk -i N`, `sfdisk --json`); damaged copies; a qcow2 disk; a mutation fuzzer.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import test from 'ava';
import { execa } from 'execa';
import { findVolume, PartitionTableError, readPartitionTable, type PartitionTable } from '../../src/disk/index.ts';
import { FileBlockSource, MemoryBlockSource, guestDisk, openImage, type BlockSource } from '../../src/qcow2/index.ts';
import { makeGptDisk, makeSfdiskDisk, sfdiskOracle, sgdiskOracle, type OracleVolume } from '../helpers/disk-fixtures.ts';
import { randInt, rng, tempDir } from '../helpers/tools.ts';

let dir = '';
let cleanup: () => Promise<void> = async () => {};
let gptDisk = '';
let mbrDisk = '';

test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-disk-'));
  // Gaps in the numbering (3 and 6 unused), names with non-ASCII, several type codes.
  gptDisk = await makeGptDisk(dir, 'gpt.raw', 64, [
    { number: 1, size: '+4M', code: 'ef00', name: 'EFI system' },
    { number: 2, size: '+8M', code: '0700', name: 'Basic data partition' },
    { number: 4, size: '+3M', code: '8300', name: 'Linux «root» ü' },
    { number: 5, size: '+1M', code: '0c01', name: 'MSR' },
    { number: 7, size: '+5M', code: '8e00', name: '' },
  ]);
  // Two primaries, an extended partition with four logicals, a primary after it.
  mbrDisk = await makeSfdiskDisk(dir, 'mbr.raw', 64, [
    'label: dos',
    'start=2048, size=4096, type=7, bootable',
    'start=6144, size=8192, type=83',
    'start=16384, size=81920, type=f',
    'start=100352, size=20480, type=c',
    'start=18432, size=6144, type=7',
    'start=26624, size=2048, type=83',
    'start=30720, size=10240, type=82',
    'start=43008, size=4096, type=b',
    '',
  ].join('\n'));
});
test.after.always(async () => cleanup());

async function readFile_(path: string, options?: Parameters<typeof readPartitionTable>[1]): Promise<PartitionTable> {
  const src = await FileBlockSource.open(path);
  try {
    return await readPartitionTable(src, options);
  } finally {
    await src.close();
  }
}

function strip(t: PartitionTable): OracleVolume[] {
  return t.volumes.map(({ number, offset, length, type, guid, name }) => ({ number, offset, length, type, guid, name }));
}

async function patch(path: string, offset: number, bytes: number[]): Promise<void> {
  const b = await readFile(path);
  for (let i = 0; i < bytes.length; i++) b[offset + i] = bytes[i];
  await writeFile(path, b);
}

test('GPT made by sgdisk matches sgdisk -i for every partition', async (t) => {
  const oracle = await sgdiskOracle(gptDisk);
  const table = await readFile_(gptDisk);
  t.is(table.scheme, 'gpt');
  t.is(table.diskGuid, oracle.diskGuid);
  t.deepEqual(table.warnings, []);
  t.deepEqual(strip(table), oracle.volumes);
  t.deepEqual(table.volumes.map((v) => v.number), [1, 2, 4, 5, 7]);
  t.is(findVolume(table, 4)?.name, 'Linux «root» ü');
  t.is(findVolume(table, 3), undefined);
  t.true(table.volumes.every((v) => v.scheme === 'gpt'));
});

test('damaged primary GPT header: the backup is used and a warning says so', async (t) => {
  const copy = join(dir, 'gpt-bad-primary.raw');
  await execa('cp', [gptDisk, copy]);
  await patch(copy, 512 + 40, [0x99]); // first usable LBA, covered by the header CRC
  const table = await readFile_(copy);
  t.deepEqual(strip(table), (await sgdiskOracle(gptDisk)).volumes);
  t.is(table.warnings.length, 1);
  t.regex(table.warnings[0], /primary GPT at LBA 1 is damaged \(header CRC32.*used the backup GPT at LBA 131071/);
});

test('damaged primary entry array: the backup is used', async (t) => {
  const copy = join(dir, 'gpt-bad-entries.raw');
  await execa('cp', [gptDisk, copy]);
  await patch(copy, 1024 + 128 + 56, [0x41]); // a byte of entry 2's name
  const table = await readFile_(copy);
  t.deepEqual(strip(table), (await sgdiskOracle(gptDisk)).volumes);
  t.regex(table.warnings.join('\n'), /entry array CRC32/);
});

test('damaged backup only: the primary is used and the backup damage is reported', async (t) => {
  const copy = join(dir, 'gpt-bad-backup.raw');
  await execa('cp', [gptDisk, copy]);
  await patch(copy, 64 * 1024 * 1024 - 512, [0x45, 0x46, 0x49, 0x21]);
  const table = await readFile_(copy);
  t.deepEqual(strip(table), (await sgdiskOracle(gptDisk)).volumes);
  t.regex(table.warnings.join('\n'), /backup GPT at LBA 131071 is damaged \(no "EFI PART" signature\)/);
});

test('both GPT copies damaged under a protective MBR: PartitionTableError naming both', async (t) => {
  const copy = join(dir, 'gpt-bad-both.raw');
  await execa('cp', [gptDisk, copy]);
  await patch(copy, 512 + 16, [0, 0, 0, 0]);
  await patch(copy, 64 * 1024 * 1024 - 512 + 84, [0x10, 0, 0, 0]);
  const err = await t.throwsAsync(readFile_(copy), { instanceOf: PartitionTableError });
  t.regex(err!.message, /gpt-bad-both\.raw at offset 512.*both GPT copies are damaged: primary at LBA 1: header CRC32.*backup at LBA 131071: /);
  t.is(err!.name, 'PartitionTableError');
});

test('MBR made by sfdisk: primaries, extended chain of logicals, numbers as sfdisk --json', async (t) => {
  const oracle = await sfdiskOracle(mbrDisk);
  const table = await readFile_(mbrDisk);
  t.is(table.scheme, 'mbr');
  t.is(table.diskGuid, null);
  t.is(table.diskSignature, oracle.id);
  t.deepEqual(table.warnings, []);
  const expected = [...oracle.volumes].sort((a, b) => a.number - b.number);
  t.deepEqual(strip(table), expected);
  t.deepEqual(table.volumes.map((v) => v.number), [1, 2, 4, 5, 6, 7, 8]);
  t.is(findVolume(table, 7)?.type, '0x82');
});

test('an EBR chain that loops back ends with a warning, keeping what was found', async (t) => {
  const copy = join(dir, 'mbr-loop.raw');
  await execa('cp', [mbrDisk, copy]);
  // Walk the chain from the extended partition's start (LBA 16384), then make the last EBR
  // (logical 8's) link back to the second one.
  const b = await readFile(copy);
  const ebrs: number[] = [];
  let ebr = 16384;
  for (let i = 0; i < 4; i++) {
    ebrs.push(ebr);
    const link = b.readUInt32LE(ebr * 512 + 446 + 16 + 8);
    if (b[ebr * 512 + 446 + 16 + 4] === 0) break;
    ebr = 16384 + link;
  }
  t.is(ebrs.length, 4);
  const last = ebrs[3] * 512 + 446 + 16;
  b[last + 4] = 0x05;
  b.writeUInt32LE(ebrs[1] - 16384, last + 8);
  b.writeUInt32LE(4096, last + 12);
  await writeFile(copy, b);
  const table = await readFile_(copy);
  t.deepEqual(table.volumes.map((v) => v.number), [1, 2, 4, 5, 6, 7, 8]);
  t.regex(table.warnings.join('\n'), /EBR chain loops back to LBA 24576; stopped/);
});

test('4096-byte sectors: GPT and MBR laid out by sfdisk on a 4096-byte loop device', async (t) => {
  const gpt = await makeSfdiskDisk(dir, 'gpt4k.raw', 64, 'label: gpt\nsize=1M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI"\nsize=8M, name="data"\nsize=2M\n', 4096);
  const o = await sfdiskOracle(gpt, 4096);
  const table = await readFile_(gpt, { sectorSize: 4096 });
  t.is(table.scheme, 'gpt');
  t.deepEqual(strip(table), o.volumes);
  t.deepEqual(table.warnings, []);
  // Without the option, a protective MBR with no 512-byte GPT makes the reader try 4096.
  const probed = await readFile_(gpt);
  t.is(probed.sectorSize, 4096);
  t.deepEqual(strip(probed), o.volumes);
  t.deepEqual(probed.warnings, ['no GPT with 512-byte sectors; found one with 4096-byte sectors and used it']);
  // Told 512, it does not guess.
  await t.throwsAsync(readFile_(gpt, { sectorSize: 512 }), { instanceOf: PartitionTableError, message: /protective/ });

  const mbr = await makeSfdiskDisk(dir, 'mbr4k.raw', 64, 'label: dos\nstart=256, size=1024, type=7\nstart=2048, size=8192, type=5\nstart=2304, size=1024, type=83\nstart=3584, size=512, type=7\n', 4096);
  const om = await sfdiskOracle(mbr, 4096);
  const tm = await readFile_(mbr, { sectorSize: 4096 });
  t.deepEqual(strip(tm), [...om.volumes].sort((a, b) => a.number - b.number));
  t.deepEqual(tm.volumes.map((v) => v.number), [1, 5, 6]);
});

test('no table: a whole-disk NTFS and an all-zero disk read as scheme none', async (t) => {
  const ntfs = join(dir, 'whole.ntfs');
  await execa('truncate', ['-s', '16M', ntfs]);
  await execa('mkntfs', ['-F', '-Q', '-q', '-s', '512', '-c', '4096', ntfs]);
  const a = await readFile_(ntfs);
  t.is(a.scheme, 'none');
  t.deepEqual(a.volumes, []);
  t.deepEqual(a.warnings, ['sector 0 is the boot sector of a file system (whole-disk NTFS or FAT), not a partition table']);
  // An empty DOS label is an MBR with no partitions, not "none".
  const empty = await makeSfdiskDisk(dir, 'empty-dos.raw', 1, 'label: dos\n');
  t.like(await readFile_(empty), { scheme: 'mbr', volumes: [] });
  const zero = join(dir, 'zero.raw');
  await execa('truncate', ['-s', '1M', zero]);
  t.like(await readFile_(zero), { scheme: 'none', volumes: [] });
  await t.throwsAsync(readFile_(zero, { sectorSize: 1024 as 512 }), { instanceOf: TypeError, message: /Expected `sectorSize` to be 512 or 4096, got `1024`/ });
});

test('a qcow2 copy of the disk read through guestDisk gives the same table', async (t) => {
  const q = join(dir, 'gpt.qcow2');
  await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', gptDisk, q]);
  const img = await openImage(q);
  t.teardown(() => img.close());
  const table = await readPartitionTable(guestDisk(img.top));
  t.deepEqual(table, await readFile_(gptDisk));
  const qm = join(dir, 'mbr.qcow2');
  await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', mbrDisk, qm]);
  const im = await openImage(qm);
  t.teardown(() => im.close());
  t.deepEqual(await readPartitionTable(guestDisk(im.top)), await readFile_(mbrDisk));
});

/** Counts reads so an unbounded walk shows as a number, not a hang. */
class CountingSource implements BlockSource {
  readonly name: string;
  readonly identity = 'fuzz';
  reads = 0;
  readonly #inner: BlockSource;
  constructor(inner: BlockSource) {
    this.#inner = inner;
    this.name = inner.name;
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

/** Recompute header and entry-array CRCs of the GPT header at `lba` when its fields allow it. */
function fixGptCrcs(b: Buffer, lba: number): void {
  const h = lba * 512;
  if (b.toString('latin1', h, h + 8) !== 'EFI PART') return;
  const entriesLba = Number(b.readBigUInt64LE(h + 72));
  const bytes = b.readUInt32LE(h + 80) * b.readUInt32LE(h + 84);
  if (bytes <= 65536 && entriesLba * 512 + bytes <= b.length) b.writeUInt32LE(crc32(b.subarray(entriesLba * 512, entriesLba * 512 + bytes)) >>> 0, h + 88);
  const hs = Math.min(b.readUInt32LE(h + 12), 512);
  b.writeUInt32LE(0, h + 16);
  b.writeUInt32LE(crc32(b.subarray(h, h + hs)) >>> 0, h + 16);
}

test('fuzz: mutated GPT, MBR and EBR sectors give a table or PartitionTableError, within bounded reads', async (t) => {
  // Small disks so each case copies little: a GPT (sgdisk) and an MBR with logicals (sfdisk).
  const g = await makeGptDisk(dir, 'fz-gpt.raw', 4, [
    { number: 1, size: '+1M', code: '0700', name: 'one' },
    { number: 3, size: '+1M', code: '8300', name: 'three' },
  ]);
  const m = await makeSfdiskDisk(dir, 'fz-mbr.raw', 4, 'label: dos\nstart=64, size=512, type=7\nstart=1024, size=6000, type=5\nstart=1088, size=256, type=83\nstart=1536, size=256, type=7\nstart=2048, size=256, type=c\n');
  const pools = [
    { bytes: await readFile(g), hot: [[0, 34 * 512], [4 * 1048576 - 33 * 512, 33 * 512]] },
    { bytes: await readFile(m), hot: [[0, 512], [1024 * 512, 512], [1536 * 512 - 64 * 512, 512], [2048 * 512 - 64 * 512, 512]] },
  ];
  const seed = Number(process.env.FUZZ_SEED ?? 20261124);
  const r = rng(seed);
  const interesting = [0, 1, 0x7f, 0x80, 0xff, 0x05, 0x0f, 0x85, 0xee];
  let accepted = 0;
  let rejected = 0;
  const failures: string[] = [];
  const cases = 3000;
  for (let c = 0; c < cases; c++) {
    const pool = pools[c % pools.length];
    const b = Buffer.from(pool.bytes);
    const edits = randInt(r, 1, 6);
    for (let e = 0; e < edits; e++) {
      const [start, len] = pool.hot[randInt(r, 0, pool.hot.length - 1)];
      const at = start + randInt(r, 0, len - 1);
      const kind = randInt(r, 0, 2);
      if (kind === 0) b[at] ^= 1 << randInt(r, 0, 7);
      else if (kind === 1) b[at] = interesting[randInt(r, 0, interesting.length - 1)];
      else if (at + 4 <= b.length) b.writeUInt32LE(randInt(r, 0, 1) ? randInt(r, 0, 0xffffffff) : randInt(r, 0, 20000), at);
    }
    if (c % pools.length === 0 && r() < 0.6) {
      fixGptCrcs(b, 1);
      fixGptCrcs(b, b.length / 512 - 1);
    }
    const src = new CountingSource(new MemoryBlockSource(`case ${c}`, b));
    try {
      const table = await readPartitionTable(src);
      accepted++;
      for (const v of table.volumes) {
        if (!(v.length > 0 && v.offset >= 0 && v.offset + v.length <= b.length)) failures.push(`case ${c}: volume ${v.number} ${v.offset}+${v.length} outside the disk`);
      }
      if (new Set(table.volumes.map((v) => v.number)).size !== table.volumes.length) failures.push(`case ${c}: duplicate numbers`);
    } catch (error) {
      if (error instanceof PartitionTableError) rejected++;
      else failures.push(`case ${c}: ${(error as Error).stack}`);
    }
    if (src.reads > 250) failures.push(`case ${c}: ${src.reads} reads`);
  }
  t.log(`seed ${seed}: ${accepted} tables, ${rejected} PartitionTableErrors`);
  t.deepEqual(failures, []);
  t.true(accepted > 300 && rejected > 100, `${accepted} accepted, ${rejected} rejected`);
});
