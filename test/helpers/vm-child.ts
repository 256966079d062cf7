/**
 * A stand-in harness process for the cleanup tests: starts one guest-less VM (the firmware idles),
 * prints `{"pid","runtimeDir","label"}` on stdout, then waits to be signalled.
 * Usage: node test/helpers/vm-child.ts <runId>
 */
import { startVm } from '../../src/vm/index.ts';

const runId = process.argv[2] ?? 'child';
const vm = await startVm({ runId, vmId: 'idle', accel: 'tcg', memoryMiB: 64, network: false });
process.stdout.write(`${JSON.stringify({ pid: vm.pid, runtimeDir: vm.runtimeDir, label: vm.label })}\n`);
setInterval(() => undefined, 1 << 30);
