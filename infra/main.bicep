// Group License Audit: every Azure resource the function app needs, deployable with `azd up`.
// Layout and naming follow Azure-Samples/functions-quickstart-python-http-azd (AVM modules,
// abbreviations.json + uniqueString token, azd-env-name / azd-service-name tags).
// Setting names and defaults are the contract of docs/design.md / licensing/settings/__init__.py.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional. Name of the resource group (default rg-<environmentName>).')
param resourceGroupName string = ''

@description('Optional. Object id of a person or group that operates the app: gets queue send + table read on the storage account (licensing-audit enqueue / history). Empty: nobody.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Kind of principal operatorPrincipalId is.')
param operatorPrincipalType string = 'User'

// ---------------------------------------------------------------------------------------------
// Hosting
// ---------------------------------------------------------------------------------------------

@minValue(1)
@maxValue(1000)
@description('Flex Consumption scale-out ceiling. Audits run one at a time per queue message (host.json batchSize 1), so a few instances suffice.')
param maximumInstanceCount int = 10

@allowed([
  512
  2048
  4096
])
@description('Memory per Flex Consumption instance (MB). 2048 holds a snapshot of a 100k-user tenant comfortably.')
param instanceMemoryMB int = 2048

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Redundancy of the storage account that holds the queues, the audit tables and the deployment package.')
param storageSkuName string = 'Standard_LRS'

@minValue(30)
@maxValue(730)
@description('Days the Log Analytics workspace keeps logs and traces (30 days are included in the ingestion price).')
param logRetentionInDays int = 30

// ---------------------------------------------------------------------------------------------
// Audit settings (app settings of the same names; see docs/design.md "Settings")
// ---------------------------------------------------------------------------------------------

@description('AUDIT_SCHEDULE: NCRONTAB (6 fields, UTC: Linux plans ignore time zones) of the nightly audit.')
param auditSchedule string = '0 30 2 * * *'

@allowed([
  'global'
  'usgov'
  'usgovdod'
  'china'
])
@description('GRAPH_CLOUD: the Microsoft Graph national cloud of the audited tenant.')
param graphCloud string = 'global'

@description('GRAPH_BASE_URL: explicit Graph base URL (overrides graphCloud). Empty: derived from graphCloud.')
param graphBaseUrl string = ''

@minValue(1)
@maxValue(64)
@description('GRAPH_MAX_CONCURRENCY: parallel Graph requests per audit.')
param graphMaxConcurrency int = 8

@minValue(1)
@description('FANOUT_GROUPS: above this many licensed groups a tenant audit is split into chunk messages.')
param fanoutGroups int = 500

@minValue(0)
@description('SEAT_MIN_FREE: seat_low fires when free seats fall below max(this, SEAT_MIN_FREE_PCT % of enabled).')
param seatMinFree int = 5

@description('SEAT_MIN_FREE_PCT: percentage of enabled seats that should stay free (a number 0-100, decimals allowed, so a string).')
param seatMinFreePct string = '5'

@minValue(7)
@maxValue(365)
@description('FORECAST_DAYS: seat_forecast fires when the trend runs out of seats within this many days.')
param forecastDays int = 30

@description('GROUP_DROP_PCT: licensed_group_shrank fires when a licensed group loses more than this % of its members between runs.')
@minValue(1)
@maxValue(100)
param groupDropPct int = 20

@description('RENEWAL_WARN_DAYS: subscription_renewal looks this many days ahead.')
@minValue(1)
@maxValue(365)
param renewalWarnDays int = 30

@description('INACTIVE_DAYS: inactive_user_licensed counts accounts without a sign-in for this many days.')
@minValue(1)
@maxValue(3650)
param inactiveDays int = 90

@minValue(1)
@maxValue(720)
@description('PROCESSING_STUCK_HOURS: processing_incomplete becomes a warning after this many hours.')
param processingStuckHours int = 24

@description('EXPECTED_GROUP_SKUS: SKU part numbers or skuIds that should be assigned by groups, comma-separated. Empty: the built-in default (Office 365 E3/E5, EMS E3/E5, Microsoft 365 E3/E5).')
param expectedGroupSkus string = ''

@minValue(1)
@maxValue(3650)
@description('RETENTION_DAYS: days audit runs and findings are kept in Table Storage.')
param retentionDays int = 400

// ---------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------

@secure()
@description('ALERT_TEAMS_WEBHOOK_URL: the Teams Workflows webhook URL (it carries a signature: a secret). Stored in Key Vault, referenced by the app setting. Empty: no Teams alerts.')
param alertTeamsWebhookUrl string = ''

@description('ALERT_MAIL_FROM: the mailbox alerts are sent from (Graph sendMail). Required when ALERT_MAIL_TO or ALERT_MAIL_TO_CRITICAL is set.')
param alertMailFrom string = ''

@description('ALERT_MAIL_TO: recipients of every digest, separated by , or ;. Empty: no e-mail.')
param alertMailTo string = ''

@description('ALERT_MAIL_TO_CRITICAL: extra recipients for digests with critical findings.')
param alertMailToCritical string = ''

@allowed([
  'info'
  'warning'
  'critical'
])
@description('ALERT_MIN_SEVERITY: the lowest severity that is sent.')
param alertMinSeverity string = 'warning'

@minValue(1)
@maxValue(2160)
@description('ALERT_RENOTIFY_HOURS_CRITICAL: open critical findings are sent again after this many hours.')
param alertRenotifyHoursCritical int = 24

@description('ALERT_RENOTIFY_HOURS_WARNING: open warning and info findings are sent again after this many hours.')
param alertRenotifyHoursWarning int = 168

@description('ALERT_EXCLUDE_SKUS: SKUs (part numbers or skuIds, comma-separated) that never alert but stay in the report.')
param alertExcludeSkus string = ''

@description('ALERT_REPORT_URL: link to the full report shown in the alerts (https). Empty: no link.')
param alertReportUrl string = ''

@description('REPORT_READERS: Entra object ids (comma-separated) of the people who may open the published reports through the app (with reportSignInClientId).')
param reportReaders string = ''

@description('Client id of an app registration (redirect URI https://<app>/.auth/login/aad/callback, ID tokens) that signs report readers in. Empty: the alerts link the private blob instead (docs/deploy.md, "The report").')
param reportSignInClientId string = ''

// ---------------------------------------------------------------------------------------------
// Microsoft Graph application permissions (optional here; see infra/scripts/grant-graph-permissions.*)
// ---------------------------------------------------------------------------------------------

@description('Grant the Graph application permissions to the managed identity in this deployment (Microsoft Graph Bicep extension). Needs a deployer with Privileged Role Administrator (or AppRoleAssignment.ReadWrite.All + Application.Read.All); off by default: run the grant script instead.')
param grantGraphPermissions bool = false

@allowed([
  'LicenseAssignment.Read.All'
  'Organization.Read.All'
])
@description('Graph permission that reads subscribedSkus (docs/design.md "Least privilege").')
param graphLicenseReadPermission string = 'LicenseAssignment.Read.All'

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}audit-${resourceToken}'
// Flex Consumption reads the app package from this blob container (lowercase, at most 63 characters).
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var storageAccountName = '${abbrs.storageStorageAccounts}${resourceToken}'
var keyVaultName = '${abbrs.keyVaultVaults}${resourceToken}'
var teamsWebhookSecretName = 'alert-teams-webhook-url'

// Queue and table names the code uses (licensing/settings/__init__.py defaults, licensing/store).
// The Functions host moves a message to <queue>-poison after maxDequeueCount (host.json).
var auditQueue = 'license-audit-requests'
// REPORT_CONTAINER: each tenant run's HTML/JSON/CSV report, private (no anonymous access), kept like the runs.
var reportContainer = 'audit-reports'
var auditChunkQueue = 'license-audit-chunks'
var queueNames = [
  auditQueue
  '${auditQueue}-poison'
  auditChunkQueue
  '${auditChunkQueue}-poison'
]
var tableNames = [
  'AuditRuns'
  'AuditFindings'
  'SkuHistory'
  'AlertState'
  'AlertOutbox'
  'AlertSuppressions'
  'AuditLeases'
  'AuditRunDetails'
  'AuditOverflow'
  'LicenseChanges' // the journal of licensing-audit apply: written from an admin's terminal, read by the drift rule
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------
// Identity: one user-assigned identity for storage, App Insights, Key Vault and Microsoft Graph
// ---------------------------------------------------------------------------------------------

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}audit-${resourceToken}'
    location: location
    tags: tags
  }
}

// ---------------------------------------------------------------------------------------------
// Monitoring: Log Analytics + workspace-based Application Insights, Entra ID ingestion only
// ---------------------------------------------------------------------------------------------

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.7.0' = {
  name: 'logAnalytics'
  scope: rg
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: logRetentionInDays
  }
}

module appInsights 'br/public:avm/res/insights/component:0.4.1' = {
  name: 'appInsights'
  scope: rg
  params: {
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    // Instrumentation keys are not accepted: telemetry must carry an Entra ID token
    // (APPLICATIONINSIGHTS_AUTHENTICATION_STRING + Monitoring Metrics Publisher below).
    disableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------
// Storage: host (leases, timers, deployment package), queues and audit tables; Entra ID only
// ---------------------------------------------------------------------------------------------

module storage 'br/public:avm/res/storage/storage-account:0.30.0' = {
  name: 'storage'
  scope: rg
  params: {
    name: storageAccountName
    location: location
    tags: tags
    kind: 'StorageV2'
    skuName: storageSkuName
    allowSharedKeyAccess: false // no account keys, no SAS: every caller signs in with Entra ID
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    // Flex Consumption without VNet integration reaches storage over its public endpoint;
    // access is still Entra ID + RBAC only (shared keys are off).
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      containers: [
        {
          name: deploymentStorageContainerName
          publicAccess: 'None'
        }
        {
          name: reportContainer
          publicAccess: 'None'
        }
      ]
    }
    // The published reports are kept as long as the runs they belong to (RETENTION_DAYS), then deleted.
    managementPolicyRules: [
      {
        enabled: true
        name: 'audit-report-retention'
        type: 'Lifecycle'
        definition: {
          actions: {
            baseBlob: {
              delete: {
                daysAfterModificationGreaterThan: retentionDays
              }
            }
          }
          filters: {
            blobTypes: [
              'blockBlob'
            ]
            prefixMatch: [
              '${reportContainer}/'
            ]
          }
        }
      }
    ]
    queueServices: {
      queues: [for queueName in queueNames: { name: queueName }]
    }
    tableServices: {
      tables: [for tableName in tableNames: { name: tableName }]
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Key Vault: the Teams webhook URL (a signed URL: a secret), read through a Key Vault reference
// ---------------------------------------------------------------------------------------------

module keyVault 'br/public:avm/res/key-vault/vault:0.13.3' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    sku: 'standard'
    enableRbacAuthorization: true // no access policies: Key Vault Secrets User on the identity only
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    // The vault holds one re-creatable secret (a new Workflows URL is a minute's work); purge
    // protection would block `azd down --purge` and re-using the name for 7-90 days.
    enablePurgeProtection: false
    // App Service resolves Key Vault references over the vault's public endpoint unless the app
    // is VNet-integrated; the vault is protected by Entra ID + RBAC.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

module teamsWebhookSecret 'app/secret.bicep' = if (!empty(alertTeamsWebhookUrl)) {
  name: 'teamsWebhookSecret'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    secretName: teamsWebhookSecretName
    secretValue: alertTeamsWebhookUrl
    tags: tags
  }
}

// ---------------------------------------------------------------------------------------------
// Hosting: Flex Consumption plan (FC1, Linux) and the function app
// ---------------------------------------------------------------------------------------------

module appServicePlan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'appServicePlan'
  scope: rg
  params: {
    name: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true // Linux
  }
}

module functionApp 'app/function.bicep' = {
  name: 'functionApp'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    serviceName: 'audit' // azure.yaml services.audit
    appServicePlanId: appServicePlan.outputs.resourceId
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    applicationInsightsName: appInsights.outputs.name
    storageAccountName: storage.outputs.name
    deploymentStorageContainerName: deploymentStorageContainerName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    // A versionless secret URI: the app picks up a rotated webhook URL without a redeployment.
    teamsWebhookSecretUri: !empty(alertTeamsWebhookUrl) ? '${keyVault.outputs.uri}secrets/${teamsWebhookSecretName}' : ''
    auditQueue: auditQueue
    auditChunkQueue: auditChunkQueue
    auditSchedule: auditSchedule
    graphCloud: graphCloud
    graphBaseUrl: graphBaseUrl
    graphMaxConcurrency: graphMaxConcurrency
    fanoutGroups: fanoutGroups
    seatMinFree: seatMinFree
    seatMinFreePct: seatMinFreePct
    forecastDays: forecastDays
    groupDropPct: groupDropPct
    renewalWarnDays: renewalWarnDays
    inactiveDays: inactiveDays
    processingStuckHours: processingStuckHours
    expectedGroupSkus: expectedGroupSkus
    retentionDays: retentionDays
    reportContainer: reportContainer
    alertMailFrom: alertMailFrom
    alertMailTo: alertMailTo
    alertMailToCritical: alertMailToCritical
    alertMinSeverity: alertMinSeverity
    alertRenotifyHoursCritical: alertRenotifyHoursCritical
    alertRenotifyHoursWarning: alertRenotifyHoursWarning
    alertExcludeSkus: alertExcludeSkus
    alertReportUrl: alertReportUrl
    reportReaders: reportReaders
    reportSignInClientId: reportSignInClientId
  }
  // The app resolves its Key Vault reference and storage at start: grant the roles first.
  dependsOn: [
    rbac
    teamsWebhookSecret
  ]
}

// ---------------------------------------------------------------------------------------------
// Role assignments (least privilege) and, optionally, the Graph application permissions
// ---------------------------------------------------------------------------------------------

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: appInsights.outputs.name
    keyVaultName: keyVault.outputs.name
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
    reportContainerName: reportContainer
  }
}

module graphPermissions 'app/graph-permissions.bicep' = if (grantGraphPermissions) {
  name: 'graphPermissions'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    licenseReadPermission: graphLicenseReadPermission
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in .azure/<env>/.env; none is a secret)
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_AUDIT_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AUDIT_QUEUE string = auditQueue
output REPORT_CONTAINER string = reportContainer
