#!/usr/bin/env bash
# Start or stop a local Azurite (blob, queue, table) for manual runs and demos.
#
#   bash scripts/azurite.sh start    # background, prints the connection string
#   bash scripts/azurite.sh status
#   bash scripts/azurite.sh stop
#   bash scripts/azurite.sh run      # foreground (Ctrl+C stops it)
#
# Loopback only, in memory (data is gone when it stops), no telemetry, and
# --skipApiVersionCheck (azure-storage-blob 12.31 sends an API version Azurite 3.37 rejects).
# Ports: AZURITE_BLOB_PORT (10000), AZURITE_QUEUE_PORT (10001), AZURITE_TABLE_PORT (10002);
# with the defaults, UseDevelopmentStorage=true reaches it. Tests do not use this script:
# their fixtures start their own Azurite on free ports.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN_DIR=.run
PID_FILE="$RUN_DIR/azurite.pid"
LOG_FILE="$RUN_DIR/azurite.log"
BLOB_PORT="${AZURITE_BLOB_PORT:-10000}"
QUEUE_PORT="${AZURITE_QUEUE_PORT:-10001}"
TABLE_PORT="${AZURITE_TABLE_PORT:-10002}"
AZURITE="${AZURITE_BIN:-node_modules/.bin/azurite}"
ACCOUNT_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

command_line() {
    printf '%s\n' "$AZURITE" \
        --blobHost 127.0.0.1 --blobPort "$BLOB_PORT" \
        --queueHost 127.0.0.1 --queuePort "$QUEUE_PORT" \
        --tableHost 127.0.0.1 --tablePort "$TABLE_PORT" \
        --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --silent
}

running_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    kill -0 "$pid" 2>/dev/null || return 1
    printf '%s' "$pid"
}

print_connection() {
    cat <<INFO
Azurite is listening on 127.0.0.1 (blob $BLOB_PORT, queue $QUEUE_PORT, table $TABLE_PORT).
Connection string:
DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$ACCOUNT_KEY;BlobEndpoint=http://127.0.0.1:$BLOB_PORT/devstoreaccount1;QueueEndpoint=http://127.0.0.1:$QUEUE_PORT/devstoreaccount1;TableEndpoint=http://127.0.0.1:$TABLE_PORT/devstoreaccount1;
INFO
    if [ "$BLOB_PORT$QUEUE_PORT$TABLE_PORT" = "100001000110002" ]; then
        echo "(UseDevelopmentStorage=true is equivalent.)"
    fi
}

require_azurite() {
    if [ ! -x "$AZURITE" ]; then
        echo "Azurite is not installed at $AZURITE: run scripts/setup.sh (npm ci)" >&2
        exit 1
    fi
}

case "${1:-}" in
start)
    require_azurite
    if pid="$(running_pid)"; then
        echo "Azurite is already running (pid $pid)."
        print_connection
        exit 0
    fi
    mkdir -p "$RUN_DIR"
    mapfile -t cmd < <(command_line)
    # setsid: its own process group, so 'stop' ends exactly this Azurite and its children.
    setsid "${cmd[@]}" >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 100); do
        if grep -q "Table service is successfully listening" "$LOG_FILE" 2>/dev/null; then
            print_connection
            exit 0
        fi
        if ! running_pid >/dev/null; then
            echo "Azurite exited:" >&2
            cat "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            exit 1
        fi
        sleep 0.2
    done
    echo "Azurite did not report ready within 20 s; see $LOG_FILE" >&2
    exit 1
    ;;
stop)
    if pid="$(running_pid)"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
        echo "Azurite stopped (pid $pid)."
    else
        echo "Azurite is not running."
    fi
    rm -f "$PID_FILE"
    ;;
status)
    if pid="$(running_pid)"; then
        echo "Azurite is running (pid $pid)."
        print_connection
    else
        echo "Azurite is not running."
        exit 3
    fi
    ;;
run)
    require_azurite
    mapfile -t cmd < <(command_line)
    print_connection
    exec "${cmd[@]}"
    ;;
*)
    echo "usage: $0 start|stop|status|run" >&2
    exit 2
    ;;
esac
