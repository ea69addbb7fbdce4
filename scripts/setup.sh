#!/usr/bin/env bash
# Set up a development/CI machine for this repository. Idempotent: a re-run on a machine
# that is already set up only checks stamps and returns in about a second.
#
#   - Debian packages espeak-ng and sox (speech tests), ffmpeg and lame (MP3 tests and the
#     benchmark); installed when missing and root,
#     otherwise listed (the tests that need them skip with a reason).
#   - Python venv at .venv (reused when present) with requirements-dev.txt and, unless
#     PODCAST_SKIP_SPEECH=1, requirements-speech.txt (Piper, faster-whisper; ~700 MB).
#   - Azurite from package-lock.json (npm ci) into node_modules/.
#
# Environment: PYTHON (interpreter for a new venv), PODCAST_SKIP_SPEECH=1, PODCAST_SETUP_FORCE=1
# (reinstall even when the stamps match).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
VENV="$ROOT/.venv"
FORCE="${PODCAST_SETUP_FORCE:-0}"
SKIP_SPEECH="${PODCAST_SKIP_SPEECH:-0}"

log() { printf '[setup] %s\n' "$*"; }
is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
apt_install() {
    # apt_install PKG...: install Debian packages as root, running 'apt-get update' once first.
    if [ "$APT_UPDATED" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Debian packages -----------------------------------------------------------------
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
# ffmpeg decodes the MP3s in tests (a decoder the app does not use); lame is the benchmark's yardstick.
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v lame >/dev/null 2>&1 || missing+=(lame)
if [ "${#missing[@]}" -gt 0 ]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian packages: ${missing[*]}"
        apt_install "${missing[@]}"
    else
        log "WARNING: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
        log "         (tests that need them will be skipped)"
    fi
fi

# --- Python venv -----------------------------------------------------------------------
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

if [ ! -x "$VENV/bin/python" ]; then
    interpreter=""
    for candidate in "${PYTHON:-}" python3.11 python3; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            interpreter="$candidate"
            break
        fi
    done
    if [ -z "$interpreter" ]; then
        if is_root && command -v apt-get >/dev/null 2>&1; then
            apt_install python3 python3-venv
            interpreter=python3
        else
            log "ERROR: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)"
            exit 1
        fi
    fi
    log "creating .venv with $interpreter ($("$interpreter" --version 2>&1))"
    if ! "$interpreter" -m venv "$VENV" 2>/dev/null; then
        if is_root && command -v apt-get >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv
            "$interpreter" -m venv "$VENV"
        else
            log "ERROR: '$interpreter -m venv' failed; install python3-venv"
            exit 1
        fi
    fi
fi

requirement_files=(requirements.txt requirements-dev.txt)
[ "$SKIP_SPEECH" = "1" ] || requirement_files+=(requirements-speech.txt)
wanted="$(cat "${requirement_files[@]}" | sha256sum | cut -d' ' -f1) ${requirement_files[*]}"
stamp="$VENV/.podcast-requirements"
if [ "$FORCE" = "1" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    log "installing Python packages (${requirement_files[*]})"
    started=$SECONDS
    pip_args=()
    for file in "${requirement_files[@]}"; do
        [ "$file" = requirements.txt ] || pip_args+=(-r "$file")
    done
    # Drop pip's notes about find-links folders some machines configure but do not have.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${pip_args[@]}" 2>&1 \
        | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    printf '%s\n' "$wanted" >"$stamp"
    log "Python packages ready in $((SECONDS - started)) s"
fi

# --- Azurite (npm) ---------------------------------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        log "installing Node.js and npm from Debian"
        apt_install nodejs npm
    else
        log "WARNING: npm is missing; install Node.js (>= 20) for the Azurite storage emulator"
        log "         (storage tests will be skipped)"
        exit 0
    fi
fi
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
npm_stamp="node_modules/.podcast-package-lock"
if [ "$FORCE" = "1" ] || [ ! -x node_modules/.bin/azurite ] || [ ! -f "$npm_stamp" ] \
    || [ "$(cat "$npm_stamp")" != "$lock_hash" ]; then
    log "installing Azurite (npm ci)"
    started=$SECONDS
    npm ci --no-audit --no-fund --loglevel=error
    printf '%s\n' "$lock_hash" >"$npm_stamp"
    log "Azurite ready in $((SECONDS - started)) s"
fi

log "ready: $("$VENV/bin/python" --version), azurite $(node -p 'require("./node_modules/azurite/package.json").version')"
