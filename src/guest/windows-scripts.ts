/**
 * The PowerShell scripts the Windows adapter runs, as pure functions of typed arguments. Every
 * runtime value enters a script as a `psQuote`d literal or a checked integer, never by string
 * splicing; arguments of native programs are quoted with `winArg` on the host.
 *
 * Protocol between a script and the adapter:
 * - a result is one stdout line `CBT-RESULT <json>`;
 * - a classified failure is one stderr line `CBT-ERROR <kind> <message>` and exit code 3
 *   (`kind`: `not-found` or `command`); anything else that throws exits 1 with the error text;
 * - bulk input (write plans) arrives on stdin, read through `$input` (PowerShell feeds the
 *   redirected stdin of `-EncodedCommand` to the script as lines — the way Ansible's Windows
 *   SSH pipelining sends its payload).
 *
 * Scripts target Windows PowerShell 5.1 (in every supported Windows) and avoid newer syntax.
 * They are kept free of comments to stay well under the command-line limit once encoded.
 */
import { psBool, psInt, psQuote, winCommandLine } from './powershell.ts';

/** Marker of the result line on stdout. */
export const RESULT_MARKER = 'CBT-RESULT ';
/** Marker of a classified error line on stderr. */
export const ERROR_MARKER = 'CBT-ERROR ';
/** Exit code of a classified error. */
export const CLASSIFIED_EXIT = 3;

const PRELUDE = String.raw`$ProgressPreference = 'SilentlyContinue'
$ErrorActionPreference = 'Stop'
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
function Out-Cbt($o) { [Console]::Out.WriteLine('CBT-RESULT ' + (ConvertTo-Json -InputObject $o -Compress -Depth 4)) }
function Stop-Cbt([string]$Kind, [string]$Message) { [Console]::Error.WriteLine('CBT-ERROR ' + $Kind + ' ' + ($Message -replace '[\r\n]+', ' ')); exit 3 }`;

/** Disk by QEMU serial (Win32_DiskDrive, then Get-Disk), retried: viostor has reported serial "0" on some boots. */
const FIND_DISK = String.raw`function Find-CbtDisk([string]$Serial, [int]$Tries, [int]$DelayMs) {
  for ($i = 1; ; $i++) {
    $seen = @()
    $hit = @()
    foreach ($w in @(Get-CimInstance -ClassName Win32_DiskDrive)) {
      $s = ([string]$w.SerialNumber).Trim()
      $seen += $s
      if ($s -ceq $Serial) { $hit += $w }
    }
    if ($hit.Count -gt 1) { Stop-Cbt 'command' ([string]$hit.Count + ' disks report serial ' + $Serial) }
    if ($hit.Count -eq 1) { return [pscustomobject]@{ Number = [int]$hit[0].Index; Pnp = [string]$hit[0].PNPDeviceID } }
    foreach ($d in @(Get-Disk)) {
      if (([string]$d.SerialNumber).Trim() -ceq $Serial) {
        foreach ($w in @(Get-CimInstance -ClassName Win32_DiskDrive)) {
          if ([int]$w.Index -eq [int]$d.Number) { return [pscustomobject]@{ Number = [int]$d.Number; Pnp = [string]$w.PNPDeviceID } }
        }
      }
    }
    if ($i -ge $Tries) { Stop-Cbt 'not-found' ('no disk with serial ' + $Serial + ' after ' + $i + ' tries; serials seen: ' + ($seen -join ', ')) }
    Start-Sleep -Milliseconds $DelayMs
  }
}`;

/** The tracked partition: by number, else the largest data partition. */
const FIND_PART = String.raw`function Get-CbtPart($Disk, [int]$Number) {
  $best = $null
  foreach ($p in @(Get-Partition -DiskNumber $Disk.Number)) {
    if ($Number -gt 0) { if ([int]$p.PartitionNumber -eq $Number) { $best = $p } }
    elseif (@('System', 'Reserved', 'Recovery') -notcontains [string]$p.Type) { if ($null -eq $best -or $p.Size -gt $best.Size) { $best = $p } }
  }
  if ($null -eq $best) { Stop-Cbt 'not-found' ('disk ' + $Disk.Number + ' has no partition ' + $(if ($Number -gt 0) { [string]$Number } else { 'holding data' })) }
  $letter = $null
  if ($best.DriveLetter -and [int][char]$best.DriveLetter -ne 0) { $letter = [string]$best.DriveLetter }
  $guid = $null
  foreach ($a in @($best.AccessPaths)) { if ($a -like '\\?\Volume*') { $guid = $a.TrimEnd('\') } }
  [pscustomobject]@{ Number = [int]$best.PartitionNumber; Offset = [int64]$best.Offset; Size = [int64]$best.Size; Letter = $letter; Guid = $guid; Offline = [bool]$best.IsOffline }
}`;

/** Start a native program with an argument string quoted on the host; capture both streams. */
const NATIVE = String.raw`function Invoke-CbtNative([string]$Exe, [string]$ArgLine) {
  $si = New-Object System.Diagnostics.ProcessStartInfo
  $si.FileName = $Exe
  $si.Arguments = $ArgLine
  $si.UseShellExecute = $false
  $si.RedirectStandardOutput = $true
  $si.RedirectStandardError = $true
  $si.CreateNoWindow = $true
  $p = [System.Diagnostics.Process]::Start($si)
  $o = $p.StandardOutput.ReadToEndAsync()
  $e = $p.StandardError.ReadToEndAsync()
  $p.WaitForExit()
  [Console]::Out.Write($o.Result)
  [Console]::Error.Write($e.Result)
  [pscustomobject]@{ Exit = $p.ExitCode; Out = $o.Result }
}`;

function script(parts: string[], body: string): string {
  return `${PRELUDE}\n${parts.join('\n')}\ntry {\n${body}\n} catch {\n  [Console]::Error.WriteLine('CBT-ERROR command ' + ($_.Exception.Message -replace '[\\r\\n]+', ' ') + ' at ' + ($_.InvocationInfo.PositionMessage -replace '[\\r\\n]+', ' '))\n  exit 1\n}\nexit 0\n`;
}

export interface DiskLookup {
  serial: string;
  tries: number;
  delayMs: number;
  /** Tracked partition number; 0 = the largest data partition. */
  partition: number;
}

function findDisk(l: DiskLookup): string {
  return `  $d = Find-CbtDisk -Serial ${psQuote(l.serial)} -Tries ${psInt(l.tries, 'tries')} -DelayMs ${psInt(l.delayMs, 'delayMs')}`;
}

function findPart(l: DiskLookup): string {
  return `  $p = Get-CbtPart $d ${psInt(l.partition, 'partition')}`;
}

/** Boot identity and OS facts. */
export function probeScript(): string {
  return script([], `  $os = Get-CimInstance -ClassName Win32_OperatingSystem
  Out-Cbt ([pscustomobject]@{ Boot = $os.LastBootUpTime.ToUniversalTime().ToString('o'); Caption = [string]$os.Caption; Version = [string]$os.Version; Build = [string]$os.BuildNumber; Host = [string]$env:COMPUTERNAME })`);
}

/** Disk number, PnP instance id and tracked partition of a disk. */
export function locateScript(l: DiskLookup): string {
  return script([FIND_DISK, FIND_PART], `${findDisk(l)}
${findPart(l)}
  Out-Cbt ([pscustomobject]@{ Disk = $d.Number; Pnp = $d.Pnp; Partition = $p })`);
}

/** Volume (partition) or whole-disk offline/online. */
export function setOfflineScript(l: DiskLookup, scope: 'volume' | 'disk', offline: boolean): string {
  if (scope === 'disk') {
    return script([FIND_DISK], `${findDisk(l)}
  Set-Disk -Number $d.Number -IsOffline ${psBool(offline)}
  Out-Cbt ([pscustomobject]@{ Disk = $d.Number; Offline = (Get-Disk -Number $d.Number).IsOffline })`);
  }
  return script([FIND_DISK, FIND_PART], `${findDisk(l)}
${findPart(l)}
  Set-Partition -DiskNumber $d.Number -PartitionNumber $p.Number -IsOffline ${psBool(offline)}
  Out-Cbt ([pscustomobject]@{ Disk = $d.Number; Partition = $p.Number; Offline = (Get-Partition -DiskNumber $d.Number -PartitionNumber $p.Number).IsOffline })`);
}

/** Disable the disk's PnP device (orderly removal of its stack); returns the instance id for `enable`. */
export function disableScript(l: DiskLookup): string {
  return script([FIND_DISK], `${findDisk(l)}
  Disable-PnpDevice -InstanceId $d.Pnp -Confirm:$false
  Out-Cbt ([pscustomobject]@{ Disk = $d.Number; Pnp = $d.Pnp })`);
}

/**
 * Enable the disk device again: by the instance id remembered from `disable`, else the only
 * disabled disk device (problem code 22); then wait for the serial to come back.
 */
export function enableScript(l: DiskLookup, instanceId: string | null): string {
  return script([FIND_DISK], `  $id = ${psQuote(instanceId ?? '')}
  if (-not $id) {
    $off = @(Get-CimInstance -ClassName Win32_PnPEntity | Where-Object { $_.PNPClass -eq 'DiskDrive' -and $_.ConfigManagerErrorCode -eq 22 })
    if ($off.Count -ne 1) { Stop-Cbt 'not-found' ('cannot tell which disk device to enable: ' + $off.Count + ' disabled disk devices') }
    $id = [string]$off[0].PNPDeviceID
  }
  Enable-PnpDevice -InstanceId $id -Confirm:$false
${findDisk(l)}
  Out-Cbt ([pscustomobject]@{ Disk = $d.Number; Pnp = $d.Pnp })`);
}

export interface WriteScriptArgs extends DiskLookup {
  mode: 'file' | 'volume';
  /** file mode: folder on the tracked volume (relative, backslashes) and file name. */
  dir: string;
  file: string;
  /** file mode: the file's size (the write space). */
  fileSize: number;
  /** Largest write of the plan (buffer size). */
  maxLength: number;
  /** Number of plan lines to expect on stdin. */
  count: number;
}

/** CreateFileW for volume mode (FileStream refuses some device paths on .NET Framework). */
const VOLUME_OPEN = String.raw`function Open-CbtVolume([string]$Path) {
  if (-not ('CbtNative' -as [type])) {
    Add-Type -TypeDefinition 'using System; using System.Runtime.InteropServices; using Microsoft.Win32.SafeHandles; public static class CbtNative { [DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)] public static extern SafeFileHandle CreateFileW(string name, uint access, uint share, IntPtr sa, uint disposition, uint flags, IntPtr template); }'
  }
  $h = [CbtNative]::CreateFileW($Path, [uint32]3221225472, [uint32]3, [IntPtr]::Zero, [uint32]3, [uint32]2147483648, [IntPtr]::Zero)
  if ($h.IsInvalid) { Stop-Cbt 'command' ('cannot open ' + $Path + ': Win32 error ' + [Runtime.InteropServices.Marshal]::GetLastWin32Error()) }
  New-Object System.IO.FileStream($h, [System.IO.FileAccess]::ReadWrite, 1)
}`;

/**
 * Write a plan read from stdin (`CBTPLAN <count>`, then `offset length pattern` lines, then
 * `END`): into a file on the tracked volume (write-through, flushed), or straight into the
 * volume through `\\.\X:` / `\\?\Volume{…}` (needs a volume without a file system: Windows
 * refuses raw writes inside a mounted NTFS).
 */
export function writeScript(a: WriteScriptArgs): string {
  const open =
    a.mode === 'file'
      ? String.raw`  if (-not $p.Letter) { Stop-Cbt 'not-found' ('partition ' + $p.Number + ' of disk ' + $d.Number + ' has no drive letter') }
  $dir = $p.Letter + ':\' + ${psQuote(a.dir)}
  $null = New-Item -ItemType Directory -Force -Path $dir
  $path = $dir + '\' + ${psQuote(a.file)}
  $fs = New-Object System.IO.FileStream($path, [System.IO.FileMode]::OpenOrCreate, [System.IO.FileAccess]::ReadWrite, [System.IO.FileShare]::Read, 4096, [System.IO.FileOptions]::WriteThrough)
  if ($fs.Length -lt ${psInt(a.fileSize, 'fileSize')}) { $fs.SetLength(${psInt(a.fileSize, 'fileSize')}) }
  $limit = ${psInt(a.fileSize, 'fileSize')}`
      : String.raw`  $fsType = [string](Get-Volume -Partition (Get-Partition -DiskNumber $d.Number -PartitionNumber $p.Number)).FileSystem
  if ($fsType -and $fsType -ne 'RAW') { Stop-Cbt 'command' ('volume mode writes need a volume without a file system; partition ' + $p.Number + ' of disk ' + $d.Number + ' holds ' + $fsType) }
  if ($p.Letter) { $path = '\\.\' + $p.Letter + ':' } elseif ($p.Guid) { $path = $p.Guid } else { Stop-Cbt 'not-found' ('partition ' + $p.Number + ' has no volume path') }
  $fs = Open-CbtVolume $path
  $limit = $p.Size`;
  return script([FIND_DISK, FIND_PART, ...(a.mode === 'volume' ? [VOLUME_OPEN] : [])], `${findDisk(a)}
${findPart(a)}
${open}
  $buf = New-Object byte[] ${psInt(Math.max(1, a.maxLength), 'maxLength')}
  $n = 0
  $bytes = [int64]0
  $state = 0
  try {
    foreach ($line in $input) {
      $f = ([string]$line).Trim().Split(' ')
      if ($state -eq 0) {
        if ($f[0] -ne 'CBTPLAN' -or [int]$f[1] -ne ${psInt(a.count, 'count')}) { Stop-Cbt 'command' ('bad plan header: ' + $line) }
        $state = 1
        continue
      }
      if ($f[0] -eq 'END') { $state = 2; break }
      $o = [int64]$f[0]
      $len = [int]$f[1]
      $buf[0] = [byte]$f[2]
      $k = 1
      while ($k -lt $len) { $c = [Math]::Min($k, $len - $k); [Array]::Copy($buf, 0, $buf, $k, $c); $k += $c }
      if ($o + $len -gt $limit) { Stop-Cbt 'command' ('write ' + $n + ' ends past ' + $limit) }
      $null = $fs.Seek($o, [System.IO.SeekOrigin]::Begin)
      $fs.Write($buf, 0, $len)
      $n++
      $bytes += $len
    }
    $fs.Flush($true)
  } finally { $fs.Dispose() }
  if ($state -ne 2 -or $n -ne ${psInt(a.count, 'count')}) { Stop-Cbt 'command' ('plan truncated: ' + $n + ' of ' + ${psInt(a.count, 'count')} + ' writes received') }
  Out-Cbt ([pscustomobject]@{ Disk = $d.Number; Partition = $p.Number; Path = $path; Writes = $n; Bytes = $bytes })`);
}

/** stdin for `writeScript`. */
export function writePlanInput(writes: ReadonlyArray<{ offset: number; length: number; pattern: number }>): string {
  const lines = [`CBTPLAN ${writes.length}`];
  for (const w of writes) lines.push(`${w.offset} ${w.length} ${w.pattern}`);
  lines.push('END', '');
  return lines.join('\n');
}

/** Run a native program with arguments already quoted on the host. */
export function nativeScript(exe: string, args: readonly string[], opts: { expectExit?: number[]; ensureDir?: string } = {}): string {
  const ok = (opts.expectExit ?? [0]).map((c) => psInt(c, 'exit code')).join(', ');
  const mkdir = opts.ensureDir === undefined ? '' : `  $null = New-Item -ItemType Directory -Force -Path ${psQuote(opts.ensureDir)}\n`;
  return script([NATIVE], `${mkdir}  $r = Invoke-CbtNative ${psQuote(exe)} ${psQuote(winCommandLine(args))}
  if (@(${ok}) -notcontains $r.Exit) { Stop-Cbt 'command' (${psQuote(exe)} + ' exited ' + $r.Exit) }
  Out-Cbt ([pscustomobject]@{ Exit = $r.Exit })`);
}

/** `Restart-Computer -Force` / `Stop-Computer -Force` (full shutdown even with fast startup: API-initiated). */
export function powerScript(action: 'restart' | 'stop'): string {
  return script([], action === 'restart' ? '  Restart-Computer -Force' : '  Stop-Computer -Force');
}

/** Flush the cache of every fixed volume with a drive letter. */
export function flushScript(): string {
  return script([], `  $done = @()
  foreach ($v in @(Get-Volume)) {
    if ([string]$v.DriveType -eq 'Fixed' -and $v.DriveLetter -and [int][char]$v.DriveLetter -ne 0) { Write-VolumeCache -DriveLetter $v.DriveLetter; $done += [string]$v.DriveLetter }
  }
  Out-Cbt ([pscustomobject]@{ Flushed = $done })`);
}

/**
 * The power-button action of the active plan (AC index of PBUTTONACTION
 * 7648efa3-dd9c-4e3e-b566-50f929386280) from the power WMI provider (locale-independent, unlike
 * powercfg's text), and fast startup (HiberbootEnabled).
 */
export function powerButtonScript(): string {
  return script([], String.raw`  $plan = @(Get-CimInstance -Namespace 'root\cimv2\power' -ClassName Win32_PowerPlan | Where-Object { $_.IsActive })[0]
  $g = ($plan.InstanceID -split '\\')[-1]
  $v = @(Get-CimInstance -Namespace 'root\cimv2\power' -ClassName Win32_PowerSettingDataIndex | Where-Object { $_.InstanceID -like ('*' + $g + '\AC\{7648efa3-dd9c-4e3e-b566-50f929386280}') })
  $hb = $null
  try { $hb = [int](Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Power' -Name HiberbootEnabled).HiberbootEnabled } catch { }
  $idx = $null
  if ($v.Count -ge 1) { $idx = [int]$v[0].SettingIndexValue }
  Out-Cbt ([pscustomobject]@{ Index = $idx; Hiberboot = $hb })`);
}
