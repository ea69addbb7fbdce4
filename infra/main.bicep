// `azd up` for the podcast narration app: a Flex Consumption (FC1) Python Function App that
// uses one user-assigned managed identity for everything (host storage, the app's storage,
// Azure OpenAI, Application Insights), a storage account with shared-key access disabled,
// Application Insights on Log Analytics with Entra ID ingestion, an Azure OpenAI account
// with a gpt-realtime-mini deployment (or an existing one), and the storage account's
// Event Grid system topic. The blob-created subscription is made by scripts/postdeploy.*
// after the code is deployed (the webhook's validation needs the running blob trigger).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; with the subscription and location it seeds the resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource except, optionally, the Azure OpenAI account.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Python version of the Function App.')
@allowed(['3.11', '3.12', '3.13'])
param pythonVersion string = '3.12'

@description('Object id of the user running azd: given data access to the storage account for trying the app (empty: none).')
param principalId string = ''

@description('Region of a new Azure OpenAI account (empty: location). It must offer the model as a Global Standard deployment.')
param openAiLocation string = ''

@description('Use this existing Azure OpenAI account instead of creating one (empty: create one). It must have a deployment named openAiDeploymentName.')
param existingOpenAiAccountName string = ''

@description('Resource group of existingOpenAiAccountName (empty: the resource group azd creates).')
param existingOpenAiResourceGroupName string = ''

@description('The Realtime deployment the app narrates with (AZURE_OPENAI_AUDIO_DEPLOYMENT).')
param openAiDeploymentName string = 'gpt-realtime-mini'

@description('Model version of a new gpt-realtime-mini deployment.')
param openAiModelVersion string = '2025-10-06'

@description('Capacity of a new deployment, in thousands of tokens per minute.')
@minValue(1)
param openAiDeploymentCapacity int = 10

@description('Largest number of instances Flex Consumption may scale the app out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

// The names the app's settings default to (podcast/settings.py); tests/unit/test_infra.py
// checks they are the code's defaults.
param outputContainerName string = 'narrations'
param inputContainerName string = 'narration-input'
param jobsContainerName string = 'narrations-jobs'
param jobsQueueName string = 'narration-jobs'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-${resourceToken}'
// Flex Consumption deploys the code package from this container.
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var createOpenAi = empty(existingOpenAiAccountName)
var openAiAccountName = createOpenAi ? 'oai-${resourceToken}' : existingOpenAiAccountName
var openAiResourceGroupName = createOpenAi || empty(existingOpenAiResourceGroupName) ? rg.name : existingOpenAiResourceGroupName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'core/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-func-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'core/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containerNames: [deploymentContainerName, outputContainerName, inputContainerName, jobsContainerName]
    queueNames: [jobsQueueName]
  }
}

module openAi 'core/openai.bicep' = if (createOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    name: openAiAccountName
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    deploymentName: openAiDeploymentName
    modelVersion: openAiModelVersion
    capacity: openAiDeploymentCapacity
  }
}

// The account the app calls, new or existing: its endpoint and the role assignment on it.
module openAiAccess 'app/openai-access.bicep' = {
  name: 'openai-access'
  scope: resourceGroup(openAiResourceGroupName)
  params: {
    accountName: openAiAccountName
    principalId: identity.outputs.principalId
  }
  dependsOn: [openAi]
}

module eventGrid 'core/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    name: 'evgt-${resourceToken}'
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module api 'app/function.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    openAiEndpoint: openAiAccess.outputs.endpoint
    openAiDeploymentName: openAiDeploymentName
    outputContainerName: outputContainerName
    inputContainerName: inputContainerName
    jobsContainerName: jobsContainerName
    jobsQueueName: jobsQueueName
  }
  // The host reads its storage and the deployment package with the identity from the start.
  dependsOn: [rbac]
}

// azd writes these into .azure/<env>/.env; scripts/postdeploy.* and the README use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_BASE_URL string = 'https://${api.outputs.defaultHostName}/api'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_OPENAI_ENDPOINT string = openAiAccess.outputs.endpoint
output AZURE_OPENAI_AUDIO_DEPLOYMENT string = openAiDeploymentName
output NARRATION_INPUT_CONTAINER string = inputContainerName
output NARRATION_OUTPUT_CONTAINER string = outputContainerName
output EVENT_GRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output BLOB_TRIGGER_FUNCTION_NAME string = 'narrate_document'
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output FUNCTION_KEY_COMMAND string = 'az functionapp keys list -g ${rg.name} -n ${api.outputs.name} --query functionKeys.default -o tsv'
