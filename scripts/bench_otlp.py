#!/usr/bin/env python3
"""OTLP ingest next to the OpenTelemetry Collector: `make bench` prints it
after its main table; `scripts/bench_otlp.py` runs it alone.

The same load on both sides: `logs-distributor-loadgen --otlp`, closed loop,
BENCH_OTLP_CONCURRENCY connections (default 16), each request one
ExportLogsServiceRequest of 512 records (the OpenTelemetry SDKs' default
batch) of ~200 B bodies, protobuf, uncompressed. Both forward it over
OTLP/HTTP protobuf to the same sink, a collector whose otlp receiver feeds
a nop exporter:
  - the distributor (release build): POST /v1/logs, one analyzer with
    `format: otlp` (the sink), probed at the sink's health_check
    extension; --fsync always (the default: the 200 goes out once the
    records are on disk) and --fsync never;
  - the collector itself (scripts/otelcol.sh): otlp receiver -> otlp_http
    exporter (its defaults: an in-memory sending queue, 10 consumers; no
    compression, like the distributor's deliveries).
Then the distributor (--fsync always) once more, open loop at half its
peak (64 connections): the client's p99 there.
Each row reports records/s accepted (2xx answers), the client's p50 and
p99, records/s that reached the sink until it had them all, and the
forwarder's peak RSS; the distributor's rows their ratio to the collector.

Environment: BENCH_DURATION (seconds per row, default 10),
BENCH_OTLP_CONCURRENCY (connections, default 16).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BINARY, LOADGEN, ROOT, free_port, proc_status_mib, progress, wait_http  # noqa: E402

DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONCURRENCY = int(os.environ.get("BENCH_OTLP_CONCURRENCY", "16"))
# Connections of the open-loop row at half the peak (enough that none waits for one).
OPEN_LOOP_CONCURRENCY = 64
RECORDS_PER_REQUEST = 512
RECORD_BYTES = 200

SINK_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  nop: {{}}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  telemetry:
    logs: {{level: warn}}
    metrics:
      level: basic
      readers:
        - pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {metrics}}}}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [nop]}}
"""

FORWARDER_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:{sink}
    compression: none
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  telemetry:
    logs: {{level: warn}}
    metrics: {{level: none}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_http]}}
"""

DISTRIBUTOR_CONFIG = """
analyzers:
  - id: sink
    weight: 1
    endpoint: "http://127.0.0.1:{sink}/v1/logs"
    format: otlp
    health_check: {{url: "http://127.0.0.1:{health}/"}}
checkpoint: {{interval: 1h}}
"""


def collector_binary():
    result = subprocess.run([os.path.join(ROOT, "scripts", "otelcol.sh")], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench: scripts/otelcol.sh failed:\n{result.stderr}")
    return result.stdout.strip()


def sink_records(metrics_port):
    """Records the sink's receiver accepted so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r'^otelcol_receiver_accepted_log_records\{[^}]*\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def loadgen(target, rate=None):
    progress(f"loadgen --otlp {target}" + (f" at {rate:.0f} req/s" if rate else ""))
    command = [
        LOADGEN, "--otlp", "--target", target,
        "--concurrency", str(CONCURRENCY if rate is None else OPEN_LOOP_CONCURRENCY),
        "--duration", f"{DURATION}s", "--packets-per-request", "1",
        "--messages-per-packet", str(RECORDS_PER_REQUEST), "--message-bytes", str(RECORD_BYTES),
        "--json", "--quiet",
    ]
    if rate is not None:
        command += ["--rate", f"{rate:.0f}"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


class Rows:
    def __init__(self, work, collector):
        self.work = work
        self.collector = collector
        self.processes = []
        self.results = []  # (name, report, out records/s, peak RSS MiB, note)

    def spawn(self, command, name):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        process = subprocess.Popen(command, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def stop_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes = []

    def start_collector(self, name, template, **ports):
        health = free_port()
        config = os.path.join(self.work, f"{name}.yaml")
        with open(config, "w") as f:
            f.write(template.format(health=health, **ports))
        process = self.spawn([self.collector, "--config", config], name)
        wait_http(f"http://127.0.0.1:{health}/", process, name)
        return process, health

    def start_sink(self):
        port, metrics = free_port(), free_port()
        _, health = self.start_collector("sink", SINK_CONFIG, port=port, metrics=metrics)
        return port, health, metrics

    def row(self, name, forwarder, target, metrics, note, rate=None):
        before = sink_records(metrics)
        started = time.time()
        report = loadgen(target, rate)
        accepted = report["packets_accepted"] * RECORDS_PER_REQUEST
        deadline = time.time() + 120
        while sink_records(metrics) - before < accepted and time.time() < deadline:
            time.sleep(0.05)
        arrived = sink_records(metrics) - before
        out = arrived / (time.time() - started)
        rss = proc_status_mib(forwarder.pid, "VmHWM")
        other = {c: n for c, n in report["status_codes"].items() if c != "200"}
        if arrived < accepted:
            note += f"; only {arrived:,} of {accepted:,} accepted records reached the sink"
        self.results.append((name, report, out, rss, note + (f"; {other}" if other else "")))

    def distributor(self, fsync, rate=None):
        """A distributor row: closed loop, or open loop at `rate` requests/s."""
        sink, health, metrics = self.start_sink()
        label = fsync + ("-half" if rate else "")
        config = os.path.join(self.work, f"distributor-{label}.yaml")
        with open(config, "w") as f:
            f.write(DISTRIBUTOR_CONFIG.format(sink=sink, health=health))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = self.spawn([BINARY, "--listen", f"127.0.0.1:{port}",
                              "--data-dir", os.path.join(self.work, f"data-{label}"),
                              "--config", config, "--fsync", fsync], f"distributor-{label}")
        wait_http(base + "/readyz", process, "the distributor")
        name = f"distributor /v1/logs, fsync {fsync}" + (" @half" if rate else "")
        note = "-> format: otlp" + (f"; open loop {rate:,.0f} req/s" if rate else "")
        self.row(name, process, base + "/v1/logs", metrics, note, rate)
        self.stop_all()

    def forwarding_collector(self):
        sink, _, metrics = self.start_sink()
        port = free_port()
        process, _ = self.start_collector("forwarder", FORWARDER_CONFIG, port=port, sink=sink)
        self.row("collector otlp -> otlp_http", process, f"http://127.0.0.1:{port}/v1/logs", metrics,
                 "in-memory queue")
        self.stop_all()


def run(work):
    """The rows, each with a fresh sink and forwarder."""
    rows = Rows(work, collector_binary())
    try:
        rows.forwarding_collector()
        for fsync in ("always", "never"):
            rows.distributor(fsync)
        # Latency at half the peak of the fsync always row, open loop.
        peak = next(r[1]["packets_per_sec"] for r in rows.results if r[0].endswith("fsync always"))
        rows.distributor("always", rate=peak / 2)
    finally:
        rows.stop_all()
    return rows.results


def print_table(results):
    print(f"\nOTLP ingest: {RECORDS_PER_REQUEST} records x ~{RECORD_BYTES} B per request, protobuf, "
          f"{CONCURRENCY} connections, {DURATION} s per row, to a collector sink (otlp -> nop)\n")
    header = (f"{'row':<42} {'records/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'out rec/s':>11} "
              f"{'peak RSS':>9} {'vs collector':>12}  notes")
    print(header)
    print("-" * (len(header) + 20))
    baseline = next(r[1]["messages_per_sec"] for r in results if r[0].startswith("collector"))
    for name, report, out, rss, note in results:
        latency = report["latency_ms"]
        rate = report["messages_per_sec"]
        ratio = "-" if name.startswith("collector") or "@half" in name else f"{rate / baseline:.2f}x"
        print(f"{name:<42} {rate:>11,.0f} {latency['p50']:>7.2f} {latency['p99']:>7.2f} {out:>11,.0f} "
              f"{rss:>6.0f} MiB {ratio:>12}  {note}")
    print("\nrecords/s: records in 2xx answers per second (loadgen). out rec/s: records that reached the sink"
          " per second, until it had every accepted one. peak RSS: the forwarder (VmHWM).")


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet",
                    "-p", "logs-distributor", "-p", "logs-distributor-loadgen"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="ld-bench-otlp-") as work:
        results = run(work)
    print_table(results)


if __name__ == "__main__":
    main()
