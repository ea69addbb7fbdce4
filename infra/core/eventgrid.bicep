// The storage account's Event Grid system topic. Its blob-created subscription (a webhook to
// the blob trigger, with the blobs_extension key) is created by scripts/postdeploy.* once the
// code runs, because Event Grid validates a webhook when the subscription is created.
param name string
param location string
param tags object = {}
param storageAccountId string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
