<#
.SYNOPSIS
Grants the function app's managed identity the Microsoft Graph application permissions it needs
(docs/design.md "Least privilege"), idempotently.

.DESCRIPTION
App role ids are looked up by value on the tenant's Microsoft Graph service principal at run time;
permissions already granted are skipped, so the script can run any number of times.
Needs the Microsoft Graph PowerShell SDK (Install-Module Microsoft.Graph.Applications) and a
sign-in as Privileged Role Administrator (or Global Administrator): the script asks for the
delegated scopes AppRoleAssignment.ReadWrite.All and Application.Read.All.

Mail.Send is not granted unless -MailSendDirectoryWide is given. Prefer Exchange RBAC for
Applications, which limits sending to one mailbox (docs/deploy.md); then do NOT grant it here.

.PARAMETER PrincipalId
Object id of the managed identity's service principal (azd output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID).
Defaults to $env:AZURE_MANAGED_IDENTITY_PRINCIPAL_ID, then to `azd env get-value`.

.PARAMETER LicenseReadPermission
LicenseAssignment.Read.All (default) or Organization.Read.All: either reads subscribedSkus.

.PARAMETER Environment
Microsoft Graph cloud for Connect-MgGraph: Global, USGov, USGovDoD or China.

.EXAMPLE
./infra/scripts/grant-graph-permissions.ps1 -WhatIf
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [ValidatePattern('^[0-9a-fA-F-]{36}$')]
    [string] $PrincipalId = $env:AZURE_MANAGED_IDENTITY_PRINCIPAL_ID,

    [ValidateSet('LicenseAssignment.Read.All', 'Organization.Read.All')]
    [string] $LicenseReadPermission = 'LicenseAssignment.Read.All',

    [switch] $MailSendDirectoryWide,

    [ValidateSet('Global', 'USGov', 'USGovDoD', 'China')]
    [string] $Environment = 'Global'
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$graphAppId = '00000003-0000-0000-c000-000000000000'

if (-not $PrincipalId -and (Get-Command azd -ErrorAction SilentlyContinue)) {
    $PrincipalId = (& azd env get-value AZURE_MANAGED_IDENTITY_PRINCIPAL_ID 2>$null)
}
if (-not $PrincipalId -or $PrincipalId -notmatch '^[0-9a-fA-F-]{36}$') {
    throw "No managed identity principal id: pass -PrincipalId or run 'azd up' first."
}

# Organization.Read.All always: /directory/subscriptions (renewal dates) and /organization (tenant id, name) need it.
$permissions = @($LicenseReadPermission, 'Organization.Read.All', 'GroupMember.Read.All', 'User.Read.All') | Select-Object -Unique
if ($MailSendDirectoryWide) {
    Write-Warning 'Mail.Send granted directory-wide lets the app send as ANY mailbox; prefer Exchange RBAC for Applications.'
    $permissions += 'Mail.Send'
}

Connect-MgGraph -Scopes 'AppRoleAssignment.ReadWrite.All', 'Application.Read.All' -Environment $Environment -NoWelcome

$graph = Get-MgServicePrincipal -Filter "appId eq '$graphAppId'"
if (-not $graph) { throw 'Microsoft Graph service principal not found in this tenant.' }

$existing = @(Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $PrincipalId -All |
        Where-Object { $_.ResourceId -eq $graph.Id } |
        ForEach-Object { $_.AppRoleId })

foreach ($permission in $permissions) {
    $role = $graph.AppRoles |
        Where-Object { $_.Value -eq $permission -and $_.AllowedMemberTypes -contains 'Application' } |
        Select-Object -First 1
    if (-not $role) { throw "Microsoft Graph has no application permission named $permission." }
    if ($existing -contains $role.Id) {
        Write-Host "already granted: $permission"
        continue
    }
    if ($PSCmdlet.ShouldProcess($PrincipalId, "grant $permission")) {
        New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $PrincipalId `
            -PrincipalId $PrincipalId -ResourceId $graph.Id -AppRoleId $role.Id | Out-Null
        Write-Host "granted: $permission"
    }
}
Write-Host 'done: tokens issued from now on carry these roles (a running app may hold an older token for up to 24 h; restart it).'
