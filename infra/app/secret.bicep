// One Key Vault secret, written from a @secure() parameter (its value never reaches an output or a log).
@description('Name of the existing Key Vault (RBAC authorization).')
param keyVaultName string

@description('Name of the secret.')
param secretName string

@secure()
@description('The secret value.')
param secretValue string

@description('Tags of the secret.')
param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  tags: tags
  //checkov:skip=CKV_AZURE_41: A Teams Workflows webhook URL has no expiry of its own; an expiry date here would only make Key Vault refuse the reference and silently stop Teams alerts. Rotation = new workflow + azd provision (docs/deploy.md).
  properties: {
    value: secretValue
    contentType: 'text/uri' // a URL; lets CKV_AZURE_114 and readers know what the secret is
    attributes: {
      enabled: true
    }
  }
}

