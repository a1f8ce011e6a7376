//! ns per `RoutingTable::pick`: the 4 default analyzers (40/30/20/10) and a
//! fleet of 100 analyzers with varied weights.
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
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
