#!/usr/bin/env bash
# Set up a development/CI machine for this repository. Idempotent: a re-run on a machine
# that is already set up only checks stamps and returns in about a second.
#
#   - Debian packages espeak-ng and sox (speech tests), ffmpeg and lame (MP3 tests and the
#     benchmark), chromium and chromium-driver (the player page's browser tests); installed
#     when missing and root,
#     otherwise listed (the tests that need them skip with a reason).
#   - Python venv at .venv (reused when present) with requirements-dev.txt and, unless
#     PODCAST_SKIP_SPEECH=1, requirements-speech.txt (Piper, faster-whisper; ~700 MB).
#   - A second venv at .venv-3.13 (Python 3.13, the other azure-functions line) with
#     requirements-dev.txt, for the tests on 3.13; its interpreter is PYTHON313, else
#     python3.13 on PATH, else pyenv's (~/.pyenv/versions/3.13*). Without one it is skipped
#     with a warning (scripts/test.sh then fails under CI).
#   - checkov (requirements-tools.txt) in its own venv at .tools/checkov: its pins would
#     downgrade packages of .venv.
#   - Azurite from package-lock.json (npm ci) into node_modules/.
#
# Environment: PYTHON (interpreter for a new venv), PYTHON313, PODCAST_SKIP_SPEECH=1,
# PODCAST_SETUP_FORCE=1 (reinstall even when the stamps match).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
VENV="$ROOT/.venv"
VENV_313="$ROOT/.venv-3.13"
TOOLS_VENV="$ROOT/.tools/checkov"
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
# The browser tests (marker browser) drive the system's Chromium through its chromedriver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
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

install_requirements() {
    # install_requirements VENV FILE...: pip install the files into VENV unless its stamp says
    # they are installed already (a hash of the files' contents and names).
    local venv="$1"
    shift
    local wanted stamp started
    wanted="$(cat "$@" | sha256sum | cut -d' ' -f1) $*"
    stamp="$venv/.podcast-requirements"
    if [ "$FORCE" = "1" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        log "installing Python packages into ${venv#"$ROOT"/} ($*)"
        started=$SECONDS
        local pip_args=() file
        for file in "$@"; do
            pip_args+=(-r "$file")
        done
        # Drop pip's notes about find-links folders some machines configure but do not have.
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pip_args[@]}" 2>&1 \
            | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
        printf '%s\n' "$wanted" >"$stamp"
        log "Python packages ready in $((SECONDS - started)) s"
    fi
}

# requirements-dev.txt includes requirements.txt (-r), so it is all pip needs to be given.
requirement_files=(requirements-dev.txt)
[ "$SKIP_SPEECH" = "1" ] || requirement_files+=(requirements-speech.txt)
install_requirements "$VENV" requirements.txt "${requirement_files[@]}"

# --- Python 3.13 venv (.venv-3.13) -----------------------------------------------------------
python313=""
for candidate in "${PYTHON313:-}" python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then
        python313="$candidate"
        break
    fi
done
if [ -n "$python313" ]; then
    if [ ! -x "$VENV_313/bin/python" ]; then
        log "creating .venv-3.13 with $python313"
        "$python313" -m venv "$VENV_313"
    fi
    install_requirements "$VENV_313" requirements.txt requirements-dev.txt
else
    log "WARNING: no Python 3.13 (set PYTHON313=/path/to/python3.13): .venv-3.13 not created"
fi

# --- checkov (.tools/checkov) ----------------------------------------------------------------
if [ ! -x "$TOOLS_VENV/bin/python" ]; then
    log "creating .tools/checkov"
    mkdir -p "$(dirname "$TOOLS_VENV")"
    "$VENV/bin/python" -m venv "$TOOLS_VENV"
fi
install_requirements "$TOOLS_VENV" requirements-tools.txt

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

log "ready: $("$VENV/bin/python" --version)$([ -x "$VENV_313/bin/python" ] && echo ", $("$VENV_313/bin/python" --version)"), azurite $(node -p 'require("./node_modules/azurite/package.json").version')"
