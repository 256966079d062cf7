/**
 * A fake Windows guest for adapter tests: it takes the exact command line the adapter sends
 * (`powershell.exe … -EncodedCommand …`), decodes it, reads the values back out of the script's
 * quoted literals with the independent PowerShell-rule scanner, and answers as the scripts'
 * protocol says (`CBT-RESULT` / `CBT-ERROR` / exit codes). It proves what reaches the guest and
 * how the adapter reacts to answers — not that real Windows cmdlets behave as modelled here.
 */
import { createHash } from 'node:crypto';
import { commandLineToArgv, PS_QUOTE_CHARS, scanVerbatim } from './guest-powershell.ts';

export interface FakeDisk {
  serial: string;
  number: number;
  pnp: string;
  partitions: Array<{ number: number; size: number; letter: string | null; offline?: boolean; type?: string }>;
  offline?: boolean;
  disabled?: boolean;
  /** Report serial "0" for this many lookups first (viostor's boot-time quirk). */
  serialZeroFor?: number;
}

export interface FakeState {
  boot: number;
  disks: FakeDisk[];
  /** Every script received, decoded, with a hash of its stdin. */
  log: Array<{ script: string; stdinSha256: string; stdinLines: number }>;
  /** Native programs run through Invoke-CbtNative: program and split arguments. */
  native: Array<{ exe: string; argv: string[] }>;
  /** Bytes written by write plans: `serial:offset:length:pattern`. */
  writes: string[];
  epoch: number;
  /** Make the next command exit with this code and stderr (then cleared). */
  failNext?: { exitCode: number; stderr: string } | null;
  hiberboot?: number;
  pbIndex?: number;
  /** Restart-Computer leaves the boot time as it was (a guest that never restarts). */
  frozenBoot?: boolean;
}

export const COMMAND_RE = /^powershell\.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -InputFormat Text -OutputFormat Text -EncodedCommand ([A-Za-z0-9+/]+={0,2})$/;

export interface FakeReply {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** The command asked for a restart/shutdown/hibernate: the session should drop. */
  drop?: boolean;
}

/**
 * The script with every verbatim literal replaced by `'#n'`, and the literals' values: the fake
 * recognises statements in code only, so a value that spells a command cannot fool it.
 */
export function splitLiterals(script: string): { code: string; values: string[] } {
  let code = '';
  const values: string[] = [];
  for (let i = 0; i < script.length; ) {
    const c = script[i];
    if (PS_QUOTE_CHARS.has(c)) {
      const r = scanVerbatim(script, i);
      if (!r) throw new Error(`unterminated literal at ${i}`);
      code += `'#${values.length}'`;
      values.push(r.value);
      i = r.end;
    } else {
      code += c;
      i++;
    }
  }
  return { code, values };
}

/** The literal after `marker` in `script` (the first occurrence), as PowerShell would read it. */
export function literalAfter(script: string, marker: string, from = 0): string | null {
  const i = script.indexOf(marker, from);
  if (i < 0) return null;
  const r = scanVerbatim(script, i + marker.length);
  if (!r) throw new Error(`unterminated literal after ${marker}`);
  return r.value;
}

const ok = (result: unknown): FakeReply => ({ exitCode: 0, stdout: `some noise\r\nCBT-RESULT ${JSON.stringify(result)}\r\n`, stderr: '' });
const fail = (kind: string, message: string): FakeReply => ({ exitCode: 3, stdout: '', stderr: `CBT-ERROR ${kind} ${message}\r\n` });

export function newFakeState(disks: FakeDisk[]): FakeState {
  return { boot: 1, disks, log: [], native: [], writes: [], epoch: 0, failNext: null };
}

export function handleCommand(state: FakeState, command: string, stdin: string): FakeReply {
  const m = COMMAND_RE.exec(command);
  if (!m) return { exitCode: 127, stdout: '', stderr: `not an encoded PowerShell command: ${command.slice(0, 200)}` };
  const script = Buffer.from(m[1], 'base64').toString('utf16le');
  const lines = stdin === '' ? 0 : stdin.split('\n').filter(Boolean).length;
  state.log.push({ script, stdinSha256: createHash('sha256').update(stdin).digest('hex'), stdinLines: lines });
  if (state.failNext) {
    const f = state.failNext;
    state.failNext = null;
    return { exitCode: f.exitCode, stdout: '', stderr: f.stderr };
  }
  const bootIso = new Date(Date.UTC(2030, 0, 1, 0, 0, state.boot)).toISOString();
  const { code } = splitLiterals(script);
  const has = (statement: string): boolean => code.includes(statement);
  if (has('Restart-Computer -Force')) {
    if (!state.frozenBoot) state.boot++;
    return { exitCode: 0, stdout: '', stderr: '', drop: true };
  }
  if (has('Stop-Computer -Force')) return { exitCode: 0, stdout: '', stderr: '', drop: true };
  if (has('Win32_OperatingSystem')) return ok({ Boot: bootIso, Caption: 'Fake Windows', Version: '10.0.20348', Build: '20348', Host: 'FAKE' });
  if (has('Win32_PowerSettingDataIndex')) return ok({ Index: state.pbIndex ?? 3, Hiberboot: state.hiberboot ?? 0 });
  if (has('Write-VolumeCache')) return ok({ Flushed: state.disks.flatMap((d) => d.partitions.filter((p) => p.letter).map((p) => p.letter)) });

  let disk: FakeDisk | undefined;
  let part: FakeDisk['partitions'][number] | undefined;
  // Enable runs before the lookup: it names the device itself.
  if (has('Enable-PnpDevice')) {
    const id = literalAfter(script, '$id = ');
    const target = id ? state.disks.find((d) => d.pnp === id) : state.disks.filter((d) => d.disabled).length === 1 ? state.disks.find((d) => d.disabled) : undefined;
    if (!target) return fail('not-found', `no disabled device ${id ?? ''}`);
    target.disabled = false;
  }
  const serialAt = script.indexOf('Find-CbtDisk -Serial ');
  if (serialAt >= 0) {
    const serial = literalAfter(script, 'Find-CbtDisk -Serial ') as string;
    const tries = Number(/-Tries (\d+)/.exec(script.slice(serialAt))?.[1]);
    for (let i = 1; ; i++) {
      const d = state.disks.find((x) => x.serial === serial && !x.disabled);
      if (d?.serialZeroFor) d.serialZeroFor--;
      else if (d) {
        disk = d;
        break;
      }
      if (i >= tries) return fail('not-found', `no disk with serial ${serial} after ${i} tries; serials seen: ${state.disks.map((x) => (x.serialZeroFor !== undefined && x === d ? '0' : x.serial)).join(', ')}`);
    }
    const pm = /\$p = Get-CbtPart \$d (\d+)/.exec(script);
    if (pm) {
      const n = Number(pm[1]);
      part = n > 0 ? disk.partitions.find((p) => p.number === n) : [...disk.partitions].filter((p) => !['System', 'Reserved', 'Recovery'].includes(p.type ?? 'Basic')).sort((a, b) => b.size - a.size)[0];
      if (!part) return fail('not-found', `disk ${disk.number} has no partition ${n}`);
    }
  }
  const partResult = part ? { Number: part.number, Offset: 1048576, Size: part.size, Letter: part.letter, Guid: `\\\\?\\Volume{0000000${part.number}-0000-0000-0000-000000000000}`, Offline: Boolean(part.offline) } : null;
  if (has('Set-Partition') && disk && part) {
    part.offline = has('-IsOffline $true');
    return ok({ Disk: disk.number, Partition: part.number, Offline: part.offline });
  }
  if (has('Set-Disk') && disk) {
    disk.offline = has('-IsOffline $true');
    return ok({ Disk: disk.number, Offline: disk.offline });
  }
  if (has('Disable-PnpDevice') && disk) {
    disk.disabled = true;
    return ok({ Disk: disk.number, Pnp: disk.pnp });
  }
  if (has('Enable-PnpDevice') && disk) return ok({ Disk: disk.number, Pnp: disk.pnp });
  if (script.includes("'CBTPLAN'") && disk && part) {
    const input = stdin.split('\n').filter(Boolean);
    const count = Number(/-ne (\d+)\) \{ Stop-Cbt 'command' \('bad plan header/.exec(script)?.[1]);
    if (input[0] !== `CBTPLAN ${count}`) return fail('command', `bad plan header: ${input[0]}`);
    if (input[input.length - 1] !== 'END' || input.length !== count + 2) return fail('command', `plan truncated: ${input.length - 2} of ${count} writes received`);
    for (const l of input.slice(1, -1)) state.writes.push(`${disk.serial}:${l.replace(/ /g, ':')}`);
    const dir = literalAfter(script, "$dir = $p.Letter + ':\\' + ");
    const file = literalAfter(script, "$path = $dir + '\\' + ");
    return ok({ Disk: disk.number, Partition: part.number, Path: `${part.letter}:\\${dir}\\${file}`, Writes: count, Bytes: 0 });
  }
  if (script.includes('Invoke-CbtNative ') && script.includes('$r = Invoke-CbtNative')) {
    const at = script.indexOf('$r = Invoke-CbtNative ') + '$r = Invoke-CbtNative '.length;
    const exe = scanVerbatim(script, at);
    if (!exe) return fail('command', 'bad exe literal');
    const argLine = scanVerbatim(script, exe.end + 1);
    if (!argLine) return fail('command', 'bad argument literal');
    const argv = commandLineToArgv(argLine.value);
    state.native.push({ exe: exe.value, argv });
    if (/cbtctl/i.test(exe.value)) {
      state.epoch++;
      return { exitCode: 0, stdout: `cbtctl 1.0\r\nepoch: ${state.epoch}\r\nok-${state.epoch}\r\nCBT-RESULT {"Exit":0}\r\n`, stderr: '' };
    }
    return ok({ Exit: 0 });
  }
  if (script.includes('Out-Cbt ([pscustomobject]@{ Disk = $d.Number; Pnp = $d.Pnp; Partition = $p })') && disk) return ok({ Disk: disk.number, Pnp: disk.pnp, Partition: partResult });
  return { exitCode: 1, stdout: '', stderr: `fake guest: no model for this script:\n${script.slice(-400)}` };
}
