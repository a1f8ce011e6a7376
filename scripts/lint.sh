#!/usr/bin/env bash
# Format check and clippy (warnings are errors). A toolchain without
# rustfmt or clippy is reported and skipped, not failed: none can be
# downloaded on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo fmt --version >/dev/null 2>&1; then
    echo "lint: cargo fmt --check"
    cargo fmt --check
else
    echo "lint: rustfmt is not installed in this toolchain; format check skipped"
fi

if cargo clippy --version >/dev/null 2>&1; then
    echo "lint: cargo clippy --all-targets -- -D warnings"
    cargo clippy --locked --all-targets -- -D warnings
else
    echo "lint: clippy is not installed in this toolchain; lint skipped"
fi
