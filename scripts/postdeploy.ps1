# azd postdeploy hook (azure.yaml) for Windows: the same steps as scripts/postdeploy.sh.
# Subscribes the blob trigger to the storage account's Event Grid system topic once the code
# runs (Event Grid validates the webhook; the host makes the blobs_extension key on start).
# Idempotent; the key is never printed.
$ErrorActionPreference = 'Stop'

if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    throw 'postdeploy: the Azure CLI (az) is required: https://aka.ms/azure-cli'
}

function Get-Setting([string] $Name) {
    # The value from the environment azd passes to hooks, else from azd itself.
    $found = [Environment]::GetEnvironmentVariable($Name)
    if (-not $found -and (Get-Command azd -ErrorAction SilentlyContinue)) {
        $found = (azd env get-value $Name 2>$null)
    }
    if (-not $found) { throw "postdeploy: $Name is not set: run 'azd provision' first" }
    return $found.Trim()
}

$group = Get-Setting 'AZURE_RESOURCE_GROUP'
$app = Get-Setting 'AZURE_FUNCTION_APP_NAME'
$topic = Get-Setting 'EVENT_GRID_SYSTEM_TOPIC_NAME'
$container = Get-Setting 'NARRATION_INPUT_CONTAINER'
$functionName = Get-Setting 'BLOB_TRIGGER_FUNCTION_NAME'

az provider register --namespace Microsoft.EventGrid --wait --output none
if ($LASTEXITCODE -ne 0) { throw 'postdeploy: could not register Microsoft.EventGrid' }

# The real host name: new apps get <app>-<hash>.<region>.azurewebsites.net.
$hostName = (az functionapp show --resource-group $group --name $app --query defaultHostName --output tsv)
if (-not $hostName) { throw "postdeploy: no defaultHostName for $app" }

Write-Host "postdeploy: waiting for the blobs_extension key of $app..."
$key = ''
for ($attempt = 1; -not $key; $attempt++) {
    $key = (az functionapp keys list --resource-group $group --name $app --query systemKeys.blobs_extension --output tsv 2>$null)
    if ($key) { break }
    if ($attempt -ge 20) { throw "postdeploy: no blobs_extension key after $attempt tries: is $functionName deployed?" }
    Start-Sleep -Seconds 15
}

$endpoint = "https://$hostName/runtime/webhooks/blobs?functionName=Host.Functions.$functionName&code=$key"
# On Windows az is a .cmd script, and cmd.exe would cut the URL at '&' unless it is quoted.
if ($IsWindows -or $env:OS -eq 'Windows_NT') { $endpoint = '"' + $endpoint + '"' }

Write-Host "postdeploy: subscribing $functionName to blobs created in $container"
az eventgrid system-topic event-subscription create `
    --resource-group $group `
    --system-topic-name $topic `
    --name "$($functionName.Replace('_', '-'))-blob-created" `
    --endpoint-type webhook `
    --endpoint $endpoint `
    --included-event-types Microsoft.Storage.BlobCreated `
    --subject-begins-with "/blobServices/default/containers/$container/" `
    --output none
if ($LASTEXITCODE -ne 0) { throw 'postdeploy: could not create the Event Grid subscription' }
Write-Host "postdeploy: done. Upload a .txt, .md or .json to the $container container to narrate it."
