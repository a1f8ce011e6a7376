//! Request bodies for `POST /api/v1/logs`.

use serde_json::{json, Value};

/// A valid packet with `messages` INFO messages; `id` left out when `None`.
pub(crate) fn packet(id: Option<&str>, messages: usize) -> Value {
    let messages: Vec<Value> = (0..messages)
        .map(|i| json!({"level": "INFO", "message": format!("message {i}"), "source": "tests"}))
        .collect();
    match id {
        Some(id) => json!({"id": id, "messages": messages}),
        None => json!({"messages": messages}),
    }
}

/// `count` valid one-message packets with ids `{prefix}-0`, `{prefix}-1`, ...
pub(crate) fn packets(prefix: &str, count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| packet(Some(&format!("{prefix}-{i}")), 1))
            .collect(),
    )
}

/// `count` one-message packets with ids `{prefix}-000000`, `{prefix}-000001`...
/// starting at `from`, and those ids.
pub(crate) fn numbered_packets(prefix: &str, from: usize, count: usize) -> (Value, Vec<String>) {
    let ids: Vec<String> = (from..from + count).map(|i| format!("{prefix}-{i:06}")).collect();
    let body = Value::Array(ids.iter().map(|id| packet(Some(id), 1)).collect());
    (body, ids)
}

/// One valid one-message packet per id, each message of about `bytes` bytes.
pub(crate) fn sized_packets(ids: &[String], bytes: usize) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| {
                let filler = "x".repeat(bytes.saturating_sub(id.len() + 1));
                json!({
                    "id": id,
                    "messages": [{"level": "INFO", "message": format!("{id} {filler}"), "source": "fault-tests"}],
                })
            })
            .collect(),
    )
}
