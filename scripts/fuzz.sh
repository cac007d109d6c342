#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ (cargo-fuzz, libFuzzer, nightly toolchain) and runs
# each for SECONDS (default 20) with -max_total_time. Fails on any crash, panic, leak
# or hang (an input that takes over 10 s); libFuzzer leaves the input that did it in
# fuzz/artifacts/<target>/. Prints executions, executions per second and coverage of
# each target.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default: every target)
#
# New interesting inputs go to fuzz/target/corpus/<target>/ (not tracked); the
# committed seeds in fuzz/corpus/<target>/ are only read. Skips, with a message and
# exit 0, only when the nightly toolchain is absent; installs cargo-fuzz when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
seconds="${1:-20}"
shift || true

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain list); cargo-fuzz needs one"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo install cargo-fuzz --locked (once per machine, about 2 min on 2 cores)"
    start=$(date +%s)
    cargo install cargo-fuzz --locked
    echo "fuzz: cargo-fuzz installed in $(($(date +%s) - start)) s"
fi

cd "$root/fuzz"
# Its own target dir, whatever the caller's CARGO_TARGET_DIR: these builds have
# their own flags and must not churn the workspace's.
export CARGO_TARGET_DIR="$root/fuzz/target"
# No sanitizer: the code under test is safe Rust (a panic is what we look for, and
# libFuzzer catches it without one); ASan would double the build and halve the
# executions per second. Debug assertions on: an arithmetic overflow panics, as in
# the workspace's test builds. Set FUZZ_FLAGS (e.g. "-s address") to change this.
read -r -a flags <<<"${FUZZ_FLAGS:--s none --debug-assertions}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$(date +%s)
echo "fuzz: building ${#targets[@]} targets (${flags[*]})"
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz: built in $(($(date +%s) - start)) s"

logs="$CARGO_TARGET_DIR/logs"
mkdir -p "$logs"
failed=()
for t in "${targets[@]}"; do
    scratch="$CARGO_TARGET_DIR/corpus/$t"
    mkdir -p "$scratch" "corpus/$t"
    log="$logs/$t.log"
    if cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1 || true)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    printf 'fuzz: %-8s %-6s %10s execs %7s exec/s  %s\n' "$t" "$status" "${execs:-?}" "${rate:-?}" "${cov:-}"
    if [ "$status" = FAILED ]; then
        tail -n 60 "$log" >&2
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in $logs)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds} s each without a crash"
