#!/usr/bin/env python3
"""The checks of scripts/prometheus-test.sh (standard library only), one
subcommand per step; each prints what it saw, reports every failed check on
stderr and exits non-zero when any failed.

  rule-tests RULES TESTS        every alert of RULES has a firing and a quiet
                                case in the promtool unit tests TESTS
  dashboard DASHBOARD OUT       the Grafana dashboard's structure; writes its
                                queries to OUT (JSON) for `live`
  metrics FILE                  a /metrics scrape has every metric family the
                                rules, the dashboard and the docs name, with
                                its type and the analyzer label
  loadgen REPORT SECONDS        `logs-distributor loadgen --json` REPORT
                                accepted about 200 packets/s for SECONDS
  live URL EXPRS AT SECONDS     against Prometheus at URL, at time AT (Unix
                                seconds), after SECONDS of load: every query
                                in EXPRS and every loaded rule evaluates and
                                answers data, the routing shares match the
                                weights, and only the dead-letter alert is
                                active
"""
import argparse
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("rule-tests")
    step.add_argument("rules")
    step.add_argument("tests")
    step = steps.add_parser("dashboard")
    step.add_argument("dashboard")
    step.add_argument("exprs_out")
    step = steps.add_parser("metrics")
    step.add_argument("metrics")
    step = steps.add_parser("loadgen")
    step.add_argument("report")
    step.add_argument("load_seconds", type=int)
    step = steps.add_parser("live")
    step.add_argument("url")
    step.add_argument("exprs")
    step.add_argument("at", type=float)
    step.add_argument("load_seconds", type=int)
    args = parser.parse_args()
    if args.step == "rule-tests":
        check_rule_tests(args.rules, args.tests)
    elif args.step == "dashboard":
        check_dashboard(args.dashboard, args.exprs_out)
    elif args.step == "metrics":
        check_metrics(args.metrics)
    elif args.step == "loadgen":
        check_loadgen(args.report, args.load_seconds)
    else:
        check_live(args.url, args.exprs, args.at, args.load_seconds)


if __name__ == "__main__":
    main()
