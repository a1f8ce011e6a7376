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
# Everything it starts is stopped on exit. LD_PROMETHEUS_LOAD (seconds,
# default 25, at least 20) sets how long the load runs.
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

# The checks in Python (standard library only), one mode per step.
cat >"$WORK/check.py" <<'PY'
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REQUIRED_PANELS = {
    "Ingest rate",
    "Routing share vs weight",
    "Analyzer health",
    "Retries and dead letters",
    "Queue utilisation",
    "Ingest latency",
    "Delivery latency",
}
# Metric families the rules, the dashboard and the README rely on, with types.
METRICS = {
    "counter": [
        "packets_received_total", "messages_received_total", "packets_rejected_total",
        "packets_routed_total", "messages_routed_total", "packets_delivered_total",
        "delivery_failures_total", "packets_retried_total", "retries_deferred_total",
        "packets_dead_lettered_total", "checkpoint_failures_total",
    ],
    "gauge": [
        "analyzer_healthy", "analyzer_weight", "queue_depth", "queue_capacity",
        "in_flight_packets", "kubernetes_connected", "kubernetes_leader", "wal_bytes",
    ],
    "histogram": [
        "ingest_duration_seconds", "delivery_duration_seconds", "wal_fsync_duration_seconds",
    ],
}
# Grafana's variables, as a query outside Grafana needs them.
SUBSTITUTIONS = {"$instance": ".*", "$__rate_interval": "15s"}
WEIGHTS = {"analyzer-a1": 40, "analyzer-a2": 30, "analyzer-a3": 20, "analyzer-a4": 10}
errors = []


def fail(message):
    errors.append(message)
    print("  FAIL " + message, file=sys.stderr)


def finish():
    if errors:
        sys.exit(f"{len(errors)} check(s) failed")


def dashboard_targets(dashboard):
    for panel in dashboard.get("panels", []):
        for inner in [panel] + panel.get("panels", []):
            for target in inner.get("targets", []):
                yield inner, target


def substitute(expr, window=None):
    for name, value in SUBSTITUTIONS.items():
        if name == "$__rate_interval" and window:
            value = window
        expr = expr.replace(name, value)
    return expr


def check_dashboard(path, exprs_out):
    with open(path) as f:
        d = json.load(f)
    if d.get("uid") != "logs-distributor" or d.get("title") != "logs-distributor":
        fail("dashboard: uid and title must be logs-distributor")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        fail(f"dashboard: schemaVersion {d.get('schemaVersion')!r}: want a current one (39)")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("dashboard: no `datasource` variable of type datasource for prometheus")
    panels = [p for p in d.get("panels", []) if p.get("type") != "row"]
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)):
        fail("dashboard: panel ids are not unique")
    titles = {p.get("title") for p in panels}
    for title in sorted(REQUIRED_PANELS - titles):
        fail(f"dashboard: no panel titled {title!r}")
    boxes = []
    for p in d.get("panels", []):
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24 or g.get("w", 0) <= 0 or g.get("h", 0) <= 0:
            fail(f"dashboard: panel {p.get('title')!r} has a bad gridPos {g}")
        for other, o in boxes:
            if (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                    and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]):
                fail(f"dashboard: panels {other!r} and {p.get('title')!r} overlap")
        boxes.append((p.get("title"), g))
    by_title = {p.get("title"): p for p in panels}
    for title in ("Ingest latency", "Delivery latency"):
        exprs = " ".join(t.get("expr", "") for t in by_title.get(title, {}).get("targets", []))
        for q, name in (("0.5", "p50"), ("0.99", "p99")):
            if f"histogram_quantile({q}," not in exprs:
                fail(f"dashboard: {title!r} has no {name} (histogram_quantile({q}, ...))")
    share = " ".join(t.get("expr", "") for t in by_title.get("Routing share vs weight", {}).get("targets", []))
    if "packets_routed_total" not in share or "analyzer_weight" not in share:
        fail("dashboard: the share panel must show packets_routed_total against analyzer_weight")
    out = []
    for panel, target in dashboard_targets(d):
        uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
        if uid not in ("${datasource}", "$datasource"):
            fail(f"dashboard: {panel.get('title')!r} does not use the datasource variable")
        expr = target.get("expr", "").strip()
        if not expr:
            fail(f"dashboard: {panel.get('title')!r} target {target.get('refId')} has no expr")
            continue
        if "$" in substitute(expr):
            fail(f"dashboard: {panel.get('title')!r}: unknown variable in {expr}")
        out.append({"panel": panel.get("title"), "refId": target.get("refId"), "expr": expr})
    with open(exprs_out, "w") as f:
        json.dump(out, f)
    print(f"  dashboard: {len(panels)} panels, {len(out)} queries, required panels present")
    finish()


def check_rule_tests(rules_path, tests_path):
    """Every alert has a case that expects it and one that expects nothing."""
    alerts = [l.split(":", 1)[1].strip() for l in open(rules_path) if l.strip().startswith("- alert:")]
    cases = {}
    lines = [l.strip() for l in open(tests_path) if l.strip() and not l.strip().startswith("#")]
    for i, line in enumerate(lines):
        if line.startswith("alertname:") and i + 1 < len(lines):
            name = line.split(":", 1)[1].strip()
            kind = "quiet" if lines[i + 1].replace(" ", "") == "exp_alerts:[]" else "firing"
            cases.setdefault(name, set()).add(kind)
    for name in alerts:
        for kind in ("firing", "quiet"):
            if kind not in cases.get(name, set()):
                fail(f"rule tests: {name} has no {kind} case")
    for name in sorted(set(cases) - set(alerts)):
        fail(f"rule tests: {name} is tested but not in the rules")
    print(f"  rule tests: a firing and a quiet case for each of {len(alerts)} alerts")
    finish()


def check_metrics(path):
    text = open(path).read()
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
    for kind, names in METRICS.items():
        for short in names:
            name = "logs_distributor_" + short
            if types.get(name) != kind:
                fail(f"metrics: {name} is {types.get(name, 'missing')}, want {kind}")
    for short in ("packets_routed_total", "analyzer_weight", "analyzer_healthy", "delivery_duration_seconds_bucket"):
        if f'logs_distributor_{short}{{analyzer="analyzer-a1"' not in text:
            fail(f"metrics: logs_distributor_{short} has no analyzer label")
    print(f"  metrics: {sum(map(len, METRICS.values()))} families with the right types")
    finish()


class Prometheus:
    def __init__(self, url):
        self.url = url

    def get(self, path, **params):
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr, at):
        data = self.get("/api/v1/query", query=expr, time=f"{at:.3f}")
        return data["result"]


def with_bool(expr):
    """`X op Y` -> `X op bool Y` for the last comparison at the top level."""
    depth, quote, last, i = 0, None, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            if expr[i:i + 2] in ("==", "!=", ">=", "<="):
                last = (i, 2)
                i += 2
                continue
            if c in "<>":
                last = (i, 1)
        i += 1
    if last is None:
        return None
    end = last[0] + last[1]
    if expr[end:].lstrip().startswith("bool"):
        return expr
    return expr[:end] + " bool" + expr[end:]


def value_of(sample):
    return float(sample["value"][1])


def check_live(url, exprs_path, at, load_seconds):
    prom = Prometheus(url)
    # Dashboard: every query evaluates and answers data during the load.
    exprs = json.load(open(exprs_path))
    for e in exprs:
        expr = substitute(e["expr"])
        try:
            result = prom.query(expr, at)
        except ValueError as err:
            fail(f"dashboard {e['panel']!r} {e['refId']}: {err}: {expr}")
            continue
        if not result:
            fail(f"dashboard {e['panel']!r} {e['refId']}: no data: {expr}")
    print(f"  dashboard: {len(exprs)} queries evaluate and answer data")

    # Share against weight, from the dashboard's own share panel, over the load.
    share_panel = [e for e in exprs if e["panel"] == "Routing share vs weight"]
    window = f"{max(5, load_seconds - 5)}s"
    actual = {s["metric"].get("analyzer"): value_of(s)
              for s in prom.query(substitute(share_panel[0]["expr"], window), at)}
    target = {s["metric"].get("analyzer"): value_of(s)
              for s in prom.query(substitute(share_panel[1]["expr"], window), at)}
    for analyzer, weight in WEIGHTS.items():
        a, t = actual.get(analyzer), target.get(analyzer)
        if t is None or abs(t - weight) > 0.01:
            fail(f"share: {analyzer}: target {t}, want {weight}")
        if a is None or abs(a - weight) > 2:
            fail(f"share: {analyzer}: Prometheus sees {a}% over {window}, want {weight} +- 2")
    print("  share over %s: %s" % (window, ", ".join(
        f"{k} {actual.get(k, float('nan')):.2f}% (target {target.get(k, float('nan')):.0f})" for k in WEIGHTS)))

    # Rules: loaded, healthy, each expression valid and answering data.
    groups = prom.get("/api/v1/rules")["groups"]
    group = [g for g in groups if g["name"] == "logs-distributor"]
    if len(group) != 1:
        fail("rules: no group logs-distributor loaded")
        finish()
    rules = group[0]["rules"]
    alerts = [r for r in rules if r["type"] == "alerting"]
    for rule in rules:
        name = rule.get("name")
        if rule.get("health") != "ok":
            fail(f"rule {name}: health {rule.get('health')}: {rule.get('lastError')}")
        if rule["type"] == "alerting":
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                fail(f"rule {name}: no severity label")
            for key in ("summary", "description"):
                if not rule.get("annotations", {}).get(key):
                    fail(f"rule {name}: no {key} annotation")
        expr = rule["query"]
        try:
            prom.query(expr, at)
        except ValueError as err:
            fail(f"rule {name}: {err}: {expr}")
            continue
        probe = with_bool(expr) if rule["type"] == "alerting" else expr
        if probe is None:
            fail(f"rule {name}: not a comparison at the top level: {expr}")
            continue
        try:
            result = prom.query(probe, at)
        except ValueError as err:
            fail(f"rule {name}: {err}: {probe}")
            continue
        if not result:
            fail(f"rule {name}: no data: {probe}")
        elif name == "LogsDistributorRoutingSkew":
            series = sorted(s["metric"].get("analyzer", "") for s in result)
            if series != sorted(WEIGHTS):
                fail(f"rule {name}: answers for {series}, want every analyzer")
    print(f"  rules: {len(alerts)} alerts loaded and healthy, each expression valid and answering data")

    # Which alerts are active now: dead letters (analyzer D fails 80% of its
    # deliveries, one retry), nothing else.
    # Rules are evaluated every second, but a loaded machine can lag: poll.
    deadline = time.time() + 20
    while True:
        active = {a["labels"]["alertname"]: a["state"] for a in prom.get("/api/v1/alerts")["alerts"]}
        if "LogsDistributorDeadLetters" in active or time.time() > deadline:
            break
        time.sleep(0.5)
    seen = ", ".join(
        f"{q} = {[round(value_of(s), 1) for s in prom.query(q, time.time())]}" for q in (
            "increase(logs_distributor_packets_retried_total[5m])",
            "increase(logs_distributor_packets_dead_lettered_total[5m])",
        ))
    print(f"  {seen}")
    if "LogsDistributorDeadLetters" not in active:
        fail("alerts: LogsDistributorDeadLetters is not active, although D fails 80% of its "
             "deliveries with one retry (see the increases above)")
    for name, state in active.items():
        if name != "LogsDistributorDeadLetters":
            fail(f"alerts: {name} is {state}, want inactive")
    print(f"  alerts active: {active}")
    finish()


def check_loadgen(path, load_seconds):
    report = json.load(open(path))
    want = 200 * load_seconds
    print(f"  loadgen: {report['packets_accepted']} of {report['packets_sent']} packets accepted, "
          f"statuses {report['status_codes']}")
    if report["packets_accepted"] < 0.9 * want:
        fail(f"loadgen: {report['packets_accepted']} packets accepted, want about {want}")
    finish()


mode = sys.argv[1]
if mode == "loadgen":
    check_loadgen(sys.argv[2], int(sys.argv[3]))
elif mode == "dashboard":
    check_dashboard(sys.argv[2], sys.argv[3])
elif mode == "rule-tests":
    check_rule_tests(sys.argv[2], sys.argv[3])
elif mode == "metrics":
    check_metrics(sys.argv[2])
elif mode == "live":
    check_live(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
else:
    sys.exit(f"unknown mode {mode}")
PY
check() { python3 "$WORK/check.py" "$@"; }

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

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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
cat >"$WORK/config.yaml" <<'YAML'
analyzers:
  - {id: analyzer-a1, name: Analyzer A, weight: 40, simulated: {processing_time_ms: 0, failure_rate: 0, health_failure_rate: 0}}
  - {id: analyzer-a2, name: Analyzer B, weight: 30, simulated: {processing_time_ms: 0, failure_rate: 0, health_failure_rate: 0}}
  - {id: analyzer-a3, name: Analyzer C, weight: 20, simulated: {processing_time_ms: 0, failure_rate: 0, health_failure_rate: 0}}
  - {id: analyzer-a4, name: Analyzer D, weight: 10, simulated: {processing_time_ms: 0, failure_rate: 0.8, health_failure_rate: 0}}
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
