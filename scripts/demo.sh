#!/usr/bin/env bash
# The main job on a fresh machine: set up, start Azurite and the Realtime API emulator,
# narrate a sample text through the HTTP trigger's code, print the SAS URL and transcript,
# download the WAV through that URL, and stop what was started.
#
#   bash scripts/demo.sh
#   bash scripts/demo.sh --serve [devhost options]   # instead: the local host (python -m podcast.devhost)
#                                                    # on http://localhost:7071/api, with the player page
#
# EMULATOR_PORT (default 8765) and AZURITE_*_PORT (see scripts/azurite.sh) choose the ports;
# EMULATOR_ENGINE (default auto: espeak-ng when installed) the emulator's speech engine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PODCAST_SKIP_SPEECH="${PODCAST_SKIP_SPEECH:-1}" bash scripts/setup.sh

if [ "${1:-}" = "--serve" ]; then
    shift
    # The local host starts Azurite and the emulator when they are not running, and stops them on Ctrl-C.
    exec .venv/bin/python -m podcast.devhost "$@"
fi

PORT="${EMULATOR_PORT:-8765}"
KEY="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p .run
azurite_started=0
emulator_pid=""

cleanup() {
    [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
    [ "$azurite_started" -eq 1 ] && bash scripts/azurite.sh stop >/dev/null
    return 0
}
trap cleanup EXIT

bash scripts/azurite.sh status >/dev/null 2>&1 || azurite_started=1
connection_string="$(bash scripts/azurite.sh start | grep '^DefaultEndpointsProtocol=')"

.venv/bin/python -m emulator --host 127.0.0.1 --port "$PORT" --api-key "$KEY" \
    --engine "${EMULATOR_ENGINE:-auto}" >.run/emulator.log 2>&1 &
emulator_pid=$!
for _ in $(seq 1 100); do
    grep -q "AZURE_OPENAI_AUDIO_ENDPOINT=" .run/emulator.log 2>/dev/null && break
    kill -0 "$emulator_pid" 2>/dev/null || { cat .run/emulator.log >&2; exit 1; }
    sleep 0.1
done

echo "Azurite and the Realtime emulator are running; narrating a sample text..."
AZURE_OPENAI_AUDIO_ENDPOINT="http://127.0.0.1:$PORT" \
AZURE_OPENAI_AUDIO_API_KEY="$KEY" \
AZURE_OPENAI_AUDIO_DEPLOYMENT=gpt-realtime-mini \
NARRATION_STORAGE="$connection_string" \
    .venv/bin/python scripts/demo.py
