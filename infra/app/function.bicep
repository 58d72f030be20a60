// The function app: Flex Consumption, Python 3.11 on Linux, user-assigned identity for everything,
// and every app setting the code reads (the names are the contract of licensing/settings/__init__.py;
// tests/unit/test_infra.py checks that both sides agree).

@description('Name of the function app.')
param name string

@description('Region.')
param location string = resourceGroup().location

@description('Tags of the environment; the app also gets azd-service-name.')
param tags object = {}

@description('Service name in azure.yaml: azd deploys the code to the resource with this azd-service-name tag.')
param serviceName string

@description('Resource id of the Flex Consumption (FC1) plan.')
param appServicePlanId string

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Name of the Application Insights component (local auth disabled).')
param applicationInsightsName string

@description('Name of the storage account (shared keys disabled).')
param storageAccountName string

@description('Blob container Flex Consumption deploys the app package to.')
param deploymentStorageContainerName string

@description('Flex Consumption scale-out ceiling.')
param maximumInstanceCount int

@description('Memory per instance (MB).')
param instanceMemoryMB int

@description('Versionless Key Vault secret URI of the Teams webhook URL; empty: no Teams alerts.')
param teamsWebhookSecretUri string = ''

param auditQueue string
param auditChunkQueue string
param auditSchedule string
param graphCloud string
param graphBaseUrl string
param graphMaxConcurrency int
param fanoutGroups int
param seatMinFree int
param seatMinFreePct string
param forecastDays int
param groupDropPct int
param renewalWarnDays int
param inactiveDays int
param processingStuckHours int
param expectedGroupSkus string
param retentionDays int
@description('REPORT_CONTAINER: the private blob container of the published reports.')
param reportContainer string
param alertMailFrom string
param alertMailTo string
param alertMailToCritical string
param alertMinSeverity string
param alertRenotifyHoursCritical int
param alertRenotifyHoursWarning int
param alertExcludeSkus string
param alertReportUrl string
@description('REPORT_READERS: Entra object ids (comma-separated) of the people who may open the reports through the app.')
param reportReaders string
@description('Client id of the app registration that signs report readers in (App Service authentication). Empty: no sign-in, the route answers 404 and the alerts link the blob.')
param reportSignInClientId string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Every value is a string (app settings are). An empty value means "use the code's default":
// licensing/settings/__init__.py treats blank settings as unset.
var appSettings = {
  // Host storage (leases, timer schedule monitor, queue trigger) through the managed identity; the app reads
  // the blob URI too: it publishes each tenant run's report to REPORT_CONTAINER.
  // accountName is what licensing/settings/__init__.py and the host read first; the explicit service URIs
  // (which win when present) keep national clouds right, where the suffix is not core.windows.net.
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__blobServiceUri: 'https://${storage.name}.blob.${environment().suffixes.storage}'
  AzureWebJobsStorage__queueServiceUri: 'https://${storage.name}.queue.${environment().suffixes.storage}'
  AzureWebJobsStorage__tableServiceUri: 'https://${storage.name}.table.${environment().suffixes.storage}'
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId

  // Telemetry: the host exports OpenTelemetry (host.json telemetryMode) with an Entra ID token.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  PYTHON_ENABLE_OPENTELEMETRY: 'true'

  // Microsoft Graph through the same identity (DefaultAzureCredential reads AZURE_CLIENT_ID).
  AZURE_CLIENT_ID: identityClientId
  AZURE_TENANT_ID: tenant().tenantId
  GRAPH_CLOUD: graphCloud
  GRAPH_BASE_URL: graphBaseUrl
  GRAPH_MAX_CONCURRENCY: string(graphMaxConcurrency)

  // The audit.
  AUDIT_SCHEDULE: auditSchedule
  AUDIT_QUEUE: auditQueue
  AUDIT_CHUNK_QUEUE: auditChunkQueue
  FANOUT_GROUPS: string(fanoutGroups)
  SEAT_MIN_FREE: string(seatMinFree)
  SEAT_MIN_FREE_PCT: seatMinFreePct
  FORECAST_DAYS: string(forecastDays)
  GROUP_DROP_PCT: string(groupDropPct)
  RENEWAL_WARN_DAYS: string(renewalWarnDays)
  INACTIVE_DAYS: string(inactiveDays)
  PROCESSING_STUCK_HOURS: string(processingStuckHours)
  EXPECTED_GROUP_SKUS: expectedGroupSkus
  RETENTION_DAYS: string(retentionDays)
  REPORT_CONTAINER: reportContainer

  // Alerts. The webhook URL is never stored in the app's configuration: the platform resolves the
  // Key Vault reference with the identity named by keyVaultReferenceIdentity.
  ALERT_TEAMS_WEBHOOK_URL: empty(teamsWebhookSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${teamsWebhookSecretUri})'
  ALERT_MAIL_FROM: alertMailFrom
  ALERT_MAIL_TO: alertMailTo
  ALERT_MAIL_TO_CRITICAL: alertMailToCritical
  ALERT_MIN_SEVERITY: alertMinSeverity
  ALERT_RENOTIFY_HOURS_CRITICAL: string(alertRenotifyHoursCritical)
  ALERT_RENOTIFY_HOURS_WARNING: string(alertRenotifyHoursWarning)
  ALERT_EXCLUDE_SKUS: alertExcludeSkus
  ALERT_REPORT_URL: alertReportUrl
  REPORT_READERS: reportReaders
}

// The alerts' Full report link opens in one click: App Service authentication signs the reader in with Entra ID
// (https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad), then the app checks the
// object id against REPORT_READERS (licensing/pipeline/viewer.py). No client secret: only an ID token is needed
// ("When the client secret is not set, implicit flow is used and only an ID token is returned"). Every request must
// be signed in; the timer and queue triggers are not HTTP and are not affected.
var reportSignIn = empty(reportSignInClientId) ? null : {
  platform: {
    enabled: true
  }
  globalValidation: {
    requireAuthentication: true
    unauthenticatedClientAction: 'RedirectToLoginPage'
    redirectToProvider: 'azureactivedirectory'
  }
  identityProviders: {
    azureActiveDirectory: {
      enabled: true
      registration: {
        clientId: reportSignInClientId
        openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
      }
      validation: {
        allowedAudiences: [
          reportSignInClientId
        ]
      }
    }
  }
  login: {
    tokenStore: {
      enabled: false
    }
  }
}

module functionApp 'br/public:avm/res/web/site:0.15.1' = {
  name: '${serviceName}-functionapp'
  params: {
    kind: 'functionapp,linux'
    name: name
    location: location
    tags: union(tags, { 'azd-service-name': serviceName })
    serverFarmResourceId: appServicePlanId
    managedIdentities: {
      userAssignedResourceIds: [
        identityId
      ]
    }
    // Key Vault references resolve with the user-assigned identity (there is no system identity).
    keyVaultAccessIdentityResourceId: identityId
    httpsOnly: true
    clientAffinityEnabled: false
    // azd deploys with an Entra ID token: no FTP / SCM basic-auth publishing credentials.
    basicPublishingCredentialsPolicies: [
      {
        name: 'ftp'
        allow: false
      }
      {
        name: 'scm'
        allow: false
      }
    ]
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      alwaysOn: false
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
    }
    appSettingsKeyValuePairs: appSettings
    authSettingV2Configuration: reportSignIn
  }
}

output name string = functionApp.outputs.name
output resourceId string = functionApp.outputs.resourceId
