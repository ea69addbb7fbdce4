#!/bin/sh
# azd postdeploy hook (azure.yaml): subscribe the blob trigger to the storage account's Event
# Grid system topic, now that the code runs. Event Grid validates a webhook when the
# subscription is created, and the host creates the blobs_extension key when it starts with
# the blob trigger, so neither can be done at provision time.
#
# Reads the azd environment (the outputs of infra/main.bicep): AZURE_RESOURCE_GROUP,
# AZURE_FUNCTION_APP_NAME, EVENT_GRID_SYSTEM_TOPIC_NAME, NARRATION_INPUT_CONTAINER,
# BLOB_TRIGGER_FUNCTION_NAME. Idempotent: a second run updates the same subscription.
# The key is never printed.
set -eu

fail() {
    echo "postdeploy: $*" >&2
    exit 1
}

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required: https://aka.ms/azure-cli"

setting() {
    # setting NAME: the value from the environment azd passes to hooks, else from azd itself.
    eval "found=\${$1:-}"
    if [ -z "$found" ] && command -v azd >/dev/null 2>&1; then
        found="$(azd env get-value "$1" 2>/dev/null || true)"
    fi
    [ -n "$found" ] || fail "$1 is not set: run 'azd provision' first"
    printf '%s' "$found"
}

group="$(setting AZURE_RESOURCE_GROUP)"
app="$(setting AZURE_FUNCTION_APP_NAME)"
topic="$(setting EVENT_GRID_SYSTEM_TOPIC_NAME)"
container="$(setting NARRATION_INPUT_CONTAINER)"
function_name="$(setting BLOB_TRIGGER_FUNCTION_NAME)"

# A no-op when the subscription has the provider already.
az provider register --namespace Microsoft.EventGrid --wait --output none

# The real host name: new apps get <app>-<hash>.<region>.azurewebsites.net, not <app>.azurewebsites.net.
host="$(az functionapp show --resource-group "$group" --name "$app" --query defaultHostName --output tsv)"
[ -n "$host" ] || fail "no defaultHostName for $app"

echo "postdeploy: waiting for the blobs_extension key of $app..."
key=""
attempt=0
while [ -z "$key" ]; do
    attempt=$((attempt + 1))
    key="$(az functionapp keys list --resource-group "$group" --name "$app" \
        --query systemKeys.blobs_extension --output tsv 2>/dev/null || true)"
    [ -n "$key" ] && break
    [ "$attempt" -lt 20 ] || fail "no blobs_extension key after $attempt tries: is $function_name deployed? (az functionapp function list -g $group -n $app)"
    sleep 15
done

echo "postdeploy: subscribing $function_name to blobs created in $container"
az eventgrid system-topic event-subscription create \
    --resource-group "$group" \
    --system-topic-name "$topic" \
    --name "$(printf '%s' "$function_name" | tr '_' '-')-blob-created" \
    --endpoint-type webhook \
    --endpoint "https://$host/runtime/webhooks/blobs?functionName=Host.Functions.$function_name&code=$key" \
    --included-event-types Microsoft.Storage.BlobCreated \
    --subject-begins-with "/blobServices/default/containers/$container/" \
    --output none
echo "postdeploy: done. Upload a .txt, .md or .json to the $container container to narrate it."
