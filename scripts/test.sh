#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check, check the import contracts, lint infra/
# with checkov, and test on the main venv and on Python 3.13 (.venv-3.13). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -k storage -x`. Every check runs even if an earlier one
# failed; the exit status is non-zero when any failed. Azurite is started and stopped
# by pytest fixtures, so nothing needs to be running beforehand.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh || exit 1

BIN=.venv/bin
failed=()

step() {
    # step NAME COMMAND...: run one check, report its time, remember a failure.
    local name="$1"
    shift
    printf '\n=== %s ===\n' "$name"
    local started=$SECONDS
    "$@"
    local status=$?
    printf '=== %s: %s in %d s ===\n' "$name" "$([ $status -eq 0 ] && echo ok || echo "FAILED ($status)")" \
        $((SECONDS - started))
    [ $status -eq 0 ] || failed+=("$name")
}

typecheck_targets=()
for target in podcast function_app.py emulator testkit tests benchmarks scripts/*.py; do
    [ -e "$target" ] && typecheck_targets+=("$target")
done

python313_tests() {
    # The same tests on Python 3.13 (.venv-3.13: azure-functions 2.x, the 3.13 line).
    if [ ! -x .venv-3.13/bin/python ]; then
        echo "no .venv-3.13: scripts/setup.sh found no Python 3.13 (set PYTHON313)"
        # A developer without 3.13 is told; CI must have it.
        [ -z "${CI:-}" ] || [ "${CI:-}" = "false" ] || [ "${CI:-}" = "0" ]
        return
    fi
    # The speech tests (marker `speech`: Piper and Whisper, ~700 MB of optional packages) run in
    # the main pass only; they test the emulator's speech, not the app on another Python.
    .venv-3.13/bin/python -m pytest -p no:cacheprovider -m "not speech" "$@"
}

# The 3.13 pass runs beside the checks and the main pass: the suite mostly waits (on
# Azurite, the emulator's pacing, subprocesses), about two thirds of one core busy, so the
# two passes together take little longer than one. Its output is shown when it ends.
# PODCAST_SERIAL_TESTS=1 runs them one after the other.
python313_log=$(mktemp)
trap 'rm -f "$python313_log"' EXIT
if [ -z "${PODCAST_SERIAL_TESTS:-}" ]; then
    python313_tests "$@" >"$python313_log" 2>&1 &
    python313_pid=$!
fi
python313_result() {
    # The 3.13 pass's output and status (run now when the passes are serial).
    if [ -z "${python313_pid:-}" ]; then
        python313_tests "$@"
        return
    fi
    wait "$python313_pid"
    local status=$?
    cat "$python313_log"
    return $status
}

step "ruff check" "$BIN/ruff" check .
step "ruff format" "$BIN/ruff" format --check .
step "mypy" "$BIN/mypy" "${typecheck_targets[@]}"
step "import contracts (layers, no cycles)" "$BIN/lint-imports"
step "checkov (infra/)" .tools/checkov/bin/checkov --directory infra --framework bicep --skip-download \
    --compact --quiet
step "pytest" "$BIN/pytest" "$@"
step "pytest on Python 3.13 (run beside the main pass)" python313_result "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nFAILED: %s\n' "${failed[*]}"
    exit 1
fi
printf '\nAll checks passed.\n'
