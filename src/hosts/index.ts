export { HostError, InfrastructureError, isInfrastructureError, CommandTimeoutError, HostOperationError, InventoryError, WorkerImageError, TestbedError } from './errors.ts';
export type { HostSpec, HostType, LocalHostSpec, SshHostSpec, DockerHostSpec, DockerConnection, Inventory } from './types.ts';
export { loadInventory, parseInventory, type ParseInventoryOptions } from './inventory.ts';
export { HOSTS_SCHEMA } from './inventory-schema.ts';
export { ShellExecutor } from './shell-executor.ts';
export { ShellJobSession, type JobSessionInit } from './job-session.ts';
export { qemuRunLabel, runIdTime } from './sweep-labels.ts';
export {
  safeId,
  type HostExecutor,
  type JobSession,
  type ExecOptions,
  type ExecResult,
  type RunningCommand,
  type HarnessResult,
  type StagedImage,
  type SweepOptions,
  type SweepReport,
  type ExecutorOptions,
} from './executor.ts';
export { createExecutor } from './create-executor.ts';
export { LocalExecutor } from './local-executor.ts';
export { SshExecutor } from './ssh-executor.ts';
export { DockerExecutor, CONTAINER_WORKDIR, LABEL_RUN, LABEL_JOB, LABEL_LEASE } from './docker-executor.ts';
export { factsScript, parseFacts, REQUIRED_TOOLS, type HostFacts, type CachedImage, type FactLimits } from './facts.ts';
export { hashImageSet, type ImageSet, type ImageFile } from './staging.ts';
export { newRunId, currentLease, isLeaseLive, processStartTime, RUN_ID_PATTERN, type RunLease, type LivenessOptions } from './run-lease.ts';
export { harnessBundle, bundleFiles, productionPackages, REPO_ROOT, NODE_IN_REPO, type HarnessBundle, type HarnessBundleOptions } from './harness-bundle.ts';
export { buildWorkerImage, workerRootfs, detectDebianMirror, parsePackageList, HARNESS_LABEL, WORKER_REPOSITORY, type WorkerImage, type WorkerImageOptions } from './worker-image.ts';
export { dockerClient, describeDocker, sshFingerprint, expandHome } from './docker-engine.ts';
export { testbedUp, testbedDown, testbedKillHost, readTestbedState, type TestbedOptions, type TestbedState, type TestbedSshHost, type TestbedDownReport } from './testbed.ts';
export { ENV_RUN, ENV_JOB, ENV_EXEC, ENV_SESSION, shq } from './shell.ts';
export type { Logger, LogFields } from '../util/log.ts';
