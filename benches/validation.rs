//! Bytes/s through `split_json_array` + `Limits::validate` for one request
//! body of 100 packets, 3 messages of ~200 bytes each (the shape `make
//! bench` sends).
//!
//! `cargo bench --bench validation` (add `-- --quick` for a short run).

use chrono::Utc;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use logs_distributor::model::{split_json_array, Limits};

const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];

/// A message text of exactly `length` ASCII bytes, varied per call.
fn text(length: usize, seed: usize) -> String {
    let words = [
        "request", "served", "upstream", "cache", "miss", "latency", "session", "retry",
    ];
    let mut out = String::with_capacity(length + 16);
    let mut i = seed;
    while out.len() < length {
        out.push_str(words[i % words.len()]);
        out.push(' ');
        i += 3;
    }
    out.truncate(length);
    out
}

fn body(packets: usize, messages: usize, message_bytes: usize) -> Vec<u8> {
    let packets: Vec<serde_json::Value> = (0..packets)
        .map(|p| {
            let messages: Vec<serde_json::Value> = (0..messages)
                .map(|m| {
                    serde_json::json!({
                        "level": LEVELS[(p + m) % LEVELS.len()],
                        "message": text(message_bytes, p * messages + m),
                        "source": "bench",
                        "timestamp": "2026-01-01T00:00:00Z",
                        "metadata": {"worker": p % 8},
                    })
                })
                .collect();
            serde_json::json!({"id": format!("bench-{p}"), "messages": messages})
        })
        .collect();
    serde_json::to_vec(&packets).expect("the body serializes")
}

fn validate(c: &mut Criterion) {
    let body = body(100, 3, 200);
    let limits = Limits::default();
    let now = Utc::now();
    let mut group = c.benchmark_group("validation");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("split_json_array + validate, 100 packets x 3 x 200 B", |b| {
        b.iter(|| {
            let raw = split_json_array(black_box(&body), 100).expect("a JSON array within limits");
            let valid = raw
                .iter()
                .enumerate()
                .filter(|(i, packet)| limits.validate(*i, packet, now).is_ok())
                .count();
            assert_eq!(valid, 100);
            valid
        })
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
