/**
 * A volume shaped through an ntfs-3g FUSE mount, which ntfsprogs alone cannot do (no ntfsprogs
 * tool makes directories): nested directories, a DOS name, Unicode names, a sparse file, hard
 * links spilling $FILE_NAMEs into extension records, a directory of thousands of files (a
 * multi-level B+ tree), and, after deleting every other one of them on a full volume, a file in
 * hundreds of fragments (attribute list, $DATA continued in several records) and a fragmented
 * $MFT. Compared with ntfsinfo and ntfscat after unmounting.
 */
import { mkdir, open as openFile, readFile, statfs, unlink, writeFile, link } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { NtfsFormatError, NtfsNotFoundError, openNtfs, type NtfsVolume } from '../../src/fs/ntfs/index.ts';
import { FileBlockSource, MemoryBlockSource } from '../../src/qcow2/index.ts';
import { checkFile, editWithFixups, fuseAvailable, mkntfs, mountNtfs, ntfsInode, ntfsinfoData, scanIndx } from '../helpers/ntfs-fixtures.ts';
import { rng, tempDir } from '../helpers/tools.ts';

// Without /dev/fuse these cases cannot be built (see docs/disk-and-ntfs.md); say so, do not pass.
const fuseTest = fuseAvailable() ? test : test.skip;

let dir = '';
let cleanup: () => Promise<void> = async () => {};
let img = '';
let filled = 0;
let mftImg = '';
let mftFiles = 0;
const random = rng(11);
const LONG = 'a-rather-long-hard-link-name-'.repeat(7);

function bytes(n: number, label = ''): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256);
  b.write(label, 0, 'latin1');
  return b;
}

/** Write 4 KiB files into mnt/fill until the volume is full; returns how many. */
async function fill(mnt: string): Promise<number> {
  await mkdir(join(mnt, 'fill'));
  const chunk = bytes(4096, 'fill');
  for (let n = 0; n < 40000; n++) {
    try {
      await writeFile(join(mnt, 'fill', `f${String(n).padStart(5, '0')}`), chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      return n;
    }
  }
  throw new Error('the volume never filled up');
}

async function build(mnt: string): Promise<void> {
  await mkdir(join(mnt, 'Dir/Sub/Deeper'), { recursive: true });
  await writeFile(join(mnt, 'Dir/Sub/Hello World.txt'), 'hello\n');
  const report = join(mnt, 'Dir/Sub/Deeper/Report for 2024.docx');
  await writeFile(report, bytes(20_000, 'report'));
  // ntfs-3g sets a DOS (8.3) name through this extended attribute; Node has no setxattr.
  await execa('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "system.ntfs_dos_name", sys.argv[2].encode())', report, 'REPORT~1.DOC']);
  await writeFile(join(mnt, 'Dir/Ünïcödé Äpfel.txt'), bytes(5000, 'unicode'));
  // Sparse: 10 MiB with two written islands.
  const sparse = await openFile(join(mnt, 'sparse.bin'), 'w');
  await sparse.truncate(10 * 1024 * 1024);
  await sparse.write(Buffer.from('X'), 0, 1, 5_000_000);
  await sparse.write(bytes(65536, 'island'), 0, 65536, 9 * 1024 * 1024);
  await sparse.close();
  // Hard links with long names: the $FILE_NAMEs no longer fit one record.
  await writeFile(join(mnt, 'Dir/target.bin'), bytes(8000, 'target'));
  for (let i = 0; i < 6; i++) await link(join(mnt, 'Dir/target.bin'), join(mnt, `Dir/${LONG}${i}`));
  // Fill the volume with 4 KiB files, free every other one, then write one big file into the holes.
  filled = await fill(mnt);
  for (let i = 0; i < filled; i += 2) await unlink(join(mnt, 'fill', `f${String(i).padStart(5, '0')}`));
  const st = await statfs(mnt);
  await writeFile(join(mnt, 'big.bin'), bytes(Math.floor((st.bavail * st.bsize * 8) / 10), 'big'));
}

test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-ntfs-fuse-'));
  if (!fuseAvailable()) return;
  img = await mkntfs(join(dir, 'fuse.ntfs'), 40);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const m = await mountNtfs(img, mnt);
  try {
    await build(mnt);
  } finally {
    await m.unmount();
  }
  // A second volume filled with small files only: the $MFT grows in hundreds of pieces.
  mftImg = await mkntfs(join(dir, 'mft.ntfs'), 100);
  const m2 = await mountNtfs(mftImg, mnt);
  try {
    mftFiles = await fill(mnt);
  } finally {
    await m2.unmount();
  }
});
test.after.always(async () => cleanup());

async function open(): Promise<{ vol: NtfsVolume; raw: Buffer; close: () => Promise<void> }> {
  const s = await FileBlockSource.open(img);
  return { vol: await openNtfs(s), raw: await readFile(img), close: () => s.close() };
}

fuseTest('directories, DOS name, Unicode names, sparse file, hard links', async (t) => {
  const { vol, raw, close } = await open();
  t.teardown(close);
  await checkFile(t, vol, img, '/Dir/Sub/Hello World.txt', raw);
  const report = await checkFile(t, vol, img, '/Dir/Sub/Deeper/Report for 2024.docx', raw);
  t.is((await vol.lookup('\\dir\\SUB\\deeper\\report~1.doc')).mftRecord, report.mftRecord);
  t.is(report.mftRecord, await ntfsInode(img, '/Dir/Sub/Deeper/Report for 2024.docx'));
  const uni = await checkFile(t, vol, img, '/Dir/Ünïcödé Äpfel.txt', raw);
  t.is((await vol.lookup('/DIR/üNÏCÖDÉ äPFEL.TXT')).mftRecord, uni.mftRecord);
  const dirEntry = await vol.lookup('/dir/sub');
  t.true(dirEntry.directory);
  await t.throwsAsync(vol.lookup('/Dir/Sub/Deeper/Report for 2023.docx'), { instanceOf: NtfsNotFoundError });

  const sparse = await checkFile(t, vol, img, '/sparse.bin', raw);
  t.true(sparse.sparse);
  t.true(sparse.runs.some((r) => r.lcn === null));
  t.true(sparse.extents.length >= 2);
  t.true(sparse.extents.every((e) => e.fileOffset >= 4 * 1024 * 1024));

  const target = await checkFile(t, vol, img, '/Dir/target.bin', raw);
  t.regex(String((await execa('ntfsinfo', ['-v', '-F', '/Dir/target.bin', img])).stdout), /Dumping attribute \$ATTRIBUTE_LIST/, 'the links spilled into extension records');
  for (let i = 0; i < 6; i++) t.is((await vol.lookup(`/Dir/${LONG.toUpperCase()}${i}`)).mftRecord, target.mftRecord);
});

fuseTest('a file in hundreds of fragments: attribute list, $DATA over several records', async (t) => {
  const { vol, raw, close } = await open();
  t.teardown(close);
  const info = String((await execa('ntfsinfo', ['-v', '-F', '/big.bin', img])).stdout);
  t.regex(info, /Dumping attribute \$ATTRIBUTE_LIST/);
  t.true((info.match(/Dumping attribute \$DATA/g) ?? []).length >= 2, '$DATA continues in another record');
  const big = await checkFile(t, vol, img, '/big.bin', raw);
  t.true(big.runs.length > 150, `big.bin has ${big.runs.length} runs`);
});

fuseTest('a $MFT whose runlist continues in an extension record (attribute list in record 0)', async (t) => {
  const s = await FileBlockSource.open(mftImg);
  t.teardown(() => s.close());
  const vol = await openNtfs(s);
  // The $MFT grew in so many pieces that its own runlist continues in an extension record.
  const mftInfo = String((await execa('ntfsinfo', ['-v', '-i', '0', mftImg])).stdout);
  t.regex(mftInfo, /Dumping attribute \$ATTRIBUTE_LIST/);
  t.true((mftInfo.match(/Dumping attribute \$DATA \(0x80\) from mft record/g) ?? []).length >= 2, '$MFT $DATA continues in another record');
  const mft = await vol.lookup('/$MFT');
  t.deepEqual(mft.runs, (await ntfsinfoData(mftImg, 0)).runs);
  t.true(mft.runs.length > 150, `$MFT has ${mft.runs.length} runs`);
  const last = `/fill/f${String(mftFiles - 1).padStart(5, '0')}`;
  const f = await vol.lookup(last.toUpperCase());
  t.is(f.mftRecord, await ntfsInode(mftImg, last));
  t.true(f.mftRecord > 15000, `record ${f.mftRecord} lies past the first extent of $MFT`);
});

fuseTest('a directory of thousands of files: every kept file found, deleted ones not', async (t) => {
  const { vol, raw, close } = await open();
  t.teardown(close);
  t.true(filled > 3000, `${filled} files`);
  const seen = new Set<number>();
  for (let i = 1; i < filled; i += 2) {
    const name = `f${String(i).padStart(5, '0')}`;
    const f = await vol.lookup(`/fill/${i % 4 === 1 ? name.toUpperCase() : name}`);
    seen.add(f.mftRecord);
    t.is(f.size, 4096);
  }
  t.is(seen.size, Math.floor(filled / 2));
  for (let i = 0; i < filled; i += 250) await t.throwsAsync(vol.lookup(`/fill/f${String(i).padStart(5, '0')}`), { instanceOf: NtfsNotFoundError });
  for (const i of [1, 999, filled - 1 - ((filled - 1) % 2 === 0 ? 1 : 0)]) await checkFile(t, vol, img, `/fill/f${String(i).padStart(5, '0')}`, raw);
});

fuseTest('damaged attribute lists and index trees give NtfsFormatError', async (t) => {
  const { vol, raw, close } = await open();
  t.teardown(close);
  const mft = await vol.lookup('/$MFT');
  const recordAt = (n: number): number => {
    const pos = n * vol.mftRecordSize;
    const e = mft.extents.find((x) => x.fileOffset <= pos && pos < x.fileOffset + x.length)!;
    return e.offset + pos - e.fileOffset;
  };
  // An extension record of big.bin that names another base record.
  const big = await vol.lookup('/big.bin');
  const exts = String((await execa('ntfsinfo', ['-v', '-F', '/big.bin', img])).stdout).matchAll(/Dumping attribute \$DATA \(0x80\) from mft record (\d+)/g);
  const extRecord = [...exts].map((m) => Number(m[1])).find((n) => n !== big.mftRecord)!;
  let b = Buffer.from(raw);
  editWithFixups(b, recordAt(extRecord), vol.mftRecordSize, (r) => r.writeUInt32LE(big.mftRecord + 1, 0x20));
  const err = await t.throwsAsync((await openNtfs(new MemoryBlockSource('bad-list.ntfs', b))).lookup('/big.bin'), { instanceOf: NtfsFormatError });
  t.regex(err!.message, new RegExp(`MFT record ${big.mftRecord}: attribute list points at record ${extRecord}, which is not an in-use extension of it`));

  // Every sub-node pointer of every inner INDX block points back at its own block: a loop.
  b = Buffer.from(raw);
  let inner = 0;
  for (const off of scanIndx(raw)) {
    editWithFixups(b, off, 4096, (blk) => {
      const own = blk.readBigInt64LE(0x10);
      let e = 0x18 + blk.readUInt32LE(0x18);
      const end = 0x18 + blk.readUInt32LE(0x1c);
      while (e < end) {
        const len = blk.readUInt16LE(e + 8);
        const flags = blk.readUInt16LE(e + 12);
        if (len < 16) break;
        if (flags & 1) {
          blk.writeBigInt64LE(own, e + len - 8);
          inner++;
        }
        if (flags & 2) break;
        e += len;
      }
    });
  }
  t.true(inner > 0, 'the fill directory has inner index blocks');
  const loopVol = await openNtfs(new MemoryBlockSource('loop.ntfs', b));
  await t.throwsAsync(loopVol.lookup('/fill/f00001'), { instanceOf: NtfsFormatError, message: /index tree loops back to VCN \d+/ });
});
