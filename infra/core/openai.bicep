// An Azure OpenAI account reachable only with Entra ID (disableLocalAuth; the custom
// subdomain that token authentication needs), with a gpt-realtime-mini deployment.
param name string
param location string
param tags object = {}
param deploymentName string
param modelVersion string
@minValue(1)
param capacity int

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134: The app (Flex Consumption without a virtual network) calls the public endpoint; only Entra ID tokens are accepted (disableLocalAuth).
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: { name: 'S0' }
  identity: { type: 'SystemAssigned' }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow' }
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: 'GlobalStandard'
    capacity: capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: 'gpt-realtime-mini'
      version: modelVersion
    }
  }
}

output name string = account.name
output endpoint string = account.properties.endpoint
