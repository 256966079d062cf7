/**
 * What a host offers: QEMU, KVM, free disk and memory, cached guest images, and what is wrong.
 * One shell round trip (`factsScript`), parsed by a pure function (`parseFacts`).
 */
import { shq } from './shell.ts';
import type { HostType } from './types.ts';
import { parseAccelCache } from '../vm/accel-cache.ts';

export interface CachedImage {
  /** Content hash (the cache key, see staging.ts). */
  hash: string;
  files: Array<{ name: string; size: number; sha256: string }>;
  stagedAt: string | null;
}

export interface HostFacts {
  host: string;
  type: HostType;
  /** First line of `qemu-system-x86_64 --version`, null when absent. */
  qemu: string | null;
  qemuImg: string | null;
  kvm: {
    /** /dev/kvm exists. */
    device: boolean;
    /** /dev/kvm is readable and writable by the harness's user. */
    accessible: boolean;
    /**
     * How acceleration was judged. `device-file` only says the device exists: on nested
     * virtualization a guest can still stall under KVM (docs/hosts-and-scheduler.md); the VM
     * launcher's boot probe is the real test.
     */
    method: 'device-file' | 'boot-probe';
    /** Result of a boot probe when one ran: 'kvm' | 'tcg'. */
    probed?: 'kvm' | 'tcg';
    /** The newest answer in the host's accel probe cache (src/vm/accel-cache.ts): when and why. */
    probedAt?: string;
    probeReason?: string;
  };
  disk: { path: string; totalBytes: number; freeBytes: number } | null;
  memory: { totalBytes: number; availableBytes: number } | null;
  cpus: number | null;
  kernel: string | null;
  /** Host tools the executors rely on that are missing. */
  missingTools: string[];
  images: CachedImage[];
  /** Everything that makes the host unusable or degraded, in words. */
  problems: string[];
  /** No problem that prevents running jobs. */
  usable: boolean;
}

/** Tools every executor uses on a host (see shell.ts and executor.ts). */
export const REQUIRED_TOOLS = ['sh', 'grep', 'kill', 'mkdir', 'rm', 'mv', 'cat', 'df', 'sha256sum', 'tar', 'gzip', 'setsid'];

export function factsScript(workdir: string, imagesDir: string): string {
  const w = shq(workdir);
  return `
echo "qemu=$(qemu-system-x86_64 --version 2>/dev/null | head -n 1)"
echo "qemuImg=$(qemu-img --version 2>/dev/null | head -n 1)"
if [ -e /dev/kvm ]; then echo kvm=1; else echo kvm=0; fi
echo "accelCache=$(head -c 262144 "\${CBT_HARNESS_CACHE:-$HOME/.cache/cbt-harness}/accel-probe.json" 2>/dev/null | tr -d '\\n')"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo kvmAccess=1; else echo kvmAccess=0; fi
mkdir -p ${w} 2>/dev/null
echo "df=$(df -Pk ${w} 2>/dev/null | tail -n 1)"
grep -E '^(MemTotal|MemAvailable):' /proc/meminfo 2>/dev/null | sed 's/^/mem=/'
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
echo "kernel=$(uname -sr 2>/dev/null)"
for t in ${REQUIRED_TOOLS.join(' ')}; do command -v "$t" >/dev/null 2>&1 || echo "missing=$t"; done
for m in ${shq(imagesDir)}/*/manifest.json; do [ -f "$m" ] && [ -e "$(dirname "$m")/.complete" ] && echo "image=$(head -c 65536 "$m" | tr -d '\\n')"; done
true
`;
}

export interface FactLimits {
  /** Less free disk than this in the work folder is a problem. @default 2 GiB */
  minFreeDiskBytes?: number;
  /** Less available memory than this is a problem. @default 1 GiB */
  minAvailableMemoryBytes?: number;
}

/** The newest entry of the host's accel probe cache (entries are kept newest first), if any. */
function newestProbe(text: string): Partial<HostFacts['kvm']> {
  // Cut short (over 256 KiB), another version or not ours: as if there were none.
  const e = text ? parseAccelCache(text).doc.entries[0] : undefined;
  return e ? { method: 'boot-probe', probed: e.ok ? 'kvm' : 'tcg', probedAt: e.at, probeReason: e.reason } : {};
}

export function parseFacts(host: string, type: HostType, workdir: string, output: string, limits: FactLimits = {}): HostFacts {
  const facts: HostFacts = { host, type, qemu: null, qemuImg: null, kvm: { device: false, accessible: false, method: 'device-file' }, disk: null, memory: null, cpus: null, kernel: null, missingTools: [], images: [], problems: [], usable: true };
  let memTotal: number | null = null;
  let memAvail: number | null = null;
  for (const line of output.split('\n')) {
    const i = line.indexOf('=');
    if (i < 0) continue;
    const key = line.slice(0, i);
    const value = line.slice(i + 1).trim();
    switch (key) {
      case 'qemu':
        facts.qemu = value || null;
        break;
      case 'qemuImg':
        facts.qemuImg = value || null;
        break;
      case 'kvm':
        facts.kvm.device = value === '1';
        break;
      case 'kvmAccess':
        facts.kvm.accessible = value === '1';
        break;
      case 'accelCache':
        Object.assign(facts.kvm, newestProbe(value));
        break;
      case 'df': {
        // Filesystem 1024-blocks Used Available Capacity Mounted-on
        const f = value.split(/\s+/);
        if (f.length >= 6 && /^\d+$/.test(f[1]) && /^\d+$/.test(f[3])) facts.disk = { path: workdir, totalBytes: Number(f[1]) * 1024, freeBytes: Number(f[3]) * 1024 };
        break;
      }
      case 'mem': {
        const m = /^(MemTotal|MemAvailable):\s*(\d+)\s*kB/.exec(value);
        if (m && m[1] === 'MemTotal') memTotal = Number(m[2]) * 1024;
        else if (m) memAvail = Number(m[2]) * 1024;
        break;
      }
      case 'cpus':
        facts.cpus = /^\d+$/.test(value) ? Number(value) : null;
        break;
      case 'kernel':
        facts.kernel = value || null;
        break;
      case 'missing':
        facts.missingTools.push(value);
        break;
      case 'image':
        try {
          const m = JSON.parse(value) as CachedImage;
          if (typeof m.hash === 'string' && Array.isArray(m.files)) facts.images.push({ hash: m.hash, files: m.files, stagedAt: m.stagedAt ?? null });
        } catch {
          // A manifest cut short or edited by hand: not an image we can vouch for.
        }
        break;
    }
  }
  if (memTotal !== null) facts.memory = { totalBytes: memTotal, availableBytes: memAvail ?? memTotal };
  const minDisk = limits.minFreeDiskBytes ?? 2 * 2 ** 30;
  const minMem = limits.minAvailableMemoryBytes ?? 2 ** 30;
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (!facts.qemu) facts.problems.push('qemu-system-x86_64 not found');
  if (!facts.qemuImg) facts.problems.push('qemu-img not found');
  if (facts.missingTools.length) facts.problems.push(`missing tools: ${facts.missingTools.join(', ')}`);
  if (!facts.disk) facts.problems.push(`cannot tell the free disk space of ${workdir}`);
  else if (facts.disk.freeBytes < minDisk) facts.problems.push(`only ${gib(facts.disk.freeBytes)} free in ${workdir} (need ${gib(minDisk)})`);
  if (facts.memory && facts.memory.availableBytes < minMem) facts.problems.push(`only ${gib(facts.memory.availableBytes)} of memory available (need ${gib(minMem)})`);
  facts.usable = facts.problems.length === 0;
  // Not a reason to refuse the host (TCG works), but worth saying.
  if (facts.kvm.device && !facts.kvm.accessible) facts.problems.push('/dev/kvm exists but is not readable and writable: guests will run under TCG');
  return facts;
}
