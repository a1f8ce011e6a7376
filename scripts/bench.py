#!/usr/bin/env python3
"""make bench: throughput and latency of the distributor on loopback.

One run, side by side:
  - baseline: the same HTTP server and load, on a route that does nothing
    (the 404 fallback): the cost of HTTP alone on this machine;
  - the distributor with four zero-latency simulated analyzers (40/30/20/10)
    with --fsync always, interval:10 and never, at 1 and 100 packets per
    request, 3 messages of ~200 bytes each.
For each row: requests/s, packets/s accepted and delivered, messages/s,
p50/p99 ingest latency, and the distributor's peak RSS.

Environment: BENCH_DURATION (seconds per row, default 10),
BENCH_CONCURRENCY (connections, default 64).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "logs-distributor")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))

CONFIG = """
analyzers:
  - {id: analyzer-a1, name: Analyzer A, weight: 40, simulated: {processing_time_ms: 0, failure_rate: 0, health_failure_rate: 0}}
  - {id: analyzer-a2, name: Analyzer B, weight: 30, simulated: {processing_time_ms: 0, failure_rate: 0, health_failure_rate: 0}}
  - {id: analyzer-a3, name: Analyzer C, weight: 20, simulated: {processing_time_ms: 0, failure_rate: 0, health_failure_rate: 0}}
  - {id: analyzer-a4, name: Analyzer D, weight: 10, simulated: {processing_time_ms: 0, failure_rate: 0, health_failure_rate: 0}}
checkpoint: {interval: 1h}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_ready(base, process):
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: the distributor exited with {process.returncode}")
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("bench: the distributor did not become ready")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def overload(server, base):
    """Drives far more than the distributor can deliver (256 connections x
    100 packets per request) and samples its RSS: it must stay flat (503s,
    not growth)."""
    import threading
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_mib(server.pid))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        report = loadgen(base + "/api/v1/logs", 100, concurrency=256)
    finally:
        done.set()
        sampler.join()
    wait_drained(base)
    half = len(samples) // 2
    return report, samples[0], max(samples[:half] or samples), max(samples[half:] or samples)


def loadgen(target, packets_per_request, concurrency=CONCURRENCY):
    command = [
        BINARY, "loadgen", "--target", target, "--concurrency", str(concurrency),
        "--duration", f"{DURATION}s", "--packets-per-request", str(packets_per_request),
        "--messages-per-packet", "3", "--message-bytes", "200", "--json", "--quiet",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def delivered(stats):
    return sum(a["processed_count"] for a in stats["analyzers"].values())


def wait_drained(base):
    deadline = time.time() + 120
    while time.time() < deadline:
        stats = get_json(base + "/api/v1/stats")
        if stats["in_flight"] == 0:
            return stats
        time.sleep(0.05)
    sys.exit("bench: packets still in flight after 120 s")


def start_distributor(work, config, fsync):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = os.path.join(work, f"data-{fsync.replace(':', '-')}")
    log = open(os.path.join(work, f"distributor-{fsync.replace(':', '-')}.log"), "w")
    server = subprocess.Popen(
        [BINARY, "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--config", config, "--fsync", fsync],
        stderr=log,
    )
    wait_ready(base, server)
    return server, base


def stop(server):
    server.terminate()
    server.wait(timeout=60)


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="ld-bench-")
    config = os.path.join(work, "bench.yaml")
    with open(config, "w") as f:
        f.write(CONFIG)
    rows = []
    peak = {}
    overloaded = None
    try:
        for fsync in ("always", "interval:10", "never"):
            server, base = start_distributor(work, config, fsync)
            try:
                for packets_per_request in (1, 100):
                    if fsync == "always":
                        baseline = loadgen(base + "/bench/null", packets_per_request)
                        rows.append(("HTTP alone (404 route)", packets_per_request, baseline, None))
                    baseline = next(r for n, p, r, e in rows if e is None and p == packets_per_request)
                    before = get_json(base + "/api/v1/stats")
                    started = time.time()
                    report = loadgen(base + "/api/v1/logs", packets_per_request)
                    after = wait_drained(base)
                    elapsed = time.time() - started
                    delivered_per_sec = (delivered(after) - delivered(before)) / elapsed
                    rows.append((f"fsync {fsync}", packets_per_request, report, (delivered_per_sec, baseline)))
                if fsync == "always":
                    overloaded = overload(server, base)
                peak[fsync] = peak_rss_mib(server.pid)
            finally:
                stop(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nlogs-distributor bench: {os.cpu_count()} cores, {DURATION} s per row, "
          f"{CONCURRENCY} connections, 3 messages x ~200 B per packet, loopback\n")
    header = (f"{'row':<24} {'pkts/req':>8} {'req/s':>9} {'pkts/s in':>10} {'pkts/s out':>10} "
              f"{'msgs/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'vs HTTP':>8}")
    print(header)
    print("-" * len(header))
    for name, ppr, report, extra in sorted(rows, key=lambda r: r[1]):
        latency = report["latency_ms"]
        if extra is None:
            out, ratio, packets_in, messages = "-", "1.00x", "-", "-"
        else:
            delivered_per_sec, baseline = extra
            out = f"{delivered_per_sec:,.0f}"
            packets_in = f"{report['packets_per_sec']:,.0f}"
            messages = f"{report['messages_per_sec']:,.0f}"
            ratio = f"{report['requests_per_sec'] / baseline['requests_per_sec']:.2f}x"
        print(f"{name:<24} {ppr:>8} {report['requests_per_sec']:>9,.0f} {packets_in:>10} {out:>10} "
              f"{messages:>10} {latency['p50']:>7.2f} {latency['p99']:>7.2f} {ratio:>8}")
    print("\npeak RSS: " + ", ".join(f"fsync {mode} {mib:.0f} MiB" for mode, mib in peak.items()))
    report, start, first_half, second_half = overloaded
    codes = report["status_codes"]
    print(f"overload (256 connections x 100 packets, fsync always): {codes.get('202', 0):,} accepted, "
          f"{codes.get('503', 0):,} refused with 503; RSS {start:.0f} MiB at start, "
          f"peak {first_half:.0f} MiB in the first half, {second_half:.0f} MiB in the second half")
    refused = {}
    for name, _, report, extra in rows:
        if extra:
            for code, n in report["status_codes"].items():
                if code != "202":
                    refused[f"{name} {code}"] = refused.get(f"{name} {code}", 0) + n
    if refused:
        print(f"non-202 answers: {refused}")


if __name__ == "__main__":
    main()
