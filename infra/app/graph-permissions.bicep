// Optional: grant the Microsoft Graph application permissions of docs/design.md ("Least privilege") to
// the managed identity, with the Microsoft Graph Bicep extension (alias in infra/bicepconfig.json).
// Deploying this needs directory rights (Privileged Role Administrator, or an identity with
// AppRoleAssignment.ReadWrite.All + Application.Read.All), which is why main.bicep only includes it
// when grantGraphPermissions=true. infra/scripts/grant-graph-permissions.* does the same job.
// Reference: https://learn.microsoft.com/graph/templates/reference/approleassignedto
extension microsoftGraphV1

@description('Principal (object) id of the managed identity\'s service principal.')
param principalId string

@allowed([
  'LicenseAssignment.Read.All'
  'Organization.Read.All'
])
@description('Permission that reads subscribedSkus (Organization.Read.All is granted in any case).')
param licenseReadPermission string = 'LicenseAssignment.Read.All'

// Read only: nothing that writes to the directory. Mail.Send is deliberately absent: scope it to
// one mailbox with Exchange RBAC for Applications instead (docs/deploy.md); a directory-wide
// Mail.Send grant would let the app send as any mailbox in the tenant.
// Organization.Read.All (read-only) is granted by default: /directory/subscriptions (renewal dates) needs it,
// LicenseAssignment.Read.All does not cover it (https://learn.microsoft.com/graph/api/companysubscription-list),
// and /organization gives the tenant's id and name. union() drops the duplicate when licenseReadPermission is
// Organization.Read.All too.
var permissions = union([licenseReadPermission], [
  'Organization.Read.All' // tenant id and name, subscription lifecycle dates
  'GroupMember.Read.All' // licensed groups and their members
  'User.Read.All' // the users scan: licenseAssignmentStates, userType, accountEnabled
])

// Microsoft Graph's own service principal; its appRoles list the application permissions, looked
// up by value so that no role id is hard-coded.
resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource grants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in permissions: {
    appRoleId: filter(graph.appRoles, role => role.value == permission)[0].id
    principalId: principalId
    resourceId: graph.id
  }
]

output grantedPermissions array = permissions
