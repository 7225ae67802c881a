#!/usr/bin/env bash
# Build and run a coverage-guided fuzz target (libFuzzer) on stable Rust.
#
#   fuzz/run.sh TARGET SECONDS     one target, for SECONDS
#   fuzz/run.sh all SECONDS        every target in turn, SECONDS each
#   fuzz/run.sh list               the targets
#
# Environment: RUNS=N stops a target after N inputs (whichever comes
# first, N or SECONDS); FUZZ_ARGS adds libFuzzer flags; NICE (default 19)
# is the priority; NO_BUILD=1 runs what was built last.
#
# Inputs: fuzz/corpus/TARGET (the working corpus, not committed: libFuzzer
# writes what it finds there), then the committed seeds
# fuzz-targets/corpus/TARGET and regressions fuzz-targets/regressions/TARGET
# (read only); fuzz/dicts/TARGET.dict, if there is one, gives libFuzzer
# the tokens of the target's language. Crashes, timeouts and out-of-memory
# inputs land in fuzz/artifacts/TARGET/; the log in fuzz/logs/TARGET.log.
# Exits non-zero if a target crashed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
triple="x86_64-unknown-linux-gnu"
nice_level="${NICE:-19}"

targets() {
    for f in "$here"/fuzz_targets/*.rs; do
        basename "$f" .rs
    done
}

usage() {
    echo "usage: $0 TARGET|all SECONDS   (targets: $(targets | tr '\n' ' '))" >&2
    exit 2
}

# cargo-fuzz with `--sanitizer none` needs nothing but stable rustc: it
# passes libFuzzer's instrumentation as stable codegen flags (-Cpasses=
# sancov-module, -Cllvm-args=-sanitizer-coverage-..., --cfg fuzzing);
# only the sanitizers are nightly-only, and none is used. Debug assertions
# and overflow checks stay on, as in `cargo test`.
build() {
    bin_dir="$here/target/$triple/release"
    [[ "${NO_BUILD:-0}" == 1 ]] && return
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "cargo-fuzz is missing: installing it (cargo install cargo-fuzz)" >&2
        nice -n "$nice_level" cargo install --locked cargo-fuzz
    fi
    (cd "$here" && nice -n "$nice_level" cargo fuzz build --sanitizer none --target "$triple" "$@")
}

# Largest input libFuzzer makes, per target (its default follows the seeds).
max_len() {
    case "$1" in
        artifacts_archive) echo 65536 ;;
        sp_dispatch) echo 16384 ;;
        *) echo 0 ;;
    esac
}

# Run one built target for $2 seconds; prints its executions.
run_one() {
    local t="$1" seconds="$2"
    local corpus="$here/corpus/$t" artifacts="$here/artifacts/$t" log="$here/logs/$t.log"
    mkdir -p "$corpus" "$artifacts" "$here/logs"
    local dirs=("$corpus")
    for d in "$root/fuzz-targets/corpus/$t" "$root/fuzz-targets/regressions/$t"; do
        [[ -d "$d" ]] && dirs+=("$d")
    done
    local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
        -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$artifacts/")
    [[ -f "$here/dicts/$t.dict" ]] && args+=(-dict="$here/dicts/$t.dict")
    [[ -n "${RUNS:-}" ]] && args+=(-runs="$RUNS")
    # shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags
    [[ -n "${FUZZ_ARGS:-}" ]] && args+=(${FUZZ_ARGS})
    echo "== $t: ${seconds}s${RUNS:+ or $RUNS inputs}, log $log"
    local started rc=0
    started=$(date +%s)
    nice -n "$nice_level" "$bin_dir/$t" "${args[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
    local wall=$(($(date +%s) - started))
    local execs rate
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | tail -2 || true
    if [[ $rc -ne 0 ]]; then
        grep -E 'ERROR: libFuzzer|panicked at|SUMMARY|Test unit written|memory allocation' "$log" | head -8 || true
        echo "$t: CRASH (exit $rc) after ${execs:-?} execs in ${wall}s; input in $artifacts/"
    else
        echo "$t: ${execs:-?} execs in ${wall}s (${rate:-?} exec/s), no crash"
    fi
    return $rc
}

[[ $# -ge 1 ]] || usage
if [[ "$1" == list ]]; then
    targets
    exit 0
fi
[[ $# -eq 2 && "$2" =~ ^[0-9]+$ ]] || usage

if [[ "$1" == all ]]; then
    build
    failed=()
    for t in $(targets); do
        run_one "$t" "$2" || failed+=("$t")
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
        echo "crashed: ${failed[*]}"
        exit 1
    fi
    echo "all targets ran without a crash"
else
    [[ -f "$here/fuzz_targets/$1.rs" ]] || usage
    build "$1"
    run_one "$1" "$2"
fi
