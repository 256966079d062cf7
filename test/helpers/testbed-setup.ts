/**
 * Test helper: the local testbed (real dockerd with the worker image, sshd hosts in network
 * namespaces, the local machine) for one test file, torn down in `test.after.always`.
 * The worker image's rootfs is cached under .cache/worker (debootstrap once, ~1 min); later
 * starts import it (~10 s).
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadInventory, testbedDown, testbedUp, type Inventory, type TestbedState } from '../../src/hosts/index.ts';

export interface Testbed {
  state: TestbedState;
  inventory: Inventory;
  hostsFile: string;
  down(): Promise<void>;
}

/** Set CBT_TESTBED_LOG=1 to see the testbed's progress on stderr. */
const envLog = process.env.CBT_TESTBED_LOG ? (m: string) => process.stderr.write(`${m}\n`) : undefined;

export async function startTestbed(options: { log?: (m: string) => void } = {}): Promise<Testbed> {
  const stateDir = `/tmp/cbt-tb-${randomBytes(3).toString('hex')}`;
  const { state, inventoryYaml } = await testbedUp({ stateDir, log: options.log ?? envLog });
  const hostsFile = join(stateDir, 'hosts.test.yaml');
  await writeFile(hostsFile, inventoryYaml);
  const inventory = await loadInventory(hostsFile);
  return { state, inventory, hostsFile, down: async () => void (await testbedDown({ stateDir })) };
}
