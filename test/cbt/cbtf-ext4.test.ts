/**
 * CBTF rule 7 (docs/cbtf.md "Volume serial") for trackers that follow a volume other than NTFS:
 * the CBTF file lives on NTFS (mkntfs + ntfscp) in GPT partition 1 of a qcow2 disk; partition 2
 * holds ext4 (mkfs.ext4), partition 3 nothing (zeros). The serial the file must carry is the ext4
 * UUID's first 8 bytes (little-endian), resp. 0; every other serial is `lost` naming what was
 * found. The expected serials are read from the raw bytes and from dumpe2fs, not through src/fs.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { execa } from 'execa';
import { bitmapFromBlocks, CBTF_FLAG_CLEAN, defaultProviders, encodeCbtf, type CbtfWriteSpec } from '../../src/cbt/index.ts';
import { Ext4FormatError } from '../../src/fs/ext4/index.ts';
import { MemoryBlockSource } from '../../src/qcow2/index.ts';
import { verifyImages } from '../../src/scenario/oracle.ts';
import { qemuImg, qemuIo, tempDir } from '../helpers/tools.ts';

const MiB = 1024 * 1024;
const P1 = { offset: 1 * MiB, length: 32 * MiB };
const P2 = { offset: 33 * MiB, length: 64 * MiB };
const P3 = { offset: 97 * MiB, length: 16 * MiB };
const PARTS = { 2: P2, 3: P3 } as const;
const SHIFT = 16;
const GEN = '0b7e2c1d-3f4a-4b5c-8d6e-7f8091a2b3c4';
const FILE_SIZE = 64 * 1024;

let dir: string;
let cleanup: () => Promise<void>;
let base: string;
let fileAt: number;
let ext4Serial: bigint;
let ntfsSerial: bigint;

test.before(async () => {
  ({ dir, cleanup } = await tempDir('cbt-cbtf-ext4-'));
  const raw = join(dir, 'disk.raw');
  await execa('truncate', ['-s', `${114}M`, raw]);
  await execa('sgdisk', ['-n', `1:${P1.offset / 512}:+32M`, '-t', '1:0700', '-n', `2:${P2.offset / 512}:+64M`, '-t', '2:8300', '-n', `3:${P3.offset / 512}:+16M`, '-t', '3:8300', raw]);
  // Partition 1: NTFS with the CBTF file as the tracker pre-allocated it (unique filler to find it).
  const ntfs = join(dir, 'p1.ntfs');
  await execa('truncate', ['-s', '32M', ntfs]);
  await execa('mkntfs', ['-F', '-Q', '-s', '512', '-c', '4096', ntfs]);
  const initial = encodeCbtf({ generation: GEN, flags: 0, granularityShift: SHIFT, volumeSize: BigInt(P2.length), volumeSerial: 0n, bitmap: Buffer.alloc(128), fileSize: FILE_SIZE });
  randomBytes(FILE_SIZE - 8192).copy(initial, 8192);
  await writeFile(join(dir, 'cbt.src'), initial);
  await execa('ntfscp', ['-f', ntfs, join(dir, 'cbt.src'), 'cbt.dat']);
  // Partition 2: ext4.
  const ext4 = join(dir, 'p2.ext4');
  await execa('truncate', ['-s', '64M', ext4]);
  await execa('mkfs.ext4', ['-q', '-F', '-L', 'tracked', ext4]);
  const uuid = /^Filesystem UUID:\s+(\S+)$/m.exec(String((await execa('dumpe2fs', ['-h', ext4])).stdout))![1];
  for (const [img, at] of [[ntfs, P1.offset], [ext4, P2.offset]] as const) {
    await execa('dd', [`if=${img}`, `of=${raw}`, 'bs=1M', `seek=${at}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  }
  const disk = await readFile(raw);
  const at = disk.indexOf(initial.subarray(8192, 8192 + 4096));
  if (at < 0 || !disk.subarray(at - 8192, at - 8192 + FILE_SIZE).equals(initial)) throw new Error('the CBTF file is not contiguous in the raw disk');
  fileAt = at - 8192;
  ext4Serial = disk.readBigUInt64LE(P2.offset + 1024 + 0x68);
  if (ext4Serial !== Buffer.from(uuid.replaceAll('-', '').slice(0, 16), 'hex').readBigUInt64LE(0)) throw new Error(`serial 0x${ext4Serial.toString(16)} is not the first half of ${uuid}`);
  ntfsSerial = disk.readBigUInt64LE(P1.offset + 0x48);
  if (!disk.subarray(P3.offset, P3.offset + P3.length).equals(Buffer.alloc(P3.length))) throw new Error('partition 3 is not zeroed');
  base = join(dir, 'base.qcow2');
  await qemuImg(['convert', '-O', 'qcow2', raw, base]);
});
test.after.always(async () => {
  await cleanup?.();
});

let n = 0;
/** An epoch: the guest writes `written` blocks of the tracked partition, then the tracker persists. */
async function epoch(tracked: 2 | 3, written: number[], spec: Partial<CbtfWriteSpec>, extra: string[] = []): Promise<string> {
  const part = PARTS[tracked];
  const id = n++;
  const top = join(dir, `top-${id}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top], { cwd: dir });
  const bytes = encodeCbtf({
    generation: GEN,
    flags: CBTF_FLAG_CLEAN,
    granularityShift: SHIFT,
    volumeSize: BigInt(part.length),
    volumeSerial: 0n,
    bitmap: bitmapFromBlocks(part.length, SHIFT, written),
    ...spec,
  });
  const src = join(dir, `persist-${id}.bin`);
  await writeFile(src, bytes);
  await qemuIo(top, [...written.map((b) => `write -P ${0x40 + (b % 100)} ${part.offset + b * 2 ** SHIFT + 512} 4k`), `write -s ${src} ${fileAt} ${bytes.length}`, ...extra]);
  return top;
}

const verdictOf = (top: string, tracked: 2 | 3) => verifyImages({ base, top, decoder: 'cbtf', options: { volume: '1', path: '/cbt.dat', tracked: String(tracked) }, providers: defaultProviders });

test('tracking ext4: the UUID-derived serial is valid, EXACT, and the details say ext4', async (t) => {
  const written = [1, 2, 500, 1023];
  const r = await verdictOf(await epoch(2, written, { volumeSerial: ext4Serial }), 2);
  t.is(r.claim.state, 'valid', r.claim.reason ?? '');
  t.is(r.result.verdict, 'EXACT');
  t.like(r.claim.details, { trackedFs: 'ext4', trackedFsName: 'ext4', trackedSerial: `0x${ext4Serial.toString(16)}`, volumeSerial: `0x${ext4Serial.toString(16)}` });
  t.deepEqual(r.claim.volume, P2);
});

test('tracking ext4: any other serial is lost naming ext4 (0, the NTFS serial of another volume, the UUID read big-endian)', async (t) => {
  const bigEndian = Buffer.alloc(8);
  bigEndian.writeBigUInt64LE(ext4Serial);
  for (const serial of [0n, 0x1234n, ntfsSerial, bigEndian.readBigUInt64BE(0)]) {
    const r = await verdictOf(await epoch(2, [3], { volumeSerial: serial }), 2);
    t.is(r.claim.state, 'lost', `0x${serial.toString(16)}`);
    t.is(r.claim.reason, `volume serial 0x${serial.toString(16)} is not the tracked volume's (ext4 serial 0x${ext4Serial.toString(16)})`);
    t.is(r.result.verdict, 'RESYNC');
    t.like(r.claim.details, { trackedFs: 'ext4', trackedSerial: `0x${ext4Serial.toString(16)}` });
  }
});

test('tracking ext4 whose superblock the guest damaged: lost with the reader error', async (t) => {
  // One byte of s_volume_name flipped: the metadata_csum checksum no longer matches.
  const top = await epoch(2, [4], { volumeSerial: ext4Serial }, [`write -P 0x58 ${P2.offset + 1024 + 0x78} 1`]);
  const r = await verdictOf(top, 2);
  t.is(r.claim.state, 'lost');
  t.regex(r.claim.reason ?? '', /^cannot read the tracked volume's serial: .* at offset 2044 \(0x7fc\): superblock: checksum 0x[0-9a-f]+ does not match/);
});

test('tracking a raw partition (no file system): serial 0 is valid, any other is lost', async (t) => {
  const written = [0, 7, 255];
  const good = await verdictOf(await epoch(3, written, { volumeSerial: 0n }), 3);
  t.is(good.claim.state, 'valid', good.claim.reason ?? '');
  t.is(good.result.verdict, 'EXACT');
  t.like(good.claim.details, { trackedFs: 'none', trackedFsName: null, trackedSerial: '0x0' });
  for (const serial of [1n, ext4Serial, ntfsSerial]) {
    const r = await verdictOf(await epoch(3, written, { volumeSerial: serial }), 3);
    t.is(r.claim.state, 'lost');
    t.is(r.claim.reason, `volume serial 0x${serial.toString(16)} is not the tracked volume's (no recognisable file system, serial 0)`);
    t.is(r.result.verdict, 'RESYNC');
  }
});

test('the file on NTFS tracking its own volume keeps the NTFS serial (a Windows driver is unaffected)', async (t) => {
  const top = join(dir, 'self.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top], { cwd: dir });
  const persist = (serial: bigint) => encodeCbtf({ generation: GEN, flags: CBTF_FLAG_CLEAN, granularityShift: SHIFT, volumeSize: BigInt(P1.length), volumeSerial: serial, bitmap: bitmapFromBlocks(P1.length, SHIFT, []) });
  const src = join(dir, 'self.bin');
  const opts = { volume: '1', path: '/cbt.dat', tracked: '1' };
  await writeFile(src, persist(ntfsSerial));
  await qemuIo(top, [`write -s ${src} ${fileAt} ${persist(0n).length}`]);
  const ok = await verifyImages({ base, top, decoder: 'cbtf', options: opts, providers: defaultProviders });
  t.is(ok.claim.state, 'valid', ok.claim.reason ?? '');
  t.like(ok.claim.details, { trackedFs: 'ntfs', trackedFsName: 'ntfs', trackedSerial: `0x${ntfsSerial.toString(16)}` });
  await writeFile(src, persist(0n));
  await qemuIo(top, [`write -s ${src} ${fileAt} ${persist(0n).length}`]);
  const bad = await verifyImages({ base, top, decoder: 'cbtf', options: opts, providers: defaultProviders });
  t.is(bad.claim.reason, `volume serial 0x0 is not the tracked volume's (ntfs serial 0x${ntfsSerial.toString(16)})`);
});

test('defaultProviders.detectFs: NTFS before ext, ext by its magic, short or blank volumes are none', async (t) => {
  const detect = (b: Buffer) => defaultProviders.detectFs(new MemoryBlockSource('probe', b));
  const both = Buffer.alloc(4096);
  both.write('NTFS    ', 3, 'latin1');
  both.writeUInt16LE(0xef53, 1024 + 0x38);
  t.deepEqual(await detect(both), { fs: 'ntfs' });
  const ext = Buffer.from(both);
  ext.fill(0, 0, 512);
  // Magic alone is not enough: the superblock behind it must hold (block count 0 here).
  await t.throwsAsync(detect(ext), { instanceOf: Ext4FormatError, message: /block count is 0/ });
  ext.writeUInt32LE(4, 1024 + 0x04);
  ext.write('0123456789abcdef', 1024 + 0x68, 'latin1');
  t.deepEqual(await detect(ext), { fs: 'ext4', serial: Buffer.from('01234567', 'latin1').readBigUInt64LE(0), name: 'ext2' });
  t.deepEqual(await detect(ext.subarray(0, 2047)), { fs: 'none' });
  t.deepEqual(await detect(Buffer.alloc(4096)), { fs: 'none' });
  t.deepEqual(await detect(Buffer.alloc(100)), { fs: 'none' });
});
