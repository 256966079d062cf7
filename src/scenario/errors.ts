/** The job runner's errors: a step that cannot run, and a failure of the infrastructure rather than the tracker. */
import { HarnessError, InfrastructureHarnessError } from '../util/index.ts';

/** A step that cannot run in the current state, or a guest/host action that failed. */
export class StepError extends HarnessError {
  override name = 'StepError';
}

/** The infrastructure failed (not the tracker): the VM did not start or boot. */
export class JobInfrastructureError extends InfrastructureHarnessError {
  override name = 'JobInfrastructureError';
  readonly infrastructure = true;
}
