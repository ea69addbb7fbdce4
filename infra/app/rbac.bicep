// What the app's identity does on the storage account and Application Insights, and no more:
//   - Storage Blob Data Owner: the blob trigger (Event Grid source) and the host keep receipts,
//     keys and leases in blobs and need Owner; the app writes audio, transcripts and job
//     records, creates its containers, and signs user-delegation SAS links
//     (generateUserDelegationKey); Flex Consumption reads the deployment package.
//   - Storage Queue Data Contributor: the job queue (send, and the queue trigger), the blob
//     trigger's queue, and the host's poison queues.
//   - Monitoring Metrics Publisher: telemetry to Application Insights with Entra ID.
// The user running azd (userPrincipalId, optional) may read and upload blobs to try the app.
param storageAccountName string
param applicationInsightsName string
param principalId string
param userPrincipalId string = ''

var blobDataOwnerRole = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
var queueDataContributorRole = '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
var metricsPublisherRole = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
var blobDataContributorRole = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, blobDataOwnerRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataOwnerRole)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, queueDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueDataContributorRole)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, metricsPublisherRole)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', metricsPublisherRole)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource userBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(storage.id, userPrincipalId, blobDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributorRole)
    principalId: userPrincipalId
  }
}
