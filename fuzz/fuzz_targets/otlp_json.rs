//! OTLP/JSON request bodies: read and mapped to packets
//! (`logs_distributor::otlp::from_json`). Must never panic; every packet
//! must hold the limits and survive a round trip, and every record of a
//! body that reads is accepted or rejected.
#![no_main]

mod otlp_checks;
#[allow(dead_code)] // `validate_all` is for the JSON-array targets.
mod roundtrip;

use libfuzzer_sys::fuzz_target;
use logs_distributor::otlp::from_json;
use serde_json::Value;

/// The records of a request as plain JSON sees them (camelCase or
/// snake_case keys), when it is an object of arrays of objects.
fn count_records(body: &[u8]) -> Option<usize> {
    let request: Value = serde_json::from_slice(body).ok()?;
    let field = |object: &Value, camel: &str, snake: &str| -> Option<Vec<Value>> {
        match object.get(camel).or_else(|| object.get(snake)) {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) => Some(items.clone()),
            Some(_) => None,
        }
    };
    let mut records = 0;
    for resource in field(&request, "resourceLogs", "resource_logs")? {
        for scope in field(&resource, "scopeLogs", "scope_logs")? {
            records += field(&scope, "logRecords", "log_records")?.len();
        }
    }
    Some(records)
}

fuzz_target!(|body: &[u8]| {
    let result = from_json(
        body,
        &otlp_checks::limits(),
        otlp_checks::BOUNDS,
        otlp_checks::now(),
    );
    // Counted only when the body reads: a request refused whole has no count.
    let records = result.as_ref().ok().and_then(|_| count_records(body));
    otlp_checks::check(&result, records);
});
