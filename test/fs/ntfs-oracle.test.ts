/**
 * NTFS volumes made by mkntfs and filled by ntfscp/ntfsfallocate (no FUSE needed), read back and
 * compared with ntfsinfo (runlists) and ntfscat (content); every cluster size 512..64K; damaged
 * records and index blocks; an NTFS volume inside a GPT partition of a qcow2 disk.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { findVolume, readPartitionTable } from '../../src/disk/index.ts';
import { NtfsError, NtfsFormatError, NtfsLimitError, NtfsNotFoundError, openNtfs, type NtfsVolume } from '../../src/fs/ntfs/index.ts';
import { FileBlockSource, MemoryBlockSource, SliceBlockSource, guestDisk, openImage } from '../../src/qcow2/index.ts';
import { makeGptDisk } from '../helpers/disk-fixtures.ts';
import { checkFile, editWithFixups, findAttributes, mkntfs, ntfscat, ntfscp, ntfsinfoData, scanIndx } from '../helpers/ntfs-fixtures.ts';
import { rng, tempDir } from '../helpers/tools.ts';

let dir = '';
let cleanup: () => Promise<void> = async () => {};
let volA = '';
const random = rng(7);

function bytes(n: number, label = ''): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256);
  b.write(label, 0, 'latin1');
  return b;
}

async function src(name: string, content: Buffer): Promise<string> {
  const p = join(dir, 'src', name);
  await writeFile(p, content);
  return p;
}

/** Volume A: 4 KiB clusters; resident, medium, large files; 150 names in the root; a fragmented pair. */
async function buildVolumeA(): Promise<string> {
  const img = await mkntfs(join(dir, 'a.ntfs'), 32);
  await ntfscp(img, await src('tiny', Buffer.from('tiny resident file\n')), 'tiny.txt');
  await ntfscp(img, await src('medium', bytes(100_000, 'medium')), 'Medium.bin');
  await ntfscp(img, await src('large', bytes(4 * 1024 * 1024, 'large')), 'large.bin');
  for (let i = 0; i < 150; i++) {
    const name = `file-${String(i).padStart(3, '0')}.txt`;
    await ntfscp(img, await src(name, bytes(1500, `${name}\n`)), name);
  }
  // Two files grown by turns: each allocation takes the next free clusters, so both fragment.
  const empty = await src('empty', Buffer.alloc(0));
  await ntfscp(img, empty, 'Frag.bin');
  await ntfscp(img, empty, 'other.bin');
  for (let k = 0; k < 16; k++) {
    await execa('ntfsfallocate', ['-o', String(k * 65536), '-l', '65536', img, '/Frag.bin']);
    await execa('ntfsfallocate', ['-o', String(k * 65536), '-l', '65536', img, '/other.bin']);
  }
  // Content written into the preallocated clusters (ntfscp keeps the allocation).
  await ntfscp(img, await src('frag', bytes(1024 * 1024, 'frag')), 'Frag.bin');
  return img;
}

test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-ntfs-'));
  await execa('mkdir', [join(dir, 'src')]);
  volA = await buildVolumeA();
});
test.after.always(async () => cleanup());

async function open(path: string): Promise<{ vol: NtfsVolume; close: () => Promise<void> }> {
  const s = await FileBlockSource.open(path);
  try {
    return { vol: await openNtfs(s), close: () => s.close() };
  } catch (error) {
    await s.close();
    throw error;
  }
}

test('volume A: resident, medium, large and fragmented files match ntfsinfo and ntfscat', async (t) => {
  const { vol, close } = await open(volA);
  t.teardown(close);
  const raw = await readFile(volA);
  t.is(vol.clusterSize, 4096);
  t.is(vol.bytesPerSector, 512);
  t.is(vol.mftRecordSize, 1024);
  const tiny = await checkFile(t, vol, volA, '/tiny.txt', raw);
  t.true(tiny.resident);
  t.deepEqual(tiny.extents, []);
  await checkFile(t, vol, volA, '/Medium.bin', raw);
  const large = await checkFile(t, vol, volA, '/large.bin', raw);
  t.is(large.extents.length, 1);
  const frag = await checkFile(t, vol, volA, '/Frag.bin', raw);
  t.true(frag.runs.length >= 3, `Frag.bin has ${frag.runs.length} runs`);
  t.true(frag.extents.length >= 3);
  // Preallocated by ntfsfallocate and never written: allocated but reads as zeros.
  const other = await checkFile(t, vol, volA, '/other.bin', raw);
  t.is(other.initializedSize, 0);
  t.true(other.extents.length >= 2);
  t.true((await other.read()).equals(Buffer.alloc(1024 * 1024)));
});

test('volume A: 150 names in the root (index in INDX blocks), any case, / or \\', async (t) => {
  const { vol, close } = await open(volA);
  t.teardown(close);
  const root = String((await execa('ntfsinfo', ['-v', '-i', '5', volA])).stdout);
  t.regex(root, /Dumping attribute \$INDEX_ALLOCATION/, 'the root index spilled into INDX blocks');
  const seen = new Set<number>();
  for (let i = 0; i < 150; i++) {
    const name = `file-${String(i).padStart(3, '0')}.txt`;
    const shown = i % 3 === 0 ? name.toUpperCase() : i % 3 === 1 ? `\\${name}` : `/${name.replace('file', 'FiLe')}`;
    const f = await vol.lookup(shown);
    t.is((await f.readRange(0, name.length + 1)).toString('latin1'), `${name}\n`, shown);
    seen.add(f.mftRecord);
  }
  t.is(seen.size, 150);
  const raw = await readFile(volA);
  await checkFile(t, vol, volA, '/file-077.txt', raw);
  await checkFile(t, vol, volA, '/file-149.txt', raw);
});

test('volume A: not found, not a directory, read limit, system files', async (t) => {
  const { vol, close } = await open(volA);
  t.teardown(close);
  const nf = await t.throwsAsync(vol.lookup('/file-150.txt'), { instanceOf: NtfsNotFoundError });
  t.regex(nf!.message, /a\.ntfs: \/file-150\.txt: \/file-150\.txt not found/);
  t.is(nf!.path, '/file-150.txt');
  await t.throwsAsync(vol.lookup('/tiny.txt/inner'), { instanceOf: NtfsNotFoundError, message: /\/tiny\.txt is not a directory/ });
  const large = await vol.lookup('/large.bin');
  await t.throwsAsync(large.read({ maxBytes: 1024 * 1024 }), { instanceOf: NtfsLimitError, message: /reading 4194304 bytes exceeds maxBytes 1048576/ });
  t.is((await large.readRange(4 * 1024 * 1024 - 10, 100)).length, 10);
  const root = await vol.lookup('/');
  t.true(root.directory);
  t.is(root.mftRecord, 5);
  t.is((await vol.lookup('/./Medium.bin/..')).mftRecord, 5);
  const mft = await vol.lookup('/$MFT');
  t.is(mft.mftRecord, 0);
  t.deepEqual(mft.runs, (await ntfsinfoData(volA, 0)).runs);
  t.is((await vol.lookup('/$UpCase')).size, 131072);
  const ac = new AbortController();
  ac.abort();
  await t.throwsAsync(vol.lookup('/tiny.txt', { signal: ac.signal }), { name: 'AbortError' });
});

test('serial number: the one ntfslabel --new-serial wrote', async (t) => {
  const img = await mkntfs(join(dir, 'serial.ntfs'), 8);
  await execa('ntfslabel', ['-f', '--new-serial=8a7b6c5d4e3f2a1b', img]);
  const { vol, close } = await open(img);
  t.teardown(close);
  t.is(vol.serial, 0x8a7b6c5d4e3f2a1bn);
  t.is(vol.serialHex, '0x8a7b6c5d4e3f2a1b');
});

for (const [sector, cluster] of [[512, 512], [512, 1024], [512, 2048], [512, 8192], [512, 16384], [512, 32768], [512, 65536], [4096, 4096], [4096, 8192]] as const) {
  test(`mkntfs -s ${sector} -c ${cluster}: lookups in a spilled index match ntfsinfo/ntfscat`, async (t) => {
    const img = await mkntfs(join(dir, `c${sector}-${cluster}.ntfs`), 32, cluster, sector);
    await ntfscp(img, await src(`c${sector}-${cluster}-res`, Buffer.from('resident\n')), 'Resident.txt');
    await ntfscp(img, await src(`c${sector}-${cluster}-big`, bytes(300_000 + cluster, 'big')), 'Big.bin');
    for (let i = 0; i < 40; i++) {
      const name = `Name_${i}.txt`;
      await ntfscp(img, await src(`c${sector}-${cluster}-${name}`, bytes(2000, `${name}\n`)), name);
    }
    t.regex(String((await execa('ntfsinfo', ['-v', '-i', '5', img])).stdout), /Dumping attribute \$INDEX_ALLOCATION/);
    const { vol, close } = await open(img);
    t.teardown(close);
    t.is(vol.clusterSize, cluster);
    t.is(vol.bytesPerSector, sector);
    const raw = await readFile(img);
    await checkFile(t, vol, img, '/Resident.txt', raw);
    await checkFile(t, vol, img, '/Big.bin', raw);
    await checkFile(t, vol, img, '/Name_17.txt', raw);
    for (let i = 0; i < 40; i++) {
      const name = `Name_${i}.txt`;
      const f = await vol.lookup(i % 2 ? name.toLowerCase() : name.toUpperCase());
      t.is((await f.readRange(0, name.length + 1)).toString('latin1'), `${name}\n`);
    }
  });
}

/** Volume offset of MFT record `n`, through $MFT's extents. */
async function recordOffset(vol: NtfsVolume, n: number): Promise<number> {
  const mft = await vol.lookup('/$MFT');
  const pos = n * vol.mftRecordSize;
  const e = mft.extents.find((x) => x.fileOffset <= pos && pos < x.fileOffset + x.length)!;
  return e.offset + (pos - e.fileOffset);
}

async function openBytes(b: Buffer): Promise<NtfsVolume> {
  return openNtfs(new MemoryBlockSource('damaged.ntfs', b));
}

test('damaged structures give NtfsFormatError naming what and where', async (t) => {
  const { vol, close } = await open(volA);
  t.teardown(close);
  const pristine = await readFile(volA);
  const tiny = await vol.lookup('/tiny.txt');
  const tinyAt = await recordOffset(vol, tiny.mftRecord);

  // 1. A torn write: the last two bytes of the record's first stride no longer hold the USN.
  let b = Buffer.from(pristine);
  b[tinyAt + 510] ^= 0xff;
  let err = await t.throwsAsync((await openBytes(b)).lookup('/tiny.txt'), { instanceOf: NtfsFormatError });
  t.regex(err!.message, new RegExp(`damaged\\.ntfs at offset ${tinyAt + 510} .*MFT record ${tiny.mftRecord}: fixup mismatch in stride 0`));

  // 2. "BAAD" records and records not in use.
  b = Buffer.from(pristine);
  b.write('BAAD', tinyAt, 'latin1');
  await t.throwsAsync((await openBytes(b)).lookup('/tiny.txt'), { instanceOf: NtfsFormatError, message: /marked BAAD/ });
  b = Buffer.from(pristine);
  editWithFixups(b, tinyAt, vol.mftRecordSize, (r) => r.writeUInt16LE(r.readUInt16LE(0x16) & ~1, 0x16));
  await t.throwsAsync((await openBytes(b)).lookup('/tiny.txt'), { instanceOf: NtfsFormatError, message: /not an in-use base record/ });
  b = Buffer.from(pristine);
  editWithFixups(b, tinyAt, vol.mftRecordSize, (r) => r.writeUInt16LE(r.readUInt16LE(0x10) + 1, 0x10));
  await t.throwsAsync((await openBytes(b)).lookup('/tiny.txt'), { instanceOf: NtfsFormatError, message: /stale entry/ });

  // 3. A runlist whose LCN points past the volume.
  const large = await vol.lookup('/large.bin');
  const largeAt = await recordOffset(vol, large.mftRecord);
  b = Buffer.from(pristine);
  editWithFixups(b, largeAt, vol.mftRecordSize, (r) => {
    const a = findAttributes(r, 0x80)[0];
    const mp = a + r.readUInt16LE(a + 0x20);
    const h = r[mp];
    const lenSize = h & 15;
    const offSize = h >> 4;
    r.fill(0xff, mp + 1 + lenSize, mp + 1 + lenSize + offSize - 1);
    r[mp + lenSize + offSize] = 0x3f;
  });
  err = await t.throwsAsync((await openBytes(b)).lookup('/large.bin'), { instanceOf: NtfsFormatError });
  t.regex(err!.message, /runlist: run at LCN \d+ of 1024 clusters lies outside the volume's 8191 clusters/);

  // 4. Index blocks: a torn INDX block, and one whose magic is gone.
  const indx = scanIndx(pristine);
  t.true(indx.length > 0);
  b = Buffer.from(pristine);
  for (const off of indx) b[off + 1022] ^= 0x55;
  await t.throwsAsync((await openBytes(b)).lookup('/file-120.txt'), { instanceOf: NtfsFormatError, message: /index block VCN \d+: fixup mismatch in stride 1/ });
  b = Buffer.from(pristine);
  for (const off of indx) b.write('XXXX', off, 'latin1');
  await t.throwsAsync((await openBytes(b)).lookup('/file-120.txt'), { instanceOf: NtfsFormatError, message: /index block VCN \d+: magic is "XXXX", not "INDX"/ });

  // 5. The boot sector.
  b = Buffer.from(pristine);
  b.write('EXFAT   ', 3, 'latin1');
  await t.throwsAsync(openBytes(b), { instanceOf: NtfsFormatError, message: /boot sector: OEM id is "EXFAT {3}"/ });
  b = Buffer.from(pristine);
  b[0x40] = 0xf0; // 2^16 = 64 KiB records: fixup count no longer matches
  err = await t.throwsAsync(openBytes(b), { instanceOf: NtfsError });
  t.is(err!.name, 'NtfsFormatError');
  await t.throwsAsync(openBytes(pristine.subarray(0, 1024 * 1024)), { instanceOf: NtfsFormatError, message: /the volume has only 1048576 bytes/ });
});

test('NTFS inside GPT partition 2 of a qcow2 disk, found through src/disk', async (t) => {
  const vimg = await mkntfs(join(dir, 'part.ntfs'), 24);
  const content = bytes(777_777, 'in a partition');
  await ntfscp(vimg, await src('p1', content), 'Data File.bin');
  await ntfscp(vimg, await src('p2', Buffer.from('small\n')), 'small.txt');
  const disk = await makeGptDisk(dir, 'ntfs-disk.raw', 40, [
    { number: 1, size: '+4M', code: 'ef00', name: 'EFI' },
    { number: 2, size: '+24M', code: '0700', name: 'Basic data partition' },
  ]);
  const first = await FileBlockSource.open(disk);
  const part = findVolume(await readPartitionTable(first), 2)!;
  await first.close();
  await execa('dd', [`if=${vimg}`, `of=${disk}`, 'bs=1M', `seek=${part.offset}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  const q = join(dir, 'ntfs-disk.qcow2');
  await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk, q]);

  const img = await openImage(q);
  t.teardown(() => img.close());
  const guest = guestDisk(img.top);
  const table = await readPartitionTable(guest);
  const v = findVolume(table, 2)!;
  t.like(v, { offset: part.offset, length: 24 * 1024 * 1024, type: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7', name: 'Basic data partition' });
  const vol = await openNtfs(new SliceBlockSource(guest, v.offset, v.length));
  const { vol: direct, close } = await open(vimg);
  t.teardown(close);
  t.is(vol.serial, direct.serial);
  const f = await vol.lookup('\\data file.BIN');
  t.true((await f.read()).equals(content));
  t.true((await f.read()).equals(await ntfscat(vimg, '/Data File.bin')));
  t.deepEqual(f.runs, (await ntfsinfoData(vimg, '/Data File.bin')).runs);
  // Extents are volume-relative: disk offset = partition offset + extent offset.
  const raw = await readFile(disk);
  for (const e of f.extents) t.true(raw.subarray(v.offset + e.offset, v.offset + e.offset + e.length).equals(content.subarray(e.fileOffset, e.fileOffset + e.length)));
  t.is((await (await vol.lookup('/SMALL.TXT')).read()).toString(), 'small\n');
});
