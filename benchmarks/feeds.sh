#!/usr/bin/env bash
# The feed build benchmark in one command: set up (scripts/setup.sh: venv, Azurite), then
# `python -m benchmarks.feeds` with the arguments given (default: 10,000 episodes, limit 100),
# e.g. `bash benchmarks/feeds.sh --check`. It starts and stops its own Azurite.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m benchmarks.feeds "$@"
