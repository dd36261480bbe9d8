<#
.SYNOPSIS
  Installs manifold-agent as a Windows service.

.DESCRIPTION
  Copies manifold-agent.exe to $InstallDir, creates the state directory with an ACL that only SYSTEM and
  Administrators can read (the credential lives there), joins the coordinator when -Coordinator and -CaFingerprint
  are given, and registers the "manifold-agent" service (automatic start, restart on failure) running
  `manifold-agent.exe run --service --state-dir <dir> --builder <builder>` as LocalSystem.

  The join token never appears on a command line: give -TokenFile (a file holding only the token; delete it
  afterwards), or leave it out and type the token at the prompt. The script hands it to `manifold-agent join` on
  standard input (`--token-file -`).

  Stopping the service drains: the running job finishes and is reported, then the agent exits. A second
  `sc.exe stop manifold-agent` cancels the job.

.EXAMPLE
  .\install-windows-service.ps1 -Binary .\manifold-agent.exe -Coordinator https://ci.example.com:8443 `
      -TokenFile C:\secure\join-token.txt -CaFingerprint sha256:3b1f... -Builder docker
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $Binary,
    [string] $InstallDir = "$env:ProgramFiles\Manifold",
    [string] $StateDir = "$env:ProgramData\manifold-agent",
    [ValidateSet("docker", "buildx", "buildah", "podman", "command")] [string] $Builder = "docker",
    [string] $Coordinator,
    [string] $TokenFile,
    [string] $CaFingerprint,
    [string] $Name = $env:COMPUTERNAME,
    [string[]] $Label = @()
)
$ErrorActionPreference = "Stop"

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "Run this script from an elevated PowerShell (Administrator)."
}

New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
$exe = Join-Path $InstallDir "manifold-agent.exe"
Copy-Item -Force $Binary $exe

# State directory: owner-only. The service runs as LocalSystem; Administrators keep access for support.
New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
& icacls.exe $StateDir /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls failed to secure $StateDir" }

if ($Coordinator) {
    if (-not $CaFingerprint) { throw "-Coordinator needs -CaFingerprint" }
    # The token goes to join on standard input, never as an argument (process lists and audit logs keep those).
    if ($TokenFile) {
        $token = (Get-Content -Raw -LiteralPath $TokenFile).Trim()
    } else {
        $secure = Read-Host -AsSecureString -Prompt "Join token"
        $token = [System.Net.NetworkCredential]::new("", $secure).Password
    }
    if (-not $token) { throw "no join token: give -TokenFile or type it at the prompt" }
    $joinArgs = @("join", $Coordinator, "--token-file", "-", "--ca-fingerprint", $CaFingerprint,
        "--state-dir", $StateDir, "--name", $Name)
    foreach ($l in $Label) { $joinArgs += @("--label", $l) }
    $token | & $exe @joinArgs
    $joinStatus = $LASTEXITCODE
    Remove-Variable token
    if ($joinStatus -ne 0) { throw "manifold-agent join failed" }
}

$serviceName = "manifold-agent"
$existing = Get-Service -Name $serviceName -ErrorAction SilentlyContinue
if ($existing) {
    Stop-Service -Name $serviceName -ErrorAction SilentlyContinue
    & sc.exe delete $serviceName | Out-Null
    Start-Sleep -Seconds 2
}
$binaryPath = "`"$exe`" run --service --state-dir `"$StateDir`" --builder $Builder"
New-Service -Name $serviceName -BinaryPathName $binaryPath -DisplayName "Manifold build agent" `
    -Description "Builds container images for a Manifold coordinator." -StartupType Automatic | Out-Null
# A service has no console: the agent logs to a file in the state directory.
Set-ItemProperty -Path "HKLM:\SYSTEM\CurrentControlSet\Services\$serviceName" -Name Environment -Type MultiString `
    -Value @("MANIFOLD_AGENT_LOG_FILE=$(Join-Path $StateDir 'agent.log')")
# Restart after 5 s on any failure; reset the failure count daily.
& sc.exe failure $serviceName reset= 86400 actions= restart/5000/restart/5000/restart/5000 | Out-Null
# Let a drain finish: the SCM waits for STOP_PENDING updates, which the agent sends while a job runs.
Start-Service -Name $serviceName
Get-Service -Name $serviceName
Write-Host "Log: $(Join-Path $StateDir 'agent.log'). Check the setup with: & '$exe' doctor --state-dir '$StateDir'"
