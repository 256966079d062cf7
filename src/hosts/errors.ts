import { ConfigError, type ConfigErrorOptions } from '../config/index.ts';
import { InfrastructureHarnessError, type HarnessErrorCategory } from '../util/index.ts';

/**
 * Typed errors of the hosts module. Each names the host (and the file, line and field for
 * inventory errors) so a user knows where to look.
 */

/** Base class: something about a host went wrong. `host` is the inventory name. */
export class HostError extends InfrastructureHarnessError {
  override name = 'HostError';
  readonly host: string;

  constructor(host: string, message: string, options?: { cause?: unknown }) {
    super(`host ${host}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.host = host;
  }
}

/**
 * The infrastructure failed, not the thing under test: host unreachable, connection lost,
 * container died, VM did not boot. The scheduler retries such a job on another host.
 *
 * Modules that may not import hosts/ (vm/, guest/) can mark their own errors instead by setting
 * a property `infrastructure: true`; `isInfrastructureError` accepts both.
 */
export class InfrastructureError extends HostError {
  override name = 'InfrastructureError';
  readonly infrastructure = true;
}

export function isInfrastructureError(error: unknown): boolean {
  if (error instanceof InfrastructureError) return true;
  return typeof error === 'object' && error !== null && (error as { infrastructure?: unknown }).infrastructure === true;
}

/** A command on a host ran past its time limit (it and its process group were killed). */
export class CommandTimeoutError extends HostError {
  override name = 'CommandTimeoutError';
  readonly timeoutMs: number;

  constructor(host: string, command: string, timeoutMs: number) {
    super(host, `command timed out after ${timeoutMs} ms and was killed: ${command}`);
    this.timeoutMs = timeoutMs;
  }
}

/** A host-side operation failed with a result the caller can act on (bad path, file too large…). */
export class HostOperationError extends HostError {
  override name = 'HostOperationError';
  override readonly category: HarnessErrorCategory = 'input';
}

export type InventoryErrorOptions = ConfigErrorOptions;

/** The host inventory file is missing, not YAML, or does not match the schema. Exit code 2. */
export class InventoryError extends ConfigError {
  override name = 'InventoryError';
}

/** Building the Docker worker image failed (debootstrap, tar, the engine). */
export class WorkerImageError extends InfrastructureHarnessError {
  override name = 'WorkerImageError';
}

/** The local testbed could not be started or torn down. */
export class TestbedError extends InfrastructureHarnessError {
  override name = 'TestbedError';
}
