/**
 * The reference guest's set-up file (images/linux-ref/README.md "Set-up file"): shell assignments
 * the guest reads from fw_cfg `opt/cbt/setup` at boot — which in-guest tracker runs and in which
 * variant, the GPT volumes of each data disk, and cbtf-ref's file and tracked volume. Pure.
 *
 * Every value is checked against a closed character set here, so the guest can source the file.
 */
import { GuestError } from './adapter.ts';

export interface LinuxRefSetup {
  /** dm-era (whole disks), cbtf-ref (one volume), none (the host tracks: QEMU bitmaps). */
  tracker: 'dm-era' | 'cbtf-ref' | 'none';
  /** `normal` or a known-bad variant's name. */
  variant: string;
  /** Volumes per disk serial, in partition order; size null = the rest of the disk. */
  volumes: ReadonlyArray<{ serial: string; index: number; fs: 'ntfs' | 'ext4' | 'none'; size: number | null }>;
  cbtf?: { file: { serial: string; index: number; path: string }; tracked: { serial: string; index: number }; blockBytes: number };
}

const WORD = /^[A-Za-z0-9._/-]+$/;

function word(v: string, what: string): string {
  if (!WORD.test(v)) throw new GuestError('command', `linux-ref set-up: ${what} ${JSON.stringify(v)} has characters outside [A-Za-z0-9._/-]`, { os: 'linux-ref' });
  return v;
}

export function linuxRefSetupText(s: LinuxRefSetup): string {
  const lines = [`CBT_TRACKER=${word(s.tracker, 'tracker')}`, `CBT_TRACKER_VARIANT=${word(s.variant, 'variant')}`];
  const vols = s.volumes.map((v) => `${word(v.serial, 'disk serial')}:${v.index}:${v.fs}:${v.size ?? 0}`);
  lines.push(`CBT_VOLUMES="${vols.join(' ')}"`);
  if (s.cbtf) {
    const { file, tracked, blockBytes } = s.cbtf;
    if (!Number.isInteger(blockBytes) || blockBytes < 4096 || (blockBytes & (blockBytes - 1)) !== 0) throw new GuestError('command', `linux-ref set-up: granularity ${blockBytes} is not a power of two of at least 4096`, { os: 'linux-ref' });
    lines.push(`CBT_CBTF_FILE="${word(file.serial, 'disk serial')}:${file.index}:${word(file.path, 'path')}"`, `CBT_CBTF_TRACKED="${word(tracked.serial, 'disk serial')}:${tracked.index}"`, `CBT_CBTF_BLOCK=${blockBytes}`);
  }
  return `${lines.join('\n')}\n`;
}
