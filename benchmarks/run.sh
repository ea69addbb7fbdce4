#!/usr/bin/env bash
# The long-form narration benchmark in one command, on a fresh machine too: set up
# (scripts/setup.sh: venv, Azurite), then run `python -m benchmarks.longform` with the
# arguments given, e.g. `bash benchmarks/run.sh --quick` or `bash benchmarks/run.sh --check`.
# It starts and stops its own Azurite and Realtime emulators on free ports.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m benchmarks.longform "$@"
