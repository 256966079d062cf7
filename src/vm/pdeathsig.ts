/**
 * `setpriv --pdeathsig SIGKILL -- cmd args…` when util-linux's setpriv supports it: the child
 * (setpriv execs the command, same pid) is SIGKILLed by the kernel when the process that
 * spawned it dies, even by SIGKILL, so no QEMU outlives the harness.
 */
import { execFile } from 'node:child_process';

let checked: Promise<boolean> | null = null;

export function hasSetprivPdeathsig(): Promise<boolean> {
  checked ??= new Promise((resolvePromise) => {
    execFile('setpriv', ['--help'], (err, stdout) => resolvePromise(!err && String(stdout).includes('--pdeathsig')));
  });
  return checked;
}

/** The command and arguments that run `cmd args` tied to this process's life. */
export async function withPdeathsig(cmd: string, args: readonly string[]): Promise<[string, string[]]> {
  return (await hasSetprivPdeathsig()) ? ['setpriv', ['--pdeathsig', 'SIGKILL', '--', cmd, ...args]] : [cmd, [...args]];
}
