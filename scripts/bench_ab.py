#!/usr/bin/env python3
"""Two builds of the distributor, alternated: is a change faster?

    scripts/bench_ab.py OLD_BINARY NEW_BINARY [ROUNDS]

Each round runs nginx driven by wrk (1 packet per request, the baseline of
that round), then each binary with its default settings and --fsync always,
driven by wrk, then each binary at BENCH_AB_PPR packets per request (default
100) driven by logs-distributor-loadgen; the order of the two binaries swaps
every round, so that the machine's drift falls on both. Per row it prints
requests or packets/s, the wrk latency, non-2xx answers and the mean
fdatasync the distributor's own histogram measured; the loadgen rows also
print the CPU time per packet of the distributor and of the four analyzers
(user + system, over the load and the drain) and their ratio. This VM's
speed moves by tens of percent between runs, the analyzers' CPU with the
distributor's: where both builds' analyzer code is the same, the ratio is
the steadier figure.

With BENCH_AB_RATE set (requests/s; about half the peak is the latency
target's load), each round also runs each binary open loop at that rate
and BENCH_AB_PPR packets per request, and prints the client's p50 and
p99, the distributor's mean answer time (its ingest_duration histogram)
and its fdatasyncs; the end prints each binary's median p99 over the
rounds. A p99 moves a lot from run to run here: compare medians of six
rounds or more, and which binary was lower round by round.

Build each binary with
`cargo build --release` on its commit and copy it aside first, and this
checkout's load generator (`cargo build --release --workspace`). The four
reference analyzers of a row run the binary under test (`logs-distributor
analyzer`). It reuses `make bench`'s helpers: BENCH_DURATION and
BENCH_CONCURRENCY apply.
"""

import os
import re
import statistics
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def metrics(base):
    return urllib.request.urlopen(base + "/metrics").read().decode()


def histogram(text, name):
    """The sum and count of one of the distributor's histograms in `text`."""
    return tuple(float(re.search(rf"^logs_distributor_{name}_{part} (\S+)", text, re.M).group(1))
                 for part in ("sum", "count"))


def mean_fsync_ms(base):
    total, count = histogram(metrics(base), "wal_fsync_duration_seconds")
    return total / max(count, 1) * 1e3


def open_loop(base, ppr, rate):
    """loadgen at `rate` requests/s, with the distributor's own view."""
    report = bench.loadgen(base + "/api/v1/logs", ppr, concurrency=max(bench.CONCURRENCY, 256), rate=rate)
    text = metrics(base)
    answer_sum, answers = histogram(text, "ingest_duration_seconds")
    _, fsyncs = histogram(text, "wal_fsync_duration_seconds")
    return report, answer_sum / max(answers, 1) * 1e3, fsyncs


def cpu_seconds(processes):
    return sum(bench.cpu_seconds(process.pid) for process in processes)


def run(bench_, binary, body):
    """A fresh distributor of `binary` under `body(base)`; answers its result,
    the mean fdatasync, and the CPU seconds the distributor and the analyzers
    spent over the load and the drain."""
    bench.BINARY = binary
    server, base = bench_.start_distributor("always")
    before = (cpu_seconds([server]), cpu_seconds(bench_.analyzers))
    result = body(base)
    fsync = mean_fsync_ms(base)
    bench.wait_drained(base)
    spent = (cpu_seconds([server]) - before[0], cpu_seconds(bench_.analyzers) - before[1])
    bench_.stop(server)
    return result, fsync, spent


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    binaries = {"old": os.path.abspath(sys.argv[1]), "new": os.path.abspath(sys.argv[2])}
    rounds = int(sys.argv[3]) if len(sys.argv) == 4 else 3
    ppr = int(os.environ.get("BENCH_AB_PPR", "100"))
    rate = float(os.environ["BENCH_AB_RATE"]) if os.environ.get("BENCH_AB_RATE") else None
    p99s = {"old": [], "new": []}
    own_binary = bench.BINARY
    bench.nginx_binary()
    bench.wrk_binary()
    work = tempfile.mkdtemp(prefix="ld-bench-ab-")
    bench_ = bench.Bench(work)
    try:
        for n in range(rounds):
            order = ("old", "new") if n % 2 == 0 else ("new", "old")
            bench.BINARY = own_binary  # nginx's analyzers
            nginx, base = bench_.start_nginx()
            baseline = bench.wrk(work, base + "/api/v1/logs")["rps"]
            bench_.stop(nginx)
            line = f"round {n + 1}, 1 pkt/req by wrk: nginx {baseline:,.0f} req/s"
            for name in order:
                w, fsync, _ = run(bench_, binaries[name], lambda base: bench.wrk(work, base + "/api/v1/logs"))
                line += (f" | {name} {w['rps']:,.0f} ({w['rps'] / baseline:.2f}x) p50 {w['latency_ms']['p50']:.2f}"
                         f" p99 {w['latency_ms']['p99']:.2f} ms, non-2xx {w['non_2xx']}, fsync {fsync:.3f} ms")
            print(line, flush=True)
            line = f"round {n + 1}, {ppr} pkts/req by loadgen:"
            for name in order:
                report, fsync, (own, analyzers) = run(bench_, binaries[name],
                                                      lambda base: bench.loadgen(base + "/api/v1/logs", ppr))
                other = {c: k for c, k in report["status_codes"].items() if c != "202"}
                packets = max(bench.answered_2xx(report) * ppr, 1)
                line += (f" | {name} {report['packets_per_sec']:,.0f} pkts/s, fsync {fsync:.3f} ms,"
                         f" CPU {own / packets * 1e6:.2f} us/pkt (analyzers {analyzers / packets * 1e6:.2f},"
                         f" ratio {own / max(analyzers, 1e-9):.2f}) {other or ''}")
            print(line, flush=True)
            if rate is None:
                continue
            line = f"round {n + 1}, {ppr} pkts/req open loop at {rate:,.0f} req/s:"
            for name in order:
                (report, answer_ms, fsyncs), _, _ = run(bench_, binaries[name],
                                                        lambda base: open_loop(base, ppr, rate))
                latency = report["latency_ms"]
                p99s[name].append(latency["p99"])
                line += (f" | {name} p50 {latency['p50']:.2f} p99 {latency['p99']:.2f} ms,"
                         f" mean answer {answer_ms:.2f} ms, {fsyncs:,.0f} fdatasyncs,"
                         f" dropped {report.get('dropped_by_client', 0)}, codes {report['status_codes']}")
            print(line, flush=True)
        if rate is not None:
            print("median p99 at " + f"{rate:,.0f} req/s: "
                  + ", ".join(f"{name} {statistics.median(values):.2f} ms" for name, values in p99s.items()))
    finally:
        bench.BINARY = own_binary
        bench_.stop_all()


if __name__ == "__main__":
    main()
