/**
 * The reference image as built from Debian packages: manifest against apt and sha256, archive
 * contents (cpio), every binary's shared libraries resolved inside the initramfs by its own
 * loader (no chroot, no host libraries), signatures stripped, the tools disk, the cache key and
 * its lock, the recipe's error messages, and the host key format dropbear reads.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { buildLinuxRef, generateGuestHostKey, ImageBuildError, imageKey, LINUX_REF_RECIPE, readPackageList, resolvePackages, type LinuxRefImage } from '../../src/guest/linux-ref-image.ts';
import { fingerprintOf } from '../../src/ssh/index.ts';
import { tempDir } from '../helpers/tools.ts';
import { linuxRefImage } from '../helpers/vm-guest.ts';

const run = promisify(execFile);

let unpacked: Promise<string> | null = null;
/** The initramfs unpacked once into a temp dir. */
function initrdTree(img: LinuxRefImage): Promise<string> {
  unpacked ??= (async () => {
    const { dir, cleanup } = await tempDir('cbt-initrd-');
    cleanups.push(cleanup);
    await run('sh', ['-c', 'cpio -idm --quiet --no-absolute-filenames < "$1"', 'sh', img.initrd], { cwd: dir });
    return dir;
  })();
  return unpacked;
}
const cleanups: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const c of cleanups) await c();
});

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

test('manifest: exact package versions from apt, file hashes, PVH ELF kernel', async (t) => {
  const img = await linuxRefImage();
  const m = img.manifest;
  t.is(m.name, 'linux-ref');
  t.regex(m.key, /^[0-9a-f]{16}$/);
  const resolved = await resolvePackages(LINUX_REF_RECIPE);
  t.deepEqual(
    m.packages.map((p) => [p.layer, p.name, p.version]),
    resolved.map((p) => [p.layer, p.name, p.version]),
  );
  const kernel = m.packages.find((p) => p.layer === 'kernel');
  t.regex(kernel?.name ?? '', /^linux-image-\d+\.\d+\.\d+-\d+-amd64$/);
  t.is(kernel?.name, `linux-image-${img.kernelRelease}`);
  for (const p of m.packages) t.regex(p.sha256, /^[0-9a-f]{64}$/);
  for (const [name, f] of Object.entries(m.files)) {
    if (!f) continue;
    t.is(await sha256(join(img.dir, f.file)), f.sha256, name);
  }
  const head = Buffer.alloc(4);
  const fh = await (await import('node:fs/promises')).open(img.vmlinux);
  await fh.read(head, 0, 4, 0);
  await fh.close();
  t.is(head.toString('latin1'), '\x7fELF');
  // The PVH entry is announced by a Xen ELF note (XEN_ELFNOTE_PHYS32_ENTRY = 18).
  const { stdout } = await run('readelf', ['-n', img.vmlinux]);
  t.regex(stdout, /Xen\s+0x[0-9a-f]+\s+Unknown note type: \(0x00000012\)/);
});

test('initramfs: init, busybox, dropbear, dmsetup, thin-provisioning-tools, modules; libraries resolve inside it', async (t) => {
  const img = await linuxRefImage();
  const root = await initrdTree(img);
  for (const f of ['init', 'cbt-probe', 'bin/busybox', 'bin/sh', 'bin/cbt-ctl', 'usr/bin/fio', 'usr/sbin/dropbear', 'usr/bin/dropbearkey', 'sbin/dmsetup', 'usr/sbin/pdata_tools', 'usr/sbin/era_check', 'etc/cbt/lib.sh', 'etc/cbt/modules.early', 'etc/cbt/modules.boot', `lib/modules/${img.kernelRelease}/modules.dep`]) {
    await t.notThrowsAsync(readFile(join(root, f)), f);
  }
  const early = (await readFile(join(root, 'etc/cbt/modules.early'), 'utf8')).trim().split('\n');
  const boot = (await readFile(join(root, 'etc/cbt/modules.boot'), 'utf8')).trim().split('\n');
  // Dependencies come first: virtio before virtio_pci, dm-mod and dm-persistent-data before dm-era.
  t.true(early.indexOf('kernel/drivers/virtio/virtio.ko') < early.indexOf('kernel/drivers/virtio/virtio_pci.ko'));
  t.true(early.some((m) => m.endsWith('/virtio_net.ko')) && early.some((m) => m.endsWith('/qemu_fw_cfg.ko')));
  const at = (name: string) => boot.findIndex((m) => m.endsWith(`/${name}.ko`));
  for (const m of ['virtio_blk', 'virtio_scsi', 'sd_mod', 'nvme', 'dm-mod', 'dm-bufio', 'dm-persistent-data', 'dm-era', 'dm-flakey', 'libcrc32c', 'button', 'evdev']) t.true(at(m) >= 0, m);
  t.true(at('dm-mod') < at('dm-era') && at('dm-persistent-data') < at('dm-era') && at('dm-bufio') < at('dm-persistent-data'));
  // Signatures stripped (verifying them costs boot time under TCG).
  const era = await readFile(join(root, 'lib/modules', img.kernelRelease, boot[at('dm-era')]));
  t.false(era.subarray(-28).toString('latin1').startsWith('~Module signature appended~'));
  t.is(era.subarray(0, 4).toString('latin1'), '\x7fELF');
  // Chroot-free ldd: the initramfs's own loader, its own library folders.
  const ldso = join(root, 'lib/x86_64-linux-gnu/ld-linux-x86-64.so.2');
  const libPath = [join(root, 'lib/x86_64-linux-gnu'), join(root, 'usr/lib/x86_64-linux-gnu')].join(':');
  for (const bin of ['usr/sbin/dropbear', 'usr/bin/dropbearkey', 'sbin/dmsetup', 'usr/sbin/pdata_tools']) {
    const { stdout } = await run(ldso, ['--library-path', libPath, '--list', join(root, bin)]);
    const libs = [...stdout.matchAll(/=> (\S+)/g)].map((m) => m[1]);
    t.true(libs.length > 0, bin);
    for (const l of libs) t.true(l.startsWith(root) || l.startsWith('./') || l.includes(root), `${bin}: ${l} resolved outside the initramfs`);
    t.false(stdout.includes('not found'), `${bin}: ${stdout}`);
  }
});

test('tools disk: an ext2 image holding fio, its loader and libraries', async (t) => {
  const img = await linuxRefImage();
  t.truthy(img.tools);
  const { stdout } = await run('debugfs', ['-R', 'ls -p /usr/bin', img.tools!]);
  t.regex(stdout, /\/fio\//);
  const libs = await run('debugfs', ['-R', 'ls -p /usr/lib/x86_64-linux-gnu', img.tools!]);
  t.regex(libs.stdout, /\/librbd\.so\.1\//);
  t.regex((await run('debugfs', ['-R', 'ls -p /', img.tools!])).stdout, /\/CBT-TOOLS\//);
});

test('the guest host key is in dropbear format: dropbearkey reads it back with the same fingerprint', async (t) => {
  const img = await linuxRefImage();
  const root = await initrdTree(img);
  const { dir, cleanup } = await tempDir('cbt-hostkey-');
  t.teardown(cleanup);
  const key = generateGuestHostKey();
  await writeFile(join(dir, 'hk'), key.dropbear, { mode: 0o600 });
  const ldso = join(root, 'lib/x86_64-linux-gnu/ld-linux-x86-64.so.2');
  const libPath = [join(root, 'lib/x86_64-linux-gnu'), join(root, 'usr/lib/x86_64-linux-gnu')].join(':');
  const { stdout } = await run(ldso, ['--library-path', libPath, join(root, 'usr/bin/dropbearkey'), '-y', '-f', join(dir, 'hk')]);
  const line = stdout.split('\n').find((l) => l.startsWith('ssh-ed25519 '));
  t.is(line?.split(' ').slice(0, 2).join(' '), key.publicKey.split(' ').slice(0, 2).join(' '));
  t.is(fingerprintOf(line!), key.fingerprint);
  t.regex(stdout, new RegExp(`Fingerprint: ${key.fingerprint.replace(/[+/]/g, '\\$&')}`));
});

test('recipe errors name the file and line; the key follows versions and recipe', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-recipe-');
  t.teardown(cleanup);
  await writeFile(join(dir, 'packages.txt'), '# c\nkernel linux-image-amd64\nbase busybox-static\nbogus fio\n');
  const e = await t.throwsAsync(readPackageList(dir), { instanceOf: ImageBuildError });
  t.regex(e?.message ?? '', /packages\.txt:4: expected "<kernel\|base\|tools> <package>", got `bogus fio`/);
  await writeFile(join(dir, 'packages.txt'), 'base busybox-static\n');
  await t.throwsAsync(readPackageList(dir), { message: /no kernel package/ });
  await writeFile(join(dir, 'packages.txt'), 'kernel linux-image-amd64\nbase no-such-package-cbt\n');
  await t.throwsAsync(resolvePackages(dir), { instanceOf: ImageBuildError, message: /no-such-package-cbt/ });
  const pk = [{ layer: 'base' as const, name: 'a', version: '1' }];
  t.is(imageKey(pk, 'r', 'none', true), imageKey(pk, 'r', 'none', true));
  t.not(imageKey(pk, 'r', 'none', true), imageKey([{ ...pk[0], version: '2' }], 'r', 'none', true));
  t.not(imageKey(pk, 'r', 'none', true), imageKey(pk, 'r2', 'none', true));
});

test('two builds of one key at once: one builds under the lock, the other gets its result', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-imgcache-');
  t.teardown(cleanup);
  // A private cache and no tools disk keep this build short; the recipe is the real one.
  const [a, b] = await Promise.all([buildLinuxRef({ cacheDir: dir, tools: false }), buildLinuxRef({ cacheDir: dir, tools: false })]);
  t.is(a.key, b.key);
  t.deepEqual([a.cached, b.cached].sort(), [false, true]);
  t.is(a.tools, null);
  const entries = await readdir(dir);
  t.deepEqual(entries, [`linux-ref-${a.key}`]);
  const c = await buildLinuxRef({ cacheDir: dir, tools: false, verify: true });
  t.true(c.cached);
  // A damaged cache entry is not used: it is rebuilt.
  await writeFile(c.initrd, 'truncated');
  await mkdir(join(dir, 'unrelated'));
  const d = await buildLinuxRef({ cacheDir: dir, tools: false });
  t.false(d.cached);
  t.is(await sha256(d.initrd), c.manifest.files.initrd.sha256);
});
