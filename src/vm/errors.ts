/**
 * The VM launcher's error class. `kind` says what went wrong:
 * - `spec`        — the VmSpec is invalid (message names the field and the value);
 * - `start`       — QEMU could not be started or exited before it was ready (stderr included);
 * - `exited`      — QEMU exited while an operation was waiting on it;
 * - `timeout`     — a wait ran out of time (console marker, exit, event);
 * - `aborted`     — the caller's AbortSignal fired (its reason is the `cause`);
 * - `qmp`         — a QMP command failed (the QmpError is the `cause`);
 * - `unsupported` — the operation does not apply to this disk or VM (e.g. surprise removal of a
 *                   virtio-blk disk);
 * - `tool`        — a host tool (qemu-img) failed.
 */
import { InfrastructureHarnessError } from '../util/index.ts';
export type VmErrorKind = 'spec' | 'start' | 'exited' | 'timeout' | 'aborted' | 'qmp' | 'unsupported' | 'tool';

export class VmError extends InfrastructureHarnessError {
  override name = 'VmError';
  kind: VmErrorKind;
  /** `cbt-<runId>-<vmId>` of the VM concerned, when there is one. */
  vm: string | undefined;

  constructor(kind: VmErrorKind, message: string, options: { vm?: string; cause?: unknown } = {}) {
    super(options.vm ? `${options.vm}: ${message}` : message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.vm = options.vm;
  }
}
