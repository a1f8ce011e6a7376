#!/usr/bin/env bash
# Monitoring checks against a real Prometheus (Debian's `prometheus` package,
# installed once, quietly, when promtool or prometheus is missing):
#
#   1. deploy/prometheus/alerts.yaml: `promtool check rules`, the unit tests
#      in alerts.test.yaml (`promtool test rules`), and a firing and a
#      not-firing case for every alert in them.
#   2. deploy/grafana/dashboard.json: parses, uid/title/schemaVersion, the
#      datasource variable, the panels the issue asks for, no overlaps.
#   3. /metrics of a running distributor (four zero-latency simulated
#      analyzers 40/30/20/10, D failing 80% of its deliveries so there are
#      retries and dead letters): `promtool check metrics` and every metric
#      the rules, the dashboard and the README name, with its type.
#   4. Prometheus on loopback scrapes it every second with alerts.yaml loaded
#      while `logs-distributor-loadgen` sends 200 requests/s; then every
#      dashboard expression and every rule expression is run through
#      /api/v1/query: each must evaluate, and each must answer data (an alert
#      expression `X > 5` is asked as `X > bool 5`, which answers for every
#      series, firing or not); each rule must evaluate without error in
#      Prometheus; the per-analyzer share Prometheus sees must match the
#      weights within 2 points; the dead-letter alert must be active, and
#      no other.
#
# The checks themselves are scripts/prometheus_checks.py; this script installs
# and starts what they look at. Everything it starts is stopped on exit.
# LD_PROMETHEUS_LOAD (seconds, default 25, at least 20) sets how long the
# load runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
ROOT=$PWD

RULES=$ROOT/deploy/prometheus/alerts.yaml
RULE_TESTS=$ROOT/deploy/prometheus/alerts.test.yaml
DASHBOARD=$ROOT/deploy/grafana/dashboard.json
LOAD_SECONDS=${LD_PROMETHEUS_LOAD:-25}

say() { echo "prometheus-test: $*"; }
fail() { echo "prometheus-test: FAIL: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ld-prometheus-test.XXXXXX")
DIST_PID=
PROM_PID=
STATUS=1

cleanup() {
    stop_pid "$PROM_PID"
    stop_pid "$DIST_PID"
    if [ "$STATUS" -ne 0 ]; then
        for f in distributor.log prometheus.log; do
            if [ -s "$WORK/$f" ]; then
                echo "prometheus-test: last lines of $f:" >&2
                tail -n 15 "$WORK/$f" >&2
            fi
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# ---------------------------------------------------------------- tools

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    command -v apt-get >/dev/null || fail "promtool/prometheus are missing and there is no apt-get to install them"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    say "installing Debian's prometheus (once)"
    quietly timeout 600 $SUDO apt-get update -q
    quietly timeout 900 $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
    command -v promtool >/dev/null && command -v prometheus >/dev/null \
        || fail "apt-get installed prometheus, but promtool or prometheus is not on PATH"
fi
command -v python3 >/dev/null || fail "python3 is required"
command -v curl >/dev/null || fail "curl is required"
STARTED=$SECONDS
# Shorter, and the routing-skew rule's 15 s subquery steps may find no data.
[ "$LOAD_SECONDS" -ge 20 ] 2>/dev/null || fail "LD_PROMETHEUS_LOAD must be a number of seconds, 20 or more"
PROM_VERSION=$(prometheus --version 2>&1 | awk 'NR == 1 {print $3}')
say "prometheus $PROM_VERSION"

# The checks in Python, one subcommand per step.
check() { python3 "$ROOT/scripts/prometheus_checks.py" "$@"; }

# ---------------------------------------------------------------- static

say "promtool check rules, promtool test rules"
promtool check rules "$RULES" >"$WORK/check-rules.log" 2>&1 || { cat "$WORK/check-rules.log" >&2; fail "promtool check rules"; }
promtool test rules "$RULE_TESTS" >"$WORK/test-rules.log" 2>&1 || { cat "$WORK/test-rules.log" >&2; fail "promtool test rules"; }
check rule-tests "$RULES" "$RULE_TESTS" || fail "rule tests"
say "dashboard"
check dashboard "$DASHBOARD" "$WORK/exprs.json" || fail "dashboard"

# ---------------------------------------------------------------- distributor

cargo build --quiet --locked -p logs-distributor -p logs-distributor-loadgen
BINARY=${CARGO_TARGET_DIR:-$ROOT/target}/debug/logs-distributor
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/logs-distributor-loadgen
[ -x "$BINARY" ] || fail "no binary at $BINARY"
[ -x "$LOADGEN" ] || fail "no binary at $LOADGEN"

# Waits up to $2 tenths of a second for URL $1 to answer 2xx, while $3 runs.
wait_for() {
    for _ in $(seq "$2"); do
        kill -0 "$3" 2>/dev/null || return 1
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# D fails 80% of its deliveries; one retry (re-routed by weight, so the shares
# stay exact) after up to 100 ms, then the dead letter. Probes never fail and
# failed deliveries never eject, so every analyzer stays in rotation.
#
# The jitter is what makes dead letters certain. A packet goes to the dead
# letter only when its retry is routed to D again, and which analyzer a
# retry gets is the position of the shared round-robin cursor (cycle
# ABCABDACBA) when it is due. Without jitter the retry is due exactly 100 ms
# after D's pick, that is exactly 20 slots of the 200/s open-loop load, two
# whole cycles: it lands at D's position shifted only by the few other
# retries routed meanwhile, so it lands on D only when timing noise breaks
# the lockstep. The counter then grew by 0 to 11 in 25 s instead of the 30
# or so that one retry in ten on D gives, and in some runs Prometheus saw
# no dead letter at all. A wait drawn from [0, 100 ms] spreads over 20
# slots, so a retry lands on D one time in ten.
write_config 0.8 <<'YAML'
retry: {base_delay: 100ms, max_retries: 1, jitter: true}
health: {interval: 5s, ejection_threshold: 0}
shutdown: {drain_timeout: 1s}
YAML

for attempt in 1 2 3; do
    PORT=$(free_port)
    "$BINARY" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --config "$WORK/config.yaml" \
        >"$WORK/distributor.log" 2>&1 &
    DIST_PID=$!
    wait_for "http://127.0.0.1:$PORT/readyz" 200 "$DIST_PID" && break
    stop_pid "$DIST_PID"
    DIST_PID=
    say "the distributor did not start on port $PORT (attempt $attempt)"
done
[ -n "$DIST_PID" ] || fail "the distributor did not start"
BASE=http://127.0.0.1:$PORT

post() {
    curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -X POST "$BASE/api/v1/logs" -d "$1"
}
# Traffic before the scrape, so that every labelled series exists: accepted
# packets, a refused one (packets_rejected_total{reason="invalid"}), and
# enough through D to see failures and retries. Not dead letters: the few
# retries come back together to the next picks of the cycle (A, B, C), so
# the dead-letter counter is still 0 at the first scrape.
batch='[{"messages": [{"level": "INFO", "message": "warm-up", "source": "prometheus-test"}]}'
for _ in $(seq 39); do batch+=', {"messages": [{"level": "INFO", "message": "warm-up", "source": "prometheus-test"}]}'; done
batch+=']'
code=$(post "$batch"); [ "$code" = 202 ] || fail "POST of 40 packets answered $code"
code=$(post '[{"messages": [{"level": "LOUD", "message": "m", "source": "s"}]}]'); [ "$code" = 400 ] || fail "POST of an invalid packet answered $code"
sleep 0.5

say "promtool check metrics on $BASE/metrics"
curl -fsS "$BASE/metrics" >"$WORK/metrics.txt" || fail "GET /metrics"
if ! promtool check metrics <"$WORK/metrics.txt" >"$WORK/check-metrics.log" 2>&1; then
    cat "$WORK/check-metrics.log" >&2
    fail "promtool check metrics"
fi
[ -s "$WORK/check-metrics.log" ] && { cat "$WORK/check-metrics.log" >&2; fail "promtool check metrics reported problems"; }
check metrics "$WORK/metrics.txt" || fail "metrics"

# ---------------------------------------------------------------- prometheus

cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: logs-distributor
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YAML
for attempt in 1 2 3; do
    PROM_PORT=$(free_port)
    prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
        --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1h \
        --log.level=warn >"$WORK/prometheus.log" 2>&1 &
    PROM_PID=$!
    wait_for "http://127.0.0.1:$PROM_PORT/-/ready" 300 "$PROM_PID" && break
    stop_pid "$PROM_PID"
    PROM_PID=
    say "prometheus did not start on port $PROM_PORT (attempt $attempt)"
done
[ -n "$PROM_PID" ] || fail "prometheus did not start"
PROM=http://127.0.0.1:$PROM_PORT

# The first scrape, so that rates count the load from its start.
up=0
for _ in $(seq 100); do
    if curl -fsS "$PROM/api/v1/query?query=up%7Bjob%3D%22logs-distributor%22%7D%3D%3D1" 2>/dev/null | grep -q '"value"'; then
        up=1
        break
    fi
    sleep 0.1
done
[ "$up" -eq 1 ] || fail "prometheus did not scrape the distributor within 10 s"

say "load: 200 requests/s for ${LOAD_SECONDS}s (prometheus on $PROM scraping every second)"
timeout --kill-after=5 $((LOAD_SECONDS + 30)) "$LOADGEN" --target "$BASE/api/v1/logs" \
    --rate 200 --duration "${LOAD_SECONDS}s" --concurrency 16 --messages-per-packet 2 \
    --message-bytes 100 --quiet --json >"$WORK/loadgen.json" 2>"$WORK/loadgen.log" \
    || { cat "$WORK/loadgen.log" >&2; fail "loadgen"; }
LOAD_END=$(date +%s.%N)
check loadgen "$WORK/loadgen.json" "$LOAD_SECONDS" || fail "loadgen"
# Two more scrapes and rule evaluations.
sleep 2.5

say "queries against the Prometheus HTTP API"
# Queries are asked at one second before the load ended: every rate window
# of the dashboard lies inside the load.
AT=$(python3 -c "print($LOAD_END - 1)")
check live "$PROM" "$WORK/exprs.json" "$AT" "$LOAD_SECONDS" || fail "live checks"

STATUS=0
say "passed in $((SECONDS - STARTED)) s (prometheus $PROM_VERSION)"
