#!/usr/bin/env bash
# Property-based test of the HTTP API against its OpenAPI document
# (docs/openapi.json, served at /api/v1/openapi.json) with schemathesis.
#
# Builds the binary, starts it on a free loopback port with a throw-away
# data directory and four zero-latency simulated analyzers, and lets
# schemathesis generate requests for every operation of the document, valid
# and invalid ones, a bounded number per operation (SCHEMATHESIS_EXAMPLES,
# default 30). Every answer is checked for:
#   not_a_server_error           no 5xx
#   status_code_conformance      the status is one the document lists
#   content_type_conformance     the Content-Type is one the document lists
#   response_headers_conformance documented required headers (Retry-After, ETag) are there
#   response_schema_conformance  the body validates against the document's schema
# Nothing is excluded: /metrics, / and /ui/{file} answer text, which
# schemathesis checks for status and content type (their schema is a plain
# string, so there is no structure to check beyond that).
#
# schemathesis (pinned below) is installed once, quietly, into a venv under
# ${LD_CACHE:-~/.cache/logs-distributor}/venv-schemathesis. The run is
# killed after SCHEMATHESIS_MAX_TIME seconds (default 120; it takes far less). Exits non-zero on
# any failed check; the server is stopped on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
ROOT=$PWD

SCHEMATHESIS_VERSION=4.32.5
CACHE=${LD_CACHE:-$HOME/.cache/logs-distributor}
VENV=$CACHE/venv-schemathesis
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-30}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-120}

say() { echo "schemathesis: $*"; }
fail() { echo "schemathesis: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ld-schemathesis.XXXXXX")
SERVER_PID=
STATUS=1

cleanup() {
    stop_pid "$SERVER_PID"
    if [ "$STATUS" -ne 0 ] && [ -f "$WORK/distributor.log" ]; then
        echo "schemathesis: the distributor's log (last lines):" >&2
        tail -n 20 "$WORK/distributor.log" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools

command -v python3 >/dev/null || fail "python3 (3.9 or newer) is required"
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV (once)"
    mkdir -p "$CACHE"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || fail "cannot create a venv in $VENV (is python3-venv installed?)"
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" >"$WORK/pip.log" 2>&1; then
        tail -n 30 "$WORK/pip.log" >&2
        fail "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
    fi
fi

# ---------------------------------------------------------------- distributor

cargo build --quiet --locked
BINARY=${CARGO_TARGET_DIR:-$ROOT/target}/debug/logs-distributor
[ -x "$BINARY" ] || fail "no binary at $BINARY"

# Zero-latency analyzers that never fail, probes that never fail: whatever
# schemathesis sends, the distributor stays healthy and drains at once.
write_config 0 <<'YAML'
retry: {base_delay: 10ms, max_retries: 1}
health: {interval: 1h, ejection_threshold: 0}
checkpoint: {interval: 1h}
shutdown: {drain_timeout: 1s}
wal: {fsync: never}
YAML

start_distributor

# ---------------------------------------------------------------- run

# scripts/schemathesis_hooks.py teaches schemathesis to send NDJSON bodies.
say "distributor on 127.0.0.1:$PORT; schemathesis $SCHEMATHESIS_VERSION, $EXAMPLES examples per operation"
set +e
(
    cd "$WORK"
    export PYTHONPATH=$ROOT/scripts SCHEMATHESIS_HOOKS=schemathesis_hooks
    timeout --kill-after=10 "$MAX_TIME" "$VENV/bin/schemathesis" run \
        "http://127.0.0.1:$PORT/api/v1/openapi.json" \
        --checks "${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}" \
        --max-examples "$EXAMPLES" \
        --request-timeout 10 \
        --seed "${SCHEMATHESIS_SEED:-$RANDOM}" \
        --generation-database none \
        --no-color
)
STATUS=$?
set -e
if [ "$STATUS" -eq 124 ]; then
    echo "schemathesis: timed out after $MAX_TIME s" >&2
fi
kill -0 "$SERVER_PID" 2>/dev/null || { STATUS=1; echo "schemathesis: the distributor died during the run" >&2; }
exit "$STATUS"
