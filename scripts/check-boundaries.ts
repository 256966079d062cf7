/**
 * Import boundaries of src/ (docs/architecture.md "Modules and who may import whom"): the CLI over
 * scripts/boundaries/. Run in `npm run lint`.
 *
 *   node scripts/check-boundaries.ts [root]     (root: the directory holding src/; default: this repo)
 *
 * Prints one `file:line: rule: message` line per violation on stdout. Exit 0 clean, 1 violations,
 * 2 when the check itself failed (no src/, unreadable file, …).
 */
import { statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatViolation, scanTree } from './boundaries/scan.ts';

export function main(args: readonly string[]): number {
  try {
    if (args.length > 1 || args[0]?.startsWith('-')) throw new Error('usage: node scripts/check-boundaries.ts [root]');
    const root = resolve(args[0] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
    if (!statSync(join(root, 'src'), { throwIfNoEntry: false })?.isDirectory()) throw new Error(`${root}/src is not a directory`);
    const { files, violations } = scanTree(root);
    for (const v of violations) process.stdout.write(`${formatViolation(v)}\n`);
    if (violations.length > 0) {
      process.stderr.write(`import boundaries: ${violations.length} violation(s) in ${files} files\n`);
      return 1;
    }
    process.stderr.write(`import boundaries: ok (${files} files)\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`check-boundaries: ${(error as Error).message}\n`);
    return 2;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main(process.argv.slice(2));
