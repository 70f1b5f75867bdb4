#!/usr/bin/env bash
# Fuzzes the PostgreSQL wire codec (PGWire) with libFuzzer for a bounded time.
#   scripts/fuzz.sh [SECONDS]     (default 60)
# Builds the separate Fuzz/ package with the fuzzer and address sanitizers, runs it from the seeds in
# Fuzz/corpus/ (never written to: what the fuzzer learns goes to Fuzz/.build/corpus/), and exits non-zero if it
# finds a crash, a trap or a broken codec invariant. The input that did it is kept under Fuzz/.build/artifacts/.
# libFuzzer itself ships with the Swift toolchain (lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS]" >&2
    exit 2
fi
say() { printf '==> %s\n' "$*" >&2; }

source scripts/swift-path.sh

build=Fuzz/.build
say "building the fuzzer (release, -sanitize=fuzzer,address)"
# --sanitize=fuzzer makes SwiftPM leave `main` to libFuzzer (otherwise it renames the entry point and the link
# fails). The sanitizers themselves go in one -Xswiftc flag: swift-driver keeps only the last -sanitize= it is
# given, so `--sanitize=fuzzer --sanitize=address` silently compiles without coverage and the fuzzer runs blind.
# -Xswiftc reaches every Swift module, PGWire and NIOCore included. The gold warning about
# __asan_extra_spill_area is harmless noise from the ASan runtime.
swift build -c release --package-path Fuzz --scratch-path "$build" \
    --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address 2>&1 \
    | sed '/__asan_extra_spill_area/d'
fuzzer="$build/release/PGWireFuzz"

corpus="$build/corpus"
artifacts="$build/artifacts/"
log="$build/fuzz.log"
mkdir -p "$corpus" "$artifacts"

say "fuzzing for ${seconds}s (log: $log)"
status=0
# Swift's own crash backtracer, running inside the dying process, trips ASan and buries the real report.
export SWIFT_BACKTRACE=enable=no
# -max_len covers a maximal 10000-byte startup packet and a little more; -timeout catches a loop on one input.
"$fuzzer" "$corpus" Fuzz/corpus \
    -dict=Fuzz/pgwire.dict \
    -max_total_time="$seconds" \
    -max_len=10016 \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts" \
    -print_final_stats=1 \
    >"$log" 2>&1 || status=$?

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
[ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
[ -n "$runs" ] || runs=unknown
inputs=$(find "$corpus" -type f | wc -l)

if grep -q 'no interesting inputs were found' "$log"; then
    echo "fuzz: PGWire: FAILED: the fuzzer saw no coverage (were the modules built with -sanitize=fuzzer?); see $log"
    exit 1
fi
if [ "$status" -eq 0 ] && ! grep -q 'Test unit written to' "$log"; then
    echo "fuzz: PGWire: $runs runs in ${seconds}s, found nothing ($inputs inputs in $corpus)"
    exit 0
fi

# Show why: the Swift trap message or sanitizer report, and libFuzzer's summary.
grep -E 'Fatal error|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|SUMMARY|Test unit written to|Base64' "$log" >&2 || tail -n 40 "$log" >&2
unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
echo "fuzz: PGWire: FAILED (exit $status) after $runs runs; input: ${unit:-see $log}; replay: $fuzzer ${unit:-FILE}"
exit 1
