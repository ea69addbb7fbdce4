#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check, check the import contracts and test. Extra arguments go to pytest,
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

step "ruff check" "$BIN/ruff" check .
step "ruff format" "$BIN/ruff" format --check .
step "mypy" "$BIN/mypy" "${typecheck_targets[@]}"
step "import contracts (layers, no cycles)" "$BIN/lint-imports"
step "pytest" "$BIN/pytest" "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nFAILED: %s\n' "${failed[*]}"
    exit 1
fi
printf '\nAll checks passed.\n'
