/**
 * `cbt-harness demo`: the quick-start job until scenarios land. Builds a base image and an
 * overlay with the real qemu-img/qemu-io, then shows what `image info` and `image diff` say.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { execa as run } from 'execa';
import { UsageError } from './errors.ts';
import { openImage } from '../qcow2/index.ts';
import { diffImages } from '../truth/index.ts';
import { imageInfo } from './image-commands.ts';
import { printJson, printText } from './output.ts';

/** qemu-img / qemu-io, their failure one line naming the tool and what it said. */
async function execa(tool: string, args: string[]): Promise<void> {
  const r = await run(tool, args, { reject: false });
  if (r.failed) throw new UsageError(`${tool} ${args.join(' ')} failed: ${String(r.stderr || r.shortMessage).trim()}`);
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('create a base/overlay pair with qemu-img and show info and diff')
    .option('--json', 'one JSON document on stdout')
    .option('--keep <dir>', 'build the pair in this folder and keep it')
    .action(async (flags: { json?: boolean; keep?: string }) => {
      const dir = flags.keep ?? (await mkdtemp(join(tmpdir(), 'cbt-demo-')));
      try {
        const base = join(dir, 'base.qcow2');
        const top = join(dir, 'top.qcow2');
        await execa('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
        await execa('qemu-io', ['-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 8M 256k', base]);
        await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
        // Rewrite 64 KiB with identical bytes (written, unchanged), change 4 KiB, zero 128 KiB.
        await execa('qemu-io', ['-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x33 4M 4k', '-c', 'write -z 8M 128k', top]);
        const b = await openImage(base);
        const t = await openImage(top);
        try {
          const info = imageInfo(t);
          const diff = await diffImages(b, t, { granularity: 4096 });
          const doc = { folder: dir, info, diff: { granularity: diff.granularity, changed: diff.changed, written: diff.written, changedBlocks: diff.changedBlocks, writtenBlocks: diff.writtenBlocks } };
          if (flags.json) await printJson(doc);
          else {
            await printText(`top.qcow2: ${info.virtualSize} bytes, ${info.clusterSize}-byte clusters, backing ${info.backingChain.join(' <- ')}`);
            await printText(`changed 4 KiB blocks: ${JSON.stringify(diff.changed)} (${diff.changedBlocks})`);
            await printText(`written 4 KiB blocks: ${JSON.stringify(diff.written)} (${diff.writtenBlocks})`);
            await printText('the identical rewrite at 0 is written but unchanged; 4 MiB changed; the zeroed 128 KiB at 8 MiB changed.');
          }
        } finally {
          await b.close();
          await t.close();
        }
      } finally {
        if (!flags.keep) await rm(dir, { recursive: true, force: true });
      }
    });
}
