export { startVm, RunningVm, type StartOptions, type DiskState, type Plugged, type SnapshotResult, type UnplugResult, type StopOptions, type StopResult } from './vm.ts';
export { validateSpec, vmLabel, type VmSpec, type DiskSpec, type DiskBus, type Accel, type FwCfgEntry, type PortForward, type AccelProbeSpec } from './spec.ts';
export { buildQemuArgv, diskBlockdevs, diskDevices, rootPort, ejectTarget, diskNode, fileNode, deviceId, controllerId, rootPortId, escapeOptValue, type QemuArgvContext, type QemuDevice, type QemuBlockdev } from './argv.ts';
export { chooseAccel, probeKvm, clearAccelProbeCache, type AccelChoice, type KvmProbeResult, type ProbeOptions } from './accel.ts';
export { ConsoleLog, type ConsoleMatch, type ConsoleWaitOptions } from './console-log.ts';
export { findLeftoverVms, sweepLeftoverVms, type Leftover } from './sweep.ts';
export { killLiveVms, leaveSignalsToApplication, liveVmLabels } from './live.ts';
export { VmError, type VmErrorKind } from './errors.ts';
export { withPdeathsig } from './pdeathsig.ts';
