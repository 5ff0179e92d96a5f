#!/usr/bin/env bash
# Build every fuzz target, then run each for SECONDS (default 30) in turn, starting from
# the corpus kept in tests/fuzz/corpus/<target> (read-only: new inputs go to a scratch
# directory, printed at the end, so a run never dirties the checkout).
#
#   tests/fuzz/run.sh [SECONDS] [WORK_DIR]
#
# Prints one line per target: executions, corpus size, and whether it found a crash
# (the input is left in tests/fuzz/artifacts/<target>/). Exits non-zero if any target
# crashed. Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); stable Rust is enough
# because the targets are built without a sanitizer.
set -uo pipefail
secs=${1:-30}
cd "$(dirname "$0")/../.."
work=${2:-$(mktemp -d)}
mkdir -p "$work"
fuzz=(--fuzz-dir tests/fuzz --sanitizer none -O)
cargo fuzz build "${fuzz[@]}" || exit 1
failed=0
for t in $(cargo fuzz list --fuzz-dir tests/fuzz); do
    mkdir -p "$work/$t" "tests/fuzz/corpus/$t"
    log="$work/$t.log"
    cargo fuzz run "${fuzz[@]}" "$t" "$work/$t" "tests/fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    corpus=$(find "$work/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ${execs:-?} executions in ${secs}s, $corpus new inputs, no finding"
    else
        failed=1
        echo "fuzz $t: FINDING (exit $rc) after ${execs:-?} executions; log $log:"
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|Base64' "$log" | head -20
    fi
done
echo "fuzz work directory: $work"
exit "$failed"
