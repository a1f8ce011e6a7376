#!/usr/bin/env python3
"""make bench: the distributor next to nginx, on loopback.

One run, side by side, in front of the same FOUR REFERENCE ANALYZER processes
(`logs-distributor analyzer`, zero latency, real HTTP):
  - the distributor (release build) with its default settings (no batch
    settings written: batch.max_packets 256, linger 2ms), analyzers weighted
    40/30/20/10, with --fsync always, interval:10 and never;
  - nginx (Debian's package, installed with apt-get if missing) as a plain
    reverse proxy: upstream of the same four analyzers weighted 4/3/2/1,
    keepalive 64, `proxy_next_upstream error timeout`, `listen ... reuseport`
    (each worker its own listening socket), /api/v1/logs -> /;
at 1, 10 and 100 packets per request, 3 messages of ~200 bytes each, driven by
`logs-distributor-loadgen` (closed loop, BENCH_CONCURRENCY connections).
Every row gets a fresh distributor or nginx, so its peak RSS is its own.

Extra rows:
  - `wrk` against nginx at 1 packet per request, next to loadgen's figure for
    the same target: is the load generator the bottleneck? And `wrk` against
    the distributor (default settings), whose ratio is taken against nginx
    driven by wrk: the same client on both sides;
  - the distributor (fsync always) with `batch.max_packets: 1`: one packet
    per request to an analyzer; and with `batch.linger: 0s`: batches of what
    has queued up, without waiting up to 2 ms for more (the linger delays
    the delivery, never the 202);
  - open loop at half the peak of the default row and of the linger 0 row:
    latency there;
  - BENCH_WRK_ROUNDS (default 3) rounds of nginx then the distributor, both
    driven by wrk at 1 packet per request: the ratio round by round;
  - per vCPU: MiB/s of 256-byte messages (one per packet, 100 packets per
    request) taken in and delivered per CPU-second of the distributor;
  - overload: 256 connections x 100 packets against one distributor, whose RSS
    must stay flat (503s, not growth);
  - OTLP ingest (scripts/bench_otlp.py): POST /v1/logs at 512 records per
    request next to an OpenTelemetry Collector forwarding the same load, both
    to the same collector sink; a table of its own.

Environment: BENCH_DURATION (seconds per row, default 10),
BENCH_CONCURRENCY (connections, default 64), BENCH_WRK_ROUNDS (alternated
wrk rounds, default 3), BENCH_CRITERION=1 to also run
the criterion micro-benchmarks in quick mode at the end.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "logs-distributor")
LOADGEN = os.path.join(ROOT, "target", "release", "logs-distributor-loadgen")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
# Alternated rounds of nginx then the distributor, both driven by wrk.
WRK_ROUNDS = int(os.environ.get("BENCH_WRK_ROUNDS", "3"))
PACKETS_PER_REQUEST = (1, 10, 100)
FSYNC_MODES = ("always", "interval:10", "never")
WEIGHTS = (40, 30, 20, 10)
MESSAGES_PER_PACKET = 3
MESSAGE_BYTES = 200
# Message size of the per-vCPU figure (the size sizing guides quote).
PER_VCPU_MESSAGE_BYTES = 256
# The batch sections of the extra rows (fsync always), by the name their rows
# carry; the other rows write none and run with the defaults (batch.max_packets
# 256, batch.linger 2ms).
BATCH_VARIANTS = {
    "max_packets 1": "{max_packets: 1}",  # one packet per request to an analyzer
    "linger 0": "{linger: 0s}",  # batches without waiting for them to fill
}
# The variants whose peak also gets an open-loop row at half of it (None: the defaults).
HALF_PEAK_VARIANTS = (None, "linger 0")

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # A 100-packet body is ~80 KB: keep it in memory, not in a temp file.
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    keepalive_requests 1000000;
    upstream analyzers {{
{servers}
        keepalive 64;
    }}
    server {{
        # One listening socket per worker: without it, the burst of
        # connections a load generator opens at start can all land on one
        # worker (loadgen's 64 did, wrk's split about evenly), halving nginx.
        listen 127.0.0.1:{port} reuseport;
        location /api/v1/logs {{
            proxy_pass http://analyzers/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def server_p99_ms(base):
    """The upper bound of the ingest-duration bucket that holds the 99th
    percentile, from the distributor's own histogram: its answer time without
    the load generator's or the kernel's queueing on the client side."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets = [(float(le), float(n)) for le, n in
               re.findall(r'^logs_distributor_ingest_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)]
    total = dict(buckets).get(float("inf"), 0)
    bound = next((le for le, n in sorted(buckets) if total and n >= 0.99 * total), None)
    return None if bound is None else bound * 1000


def wait_http(url, process, what, any_status=False):
    """Waits for a 2xx answer (any answer with any_status)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: {what} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            if any_status:
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    sys.exit(f"bench: {what} did not come up")


def proc_status_mib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def progress(text):
    print(f"bench: {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def loadgen(target, packets_per_request, concurrency=CONCURRENCY, rate=None,
            messages_per_packet=MESSAGES_PER_PACKET, message_bytes=MESSAGE_BYTES):
    progress(f"loadgen {target} {packets_per_request} pkts/req" + (f" at {rate:.0f} req/s" if rate else ""))
    command = [
        LOADGEN, "--target", target, "--concurrency", str(concurrency),
        "--duration", f"{DURATION}s", "--packets-per-request", str(packets_per_request),
        "--messages-per-packet", str(messages_per_packet), "--message-bytes", str(message_bytes),
        "--json", "--quiet",
    ]
    if rate is not None:
        command += ["--rate", f"{rate:.0f}"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def answered_2xx(report):
    return sum(n for code, n in report["status_codes"].items() if code.startswith("2"))


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


class Bench:
    def __init__(self, work):
        self.work = work
        self.processes = []
        self.analyzers = []
        self.analyzer_ports = []
        self.counter = 0

    def spawn(self, command, name):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        process = subprocess.Popen(command, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def stop(self, process):
        if process.poll() is None and process not in self.analyzers:
            progress(f"stopping {' '.join(process.args[:2])}")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self):
        for process in list(self.processes):
            self.stop(process)

    def start_analyzers(self):
        """Fresh analyzers for every row: they remember every id they saw."""
        for process in self.analyzers:
            self.stop(process)
        self.analyzers = []
        self.analyzer_ports = []
        for n in range(len(WEIGHTS)):
            port = free_port()
            process = self.spawn([BINARY, "analyzer", "--listen", f"127.0.0.1:{port}",
                                  "--name", f"analyzer-{n + 1}"], f"analyzer-{n + 1}")
            wait_http(f"http://127.0.0.1:{port}/health", process, "an analyzer")
            self.analyzers.append(process)
            self.analyzer_ports.append(port)

    def start_distributor(self, fsync, variant=None):
        """A fresh distributor over fresh analyzers, with the batch section of
        BATCH_VARIANTS[variant] (None: the defaults)."""
        self.counter += 1
        name = f"distributor-{self.counter}-{fsync.replace(':', '-')}"
        self.start_analyzers()
        config = os.path.join(self.work, f"distributor-{self.counter}.yaml")
        with open(config, "w") as f:
            f.write("analyzers:\n")
            for n, (port, weight) in enumerate(zip(self.analyzer_ports, WEIGHTS)):
                f.write(f'  - {{id: analyzer-{n + 1}, name: Analyzer {n + 1}, weight: {weight}, '
                        f'endpoint: "http://127.0.0.1:{port}/"}}\n')
            f.write("checkpoint: {interval: 1h}\n")
            if variant:
                f.write(f"batch: {BATCH_VARIANTS[variant]}\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = self.spawn([BINARY, "--listen", f"127.0.0.1:{port}",
                              "--data-dir", os.path.join(self.work, f"data-{self.counter}"),
                              "--config", config, "--fsync", fsync], name)
        wait_http(base + "/readyz", process, "the distributor")
        return process, base

    def start_nginx(self):
        self.counter += 1
        self.start_analyzers()
        directory = os.path.join(self.work, f"nginx-{self.counter}")
        os.makedirs(directory)
        port = free_port()
        servers = "\n".join(f"        server 127.0.0.1:{p} weight={w // 10};"
                            for p, w in zip(self.analyzer_ports, WEIGHTS))
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=directory, port=port, servers=servers))
        process = self.spawn([nginx_binary(), "-c", conf, "-p", directory, "-e",
                              os.path.join(directory, "error.log")], f"nginx-{self.counter}")
        wait_http(f"http://127.0.0.1:{port}/", process, "nginx", any_status=True)
        return process, f"http://127.0.0.1:{port}"


def nginx_binary():
    found = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx")
    if found:
        return found
    print("bench: nginx missing; installing it with apt-get", file=sys.stderr)
    subprocess.run("apt-get update -qq && (apt-get install -y -qq nginx-light || apt-get install -y -qq nginx)",
                   shell=True, check=True, stdout=subprocess.DEVNULL)
    # The package's own service is not wanted: the bench runs its own nginx.
    subprocess.run(["service", "nginx", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def wrk_binary():
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk missing; installing it with apt-get", file=sys.stderr)
    subprocess.run("apt-get update -qq && apt-get install -y -qq wrk", shell=True, check=True,
                   stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


def one_packet_body():
    words = "request served upstream cache miss latency user session token refreshed queue depth".split()
    text = ""
    i = 0
    while len(text) < MESSAGE_BYTES:
        text += words[i % len(words)] + " "
        i += 1
    text = text[:MESSAGE_BYTES]
    messages = [{"level": "INFO", "message": text, "source": "wrk", "metadata": {"worker": 0}}
                for _ in range(MESSAGES_PER_PACKET)]
    return json.dumps([{"id": "wrk-1", "messages": messages}], separators=(",", ":"))


def parse_wrk_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def variant_suffix(variant):
    """How a row names its batch variant: ", linger 0"; nothing for the defaults."""
    return f", {variant}" if variant else ""


def wrk_trouble(w):
    """Non-2xx answers and socket errors of a wrk run, for a row's notes."""
    return (f"; non-2xx {w['non_2xx']}" if w["non_2xx"] else "") + (f"; {w['errors']}" if w["errors"] else "")


def wrk(work, target):
    progress(f"wrk {target}")
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT.format(body=one_packet_body()))
    result = subprocess.run([wrk_binary(), "-t", "2", "-c", str(CONCURRENCY), "-d", f"{DURATION}s",
                             "--latency", "-s", script, target],
                            capture_output=True, text=True, check=True)
    out = result.stdout
    if result.stderr.strip():
        sys.exit(f"bench: wrk: {result.stderr.strip()}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentile = {p: parse_wrk_ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps,
            "latency_ms": {"p50": percentile.get("50", float("nan")), "p99": percentile.get("99", float("nan"))},
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0, "errors": errors.group(0) if errors else ""}


def distributor_by_wrk(bench, work):
    """The distributor (default settings) driven by wrk, as nginx is in the
    "nginx (wrk)" row: the same client on both sides of the ratio."""
    server, base = bench.start_distributor("always")
    w = wrk(work, base + "/api/v1/logs")
    wait_drained(base)
    rss = proc_status_mib(server.pid, "VmHWM")
    bench.stop(server)
    return ("distributor (wrk)", 1, w["rps"], w, rss, "vs nginx (wrk)" + wrk_trouble(w))


def wrk_rounds(bench, work):
    """WRK_ROUNDS rounds of nginx then the distributor (default settings),
    each driven by wrk at 1 packet per request: the ratio of one round is
    less exposed to the machine's drift than two rows far apart in a run."""
    rounds = []
    for _ in range(WRK_ROUNDS):
        nginx, base = bench.start_nginx()
        baseline = wrk(work, base + "/api/v1/logs")
        bench.stop(nginx)
        distributor = distributor_by_wrk(bench, work)[3]
        rounds.append((baseline["rps"], distributor["rps"], distributor["non_2xx"]))
    return rounds


def cpu_seconds(pid):
    """User + system CPU time of a process so far, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_vcpu(bench):
    """Log text per CPU-second of the distributor (default settings, fsync
    always) at PER_VCPU_MESSAGE_BYTES-byte messages, one per packet, 100
    packets per request: the figure sizing guides quote per vCPU. The CPU is
    the distributor's own (utime + stime over the load and the drain), so the
    load generator and the analyzers on the same cores do not count."""
    server, base = bench.start_distributor("always")
    before_stats = get_json(base + "/api/v1/stats")
    before_cpu = cpu_seconds(server.pid)
    started = time.time()
    report = loadgen(base + "/api/v1/logs", 100, messages_per_packet=1, message_bytes=PER_VCPU_MESSAGE_BYTES)
    after_stats = wait_drained(base)
    cpu = cpu_seconds(server.pid) - before_cpu
    wall = time.time() - started
    bench.stop(server)
    out = delivered(after_stats) - delivered(before_stats)
    mib = out * PER_VCPU_MESSAGE_BYTES / 2**20
    return {"accepted_per_sec": report["packets_per_sec"], "delivered": out, "cpu": cpu, "wall": wall,
            "mib_per_cpu_sec": mib / cpu if cpu else float("nan"), "cores": cpu / wall,
            "codes": report["status_codes"]}


def overload(bench):
    server, base = bench.start_distributor("always")
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(proc_status_mib(server.pid, "VmRSS"))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        report = loadgen(base + "/api/v1/logs", 100, concurrency=256)
    finally:
        done.set()
        sampler.join()
    wait_drained(base)
    bench.stop(server)
    half = len(samples) // 2
    return report, samples[0], max(samples[:half] or samples), max(samples[half:] or samples)


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet",
                    "-p", "logs-distributor", "-p", "logs-distributor-loadgen"], cwd=ROOT, check=True)
    nginx_binary()
    wrk_binary()
    work = tempfile.mkdtemp(prefix="ld-bench-")
    bench = Bench(work)
    rows = []  # (system, ppr, packets/s, p50, p99, rss MiB, note)
    peak = {}  # packets/s by (system, ppr)
    try:
        for ppr in PACKETS_PER_REQUEST:
            nginx, base = bench.start_nginx()
            report = loadgen(base + "/api/v1/logs", ppr)
            workers = children(nginx.pid)
            rss = sum(proc_status_mib(pid, "VmHWM") for pid in workers)
            bench.stop(nginx)
            pps = answered_2xx(report) * ppr / report["duration_secs"]
            peak[("nginx", ppr)] = pps
            other = {c: n for c, n in report["status_codes"].items() if not c.startswith("2")}
            rows.append(("nginx", ppr, pps, report, rss, f"{len(workers)} workers" + (f"; {other}" if other else "")))
            if ppr == 1:
                nginx, base = bench.start_nginx()
                w = wrk(work, base + "/api/v1/logs")
                bench.stop(nginx)
                peak[("nginx (wrk)", ppr)] = w["rps"]
                rows.append(("nginx (wrk)", ppr, w["rps"], w, None, f"wrk/loadgen {w['rps'] / pps:.2f}x" + wrk_trouble(w)))
            setups = [(mode, None) for mode in FSYNC_MODES]
            setups += [("always", variant) for variant in BATCH_VARIANTS]
            for fsync, variant in setups:
                server, base = bench.start_distributor(fsync, variant)
                before = get_json(base + "/api/v1/stats")
                cpu_before = cpu_seconds(server.pid)
                started = time.time()
                report = loadgen(base + "/api/v1/logs", ppr)
                after = wait_drained(base)
                packets_out = delivered(after) - delivered(before)
                out = packets_out / (time.time() - started)
                cpu_us = (cpu_seconds(server.pid) - cpu_before) * 1e6 / max(packets_out, 1)
                rss = proc_status_mib(server.pid, "VmHWM")
                bench.stop(server)
                name = f"distributor {fsync}{variant_suffix(variant)}"
                peak[(name, ppr)] = report["packets_per_sec"]
                other = {c: n for c, n in report["status_codes"].items() if c != "202"}
                rows.append((name, ppr, report["packets_per_sec"], report, rss,
                             f"out {out:,.0f}/s; {cpu_us:.2f} us CPU/pkt" + (f"; {other}" if other else "")))
                if ppr == 1 and fsync == "always" and variant is None:
                    rows.append(distributor_by_wrk(bench, work))
            # Latency at half the peak, open loop (fsync always).
            for variant in HALF_PEAK_VARIANTS:
                half = peak[(f"distributor always{variant_suffix(variant)}", ppr)] / 2 / ppr
                server, base = bench.start_distributor("always", variant)
                report = loadgen(base + "/api/v1/logs", ppr, concurrency=max(CONCURRENCY, 256), rate=half)
                wait_drained(base)
                server_p99 = server_p99_ms(base)
                rss = proc_status_mib(server.pid, "VmHWM")
                bench.stop(server)
                other = {c: n for c, n in report["status_codes"].items() if c != "202"}
                dropped = report["dropped_by_client"]
                rows.append((f"{variant or 'defaults'} @half",
                             ppr, report["packets_per_sec"], report, rss,
                             f"open loop {half:,.0f} req/s; server p99 "
                             + ("n/a" if server_p99 is None else f"<= {server_p99:g} ms")
                             + (f"; dropped {dropped}" if dropped else "")
                             + (f"; {other}" if other else "")))
        rounds = wrk_rounds(bench, work)
        sizing = per_vcpu(bench)
        overloaded = overload(bench)
        import bench_otlp
        otlp_rows = bench_otlp.run(work)
    finally:
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nlogs-distributor bench: {os.cpu_count()} cores, {DURATION} s per row, {CONCURRENCY} connections, "
          f"{MESSAGES_PER_PACKET} messages x ~{MESSAGE_BYTES} B per packet, loopback, "
          f"4 reference analyzers over HTTP\n")
    header = (f"{'row':<44} {'pkts/req':>8} {'pkts/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'peak RSS':>9} {'vs nginx':>8}  notes")
    print(header)
    print("-" * (len(header) + 20))
    for name, ppr, pps, report, rss, note in rows:
        latency = report["latency_ms"]
        baseline = peak[("nginx (wrk)" if "(wrk)" in name else "nginx", ppr)]
        ratio = "-" if name.startswith("nginx") or "@half" in name else f"{pps / baseline:.2f}x"
        rss_text = "-" if rss is None else f"{rss:.0f} MiB"
        print(f"{name:<44} {ppr:>8} {pps:>10,.0f} {latency['p50']:>7.2f} {latency['p99']:>7.2f} "
              f"{rss_text:>9} {ratio:>8}  {note}")
    print("\npkts/s: packets accepted per second by the load generator (nginx: packets in 2xx answers;"
          " wrk rows: requests/s of 1 packet). peak RSS: the distributor process (VmHWM); nginx: sum of"
          " its workers' VmHWM. vs nginx: pkts/s over nginx's at the same packets per request"
          " (a wrk row: over nginx's driven by wrk)."
          " \"out\": packets delivered to analyzers per second until the queue drained; us CPU/pkt: the"
          " distributor's CPU time (user + system, load and drain) per packet delivered. server p99: the"
          " upper bound of the distributor's ingest_duration_seconds bucket holding its 99th percentile.")
    report, start, first_half, second_half = overloaded
    codes = report["status_codes"]
    print(f"overload (256 connections x 100 packets, fsync always): {codes.get('202', 0):,} accepted, "
          f"{codes.get('503', 0):,} refused with 503; RSS {start:.0f} MiB at start, "
          f"peak {first_half:.0f} MiB in the first half, {second_half:.0f} MiB in the second half")

    if rounds:
        print("wrk, alternated rounds (nginx / distributor requests/s, ratio, distributor non-2xx): "
              + "; ".join(f"{n:,.0f} / {d:,.0f}, {d / n:.2f}x, {bad}" for n, d, bad in rounds))
    print(f"per vCPU ({PER_VCPU_MESSAGE_BYTES}-byte messages, one per packet, 100 packets per request, "
          f"default settings, fsync always): {sizing['mib_per_cpu_sec']:.1f} MiB/s of message text taken in "
          f"and delivered per CPU-second of the distributor ({sizing['accepted_per_sec']:,.0f} packets/s "
          f"accepted, {sizing['delivered']:,} delivered, the distributor busy {sizing['cores']:.2f} cores; "
          f"answers {sizing['codes']})")

    bench_otlp.print_table(otlp_rows)

    if os.environ.get("BENCH_CRITERION") == "1":
        for name in ("routing", "validation"):
            subprocess.run(["cargo", "bench", "--locked", "--bench", name, "--", "--quick"], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
