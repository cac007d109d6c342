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
step "cargo build --release -p ringbridge-bridge --bin ringbridge; the same for ringbridge-bench"
# The bench binary too (tests/media_flood.rs floods from it, vanished_clients
# runs a meeting with it), but in its own cargo call: built together, the
# bridge would get the bench's feature set, and the README's `cargo run
# --release` below would compile it again within its health-check deadline.
cargo build --release -p ringbridge-bridge --bin ringbridge
cargo build --release -p ringbridge-bench --bin ringbridge-bench
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export RINGBRIDGE_BIN="$target_dir/release/ringbridge"
export RINGBRIDGE_BENCH_BIN="$target_dir/release/ringbridge-bench"
test -x "$RINGBRIDGE_BIN"
test -x "$RINGBRIDGE_BENCH_BIN"
echo "RINGBRIDGE_BIN=$RINGBRIDGE_BIN RINGBRIDGE_BENCH_BIN=$RINGBRIDGE_BENCH_BIN"

# --- the README's run command ---------------------------------------------
# The README's first command must start a working bridge on a fresh clone: run it
# exactly as the README writes it, wait for /about/health, stop it with SIGTERM.
run_cmd="$(grep -m1 -E '^cargo run ' README.md || true)"
step "README run command: ${run_cmd:-<missing>}"
if [ -z "$run_cmd" ]; then
    echo "error: README.md has no 'cargo run ...' line (its run command)" >&2
    exit 1
fi
run_log="$(mktemp)"
# setsid: its own process group, so cargo and the bridge both get the signal.
setsid bash -c "exec $run_cmd" >"$run_log" 2>&1 </dev/null &
run_pid=$!
healthy=""
for _ in $(seq 1 240); do
    if ! kill -0 "$run_pid" 2>/dev/null; then break; fi
    if (exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /about/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 \
        && head -n 1 <&3 | grep -q ' 200 ') 2>/dev/null; then
        healthy=1
        break
    fi
    sleep 0.5
done
kill -TERM -- "-$run_pid" 2>/dev/null || true
wait "$run_pid" 2>/dev/null || true
if [ -z "$healthy" ]; then
    cat "$run_log" >&2
    echo "error: '$run_cmd' did not answer GET 127.0.0.1:8080/about/health with 200" >&2
    exit 1
fi
echo "'$run_cmd' started and /about/health answered 200"
rm -f "$run_log"

# --- systemd units --------------------------------------------------------
step "systemd-analyze verify systemd/*.service"
if ! command -v systemd-analyze >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        step "installing systemd (apt-get) for systemd-analyze"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd
    else
        echo "error: systemd-analyze missing; install the systemd package" >&2
        exit 1
    fi
fi
units_dir="$(mktemp -d)"
# `verify` wants ExecStart's binary to exist: point the units at the one just built.
for unit in systemd/ringbridge.service systemd/ringbridge-tune.service; do
    sed "s#/usr/bin/ringbridge#$RINGBRIDGE_BIN#g" "$unit" >"$units_dir/$(basename "$unit")"
done
# Works without a running systemd (containers): verify only loads the files. It
# exits 0 on a bad value ("Failed to parse ..., ignoring"), so any output fails.
verify_out="$(cd "$units_dir" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify \
    ./ringbridge.service ./ringbridge-tune.service 2>&1)" || { echo "$verify_out" >&2; exit 1; }
rm -rf "$units_dir"
if [ -n "$verify_out" ]; then
    echo "$verify_out" >&2
    echo "error: systemd-analyze verify complained about the units" >&2
    exit 1
fi
echo "units ok"

# --- Debian package ---------------------------------------------------------
if [ -n "${RINGBRIDGE_SKIP_DEB:-}" ]; then
    step "Debian package: skipped (RINGBRIDGE_SKIP_DEB is set)"
else
    if ! command -v cargo-deb >/dev/null; then
        step "cargo install cargo-deb --locked (once per machine, about 70 s on 2 cores)"
        start=$(date +%s)
        cargo install cargo-deb --locked
        echo "cargo-deb installed in $(($(date +%s) - start)) s"
    fi
    step "cargo deb -p ringbridge-bridge --no-build --fast; packaging/check-deb.sh"
    start=$(date +%s)
    deb="$(cargo deb -p ringbridge-bridge --no-build --fast | tail -n 1)"
    test -f "$deb" || { echo "error: cargo deb made no package" >&2; exit 1; }
    bash packaging/check-deb.sh "$deb"
    echo "package built and checked in $(($(date +%s) - start)) s"
fi

# --- Janus (the peer SFU the bench compares against) ----------------------
# bench/src/janus/tests.rs starts Janus VideoRoom in a network namespace.
if ! command -v janus >/dev/null || ! command -v ip >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        step "installing janus and iproute2 (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus iproute2
    else
        echo "error: janus or ip missing; install the janus and iproute2 packages" >&2
        exit 1
    fi
fi
echo "janus: $(command -v janus)"

# --- browser (the room page in headless Chromium, nginx in front) --------
# tests/tests/browser_page.rs drives Debian's chromium with playwright-core
# (tests/browser/package-lock.json) and puts nginx in front of the bridge.
browser_pkgs=()
command -v chromium >/dev/null || browser_pkgs+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || browser_pkgs+=(nginx)
command -v openssl >/dev/null || browser_pkgs+=(openssl)
command -v npm >/dev/null || browser_pkgs+=(nodejs npm)
if [ "${#browser_pkgs[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        step "installing ${browser_pkgs[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${browser_pkgs[@]}"
    else
        echo "error: missing ${browser_pkgs[*]}; install them (Debian packages)" >&2
        exit 1
    fi
fi
step "npm ci in tests/browser (playwright-core)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
echo "chromium: $(chromium --version 2>/dev/null || echo '?'), node $(node --version)"
# --- end of browser ---------------------------------------------------------

# --- network impairment (tests/tests/browser_network.rs) -------------------
# The bridge runs in a network namespace behind a veth pair and loses media
# datagrams to nftables rules; that test skips (with a message) without root,
# `ip` or `nft`, so only root installs them here.
net_pkgs=()
command -v ip >/dev/null || net_pkgs+=(iproute2)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || net_pkgs+=(nftables)
if [ "${#net_pkgs[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        step "installing ${net_pkgs[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${net_pkgs[@]}"
    else
        echo "note: missing ${net_pkgs[*]} (not root): browser_network will skip"
    fi
fi
# --- end of network impairment ----------------------------------------------

# --- fuzz -------------------------------------------------------------------
# Every fuzz target (fuzz/, cargo-fuzz) for 10 s on its seeds plus what it finds;
# fails on any crash. Skips with a message when the nightly toolchain is absent.
step "scripts/fuzz.sh 10"
bash scripts/fuzz.sh 10
# --- end of fuzz --------------------------------------------------------------

# --- tests ----------------------------------------------------------------
step "cargo test --workspace --all-targets --no-fail-fast"
# --no-fail-fast: one failing test binary must not hide the others' results.
# shellcheck disable=SC2086
cargo test --workspace --all-targets --no-fail-fast -- ${CARGO_TEST_ARGS:-}
