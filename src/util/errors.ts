/**
 * The root of every error the harness raises on purpose. The CLI prints a `HarnessError` as one
 * line and exits 2; anything else that reaches it is a bug (exit 3, with the stack).
 *
 * `category` says whose problem it is: `input` — the user can fix it (a file, an option, an
 * image); `infrastructure` — the machinery under the test failed (QEMU, SSH, a host). It only
 * labels; the scheduler's retry decision stays with `isInfrastructureError` (src/hosts).
 */
export type HarnessErrorCategory = 'input' | 'infrastructure';

export class HarnessError extends Error {
  override name = 'HarnessError';
  readonly category: HarnessErrorCategory = 'input';
}

/** A HarnessError of the infrastructure: a VM, a monitor, a connection, a host, a build. */
export class InfrastructureHarnessError extends HarnessError {
  override name = 'InfrastructureHarnessError';
  override readonly category: HarnessErrorCategory = 'infrastructure';
}

export function isHarnessError(error: unknown): error is HarnessError {
  return error instanceof HarnessError;
}
