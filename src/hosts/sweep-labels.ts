/** Run labels on QEMU command lines and in run ids (the sweeper's evidence). */
import { posix } from 'node:path';

/** The time encoded in a run id, as ISO (runs without a lease are judged by it). */
export function runIdTime(runId: string): string | undefined {
  const m = /^r(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})-/.exec(runId);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z` : undefined;
}

/**
 * The run id in a QEMU command line's `-name` (`cbt-<runId>…` or `guest=cbt-<runId>…`), or null.
 * Only processes whose program is qemu-system-* qualify.
 */
export function qemuRunLabel(argv: readonly string[]): string | null {
  if (!argv[0] || !posix.basename(argv[0]).startsWith('qemu-system')) return null;
  for (let i = 1; i < argv.length - 1; i++) {
    if (argv[i] !== '-name') continue;
    const m = /(?:^|guest=)cbt-(r\d{8}T\d{6}-[a-z0-9]{6})(?:[^a-z0-9]|$)/.exec(argv[i + 1]);
    if (m) return m[1];
  }
  return null;
}
