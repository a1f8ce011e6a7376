#!/usr/bin/env bash
# Fuzzes the ingest parser (JSON array), the NDJSON splitter, the records
# splitter and mapping (/api/v1/records), the OTLP protobuf and OTLP/JSON
# readers (with the mapping to packets), the WAL record decoder and the http1
# client's answer reader with cargo-fuzz, FUZZ_SECONDS
# (default 60) each, and prints
# the executions each reached. Exits non-zero on the first crash (libFuzzer
# leaves the input under fuzz/artifacts/<target>/).
#
# cargo-fuzz is installed once under $LD_CACHE/cargo-fuzz. Stable Rust is
# made to accept -Z flags with RUSTC_BOOTSTRAP=1; the sanitizer defaults to
# none (the stable toolchain ships no sanitizer runtimes), set
# FUZZ_SANITIZER=address on a nightly toolchain.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
SANITIZER=${FUZZ_SANITIZER:-none}
TARGETS=${FUZZ_TARGETS:-ingest ndjson records otlp_protobuf otlp_json wal_decode http1_answer}
CACHE=${LD_CACHE:-$HOME/.cache/logs-distributor}
ROOT=$CACHE/cargo-fuzz
export PATH=$ROOT/bin:$PATH
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz under $ROOT"
    cargo install cargo-fuzz --locked --root "$ROOT"
fi

cd fuzz
echo "==> building fuzz targets (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER"

# The committed seeds stay as they are: libFuzzer writes what it finds into
# a scratch corpus (the first directory) and only reads the seeds.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
declare -A EXECS
for target in $TARGETS; do
    mkdir -p "$WORK/$target" "artifacts/$target"
    echo "==> fuzzing $target for ${SECONDS_EACH}s"
    log=$WORK/$target.log
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" "$target" "$WORK/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 | tee "$log" | grep -E '^#[0-9]+\s+(DONE|pulse)|ERROR|panicked|Test unit written'
    status=${PIPESTATUS[0]}
    set -e
    done_line=$(grep -E '^#[0-9]+\s+DONE' "$log" | tail -1 || true)
    if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
        echo "FAIL: $target crashed or failed (exit $status):" >&2
        grep -E -A3 'panicked at' "$log" | cut -c1-2000 >&2 || true
        grep -E 'Test unit written|stat::number_of_executed_units' "$log" >&2 || true
        exit 1
    fi
    EXECS[$target]=$done_line
done

echo
echo "==> executions reached (${SECONDS_EACH}s each)"
for target in $TARGETS; do
    printf '  %-12s %s\n' "$target" "${EXECS[$target]}"
done
