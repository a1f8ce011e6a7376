#!/usr/bin/env bash
# otel-python-sdk.sh: the OpenTelemetry Python SDK with its OTLP/HTTP
# exporter, pinned (scripts/fixtures/otel-python-sdk.txt), installed once
# into a venv in the cache; prints the venv's python. Idempotent: a venv
# that already has exactly these pins is used as it is.
#
# Environment:
#   LD_CACHE   cache root (default ~/.cache/logs-distributor); the venv is
#              $LD_CACHE/venv-otel-python-sdk
set -euo pipefail
cd "$(dirname "$0")/.."

PINS=$PWD/scripts/fixtures/otel-python-sdk.txt
LD_CACHE=${LD_CACHE:-$HOME/.cache/logs-distributor}
VENV=$LD_CACHE/venv-otel-python-sdk
STAMP=$VENV/installed-pins.txt

die() { printf 'otel-python-sdk.sh: error: %s\n' "$*" >&2; exit 1; }

installed() { [[ -x $VENV/bin/python ]] && cmp -s "$PINS" "$STAMP"; }

if ! installed; then
    command -v python3 >/dev/null || die "python3 (3.9 or newer) is required"
    mkdir -p "$LD_CACHE"
    # One install at a time (tests and scripts/test.sh may both ask).
    exec 8>"$VENV.lock"
    flock 8
    if ! installed; then
        printf 'otel-python-sdk.sh: installing the OpenTelemetry Python SDK into %s (once)\n' "$VENV" >&2
        rm -rf "$VENV"
        python3 -m venv "$VENV" || die "cannot create a venv in $VENV (is python3-venv installed?)"
        log=$(mktemp)
        if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$PINS" >"$log" 2>&1 \
            || ! "$VENV/bin/python" -m pip check >>"$log" 2>&1; then
            tail -n 30 "$log" >&2
            rm -f "$log"
            die "pip install -r $PINS failed"
        fi
        rm -f "$log"
        cp "$PINS" "$STAMP"
    fi
    exec 8>&-
fi
echo "$VENV/bin/python"
