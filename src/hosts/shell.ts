/** POSIX shell snippets the executors run on hosts (Debian: sh, coreutils, util-linux, GNU grep). */

/** Quotes one word for sh. */
export function shq(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function shJoin(argv: readonly string[]): string {
  return argv.map(shq).join(' ');
}

/** Identifiers the harness puts into paths, labels and environment values. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Environment labels on every process an executor starts (the sweeper and cleanup find them). */
export const ENV_RUN = 'CBT_HARNESS_RUN';
export const ENV_JOB = 'CBT_HARNESS_JOB';
export const ENV_EXEC = 'CBT_HARNESS_EXEC';
/**
 * A random id per job session: cleanup kills by it, never by the job id (two runs, or two
 * inventory hosts on one machine, can have jobs of the same name).
 */
export const ENV_SESSION = 'CBT_HARNESS_SESSION';

/**
 * Shell function `cbt_kill SIGNAL KEY=VALUE`: signals every process whose environment holds that
 * exact entry (other than this shell), printing their pids. /proc/PID/environ is the environment
 * at exec time, so a label exported by a wrapper shell shows in all of its descendants, even
 * those that left the process group (daemons, `qemu -daemonize`).
 */
export const KILL_FN = `cbt_pids() {
  grep -lzxF "$1" /proc/[0-9]*/environ 2>/dev/null | sed -n 's,^/proc/\\([0-9]*\\)/environ$,\\1,p' | grep -vx "$$"
}
cbt_kill() {
  for p in $(cbt_pids "$2"); do kill -"$1" "$p" 2>/dev/null && echo "$p"; done
}
cbt_killall() {
  # TERM, up to 2 s for them to go, then KILL; prints the pids that needed KILL after "forced:".
  cbt_kill TERM "$1" >/dev/null
  i=0
  while [ $i -lt 20 ]; do
    [ -z "$(cbt_pids "$1")" ] && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "forced: $(cbt_kill KILL "$1" | tr '\\n' ' ')"
}`;
