/** The scenario's data disks as new, empty qcow2 images in the job's folder (made by qemu-img). */
import { join } from 'node:path';
import { execa } from 'execa';
import type { DiskSpec as VmDiskSpec } from '../vm/index.ts';
import type { DiskSpec } from './types.ts';

/** 64 KiB clusters: QEMU's default, and the granularity the truth diff reads best. */
const CLUSTER = 65536;

export async function createDataDisks(disks: readonly DiskSpec[], workDir: string, signal?: AbortSignal): Promise<VmDiskSpec[]> {
  const out: VmDiskSpec[] = [];
  for (const d of disks) {
    const path = join(workDir, `${d.id}.qcow2`);
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, path, String(d.size)], { cancelSignal: signal });
    out.push({ id: d.id, path, bus: d.bus, format: 'qcow2' });
  }
  return out;
}
