/**
 * `cbt-harness image build linux-ref`: builds (or finds in the cache) the reference guest image.
 * `image build` is a command group (hosts-commands.ts adds `worker`); register this one in it:
 * `imageBuildCommand().addCommand(linuxRefBuildCommand())`.
 */
import { Command, Option } from 'commander';
import { buildLinuxRef, pruneLinuxRefCache, type LinuxRefImage } from '../guest/linux-ref-image.ts';
import { log, printJson, printText } from './output.ts';

const COMPRESSIONS = ['none', 'gzip', 'lz4', 'zstd', 'xz'] as const;
type Compression = (typeof COMPRESSIONS)[number];

export function imageSummary(img: LinuxRefImage): Record<string, unknown> {
  return {
    name: 'linux-ref',
    key: img.key,
    dir: img.dir,
    cached: img.cached,
    kernelRelease: img.kernelRelease,
    vmlinux: img.vmlinux,
    vmlinuz: img.vmlinuz,
    initrd: img.initrd,
    tools: img.tools,
    builtAt: img.manifest.builtAt,
    packages: img.manifest.packages.length,
    initrdBytes: img.manifest.files.initrd.size,
  };
}

export function linuxRefBuildCommand(): Command {
  return new Command('linux-ref')
    .description('build the reference Linux guest from Debian packages (cached by package versions)')
    .option('--json', 'one JSON document on stdout')
    .option('--force', 'rebuild even when cached')
    .option('--no-tools', 'skip the tools disk (fio)')
    .option('--cache-dir <dir>', 'image cache (default: $CBT_HARNESS_CACHE/images or ~/.cache/cbt-harness/images)')
    .addOption(new Option('--compression <c>', 'initramfs compression (none boots fastest under TCG)').choices(COMPRESSIONS))
    .option('--verify', 're-hash a cached image against its manifest')
    .option('--prune', 'remove the other cached linux-ref images')
    .action(async (flags: { json?: boolean; force?: boolean; tools: boolean; cacheDir?: string; compression?: Compression; verify?: boolean; prune?: boolean }) => {
      const img = await buildLinuxRef({ force: flags.force, tools: flags.tools, cacheDir: flags.cacheDir, compression: flags.compression, verify: flags.verify, log });
      const summary = imageSummary(img);
      if (flags.prune) summary.pruned = await pruneLinuxRefCache(img.key, flags.cacheDir);
      if (flags.json) await printJson(summary);
      else await printText(`${img.cached ? 'cached' : 'built'} linux-ref ${img.key} (kernel ${img.kernelRelease}) in ${img.dir}`);
    });
}
