/**
 * The Windows image recipe without Windows media: the rendered answer file checked with xmllint
 * (well-formed, every component and setting present, hostile values escaped), setup.ps1 parsed
 * with the tree-sitter PowerShell grammar, the answer media packed by the real Debian tools and
 * read back (isoinfo -J, osirrox, mtools), the install argv accepted by a real QEMU (paused, with
 * a real swtpm) and inspected over QMP, and the build's orchestration run end to end against a
 * wrapper that starts that real QEMU paused and writes setup's COM1 lines itself.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { buildWindowsImage, packAnswerMedia, parseComLine, RECIPE_DIR, stageAnswerFiles } from '../../src/guest/windows-image-build.ts';
import { buildPaths, installArgv, renderAutounattend, renderTemplate, resolveImageOptions, swtpmArgv, type WindowsImageOptions, WindowsImageError, xmlEscape } from '../../src/guest/windows-image.ts';
import { QmpClient } from '../../src/qmp/index.ts';
import { loadPsParser } from '../helpers/guest-powershell.ts';
import { tempDir } from '../helpers/tools.ts';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxyz0123456789abcdefghijklmnopqrstuvwxyzABCD cbt test';
const NS = 'urn:schemas-microsoft-com:unattend';

function base(dir: string, extra: Partial<WindowsImageOptions> = {}): WindowsImageOptions {
  return { iso: join(dir, 'win.iso'), virtioIso: join(dir, 'virtio.iso'), driverDir: join(dir, 'driver'), out: join(dir, 'out'), authorizedKey: KEY, password: 'Passw0rd!', ...extra };
}

async function xpath(xmlFile: string, expr: string): Promise<string> {
  const r = await execa('xmllint', ['--xpath', expr, xmlFile], { reject: false });
  return r.exitCode === 0 ? r.stdout : '';
}


async function rendered(t: ExecutionContext, o: WindowsImageOptions): Promise<string> {
  const { dir, cleanup } = await tempDir('cbt-unattend-');
  t.teardown(cleanup);
  const xml = renderAutounattend(await readFile(join(RECIPE_DIR, 'autounattend.xml.template'), 'utf8'), resolveImageOptions(o));
  const file = join(dir, 'autounattend.xml');
  await writeFile(file, xml);
  await execa('xmllint', ['--noout', file]);
  return file;
}

test('answer file: well-formed, with the virtio drivers, UEFI layout, image, LabConfig, account and first-logon command', async (t) => {
  const f = await rendered(t, base('/x'));
  t.is(await xpath(f, 'namespace-uri(/*)'), NS);
  t.is(await xpath(f, "count(/*/*[local-name()='settings'])"), '3');
  const pe = "//*[local-name()='settings'][@pass='windowsPE']";
  t.regex(await xpath(f, `count(${pe}/*[@name='Microsoft-Windows-PnpCustomizationsWinPE']//*[local-name()='PathAndCredentials'])`), /^18$/);
  for (const drv of ['viostor', 'vioscsi', 'NetKVM']) t.true((await xpath(f, `string(${pe}//*[local-name()='Path'][contains(., '\\${drv}\\w11\\amd64')])`)).length > 0, drv);
  const setup = `${pe}/*[@name='Microsoft-Windows-Setup']`;
  t.is(await xpath(f, `string(${setup}//*[local-name()='CreatePartition'][*[local-name()='Order']='1']/*[local-name()='Type'])`), 'EFI');
  t.is(await xpath(f, `string(${setup}//*[local-name()='CreatePartition'][*[local-name()='Order']='1']/*[local-name()='Size'])`), '260');
  t.is(await xpath(f, `string(${setup}//*[local-name()='CreatePartition'][*[local-name()='Order']='2']/*[local-name()='Type'])`), 'MSR');
  t.is(await xpath(f, `string(${setup}//*[local-name()='CreatePartition'][*[local-name()='Order']='3']/*[local-name()='Type'])`), 'Primary');
  t.is(await xpath(f, `string(${setup}//*[local-name()='CreatePartition'][*[local-name()='Order']='3']/*[local-name()='Extend'])`), 'true');
  t.is(await xpath(f, `string(${setup}//*[local-name()='InstallTo']/*[local-name()='PartitionID'])`), '3');
  t.is(await xpath(f, `string(${setup}//*[local-name()='MetaData']/*[local-name()='Key'])`), '/IMAGE/INDEX');
  t.is(await xpath(f, `string(${setup}//*[local-name()='MetaData']/*[local-name()='Value'])`), '1');
  t.is(await xpath(f, `string(${setup}//*[local-name()='AcceptEula'])`), 'true');
  t.is(await xpath(f, `count(${setup}//*[local-name()='ProductKey'])`), '0');
  const lab = await xpath(f, `string(${setup}/*[local-name()='RunSynchronous'])`);
  for (const v of ['BypassTPMCheck', 'BypassSecureBootCheck', 'BypassRAMCheck']) t.regex(lab, new RegExp(`HKLM\\\\SYSTEM\\\\Setup\\\\LabConfig /v ${v} /t REG_DWORD /d 1`));
  const oobe = "//*[local-name()='settings'][@pass='oobeSystem']/*[@name='Microsoft-Windows-Shell-Setup']";
  t.is(await xpath(f, `string(${oobe}//*[local-name()='LocalAccount']/*[local-name()='Name'])`), 'cbt');
  t.is(await xpath(f, `string(${oobe}//*[local-name()='LocalAccount']/*[local-name()='Group'])`), 'Administrators');
  t.is(await xpath(f, `string(${oobe}/*[local-name()='AutoLogon']/*[local-name()='Enabled'])`), 'true');
  t.is(await xpath(f, `string(${oobe}/*[local-name()='AutoLogon']/*[local-name()='LogonCount'])`), '1');
  t.regex(await xpath(f, `string(${oobe}//*[local-name()='SynchronousCommand']/*[local-name()='CommandLine'])`), /^cmd\.exe \/c "for %D in \(D E F .*\) do @if exist %D:\\cbt-setup\\setup\.ps1 powershell\.exe -NoProfile -ExecutionPolicy Bypass -File %D:\\cbt-setup\\setup\.ps1 -Media %D:\\"$/);
  t.is(await xpath(f, `string(${oobe}/*[local-name()='OOBE']/*[local-name()='HideOnlineAccountScreens'])`), 'true');
});

test('answer file: TPM mode drops LabConfig; edition by name and product key appear; hostile values are escaped and read back exactly', async (t) => {
  const hostile = 'Windows <11> & "Pro" \'N\' ]]> ü 😀';
  const password = `p<a&s>s"w'o]]>rd ü`;
  const f = await rendered(t, base('/x', { win11Checks: 'tpm', edition: { name: hostile }, password, productKey: 'W269N-WFGWX-YVC9B-4J6C9-T83GX', computerName: 'CBT-01' }));
  t.is(await xpath(f, "count(//*[local-name()='RunSynchronous'])"), '0');
  t.is(await xpath(f, "string(//*[local-name()='MetaData']/*[local-name()='Key'])"), '/IMAGE/NAME');
  t.is(await xpath(f, "string(//*[local-name()='MetaData']/*[local-name()='Value'])"), hostile);
  t.is(await xpath(f, "string(//*[local-name()='ProductKey']/*[local-name()='Key'])"), 'W269N-WFGWX-YVC9B-4J6C9-T83GX');
  t.is(await xpath(f, "string(//*[local-name()='LocalAccount']//*[local-name()='Value'])"), password);
  t.is(await xpath(f, "string(//*[local-name()='AutoLogon']//*[local-name()='Value'])"), password);
  t.is(await xpath(f, "string(//*[local-name()='ComputerName'])"), 'CBT-01');
});

test('renderTemplate and xmlEscape refuse what would ship a broken answer file', (t) => {
  t.throws(() => renderTemplate('<a>{{nope}}</a>', {}), { instanceOf: WindowsImageError, message: /\{\{nope\}\}/ });
  t.throws(() => renderTemplate('<a>{{x}</a>', { x: 'v' }), { instanceOf: WindowsImageError, message: /unrendered/ });
  t.throws(() => renderTemplate('{{{x}}}', { x: 'not a fragment' }), { instanceOf: WindowsImageError });
  t.is(renderTemplate('{{#a}}A{{/a}}{{^a}}B{{/a}}{{x}}', { a: false, x: '<&>' }), 'B&lt;&amp;&gt;');
  t.throws(() => xmlEscape('bell\u0007'), { instanceOf: WindowsImageError });
  t.throws(() => xmlEscape('lone \uD800'), { instanceOf: WindowsImageError });
  t.is(xmlEscape('tab\tnl\n😀'), 'tab\tnl\n😀');
});

test('resolveImageOptions names the bad field', (t) => {
  const o = base('/x');
  t.throws(() => resolveImageOptions({ ...o, iso: 'relative.iso' }), { instanceOf: WindowsImageError, message: /`iso`/ });
  t.throws(() => resolveImageOptions({ ...o, win11Checks: 'maybe' as never }), { message: /`win11Checks`/ });
  t.throws(() => resolveImageOptions({ ...o, edition: { index: 0 } }), { message: /`edition.index`/ });
  t.throws(() => resolveImageOptions({ ...o, productKey: 'nope' }), { message: /`productKey`/ });
  t.throws(() => resolveImageOptions({ ...o, authorizedKey: 'not a key' }), { message: /`authorizedKey`/ });
  t.throws(() => resolveImageOptions({ ...o, password: 'short' }), { message: /`password`/ });
  t.throws(() => resolveImageOptions({ ...o, dataSerial: 'has space' }), { message: /`dataSerial`/ });
  t.throws(() => resolveImageOptions({ ...o, dataLetter: 'C' }), { message: /`dataLetter`/ });
  t.throws(() => resolveImageOptions({ ...o, virtioOs: '../x' }), { message: /`virtioOs`/ });
  t.throws(() => resolveImageOptions({ ...o, memoryMiB: 512 }), { message: /`memoryMiB`/ });
  t.is(resolveImageOptions(o).hibernation, false);
  t.is(resolveImageOptions({ ...o, fastStartup: true }).hibernation, true);
});

test('setup.ps1 parses under the tree-sitter PowerShell grammar and covers every setup duty', async (t) => {
  const src = await readFile(join(RECIPE_DIR, 'setup.ps1'), 'utf8');
  for (const must of [
    'OpenSSH.Server~~~~0.0.1.0',
    'OpenSSH-Win64.msi',
    "-Name DefaultShell -Value 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe'",
    "'C:\\ProgramData\\ssh\\administrators_authorized_keys'",
    "'/inheritance:r', '/grant', '*S-1-5-32-544:F', '/grant', '*S-1-5-18:F'",
    "@('/set', 'testsigning', 'on')",
    "'SUB_BUTTONS', 'PBUTTONACTION', '3'",
    "'monitor-timeout-ac', '0'",
    "'shutdownwithoutlogon' 1",
    "'HiberbootEnabled'",
    "'pnputil.exe' @('/add-driver', $inf.FullName, '/install')",
    'Initialize-Disk -Number $disk.Number -PartitionStyle GPT',
    'Format-Volume -Partition $part -FileSystem NTFS',
    'Set-StorageSetting -NewDiskPolicy OnlineAll',
    "'CBT-SETUP-DONE '",
    "'CBT-SETUP-FAILED '",
    'System.IO.Ports.SerialPort',
  ]) {
    t.true(src.includes(must), must);
  }
  const parser = await loadPsParser();
  if (!parser) {
    t.log('web-tree-sitter / tree-sitter-powershell not installed: setup.ps1 syntax unchecked');
    return;
  }
  t.deepEqual(parser.errors(src), []);
});

async function fixture(t: ExecutionContext): Promise<string> {
  const { dir, cleanup } = await tempDir('cbt-winimg-');
  t.teardown(cleanup);
  for (const [name, file] of [
    ['winsrc', 'win.iso'],
    ['virtsrc', 'virtio.iso'],
  ]) {
    await mkdir(join(dir, name, 'sources'), { recursive: true });
    await writeFile(join(dir, name, 'sources', 'install.wim'), 'not really a wim');
    await execa('xorriso', ['-as', 'mkisofs', '-quiet', '-o', join(dir, file), '-J', '-r', join(dir, name)]);
  }
  await mkdir(join(dir, 'driver', 'x64'), { recursive: true });
  await writeFile(join(dir, 'driver', 'x64', 'cbtflt.inf'), '; fake driver\r\n[Version]\r\nSignature="$WINDOWS NT$"\r\n');
  await writeFile(join(dir, 'driver', 'x64', 'cbtflt.sys'), Buffer.alloc(4096, 0x5a));
  await mkdir(join(dir, 'tools'));
  await writeFile(join(dir, 'tools', 'diskspd.exe'), 'MZ fake');
  return dir;
}

test('answer media: ISO (xorriso) keeps long names under Joliet and the bytes; floppy (mtools) too', async (t) => {
  const dir = await fixture(t);
  const o = resolveImageOptions(base(dir, { toolsDir: join(dir, 'tools') }));
  const stage = join(dir, 'stage');
  await stageAnswerFiles(o, stage);
  const iso = join(dir, 'answer.iso');
  t.deepEqual(await packAnswerMedia(stage, iso, 'iso'), { tool: 'xorriso' });
  const joliet = (await execa('isoinfo', ['-J', '-f', '-i', iso])).stdout.split('\n').map((l) => l.trim());
  for (const p of ['/autounattend.xml', '/cbt-setup/setup.ps1', '/cbt-setup/cbt-setup.json', '/cbt-setup/driver/x64/cbtflt.inf', '/cbt-setup/driver/x64/cbtflt.sys', '/cbt-setup/tools/diskspd.exe']) t.true(joliet.includes(p), p);
  t.regex((await execa('isoinfo', ['-d', '-i', iso])).stdout, /Volume id: CBT_ANSWER/);
  const back = join(dir, 'back');
  await execa('osirrox', ['-indev', iso, '-extract', '/', back]);
  for (const p of ['autounattend.xml', 'cbt-setup/setup.ps1', 'cbt-setup/driver/x64/cbtflt.sys']) t.deepEqual(await readFile(join(back, p)), await readFile(join(stage, p)), p);
  const setupJson = JSON.parse(await readFile(join(back, 'cbt-setup/cbt-setup.json'), 'utf8')) as Record<string, unknown>;
  t.like(setupJson, { comPort: 'COM1', authorizedKey: KEY, dataSerial: 'data0', dataLetter: 'E', fastStartup: false, testSigning: true, virtioOs: 'w11' });

  const fd = join(dir, 'answer.img');
  t.deepEqual(await packAnswerMedia(stage, fd, 'floppy'), { tool: 'mtools' });
  const listing = (await execa('mdir', ['-/', '-b', '-i', fd, '::/'])).stdout;
  t.regex(listing, /::\/autounattend\.xml/);
  t.regex(listing, /::\/cbt-setup\/driver\/x64\/cbtflt\.sys/);
  const xml = await execa('mtype', ['-i', fd, '::/autounattend.xml'], { stripFinalNewline: false });
  t.is(xml.stdout, await readFile(join(stage, 'autounattend.xml'), 'utf8'));
  // Too big for any floppy: a clear error.
  await writeFile(join(stage, 'big.bin'), Buffer.alloc(3 * 1024 * 1024));
  await t.throwsAsync(packAnswerMedia(stage, fd, 'floppy'), { instanceOf: WindowsImageError, message: /more than a 2\.88 MB floppy/ });
  await t.throwsAsync(stageAnswerFiles({ ...o, driverDir: join(dir, 'tools') }, stage), { instanceOf: WindowsImageError, message: /no \.inf/ });
});

test('install argv: a real QEMU accepts it (paused) with a real swtpm; QMP shows the disks, CDs, serials and the TPM', async (t) => {
  const dir = await fixture(t);
  for (const variant of [
    { answerMedia: 'iso', win11Checks: 'tpm', dataBus: 'virtio-blk' },
    { answerMedia: 'floppy', win11Checks: 'labconfig', dataBus: 'virtio-scsi' },
  ] as const) {
    const o = resolveImageOptions(base(dir, { ...variant, accel: 'tcg', out: join(dir, `out-${variant.answerMedia}`) }));
    await mkdir(o.out, { recursive: true });
    const p = buildPaths(o.out);
    await stageAnswerFiles(o, join(o.out, 'answer'));
    await packAnswerMedia(join(o.out, 'answer'), p.answer, o.answerMedia);
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', p.systemDisk, '1G']);
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', p.dataDisk, '1G']);
    await execa('cp', [o.ovmfVars, p.ovmfVars]);
    const pids: number[] = [];
    t.teardown(() => {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
    if (o.win11Checks === 'tpm') {
      await mkdir(join(o.out, 'tpm'));
      const a = swtpmArgv(p, join(o.out, 'tpm'));
      const sw = execa(a[0], a.slice(1), { reject: false });
      pids.push(sw.pid as number);
      for (let i = 0; i < 100 && !(await readFile(p.tpmSocket).then(() => true, (e: NodeJS.ErrnoException) => e.code !== 'ENOENT')); i++) await new Promise((r) => setTimeout(r, 50));
    }
    const argv = installArgv(o, p, 2222, 'cbt-test-winbuild');
    const qemu = execa(argv[0], [...argv.slice(1), '-S'], { reject: false });
    pids.push(qemu.pid as number);
    const qmp = await QmpClient.connect({ path: p.qmpSocket }, { retryUntil: Date.now() + 20_000 });
    try {
      const blocks = await qmp.execute<Array<{ inserted?: { 'node-name': string; ro: boolean } }>>('query-block');
      const nodes = Object.fromEntries(blocks.filter((b) => b.inserted).map((b) => [b.inserted?.['node-name'], b.inserted?.ro]));
      t.like(nodes, { system: false, data: false, 'win-iso': true, 'virtio-iso': true, answer: true }, JSON.stringify(nodes));
      const qtree = await qmp.hmp('info qtree');
      t.regex(qtree, /serial = "data0"/);
      t.regex(qtree, /serial = "system"/);
      t.regex(qtree, variant.dataBus === 'virtio-scsi' ? /dev: scsi-hd/ : /dev: virtio-blk-pci[\s\S]*dev: virtio-blk-pci/);
      t.regex(qtree, variant.answerMedia === 'floppy' ? /dev: floppy/ : /dev: ide-cd[\s\S]*dev: ide-cd[\s\S]*dev: ide-cd/);
      const tpm = await qmp.execute<Array<{ model: string }>>('query-tpm');
      t.deepEqual(tpm.map((x) => x.model), variant.win11Checks === 'tpm' ? ['tpm-tis'] : []);
      t.is(await qmp.execute('qom-get', { path: '/machine/peripheral/cd-win-iso', property: 'bootindex' }), 0);
      t.is(await qmp.execute('qom-get', { path: '/machine/peripheral/system-disk', property: 'bootindex' }), 1);
      await qmp.execute('quit');
    } finally {
      await qmp.close();
    }
    await qemu;
  }
});

test('build orchestration against a paused real QEMU: COM1 progress, done facts, forced stop and manifest; a FAILED line stops the build', async (t) => {
  const dir = await fixture(t);
  const wrapper = async (name: string, lines: string[]): Promise<string> => {
    const path = join(dir, name);
    const writes = lines.map((l) => `printf '%s\\r\\n' ${shq(l)} >> "$com1"; sleep 0.3`).join('; ');
    await writeFile(path, `#!/bin/bash\ncom1=\nfor a in "$@"; do case "$a" in backend=file,id=com1,path=*) com1="\${a#backend=file,id=com1,path=}";; esac; done\n( sleep 0.5; ${writes} ) &\nexec qemu-system-x86_64 "$@" -S\n`);
    await chmod(path, 0o755);
    return path;
  };
  const progress: string[] = [];
  const ok = await wrapper('qemu-ok', ['CBT-SETUP-STEP power', 'noise from the guest', 'CBT-SETUP-STEP openssh', 'CBT-SETUP-DONE {"caption":"Fake Windows","build":"26100","driver":[{"inf":"cbtflt.inf","exitCode":0}]}']);
  const manifest = await buildWindowsImage({ ...base(dir, { accel: 'tcg', qemuBinary: ok, toolsDir: join(dir, 'tools'), systemDiskGiB: 32, dataDiskGiB: 1 }), verifySsh: false, powerOffTimeoutMs: 1500, bootKeyWindowMs: 1000, onProgress: (m) => progress.push(m) });
  t.is(manifest.format, 'cbt-harness/windows-image/1');
  t.true(manifest.forcedStop, 'a paused QEMU never powers off by itself');
  t.like(manifest.guest, { caption: 'Fake Windows', build: '26100' });
  t.like(manifest.options, { win11Checks: 'labconfig', dataSerial: 'data0', answerMedia: 'iso' });
  t.false(manifest.ssh.verified);
  t.deepEqual(JSON.parse(await readFile(join(dir, 'out', 'manifest.json'), 'utf8')), JSON.parse(JSON.stringify(manifest)));
  t.true(progress.includes('setup: power') && progress.includes('setup: openssh'), progress.join(' | '));
  t.regex((await execa('qemu-img', ['info', '--output=json', join(dir, 'out', 'system.qcow2')])).stdout, /"virtual-size": 34359738368/);
  await t.throwsAsync(buildWindowsImage({ ...base(dir, { accel: 'tcg', qemuBinary: ok }), verifySsh: false }), { instanceOf: WindowsImageError, message: /exists/ });

  const bad = await wrapper('qemu-bad', ['CBT-SETUP-STEP openssh', 'CBT-SETUP-FAILED {"step":"openssh","message":"Add-WindowsCapability: source files could not be found"}']);
  await t.throwsAsync(buildWindowsImage({ ...base(dir, { accel: 'tcg', qemuBinary: bad, out: join(dir, 'out2') }), verifySsh: false, bootKeyWindowMs: 500 }), { instanceOf: WindowsImageError, message: /failed in step openssh: Add-WindowsCapability: source files could not be found/ });
  t.like(parseComLine('CBT-SETUP-DONE {"a":1}\r'), { kind: 'done', data: { a: 1 } });
  t.like(parseComLine('garbage'), { kind: 'other' });
});

function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
