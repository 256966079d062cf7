# cbt-harness Windows image: first-logon setup (run once by FirstLogonCommands from the answer
# media, as the autologon administrator, in Windows PowerShell 5.1).
#
# Reads cbt-setup.json beside this script; reports every step on COM1 as lines
#   CBT-SETUP-STEP <name>      a step starts
#   CBT-SETUP-FAILED <json>    a step failed ({step, message}); the script stops
#   CBT-SETUP-DONE <json>      all done, with facts for the image manifest
# The image builder watches COM1 for these lines (images/windows/README.md).
param([Parameter(Mandatory = $true)][string]$Media)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$config = Get-Content -Raw -Path (Join-Path $here 'cbt-setup.json') | ConvertFrom-Json
$log = 'C:\cbt\setup.log'
$null = New-Item -ItemType Directory -Force -Path 'C:\cbt'

$port = $null
try {
  $port = New-Object System.IO.Ports.SerialPort $config.comPort, 115200, 'None', 8, 'One'
  $port.Open()
} catch {
  $port = $null
}

function Send-Line([string]$Line) {
  Add-Content -Path $log -Value $Line
  if ($null -ne $port) { $port.WriteLine($Line) }
}

$facts = [ordered]@{}
$step = 'start'

function Start-Step([string]$Name) {
  $script:step = $Name
  Send-Line ('CBT-SETUP-STEP ' + $Name)
}

# Run a native program, fail the step on an unexpected exit code, keep the code in the facts.
function Invoke-Checked([string]$Exe, [string[]]$Arguments, [int[]]$Ok = @(0)) {
  # Windows PowerShell turns a native program's stderr into error records under 2>&1: with
  # 'Stop' the first stderr line would throw, so collect with 'Continue' and judge the exit code.
  $saved = $ErrorActionPreference
  $ErrorActionPreference = 'Continue'
  try { $out = & $Exe @Arguments 2>&1 | Out-String } finally { $ErrorActionPreference = $saved }
  $code = $LASTEXITCODE
  Add-Content -Path $log -Value ('> ' + $Exe + ' ' + ($Arguments -join ' ') + ' -> ' + $code + [Environment]::NewLine + $out)
  if ($Ok -notcontains $code) { throw ($Exe + ' ' + ($Arguments -join ' ') + ' exited ' + $code + ': ' + $out.Trim()) }
  return $code
}

function Set-Dword([string]$Path, [string]$Name, [int]$Value) {
  if (-not (Test-Path $Path)) { $null = New-Item -Path $Path -Force }
  $null = New-ItemProperty -Path $Path -Name $Name -Value $Value -PropertyType DWord -Force
}

try {
  Start-Step 'power'
  # Power button = shut down (3), never sleep, display never off: faults must not race power management.
  $null = Invoke-Checked 'powercfg.exe' @('/setacvalueindex', 'SCHEME_CURRENT', 'SUB_BUTTONS', 'PBUTTONACTION', '3')
  $null = Invoke-Checked 'powercfg.exe' @('/setdcvalueindex', 'SCHEME_CURRENT', 'SUB_BUTTONS', 'PBUTTONACTION', '3')
  $null = Invoke-Checked 'powercfg.exe' @('/change', 'monitor-timeout-ac', '0')
  $null = Invoke-Checked 'powercfg.exe' @('/change', 'standby-timeout-ac', '0')
  $null = Invoke-Checked 'powercfg.exe' @('/change', 'hibernate-timeout-ac', '0')
  $null = Invoke-Checked 'powercfg.exe' @('/setactive', 'SCHEME_CURRENT')
  if ($config.hibernation -or $config.fastStartup) { $null = Invoke-Checked 'powercfg.exe' @('/hibernate', 'on') } else { $null = Invoke-Checked 'powercfg.exe' @('/hibernate', 'off') }
  Set-Dword 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Power' 'HiberbootEnabled' $(if ($config.fastStartup) { 1 } else { 0 })
  Set-Dword 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' 'shutdownwithoutlogon' 1
  $facts.fastStartup = [bool]$config.fastStartup
  $facts.hibernation = [bool]($config.hibernation -or $config.fastStartup)

  Start-Step 'storage-policy'
  # Disks attached or re-plugged later come online (Server SKUs default to offline shared disks).
  Set-StorageSetting -NewDiskPolicy OnlineAll

  Start-Step 'virtio-drivers'
  # Setup loaded the storage/network drivers in WinPE; add the rest of the set for the installed OS.
  $virtio = $null
  foreach ($d in @(Get-PSDrive -PSProvider FileSystem)) {
    if (Test-Path (Join-Path $d.Root 'virtio-win_license.txt')) { $virtio = $d.Root }
    elseif (Test-Path (Join-Path $d.Root 'NetKVM')) { $virtio = $d.Root }
  }
  $facts.virtioMedia = $virtio
  if ($null -ne $virtio) {
    foreach ($drv in @('viostor', 'vioscsi', 'NetKVM', 'Balloon', 'vioserial')) {
      $dir = Join-Path $virtio (Join-Path $drv (Join-Path $config.virtioOs 'amd64'))
      if (Test-Path $dir) { $null = Invoke-Checked 'pnputil.exe' @('/add-driver', (Join-Path $dir '*.inf'), '/install') @(0, 259, 3010) }
    }
  }

  Start-Step 'openssh'
  $svc = Get-Service -Name sshd -ErrorAction SilentlyContinue
  if ($null -eq $svc) {
    $msi = Join-Path $Media 'cbt-setup\tools\OpenSSH-Win64.msi'
    $fod = $null
    foreach ($d in @(Get-PSDrive -PSProvider FileSystem)) {
      $cab = @(Get-ChildItem -Path $d.Root -Recurse -Depth 2 -Filter '*OpenSSH-Server-Package*.cab' -ErrorAction SilentlyContinue)
      if ($cab.Count -gt 0) { $fod = $cab[0].DirectoryName }
    }
    if ($null -ne $fod) {
      $null = Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' -Source $fod -LimitAccess
      $facts.openssh = 'capability from ' + $fod
    } elseif (Test-Path $msi) {
      $null = Invoke-Checked 'msiexec.exe' @('/i', $msi, '/qn', '/norestart', 'ADDLOCAL=Server') @(0, 3010)
      $facts.openssh = 'Win32-OpenSSH MSI'
    } else {
      $null = Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'
      $facts.openssh = 'capability (online source)'
    }
  } else {
    $facts.openssh = 'preinstalled'
  }
  Set-Service -Name sshd -StartupType Automatic
  $null = New-Item -Path 'HKLM:\SOFTWARE\OpenSSH' -Force
  $null = New-ItemProperty -Path 'HKLM:\SOFTWARE\OpenSSH' -Name DefaultShell -Value 'C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe' -PropertyType String -Force
  if ($null -eq (Get-NetFirewallRule -Name 'cbt-sshd' -ErrorAction SilentlyContinue)) {
    $null = New-NetFirewallRule -Name 'cbt-sshd' -DisplayName 'OpenSSH Server (cbt-harness)' -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22
  }
  Start-Service -Name sshd

  Start-Step 'ssh-key'
  # sshd reads administrators' keys only from this file, and only if no one else can write it.
  $keys = 'C:\ProgramData\ssh\administrators_authorized_keys'
  [System.IO.File]::WriteAllText($keys, ([string]$config.authorizedKey).Trim() + "`n", (New-Object System.Text.UTF8Encoding $false))
  # By SID: Administrators S-1-5-32-544, SYSTEM S-1-5-18 (names differ on localized Windows).
  $null = Invoke-Checked 'icacls.exe' @($keys, '/inheritance:r', '/grant', '*S-1-5-32-544:F', '/grant', '*S-1-5-18:F')
  $hostKey = 'C:\ProgramData\ssh\ssh_host_ed25519_key.pub'
  for ($i = 0; $i -lt 30 -and -not (Test-Path $hostKey); $i++) { Start-Sleep -Seconds 1 }
  if (Test-Path $hostKey) { $facts.hostPublicKey = (Get-Content -Raw -Path $hostKey).Trim() }

  Start-Step 'test-signing'
  if ($config.testSigning) { $null = Invoke-Checked 'bcdedit.exe' @('/set', 'testsigning', 'on') }
  $facts.testSigning = [bool]$config.testSigning

  Start-Step 'tracker-driver'
  $null = New-Item -ItemType Directory -Force -Path 'C:\cbt\driver'
  Copy-Item -Path (Join-Path $Media 'cbt-setup\driver\*') -Destination 'C:\cbt\driver' -Recurse -Force
  $tools = Join-Path $Media 'cbt-setup\tools'
  if (Test-Path $tools) { Copy-Item -Path (Join-Path $tools '*') -Destination 'C:\cbt' -Recurse -Force -Exclude 'OpenSSH-Win64.msi' }
  $installed = @()
  foreach ($inf in @(Get-ChildItem -Path 'C:\cbt\driver' -Recurse -Filter '*.inf')) {
    $code = Invoke-Checked 'pnputil.exe' @('/add-driver', $inf.FullName, '/install') @(0, 259, 3010)
    $installed += [ordered]@{ inf = $inf.Name; exitCode = $code }
  }
  if ($installed.Count -eq 0) { throw 'no .inf file in the driver folder' }
  $facts.driver = $installed

  Start-Step 'data-disk'
  $disk = $null
  for ($i = 0; $i -lt 20 -and $null -eq $disk; $i++) {
    foreach ($d in @(Get-Disk)) { if (([string]$d.SerialNumber).Trim() -ceq [string]$config.dataSerial) { $disk = $d } }
    if ($null -eq $disk) { Start-Sleep -Seconds 3 }
  }
  if ($null -eq $disk) { throw ('no disk with serial ' + $config.dataSerial) }
  if ($disk.IsOffline) { Set-Disk -Number $disk.Number -IsOffline $false }
  if ($disk.IsReadOnly) { Set-Disk -Number $disk.Number -IsReadOnly $false }
  if ([string]$disk.PartitionStyle -eq 'RAW') { Initialize-Disk -Number $disk.Number -PartitionStyle GPT }
  $part = New-Partition -DiskNumber $disk.Number -UseMaximumSize -DriveLetter ([char]$config.dataLetter)
  $null = Format-Volume -Partition $part -FileSystem NTFS -NewFileSystemLabel $config.dataLabel -Confirm:$false
  $null = New-Item -ItemType Directory -Force -Path ($config.dataLetter + ':\cbt')
  $facts.dataDisk = [ordered]@{ number = $disk.Number; partition = $part.PartitionNumber; offset = $part.Offset; size = $part.Size; letter = [string]$config.dataLetter }

  Start-Step 'facts'
  $os = Get-CimInstance -ClassName Win32_OperatingSystem
  $facts.caption = [string]$os.Caption
  $facts.version = [string]$os.Version
  $facts.build = [string]$os.BuildNumber
  $facts.secureBoot = $null
  try { $facts.secureBoot = [bool](Confirm-SecureBootUEFI) } catch { }
  Send-Line ('CBT-SETUP-DONE ' + (ConvertTo-Json -InputObject $facts -Compress -Depth 5))
} catch {
  $msg = ($_.Exception.Message + ' at ' + $_.InvocationInfo.PositionMessage) -replace '[\r\n]+', ' '
  Send-Line ('CBT-SETUP-FAILED ' + (ConvertTo-Json -InputObject ([ordered]@{ step = $step; message = $msg }) -Compress))
} finally {
  if ($null -ne $port) { $port.Close() }
}
