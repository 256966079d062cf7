/** `cbt-harness cbt decode` and `cbt-harness verify` (DESIGN.md "CLI contract"). */
import { Command, InvalidArgumentError } from 'commander';
import { decodeImage, verifyImages } from '../scenario/oracle.ts';
import { acceptable, VERDICTS, type Verdict } from '../verify/index.ts';
import { CheckFailed } from './errors.ts';
import { printJson, printText } from './output.ts';
import { parsePositiveBytes } from './parse.ts';
import { defaultProviders } from '../cbt/index.ts';

function collectOpt(value: string, previous: Record<string, string>): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError(`Expected --opt key=value, got \`${value}\``);
  return { ...previous, [value.slice(0, i)]: value.slice(i + 1) };
}

function collectExpect(value: string, previous: Verdict[]): Verdict[] {
  const out = [...previous];
  for (const v of value.split(',').map((x) => x.trim().toUpperCase())) {
    if (!VERDICTS.includes(v as Verdict)) throw new InvalidArgumentError(`Expected verdicts among ${VERDICTS.join(', ')}, got \`${v}\``);
    out.push(v as Verdict);
  }
  return out;
}

export function cbtCommand(): Command {
  const cbt = new Command('cbt').description("decode a tracker's persisted claim from an image");
  cbt
    .command('decode')
    .argument('<img>', 'the image holding the tracker (the epoch top)')
    .requiredOption('-d, --decoder <name>', 'dm-era | qemu-bitmap | cbtf | path to a plugin module')
    .option('-o, --opt <key=value>', 'decoder option (repeatable)', collectOpt, {})
    .option('-s, --snapshot <name>', 'read the image as of an internal snapshot')
    .option('--json', 'one JSON document on stdout')
    .action(async (img: string, flags: { decoder: string; opt: Record<string, string>; snapshot?: string; json?: boolean }) => {
      const c = await decodeImage(img, { decoder: flags.decoder, options: flags.opt, snapshot: flags.snapshot, providers: defaultProviders });
      const doc = { decoder: c.decoder, state: c.state, reason: c.reason, granularity: c.granularity, volume: c.volume, blocks: c.blocks, excluded: c.excluded };
      if (flags.json) await printJson(doc);
      else {
        const n = c.blocks.reduce((s, [, k]) => s + k, 0);
        await printText(`${c.decoder}: ${c.state}${c.reason ? ` (${c.reason})` : ''}; ${n} blocks of ${c.granularity} bytes claimed in the volume at ${c.volume.offset}+${c.volume.length}`);
      }
    });
  return cbt;
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description('judge a claim against the truth: EXACT | SUPERSET | RESYNC | MISSED')
    .requiredOption('--base <img>', 'the disk at the epoch start')
    .requiredOption('--top <img>', 'the disk now (holds the claim)')
    .requiredOption('-d, --decoder <name>', 'dm-era | qemu-bitmap | cbtf | path to a plugin module')
    .option('-o, --opt <key=value>', 'decoder option (repeatable)', collectOpt, {})
    .option('--base-snapshot <name>', 'read base as of an internal snapshot')
    .option('--expect <verdicts>', 'acceptable verdicts, comma separated (default: anything but MISSED)', collectExpect, [])
    .option('--truth-granularity <bytes>', 'granularity of the truth (default: ≤ 4 KiB, dividing the claim granularity)', (v: string) => parsePositiveBytes(v, 'truth granularity'))
    .option('--json', 'one JSON document on stdout')
    .action(async (flags: { base: string; top: string; decoder: string; opt: Record<string, string>; baseSnapshot?: string; expect: Verdict[]; truthGranularity?: number; json?: boolean }) => {
      const out = await verifyImages({ base: flags.base, top: flags.top, baseSnapshot: flags.baseSnapshot, decoder: flags.decoder, options: flags.opt, truthGranularity: flags.truthGranularity, providers: defaultProviders });
      const r = out.result;
      const doc = { verdict: r.verdict, missedBlocks: r.missedBlocks, extraBlocks: r.extraBlocks, changedBlocks: r.changedBlocks, claimedBlocks: r.claimedBlocks, granularity: r.granularity, missed: r.missed, ...(r.reason ? { reason: r.reason } : {}) };
      if (flags.json) await printJson(doc);
      else {
        await printText(
          `${r.verdict}: ${r.changedBlocks} changed, ${r.claimedBlocks} claimed, ${r.missedBlocks} missed, ${r.extraBlocks} extra blocks of ${r.granularity} bytes${r.reason ? ` (${r.reason})` : ''}` +
            (r.missed.length ? `\nfirst missed ranges: ${JSON.stringify(r.missed.slice(0, 8))}` : ''),
        );
      }
      if (!acceptable(r.verdict, flags.expect)) {
        throw new CheckFailed(`verdict ${r.verdict} is not acceptable (${flags.expect.length ? `expected ${flags.expect.join(', ')}` : 'MISSED is never acceptable'})`);
      }
    });
}
