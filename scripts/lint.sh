#!/usr/bin/env bash
# Format check and clippy (warnings are errors) over every crate of the
# workspace, and the format of the fuzz targets (a crate of their own, whose
# libFuzzer dependency the main build does not fetch). A toolchain without
# rustfmt or clippy is reported and skipped, not failed: none can be
# downloaded on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo fmt --version >/dev/null 2>&1; then
    echo "lint: cargo fmt --all --check"
    cargo fmt --all --check
    echo "lint: rustfmt --check fuzz/"
    rustfmt --check --edition 2021 fuzz/fuzz_targets/*.rs fuzz/examples/*.rs
else
    echo "lint: rustfmt is not installed in this toolchain; format check skipped"
fi

if cargo clippy --version >/dev/null 2>&1; then
    echo "lint: cargo clippy --workspace --all-targets --all-features -- -D warnings"
    cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
else
    echo "lint: clippy is not installed in this toolchain; lint skipped"
fi
# Without the test features too: what a plain `cargo test` compiles.
echo "lint: cargo check --workspace --all-targets (no test features)"
cargo check --locked --workspace --all-targets

# The house rules the compiler does not check: no import cycle between
# modules, no long source file without a reason at its top.
echo "lint: no module import cycle in any crate (scripts/module-graph.py)"
for src in src crates/*/src; do
    if ! python3 scripts/module-graph.py "$src" >/tmp/logs-distributor-module-graph.txt; then
        echo "in $src:"
        grep '^cycle' /tmp/logs-distributor-module-graph.txt
        exit 1
    fi
done
echo "lint: no source file over 600 lines without a reason (scripts/long-files.py)"
python3 scripts/long-files.py src crates/*/src
