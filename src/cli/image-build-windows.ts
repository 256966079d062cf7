/**
 * `cbt-harness image build windows`: build a Windows guest image from the user's own media
 * (images/windows/README.md). `image build` is a command group (hosts-commands.ts); register this
 * one in it: `imageBuildCommand().addCommand(windowsImageBuildCommand())`.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { buildWindowsImage } from '../guest/windows-image-build.ts';
import { generateKeyPair } from '../ssh/index.ts';
import { log, printJson, printText } from './output.ts';

function positiveInt(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return Number(v);
  };
}

interface Flags {
  iso: string;
  virtioIso: string;
  driver: string;
  out: string;
  edition?: string;
  productKey?: string;
  win11Checks: 'labconfig' | 'tpm' | 'none';
  virtioOs: string;
  fastStartup?: boolean;
  hibernation?: boolean;
  tools?: string;
  key?: string;
  username: string;
  password?: string;
  dataSerial: string;
  dataLetter: string;
  dataBus: 'virtio-blk' | 'virtio-scsi';
  answerMedia: 'iso' | 'floppy';
  memory: number;
  smp: number;
  accel: 'kvm' | 'tcg';
  systemSize: number;
  dataSize: number;
  timeout: number;
  vnc?: number;
  verifySsh: boolean;
  force?: boolean;
  json?: boolean;
}

/** A password Windows accepts (upper, lower, digit, symbol), from the system CSPRNG. */
function randomPassword(): string {
  return `Cbt-${randomBytes(12).toString('base64url')}9a`;
}

export function windowsImageBuildCommand(): Command {
  return new Command('windows')
    .description('install Windows unattended under QEMU with OpenSSH, test signing and the tracker driver; writes system.qcow2, data.qcow2 and manifest.json')
    .requiredOption('--iso <file>', 'Windows installation ISO (your own media)')
    .requiredOption('--virtio-iso <file>', 'virtio-win ISO')
    .requiredOption('--driver <dir>', 'tracker driver folder (.inf/.sys/.cat)')
    .option('--out <dir>', 'output folder', 'windows-image')
    .option('--edition <name|index>', 'image in install.wim: a name ("Windows 11 Pro") or an index (default 1)')
    .option('--product-key <key>', 'product key (KMS client setup key); none for evaluation media')
    .addOption(new Option('--win11-checks <how>', 'Windows 11 hardware checks: LabConfig bypass, a real TPM (swtpm), or none').choices(['labconfig', 'tpm', 'none']).default('labconfig'))
    .option('--virtio-os <dir>', 'virtio-win folder of the guest OS (w10, w11, 2k19, 2k22, 2k25)', 'w11')
    .option('--fast-startup', 'leave fast startup (HiberbootEnabled) on in the image')
    .option('--hibernation', 'enable hibernation (powercfg /h on)')
    .option('--tools <dir>', 'extra files for C:\\cbt (diskspd.exe, cbtctl.exe, OpenSSH-Win64.msi)')
    .option('--key <file>', 'harness private key (OpenSSH); default: a new ed25519 pair in the output folder')
    .option('--username <name>', 'local administrator', 'cbt')
    .option('--password <password>', 'its password (default: random, recorded in manifest.json)')
    .option('--data-serial <serial>', 'QEMU serial of the data disk', 'data0')
    .option('--data-letter <letter>', 'drive letter of the data volume', 'E')
    .addOption(new Option('--data-bus <bus>', 'bus of the data disk').choices(['virtio-blk', 'virtio-scsi']).default('virtio-blk'))
    .addOption(new Option('--answer-media <kind>', 'how the answer files reach Setup').choices(['iso', 'floppy']).default('iso'))
    .option('--memory <MiB>', 'guest memory', positiveInt('--memory'), 4096)
    .option('--smp <n>', 'guest CPUs', positiveInt('--smp'), 2)
    .addOption(new Option('--accel <accel>', 'QEMU accelerator').choices(['kvm', 'tcg']).default('kvm'))
    .option('--system-size <GiB>', 'system disk size', positiveInt('--system-size'), 64)
    .option('--data-size <GiB>', 'data disk size', positiveInt('--data-size'), 8)
    .option('--timeout <minutes>', 'limit for the whole install', positiveInt('--timeout'), 240)
    .option('--vnc <display>', 'VNC display on 127.0.0.1 to watch the install', (v) => Number(v))
    .option('--no-verify-ssh', 'do not log in over SSH after setup')
    .option('--force', 'overwrite disks in an existing output folder')
    .option('--json', 'print manifest.json on stdout')
    .action(async (flags: Flags) => {
      const out = resolve(flags.out);
      await mkdir(out, { recursive: true });
      let privateKey: string;
      let publicKey: string;
      if (flags.key) {
        privateKey = await readFile(resolve(flags.key), 'utf8');
        publicKey = (await readFile(`${resolve(flags.key)}.pub`, 'utf8')).trim();
      } else {
        const kp = await generateKeyPair('ed25519', { comment: 'cbt-harness windows image' });
        privateKey = kp.privateKey;
        publicKey = kp.publicKey;
        await writeFile(join(out, 'harness_ed25519'), privateKey, { mode: 0o600 });
        await writeFile(join(out, 'harness_ed25519.pub'), `${publicKey}\n`);
        log(`harness key: ${join(out, 'harness_ed25519')}`);
      }
      const edition = flags.edition === undefined ? undefined : /^\d+$/.test(flags.edition) ? { index: Number(flags.edition) } : { name: flags.edition };
      const manifest = await buildWindowsImage({
        iso: resolve(flags.iso),
        virtioIso: resolve(flags.virtioIso),
        driverDir: resolve(flags.driver),
        out,
        edition,
        productKey: flags.productKey,
        win11Checks: flags.win11Checks,
        virtioOs: flags.virtioOs,
        fastStartup: Boolean(flags.fastStartup),
        hibernation: flags.hibernation,
        toolsDir: flags.tools === undefined ? undefined : resolve(flags.tools),
        authorizedKey: publicKey,
        privateKey,
        username: flags.username,
        password: flags.password ?? randomPassword(),
        dataSerial: flags.dataSerial,
        dataLetter: flags.dataLetter,
        dataBus: flags.dataBus,
        answerMedia: flags.answerMedia,
        memoryMiB: flags.memory,
        smp: flags.smp,
        accel: flags.accel,
        systemDiskGiB: flags.systemSize,
        dataDiskGiB: flags.dataSize,
        timeoutMs: flags.timeout * 60_000,
        vnc: flags.vnc,
        verifySsh: flags.verifySsh,
        force: flags.force,
        onProgress: (m) => log(`image build windows: ${m}`),
      });
      if (flags.json) await printJson(manifest);
      else await printText(`Windows image in ${out}: system.qcow2, data.qcow2, OVMF_VARS.fd, manifest.json${manifest.forcedStop ? ' (QEMU had to be quit: check the image)' : ''}`);
    });
}
