/**
 * ext2/3/4 superblocks made by mkfs.ext4 (e2fsprogs) read back and compared with `dumpe2fs -h`:
 * UUID, block size, block count, volume name, state, features, and the family member; every
 * block size 1K..64K, 32- and 64-bit block counts, with and without metadata_csum; an ext4 volume
 * inside a GPT partition (sgdisk) of a qcow2 disk found through src/disk; refused superblocks.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { findVolume, readPartitionTable } from '../../src/disk/index.ts';
import { Ext4Error, Ext4FormatError, readExt4Superblock, type Ext4Kind, type Ext4Superblock } from '../../src/fs/ext4/index.ts';
import { FileBlockSource, MemoryBlockSource, SliceBlockSource, guestDisk, openImage } from '../../src/qcow2/index.ts';
import { HarnessError } from '../../src/util/index.ts';
import { makeGptDisk } from '../helpers/disk-fixtures.ts';
import { tempDir } from '../helpers/tools.ts';

const MiB = 1024 * 1024;
let dir = '';
let cleanup: () => Promise<void> = async () => {};
test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-ext4-'));
});
test.after.always(async () => cleanup());

/** A raw file of `sizeMiB` formatted by `mkfs.ext4 -q -F <args>` (a trailing block count may follow the path). */
async function mkext4(name: string, sizeMiB: number, args: string[], blocks?: number): Promise<string> {
  const path = join(dir, name);
  await execa('truncate', ['-s', `${sizeMiB}M`, path]);
  await execa('mkfs.ext4', ['-q', '-F', ...args, path, ...(blocks === undefined ? [] : [String(blocks)])]);
  return path;
}

interface Dumpe2fs {
  uuid: string;
  blockSize: number;
  blocksCount: number;
  volumeName: string;
  state: string;
  features: string[];
  firstBlock: number;
}

async function dumpe2fs(path: string): Promise<Dumpe2fs> {
  const out = String((await execa('dumpe2fs', ['-h', path])).stdout);
  const field = (name: string): string => {
    const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(out);
    if (!m) throw new Error(`dumpe2fs -h printed no "${name}"`);
    return m[1].trimEnd();
  };
  const label = field('Filesystem volume name');
  return {
    uuid: field('Filesystem UUID'),
    blockSize: Number(field('Block size')),
    blocksCount: Number(field('Block count')),
    volumeName: label === '<none>' ? '' : label,
    state: field('Filesystem state'),
    features: field('Filesystem features').split(/\s+/).filter(Boolean),
    firstBlock: Number(field('First block')),
  };
}

async function parse(path: string): Promise<Ext4Superblock> {
  const s = await FileBlockSource.open(path);
  try {
    return await readExt4Superblock(s);
  } finally {
    await s.close();
  }
}

/** The serial as docs/cbtf.md defines it, from the UUID string: its first 8 bytes, little-endian. */
function serialOfUuid(uuid: string): bigint {
  return Buffer.from(uuid.replaceAll('-', '').slice(0, 16), 'hex').readBigUInt64LE(0);
}

function same(t: ExecutionContext, sb: Ext4Superblock, d: Dumpe2fs, what: string): void {
  t.is(sb.uuid, d.uuid, what);
  t.is(sb.serial, serialOfUuid(d.uuid), what);
  t.is(sb.blockSize, d.blockSize, what);
  t.is(sb.blocksCount, d.blocksCount, what);
  t.is(sb.volumeName, d.volumeName, what);
  t.is(sb.firstDataBlock, d.firstBlock, what);
  t.is(sb.clean ? 'clean' : 'not clean', d.state, what);
  t.deepEqual([...sb.features].sort(), [...d.features].sort(), what);
}

test('mkfs.ext4 variants: uuid, block size, block count, label, state and features match dumpe2fs -h', async (t) => {
  const variants: Array<{ name: string; size: number; args: string[]; blocks?: number; kind: Ext4Kind; csum: boolean }> = [
    { name: 'default-1k', size: 32, args: ['-L', 'small one'], kind: 'ext4', csum: true },
    { name: 'b4096', size: 64, args: ['-b', '4096', '-L', 'data'], kind: 'ext4', csum: true },
    { name: 'b2048-nocsum', size: 48, args: ['-b', '2048', '-O', '^metadata_csum,^64bit'], kind: 'ext4', csum: false },
    { name: 'b65536', size: 256, args: ['-b', '65536', '-L', 'sixteen-chars-xx'], kind: 'ext4', csum: true },
    { name: 'fixed-uuid', size: 40, args: ['-b', '4096', '-U', '0123abcd-ef45-6789-8a9b-cdef01234567'], kind: 'ext4', csum: true },
    { name: 'smaller-than-file', size: 64, args: ['-b', '4096'], blocks: 5000, kind: 'ext4', csum: true },
    { name: 'ext3', size: 32, args: ['-t', 'ext3', '-L', 'three'], kind: 'ext3', csum: false },
    { name: 'ext2', size: 16, args: ['-t', 'ext2'], kind: 'ext2', csum: false },
  ];
  for (const v of variants) {
    const img = await mkext4(`${v.name}.ext4`, v.size, v.args, v.blocks);
    const sb = await parse(img);
    same(t, sb, await dumpe2fs(img), v.name);
    t.is(sb.kind, v.kind, v.name);
    t.is(sb.checksummed, v.csum, v.name);
    if (v.blocks !== undefined) t.is(sb.blocksCount, v.blocks, v.name);
  }
  const fixed = await parse(join(dir, 'fixed-uuid.ext4'));
  t.is(fixed.uuid, '0123abcd-ef45-6789-8a9b-cdef01234567');
  t.is(fixed.serial, 0x8967_45ef_cdab_2301n);
});

test('ext4 inside GPT partition 2 of a qcow2 disk, found through src/disk', async (t) => {
  const vimg = await mkext4('part.ext4', 24, ['-b', '4096', '-L', 'in a partition']);
  const disk = await makeGptDisk(dir, 'ext4-disk.raw', 40, [
    { number: 1, size: '+4M', code: 'ef00', name: 'EFI' },
    { number: 2, size: '+24M', code: '8300', name: 'linux data' },
  ]);
  const first = await FileBlockSource.open(disk);
  const part = findVolume(await readPartitionTable(first), 2)!;
  await first.close();
  await execa('dd', [`if=${vimg}`, `of=${disk}`, 'bs=1M', `seek=${part.offset}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  const q = join(dir, 'ext4-disk.qcow2');
  await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk, q]);

  const img = await openImage(q);
  t.teardown(() => img.close());
  const guest = guestDisk(img.top);
  const v = findVolume(await readPartitionTable(guest), 2)!;
  t.like(v, { offset: part.offset, length: 24 * MiB, type: '0fc63daf-8483-4772-8e79-3d69d8477de4', name: 'linux data' });
  const sb = await readExt4Superblock(new SliceBlockSource(guest, v.offset, v.length, 'ext4-disk.qcow2 p2'));
  const d = await dumpe2fs(vimg);
  same(t, sb, d, 'partition 2');
  t.is(sb.volumeName, 'in a partition');
  t.is(sb.blocksCount, (24 * MiB) / 4096);
  // Partition 1 holds no file system.
  const p1 = findVolume(await readPartitionTable(guest), 1)!;
  await t.throwsAsync(readExt4Superblock(new SliceBlockSource(guest, p1.offset, p1.length, 'p1')), { instanceOf: Ext4FormatError, message: /p1 at offset 1080 \(0x438\): superblock: magic 0x0 is not 0xef53/ });
});

test('refused superblocks: typed errors naming the field', async (t) => {
  const img = await mkext4('refuse.ext4', 16, ['-b', '4096']);
  const pristine = await readFile(img);
  const open = (b: Buffer) => readExt4Superblock(new MemoryBlockSource('bad.ext4', b));
  const edit = (fn: (sb: Buffer) => void): Buffer => {
    const b = Buffer.from(pristine);
    fn(b.subarray(1024, 2048));
    return b;
  };
  const ok = await open(pristine);
  t.true(ok.checksummed);
  // Any change under metadata_csum breaks the checksum first.
  await t.throwsAsync(open(edit((sb) => (sb[0x78] ^= 1))), { instanceOf: Ext4FormatError, message: /at offset 2044 \(0x7fc\): superblock: checksum 0x[0-9a-f]+ does not match/ });
  // Without metadata_csum the fields themselves are checked.
  const noCsum = (fn: (sb: Buffer) => void) =>
    edit((sb) => {
      sb.writeUInt32LE(sb.readUInt32LE(0x64) & ~0x400, 0x64);
      fn(sb);
    });
  await t.throwsAsync(open(noCsum((sb) => sb.writeUInt16LE(0xef54, 0x38))), { instanceOf: Ext4FormatError, message: /magic 0xef54 is not 0xef53/ });
  await t.throwsAsync(open(noCsum((sb) => sb.writeUInt32LE(7, 0x18))), { instanceOf: Ext4FormatError, message: /s_log_block_size 7 gives a block size above 64 KiB/ });
  await t.throwsAsync(open(noCsum((sb) => sb.writeUInt32LE(0, 0x04))), { instanceOf: Ext4FormatError, message: /block count is 0/ });
  await t.throwsAsync(open(noCsum((sb) => sb.writeUInt32LE(1, 0x150))), { instanceOf: Ext4FormatError, message: /4294971392 blocks of 4096 bytes do not fit the 16777216-byte volume/ });
  await t.throwsAsync(open(noCsum((sb) => sb.writeUInt32LE(4096, 0x14))), { instanceOf: Ext4FormatError, message: /first data block 4096 is past the last block 4095/ });
  const relabelled = await open(noCsum((sb) => sb.write('edited\0', 0x78, 'latin1')));
  t.is(relabelled.volumeName, 'edited');
  t.false(relabelled.checksummed);
  await t.throwsAsync(open(edit((sb) => (sb[0x175] = 2))), { instanceOf: Ext4FormatError, message: /checksum type 2/ });
  // A volume cut short of its block count, or of its superblock.
  await t.throwsAsync(open(pristine.subarray(0, 8 * MiB)), { instanceOf: Ext4FormatError, message: /4096 blocks of 4096 bytes do not fit the 8388608-byte volume/ });
  const short = await t.throwsAsync(open(pristine.subarray(0, 1500)), { instanceOf: Ext4Error });
  t.regex(short!.message, /volume too small for a superblock \(1500 bytes\)/);
  t.true(short instanceof HarnessError, 'exit code 2 at the CLI');
  t.is(short!.name, 'Ext4FormatError');
});
