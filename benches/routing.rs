//! ns per `RoutingTable::pick`: the 4 default analyzers (40/30/20/10), a
//! fleet of 100 analyzers with varied weights, and 3 Service-backed
//! analyzers of 10 endpoints each beside 2 plain ones (grouped).
//!
//! `cargo bench --bench routing` (add `-- --quick` for a short run).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use logs_distributor::dispatch::routing::RoutingTable;

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("RoutingTable::pick");
    group.throughput(Throughput::Elements(1));

    let four = RoutingTable::new([("a", 40u32), ("b", 30), ("c", 20), ("d", 10)]);
    group.bench_function("4 analyzers 40/30/20/10", |b| b.iter(|| black_box(four.pick())));

    // Weights 1..=100 spread over the fleet (gcd 1, so the cycle is long).
    let hundred = RoutingTable::new((0..100u32).map(|i| (i, (i * 37) % 100 + 1)));
    group.bench_function("100 analyzers, weights 1..100", |b| {
        b.iter(|| black_box(hundred.pick()))
    });

    // Groups of 10 endpoints (30/20/10) beside two plain analyzers (25/15).
    let grouped = RoutingTable::grouped(
        [(30u32, 10u32), (20, 10), (10, 10), (25, 1), (15, 1)]
            .into_iter()
            .enumerate()
            .map(|(g, (weight, size))| ((0..size).map(|m| (g, m)).collect::<Vec<_>>(), weight)),
    );
    group.bench_function("3 groups of 10 endpoints + 2 analyzers", |b| {
        b.iter(|| black_box(grouped.pick()))
    });
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
