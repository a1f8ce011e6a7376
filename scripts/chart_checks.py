#!/usr/bin/env python3
"""The checks of scripts/chart-test.sh that read YAML or JSON (standard
library only), one subcommand each:

  objects STREAM OUT         the JSON objects of STREAM (kubectl's `-o json`
                             of several documents, one after another) as one
                             JSON array in OUT
  duplicate-keys FILE...     no mapping of the (block-style) YAML FILEs
                             repeats a key: kubectl and helm keep the last
                             of two equal keys without a word, stricter
                             parsers refuse the document; prints each
                             duplicate and exits 1
  rendered WORK NS           the rendered objects ($WORK/objects-VARIANT.json,
                             from `objects`) have what the chart promises:
                             kinds, env, security, RBAC; NS is the namespace
                             they were rendered for; prints each problem and
                             exits 1
  json-check FILE EXPR       evaluates the Python expression EXPR with `d`
                             the JSON in FILE; prints the result, exits 0
                             when it is truthy and 1 when not
  packets COUNT              prints COUNT packets of one message each as a
                             JSON array, ids chart-test-0 and on
"""
import argparse
import json
import re
import sys

# A key of a block-style mapping: its indent, the "- " of the items it opens, the key.
KEY_RE = re.compile(r'^( *)((?:- +)*)("[^"]*"|\'[^\']*\'|[^\s#:{}\[\],&*!|>\'"%@`-][^:#]*?|-[^\s:#][^:#]*?):(?: |$)')


def stream_to_array(stream_path, out_path):
    """The JSON values of STREAM_PATH, one after another, as one array in OUT_PATH."""
    text, dec, pos, out = open(stream_path).read(), json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = dec.raw_decode(text, pos)
        out.append(obj)
    json.dump(out, open(out_path, "w"))


def duplicate_keys(paths):
    """`path:line: duplicate key KEY` for every repeated key."""
    bad = []
    for path in paths:
        stack, block = [], None  # stack: [indent, keys] of the open mappings
        for n, line in enumerate(open(path), 1):
            text = line.rstrip("\n")
            indent = len(text) - len(text.lstrip(" "))
            if block is not None:
                if not text.strip() or indent > block:
                    continue
                block = None
            if text.startswith("---"):
                stack = []
                continue
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            m = KEY_RE.match(text)
            dashes = re.match(r"^ *((?:- +)*)", text).group(1)
            at = indent + len(dashes)
            # A "- " starts a new item: mappings at or right of it are closed.
            while stack and (stack[-1][0] > at or (dashes and stack[-1][0] >= at)):
                stack.pop()
            if not m:
                continue
            key = m.group(3)
            if not stack or stack[-1][0] < at:
                stack.append([at, set()])
            if key in stack[-1][1]:
                bad.append(f"{path}:{n}: duplicate key {key}")
            stack[-1][1].add(key)
            if re.search(r":\s*[|>][-+0-9]*\s*(#.*)?$", text):
                block = at
    return bad


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def env_of(sts):
    c = sts["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def rendered_problems(work, ns):
    """What the renders of the variants in WORK lack of what the chart promises."""
    problems = []

    def load(name):
        return json.load(open(f"{work}/objects-{name}.json"))

    def check(ok, what):
        if not ok:
            problems.append(what)

    def one(objs, kind):
        found = by_kind(objs, kind)
        check(len(found) == 1, f"expected one {kind}, found {len(found)}")
        return found[0] if found else {}

    default = load("default")
    kinds = sorted(o["kind"] for o in default)
    check(kinds == sorted(["Analyzer"] * 4 + ["ConfigMap"] * 2 + ["PodDisruptionBudget", "Role", "RoleBinding",
          "Service", "Service", "ServiceAccount", "StatefulSet"]), f"default kinds: {kinds}")
    weights = {o["metadata"]["name"]: o["spec"]["weight"] for o in by_kind(default, "Analyzer")}
    check(weights == {"analyzer-a1": 40, "analyzer-a2": 30, "analyzer-a3": 20, "analyzer-a4": 10}, f"analyzer weights {weights}")
    names = {o["metadata"]["name"]: o["spec"].get("displayName") for o in by_kind(default, "Analyzer")}
    check(sorted(names.values()) == ["Analyzer A", "Analyzer B", "Analyzer C", "Analyzer D"], f"display names {names}")
    check(all("simulated" in o["spec"] for o in by_kind(default, "Analyzer")), "default analyzers are simulated")

    sts = one(default, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(sts)
    check(env.get("LD_SOURCE") == "kubernetes", "LD_SOURCE=kubernetes")
    check(env.get("LD_NAMESPACE") == {"fieldRef": {"fieldPath": "metadata.namespace"}}, "LD_NAMESPACE from the downward API")
    check(env.get("POD_NAME") == {"fieldRef": {"fieldPath": "metadata.name"}}, "POD_NAME from the downward API")
    check(env.get("LD_DATA_DIR") == "/data", "LD_DATA_DIR=/data")
    check(env.get("LD_LOG_FORMAT") == "json", "LD_LOG_FORMAT=json")
    check(env.get("LD_CONFIG") == "/etc/logs-distributor/config.yaml", "LD_CONFIG")
    check("LD_ALL_NAMESPACES" not in env, "no LD_ALL_NAMESPACES by default")
    release = sts["metadata"]["labels"]["app.kubernetes.io/instance"]
    check(env.get("LD_ANALYZER_SELECTOR") == f"logs-distributor.dev/release={release}",
          f"LD_ANALYZER_SELECTOR selects the release's label: {env.get('LD_ANALYZER_SELECTOR')}")
    check(env.get("LD_LEASE_NAME") == f"{sts['metadata']['name']}-leader", f"LD_LEASE_NAME: {env.get('LD_LEASE_NAME')}")
    check(all(o["metadata"]["labels"].get("logs-distributor.dev/release") == release for o in by_kind(default, "Analyzer")),
          "the chart's Analyzers carry the release label")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    check(mounts.get("/data") == "data", "/data mounted from the data volume")
    check(mounts.get("/etc/logs-distributor") == "config", "config mounted at /etc/logs-distributor")
    check([t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])] == ["data"], "a volumeClaimTemplate data")
    check(sts["spec"].get("replicas") == 1, "replicas 1")
    check(pod.get("terminationGracePeriodSeconds") == 65,
          f"grace 65s (preStop 5s + drain 10s + handoff 30s + 20s), got {pod.get('terminationGracePeriodSeconds')}")
    check(c.get("lifecycle") == {"preStop": {"sleep": {"seconds": 5}}}, f"preStop sleeps 5s: {c.get('lifecycle')}")
    check(env.get("LD_STATEFULSET") == sts["metadata"]["name"], f"LD_STATEFULSET names the StatefulSet: {env.get('LD_STATEFULSET')}")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness GET /healthz")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness GET /readyz")
    check(c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}], f"one port named http: {c['ports']}")
    check(c["image"] == "logs-distributor:0.1.0", f"image tag = appVersion: {c['image']}")
    sc, psc = c["securityContext"], pod["securityContext"]
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    check(sc.get("capabilities") == {"drop": ["ALL"]}, "all capabilities dropped")
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001, "runAsNonRoot, uid 10001")
    check(psc.get("seccompProfile") == {"type": "RuntimeDefault"}, "seccomp RuntimeDefault")
    lim = c["resources"].get("limits", {}).get("memory")
    check(lim == "256Mi", f"memory limit 256Mi, got {lim}")
    svc = [s for s in by_kind(default, "Service") if s["spec"].get("clusterIP") != "None"]
    check(len(svc) == 1 and [p["name"] for p in svc[0]["spec"]["ports"]] == ["http"], "one Service port, named http")
    role = one(default, "Role")
    rules = role.get("rules")
    check(one(default, "RoleBinding").get("roleRef", {}).get("name") == role["metadata"]["name"], "RoleBinding binds the Role")
    check(not [r for r in rules or [] if {"secrets", "configmaps"} & set(r.get("resources", []))],
          "by default no Secret or ConfigMap may be read")
    handoff_rules = [
        {"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": [sts["metadata"]["name"]], "verbs": ["get"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    ]
    check(all(r in (rules or []) for r in handoff_rules),
          "the Role may get its own StatefulSet (by name) and get, list and watch EndpointSlices (handoff, Service-backed Analyzers)")

    every = one(load("watch-all-namespaces"), "StatefulSet")
    check(env_of(every).get("LD_ANALYZER_SELECTOR") == "", "analyzerSelector \"\" selects every Analyzer")
    allopt = load("all-options")
    check(not by_kind(allopt, "Role") and not by_kind(allopt, "RoleBinding"), "watchAllNamespaces: no Role")
    crole = one(allopt, "ClusterRole")
    named = [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["otel-token", "ld-client-tls", "vector-basic"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["otel-ca"], "verbs": ["get", "list", "watch"]},
    ]
    check(crole.get("rules") == (rules or []) + named,
          "the ClusterRole has the Role's rules and reads only the Secrets and ConfigMaps named in the values")
    crb = one(allopt, "ClusterRoleBinding")
    check(crb.get("subjects", [{}])[0].get("namespace") == ns, "the ClusterRoleBinding names the ServiceAccount's namespace")
    asts = one(allopt, "StatefulSet")
    check(env_of(asts).get("LD_ALL_NAMESPACES") == "true", "LD_ALL_NAMESPACES=true")
    check("replicas" not in asts["spec"], "with an HPA the StatefulSet leaves replicas to it")
    hpa = one(allopt, "HorizontalPodAutoscaler")
    check(hpa["spec"]["scaleTargetRef"]["name"] == asts["metadata"]["name"], "the HPA scales the StatefulSet")
    check(asts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 145, "grace 5s + 1m30s + 30s + 20s")
    policy = [p for p in by_kind(allopt, "NetworkPolicy") if p["metadata"]["name"] == asts["metadata"]["name"]]
    peers = {"podSelector": {"matchLabels": asts["spec"]["selector"]["matchLabels"]}}
    check(policy and any(peers in rule.get("from", []) for rule in policy[0]["spec"]["ingress"]),
          "with networkPolicy.ingressFrom the replicas still reach each other (handoff)")
    for kind in ["NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Deployment"]:
        check(by_kind(allopt, kind), f"all options: a {kind}")
    rule = one(allopt, "PrometheusRule")
    groups = rule.get("spec", {}).get("groups", [])
    check(groups and groups[0].get("name") == "logs-distributor", f"PrometheusRule group logs-distributor: {groups}")
    sm = one(allopt, "ServiceMonitor")
    check(sm.get("spec", {}).get("endpoints", [{}])[0].get("port") == "http", "ServiceMonitor scrapes the http port")
    refs = {d["metadata"]["name"]: d for d in by_kind(allopt, "Deployment")}
    az = {o["metadata"]["name"]: o["spec"] for o in by_kind(allopt, "Analyzer")}
    endpoints = {
        "external": "http://analyzer.example.svc:9000/ingest",
        "otel": "https://otel-collector.observability.svc:4318/v1/logs",
        "vector": "http://vector.observability.svc:8080/",
    }
    check(az.get("collectors", {}).get("service") == {"name": "otel-collector", "port": "otlp-http", "scheme": "http", "path": "/v1/logs"},
          "a Service-backed entry goes to its spec as given")
    for name, spec in az.items():
        if name == "collectors":
            continue
        if name in endpoints:
            check(spec.get("endpoint") == endpoints[name], f"{name}: an endpoint entry is left alone")
            continue
        check("simulated" not in spec, f"{name}: served by its reference analyzer, not simulated")
        svc_name = spec.get("service", {}).get("name")
        check(svc_name in refs and spec["service"].get("port") == "analyzer" and "endpoint" not in spec,
              f"{name}: service {spec.get('service')} is a reference analyzer Service, at its port analyzer")
        if svc_name in refs:
            args = refs[svc_name]["spec"]["template"]["spec"]["containers"][0]["args"]
            check(args[:3] == ["analyzer", "--listen", "0.0.0.0:9000"], f"{svc_name} args {args}")
    check(az.get("otel", {}).get("auth") == {"bearerToken": {"secretKeyRef": {"name": "otel-token", "key": "token"}}},
          "an Analyzer's auth goes to its spec as given")
    dash = [o for o in load("default") if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    check(len(dash) == 1 and json.loads(list(dash[0]["data"].values())[0]).get("uid"), "a dashboard ConfigMap labelled grafana_dashboard=1 holding JSON")

    nop = load("no-persistence")
    nsts = one(nop, "StatefulSet")
    check("volumeClaimTemplates" not in nsts["spec"], "persistence off: no claims")
    check(any(v["name"] == "data" and "emptyDir" in v for v in nsts["spec"]["template"]["spec"]["volumes"]), "persistence off: emptyDir data")
    noa = load("no-analyzers")
    check(not by_kind(noa, "Analyzer") and not by_kind(noa, "ServiceAccount"), "no analyzers, no ServiceAccount")
    check(one(noa, "StatefulSet")["spec"]["template"]["spec"]["serviceAccountName"] == "existing", "an existing ServiceAccount")
    return problems


def json_check(path, expr):
    """Prints EXPR evaluated with `d` the JSON in PATH; true when it is truthy."""
    d = json.load(open(path))
    r = eval(expr)
    print(json.dumps(r) if not isinstance(r, str) else r)
    return bool(r)


def packets(count):
    return [{"id": f"chart-test-{i}", "messages": [{"level": "INFO", "message": f"packet {i}", "source": "chart-test"}]} for i in range(count)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("objects")
    command.add_argument("stream")
    command.add_argument("out")
    command = commands.add_parser("duplicate-keys")
    command.add_argument("files", nargs="+")
    command = commands.add_parser("rendered")
    command.add_argument("work")
    command.add_argument("namespace")
    command = commands.add_parser("json-check")
    command.add_argument("file")
    command.add_argument("expr")
    command = commands.add_parser("packets")
    command.add_argument("count", type=int)
    args = parser.parse_args()
    if args.command == "objects":
        stream_to_array(args.stream, args.out)
    elif args.command in ("duplicate-keys", "rendered"):
        problems = duplicate_keys(args.files) if args.command == "duplicate-keys" else rendered_problems(args.work, args.namespace)
        if problems:
            print("\n".join(problems))
            sys.exit(1)
    elif args.command == "json-check":
        sys.exit(0 if json_check(args.file, args.expr) else 1)
    else:
        print(json.dumps(packets(args.count)))


if __name__ == "__main__":
    main()
