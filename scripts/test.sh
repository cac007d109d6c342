#!/usr/bin/env bash
# ringbridge's test command (README): sets up the aiortc interop venv, builds the
# release `ringbridge` binary, then runs every test of the workspace.
#
# Works on a fresh Debian machine with the Rust toolchain and python3 (3.11).
# Idempotent: the venv is reused while tests/interop/requirements.txt is unchanged.
#
# Environment:
#   RINGBRIDGE_SYSTEM_PYTHON  interpreter that creates the venv (default: python3)
#   RINGBRIDGE_VENV           venv folder (default: <repo>/.venv-interop)
#   CARGO_TEST_ARGS           extra arguments after `cargo test ... --`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

step() { printf '\n==> %s\n' "$*"; }

system_python="${RINGBRIDGE_SYSTEM_PYTHON:-python3}"
venv="${RINGBRIDGE_VENV:-$root/.venv-interop}"
requirements="$root/tests/interop/requirements.txt"
stamp="$venv/.requirements.stamp"

# --- Python interop environment -------------------------------------------
step "python: $("$system_python" --version 2>&1) ($(command -v "$system_python"))"
if [ ! -x "$venv/bin/python" ]; then
    if ! "$system_python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        # Debian ships venv/ensurepip separately.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            step "installing python3-venv (apt-get)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        else
            echo "error: $system_python has no venv/ensurepip module; install python3-venv" >&2
            exit 1
        fi
    fi
    step "creating venv $venv"
    rm -rf "$venv"
    "$system_python" -m venv "$venv"
fi
if cmp -s "$requirements" "$stamp"; then
    step "venv up to date ($venv)"
else
    step "pip install -r tests/interop/requirements.txt into $venv"
    (
        # Same lock as ringbridge-tests (tests/src/lib.rs) uses.
        exec 9>"$venv.lock"
        flock 9 2>/dev/null || true
        "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
        cp "$requirements" "$stamp"
    )
fi
"$venv/bin/python" -c 'import aiortc, aioice, aiohttp, av; print("aiortc", aiortc.__version__, "aioice", aioice.__version__, "av", av.__version__)'
export RINGBRIDGE_PYTHON="$venv/bin/python"
echo "RINGBRIDGE_PYTHON=$RINGBRIDGE_PYTHON"

# --- the bridge binary (release) ------------------------------------------
step "cargo build --release -p ringbridge-bridge --bin ringbridge"
cargo build --release -p ringbridge-bridge --bin ringbridge
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export RINGBRIDGE_BIN="$target_dir/release/ringbridge"
test -x "$RINGBRIDGE_BIN"
echo "RINGBRIDGE_BIN=$RINGBRIDGE_BIN"

# --- tests ----------------------------------------------------------------
step "cargo test --workspace --all-targets"
# shellcheck disable=SC2086
cargo test --workspace --all-targets -- ${CARGO_TEST_ARGS:-}
