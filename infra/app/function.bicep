// The Flex Consumption (FC1) plan and the Python Function App, with its app settings: every
// connection identity-based with the one user-assigned identity (AzureWebJobsStorage and
// NARRATION_STORAGE need __credential=managedidentity for the host to use __clientId), every
// setting a binding reads (%NARRATION_QUEUE%, %NARRATION_INPUT_CONTAINER%), and the
// narration settings at the defaults of podcast/settings.py (change them here or with
// `az functionapp config appsettings set`). No keys: AZURE_OPENAI_AUDIO_API_KEY is left unset
// so the app uses Entra ID.
param name string
param planName string
param location string
param tags object = {}
param serviceName string
@allowed(['3.11', '3.12', '3.13'])
param pythonVersion string
param maximumInstanceCount int
param instanceMemoryMB int
param identityId string
param identityClientId string
param blobEndpoint string
param queueEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param openAiEndpoint string
param openAiDeploymentName string
param outputContainerName string
param inputContainerName string
param jobsContainerName string
param jobsQueueName string

// primaryEndpoints end with '/'; the settings want the service URI without it.
var blobServiceUri = endsWith(blobEndpoint, '/') ? substring(blobEndpoint, 0, length(blobEndpoint) - 1) : blobEndpoint
var queueServiceUri = endsWith(queueEndpoint, '/') ? substring(queueEndpoint, 0, length(queueEndpoint) - 1) : queueEndpoint

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy for Flex Consumption is offered in some regions only and needs always-ready instances (a fixed cost); set zoneRedundant where both suit.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: The API is called by Power Automate, Logic Apps and Event Grid over the internet; every function needs a function key or the blobs_extension key.
  // checkov:skip=CKV_AZURE_17: Callers authenticate with function keys (x-functions-key, what a Power Platform custom connector sends), not client certificates.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per event; a minimum instance count (always ready) is a fixed cost this workload does not need.
  // checkov:skip=CKV_AZURE_213: App Service health check calls without a function key (GET /api/health needs one) and Flex Consumption replaces instances by itself.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov applies its web-app site-configuration checks to this app-settings resource too:
  // checkov:skip=CKV_AZURE_13: Callers authenticate with function keys (what a Power Platform custom connector sends); App Service Authentication would refuse them.
  // checkov:skip=CKV_AZURE_222: The API is public by design (Power Automate, Logic Apps, Event Grid); every function needs a key.
  // checkov:skip=CKV_AZURE_63: Flex Consumption has no App Service file-system HTTP logs; requests are logged to Application Insights.
  // checkov:skip=CKV_AZURE_65: Flex Consumption has no App Service detailed error pages; failures are logged to Application Insights.
  // checkov:skip=CKV_AZURE_66: Flex Consumption has no App Service failed request tracing; Application Insights records failed requests.
  // checkov:skip=CKV_AZURE_80: A Python app: no .NET Framework.
  // checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container and does not use Azure Files.
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Host storage, identity-based.
    AzureWebJobsStorage__blobServiceUri: blobServiceUri
    AzureWebJobsStorage__queueServiceUri: queueServiceUri
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    // The app's storage: the connection of both triggers and of the app's own clients.
    NARRATION_STORAGE__blobServiceUri: blobServiceUri
    NARRATION_STORAGE__queueServiceUri: queueServiceUri
    NARRATION_STORAGE__credential: 'managedidentity'
    NARRATION_STORAGE__clientId: identityClientId
    AZURE_CLIENT_ID: identityClientId
    // Application Insights with Entra ID (the component has local authentication disabled).
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // Azure OpenAI Realtime, with Entra ID.
    AZURE_OPENAI_AUDIO_ENDPOINT: openAiEndpoint
    AZURE_OPENAI_AUDIO_DEPLOYMENT: openAiDeploymentName
    AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS: '180'
    AZURE_OPENAI_AUDIO_MAX_RETRIES: '3'
    // Containers and the job queue (the triggers' bindings read the last two).
    NARRATION_OUTPUT_CONTAINER: outputContainerName
    NARRATION_JOBS_CONTAINER: jobsContainerName
    NARRATION_INPUT_CONTAINER: inputContainerName
    NARRATION_QUEUE: jobsQueueName
    // Requests.
    NARRATION_DEFAULT_VOICE: 'marin'
    NARRATION_MAX_TEXT_CHARACTERS: '20000'
    NARRATION_MAX_SAS_EXPIRY_MINUTES: '1440'
    NARRATION_DOWNLOAD_INLINE_MAX_MB: '64'
    NARRATION_TIME_BUDGET_SECONDS: '200'
    NARRATION_SCRIPT_CLAIM_SECONDS: '60'
    NARRATION_SCRIPT_WAIT_SECONDS: '60'
    // Long narrations.
    NARRATION_SEGMENT_WORDS: '300'
    NARRATION_CONCURRENCY: '4'
    NARRATION_MIN_FIDELITY: '0.9'
    NARRATION_FIDELITY_ATTEMPTS: '3'
    NARRATION_FIDELITY_POLICY: 'warn'
    NARRATION_PARAGRAPH_PAUSE_SECONDS: '0.75'
    NARRATION_SENTENCE_PAUSE_SECONDS: '0.3'
    NARRATION_TURN_PAUSE_SECONDS: '0.35'
    // MP3 narrations (format: mp3): bitrate and the show in their ID3 tags.
    NARRATION_MP3_BITRATE_KBPS: '64'
    NARRATION_SHOW_NAME: 'Narrations'
    // Asynchronous jobs (NARRATION_QUEUE_MAX_DEQUEUE_COUNT matches host.json's maxDequeueCount).
    NARRATION_SYNC_MAX_AUDIO_SECONDS: '180'
    NARRATION_JOB_TIME_BUDGET_SECONDS: '540'
    NARRATION_JOB_STALE_SECONDS: '300'
    NARRATION_JOB_MAX_QUEUED_SECONDS: '3600'
    NARRATION_QUEUE_MAX_DEQUEUE_COUNT: '3'
    // Uploaded documents (NARRATION_DOCUMENT_MAX_ATTEMPTS matches host.json's poisonBlobThreshold).
    NARRATION_MAX_DOCUMENT_BYTES: '1048576'
    NARRATION_MAX_DOCUMENT_CHARACTERS: '50000'
    NARRATION_DOCUMENT_MAX_ATTEMPTS: '2'
    NARRATION_DOCUMENT_CLAIM_SECONDS: '60'
    NARRATION_FEED_LINK_HOURS: '168'
    NARRATION_FEED_MAX_ITEMS: '100'
    // glibc's allocator: few arenas, big blocks mapped and returned, freed memory trimmed. The
    // worker analyses audio in threads; with the defaults each thread's arena kept its peak and a
    // 60-minute narration ended some 300 MB higher (python -m benchmarks.longform, table 2).
    MALLOC_ARENA_MAX: '2'
    MALLOC_MMAP_THRESHOLD_: '65536'
    MALLOC_TRIM_THRESHOLD_: '131072'
  }
}

output name string = functionApp.name
// The real host name: new apps get <name>-<hash>.<region>.azurewebsites.net.
output defaultHostName string = functionApp.properties.defaultHostName
