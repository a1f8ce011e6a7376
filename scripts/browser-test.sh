#!/usr/bin/env bash
# Browser test of the status page: builds the binary, starts it on a free
# loopback port with a throw-away data directory, and drives the page in
# Debian's Chromium with playwright-core (tests/browser/status-page.test.js,
# run by node's built-in test runner).
#
# Installs what it needs when it is missing, once and quietly: the Debian
# package `chromium` (no browser download: playwright-core drives
# /usr/bin/chromium) and the npm packages pinned in tests/browser's
# package-lock.json (`npm ci`). A second run installs nothing.
#
# Screenshots go to target/browser/. `--update-screenshot` (or
# UPDATE_SCREENSHOT=1) also copies the desktop one to docs/status-page.png,
# the picture in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
ROOT=$PWD

BROWSER_DIR=$ROOT/tests/browser
ARTIFACTS=${LD_ARTIFACTS:-$ROOT/target/browser}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
TEST_TIMEOUT=${BROWSER_TEST_TIMEOUT:-120}
UPDATE_SCREENSHOT=${UPDATE_SCREENSHOT:-0}
for arg in "$@"; do
    case $arg in
        --update-screenshot) UPDATE_SCREENSHOT=1 ;;
        *) echo "usage: $0 [--update-screenshot]" >&2; exit 2 ;;
    esac
done

say() { echo "browser-test: $*"; }
fail() { echo "browser-test: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ld-browser-test.XXXXXX")
SERVER_PID=
STATUS=1

cleanup() {
    stop_pid "$SERVER_PID"
    if [ "$STATUS" -ne 0 ] && [ -f "$WORK/distributor.log" ]; then
        mkdir -p "$ARTIFACTS"
        cp "$WORK/distributor.log" "$ARTIFACTS/distributor.log"
        echo "browser-test: the distributor's log (last lines; all of it in $ARTIFACTS/distributor.log):" >&2
        tail -n 20 "$WORK/distributor.log" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# ---------------------------------------------------------------- tools

if [ ! -x "$CHROMIUM" ]; then
    command -v apt-get >/dev/null || fail "$CHROMIUM is missing and there is no apt-get to install it"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    say "installing Debian's chromium (once)"
    quietly $SUDO apt-get update -q
    quietly $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
    [ -x "$CHROMIUM" ] || fail "apt-get installed chromium, but $CHROMIUM is not there"
fi

command -v node >/dev/null || fail "node (20 or newer) is required"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || fail "node $(node --version) is too old: 20 or newer is required"

wanted=$(node -p "require('$BROWSER_DIR/package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "try { require('$BROWSER_DIR/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$wanted" != "$have" ]; then
    say "installing playwright-core $wanted into tests/browser/node_modules (npm ci)"
    (cd "$BROWSER_DIR" && quietly npm ci --no-audit --no-fund --loglevel=error)
fi

# ---------------------------------------------------------------- distributor

cargo build --quiet --locked
BINARY=${CARGO_TARGET_DIR:-$ROOT/target}/debug/logs-distributor
[ -x "$BINARY" ] || fail "no binary at $BINARY"

# Analyzer D fails every delivery and nothing is retried: each packet routed
# to it is a dead letter at once (see the test's header). Probes never fail
# and failed deliveries never eject, so only the test changes health.
write_config 1.0 <<'YAML'
retry: {base_delay: 10ms, max_retries: 0}
health: {interval: 5s, ejection_threshold: 0}
checkpoint: {interval: 1h}
shutdown: {drain_timeout: 1s}
YAML

start_distributor

# ---------------------------------------------------------------- test

mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/*.png
say "distributor on 127.0.0.1:$PORT; chromium $("$CHROMIUM" --version 2>/dev/null | awk '{print $2}'); playwright-core $wanted"
set +e
LD_URL="http://127.0.0.1:$PORT" LD_ARTIFACTS="$ARTIFACTS" CHROMIUM="$CHROMIUM" \
    timeout --kill-after=10 "$TEST_TIMEOUT" \
    node --test --test-reporter=spec "$BROWSER_DIR/status-page.test.js"
STATUS=$?
set -e
if [ "$STATUS" -eq 124 ]; then
    echo "browser-test: timed out after ${TEST_TIMEOUT}s" >&2
fi
if [ "$STATUS" -eq 0 ]; then
    say "screenshots in ${ARTIFACTS#"$ROOT"/}/"
    if [ "$UPDATE_SCREENSHOT" = 1 ]; then
        cp "$ARTIFACTS/status-page.png" "$ROOT/docs/status-page.png"
        say "updated docs/status-page.png"
    fi
fi
exit "$STATUS"
