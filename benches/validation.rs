//! Bytes/s through `read_json_array` + `Limits::validate` (what a request
//! to `/api/v1/logs` goes through) for one body of 100 packets, 3 messages
//! of ~200 bytes each: with timestamps, without (the shape `make bench`
//! sends: the distributor writes the time it took them in), and split by
//! serde_json (`split_json_array`, the way of bodies with an unusual
//! packet).
//!
//! `cargo bench --bench validation` (add `-- --quick` for a short run).

use chrono::Utc;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use logs_distributor::model::{read_json_array, split_json_array, Limits, RawPacket};

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

fn body(packets: usize, messages: usize, message_bytes: usize, timestamps: bool) -> Vec<u8> {
    let packets: Vec<serde_json::Value> = (0..packets)
        .map(|p| {
            let messages: Vec<serde_json::Value> = (0..messages)
                .map(|m| {
                    let mut message = serde_json::json!({
                        "level": LEVELS[(p + m) % LEVELS.len()],
                        "message": text(message_bytes, p * messages + m),
                        "source": "bench",
                        "metadata": {"worker": p % 8},
                    });
                    if timestamps {
                        message["timestamp"] = "2026-01-01T00:00:00Z".into();
                    }
                    message
                })
                .collect();
            serde_json::json!({"id": format!("bench-{p}"), "messages": messages})
        })
        .collect();
    serde_json::to_vec(&packets).expect("the body serializes")
}

/// How many of `packets` are valid.
fn valid<'a>(packets: impl Iterator<Item = RawPacket<'a>>) -> usize {
    let limits = Limits::default();
    let now = Utc::now();
    packets
        .enumerate()
        .filter_map(|(i, packet)| limits.validate(i, packet, now).ok())
        .count()
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validation");
    for timestamps in [true, false] {
        let body = body(100, 3, 200, timestamps);
        group.throughput(Throughput::Bytes(body.len() as u64));
        let shape = if timestamps { "timestamped" } else { "untimed" };
        group.bench_function(
            format!("read_json_array + validate, 100 packets x 3 x 200 B, {shape}"),
            |b| {
                b.iter(|| {
                    let packets = read_json_array(black_box(&body), 100).expect("a JSON array within limits");
                    assert_eq!(valid(packets.into_iter()), 100);
                })
            },
        );
        group.bench_function(
            format!("split_json_array + validate, 100 packets x 3 x 200 B, {shape}"),
            |b| {
                b.iter(|| {
                    let raw = split_json_array(black_box(&body), 100).expect("a JSON array within limits");
                    assert_eq!(valid(raw.into_iter().map(RawPacket::from)), 100);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
