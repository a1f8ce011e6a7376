//! What the handoff tests share: the `handoff_packets_total` counters of a
//! distributor, handoff request bodies, the adopt command, and the audit of
//! acknowledged ids against the analyzers' records.

use crate::support::http::Api;
use crate::support::processes::{command, run, Finished};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// `logs_distributor_handoff_packets_total{outcome=OUTCOME}` of `api`.
pub(crate) async fn handoff_packets(api: &Api, outcome: &str) -> u64 {
    let reply = api.get("/metrics").await;
    reply.expect(200);
    let series = format!("logs_distributor_handoff_packets_total{{outcome=\"{outcome}\"}} ");
    reply
        .text
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}

/// A `POST /internal/v1/handoff` body from `origin` with one packet per
/// `(seq, id, retry_count)`.
pub(crate) fn handoff_body(origin: &str, packets: &[(u64, &str, u32)]) -> Value {
    let packets: Vec<Value> = packets
        .iter()
        .map(|(seq, id, retries)| {
            json!({
                "seq": seq,
                "id": id,
                "messages": [{"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "source": "handoff-tests", "message": format!("handed {id}")}],
                "retry_count": retries,
            })
        })
        .collect();
    json!({"origin": origin, "packets": packets})
}

/// `logs-distributor handoff --data-dir DIR --to URL... EXTRA...`, to its end.
pub(crate) async fn adopt(data_dir: &Path, to: &[String], extra: &[&str]) -> Finished {
    let mut cmd = command();
    cmd.arg("handoff").arg("--data-dir").arg(data_dir);
    for url in to {
        cmd.arg("--to").arg(url);
    }
    cmd.args(extra);
    tokio::task::spawn_blocking(move || run(&mut cmd, None, Duration::from_secs(120)))
        .await
        .expect("the adopt command's task")
}

/// The adopt command's JSON line.
pub(crate) fn adopt_report(finished: &Finished) -> Value {
    serde_json::from_str(finished.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the adopt command printed no JSON ({e}): {:?}\nstderr:\n{}",
            finished.stdout, finished.stderr
        )
    })
}

/// Every acknowledged id against the ids the analyzers recorded: the ids
/// missing, and those recorded more than once.
pub(crate) fn audit(acknowledged: &[String], recorded: &[String]) -> (Vec<String>, Vec<String>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in recorded {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let missing = acknowledged
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .cloned()
        .collect();
    let mut twice: Vec<String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.to_string())
        .collect();
    twice.sort();
    (missing, twice)
}
