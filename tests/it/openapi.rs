//! The OpenAPI document (`docs/openapi.json`) against the code: the binary
//! serves exactly the committed file; every route the router registers is
//! documented and nothing else is; and real answers of a distributor started
//! in-process (every status the tests can provoke) validate against the
//! document's schemas, status codes, media types and required headers.
//!
//! The schemas are checked by a small validator of the JSON Schema subset
//! the document uses (OpenAPI 3.0: `nullable`, `$ref` to components,
//! `oneOf`/`anyOf`/`allOf`, `enum`, `type`, bounds, `required`,
//! `properties`, `additionalProperties`, `format: date-time`). A test fails
//! if the document starts using a keyword the validator does not know.
//! `pattern` is known but not checked here (it only constrains request
//! bodies, which schemathesis checks: scripts/schemathesis.sh).

use crate::support::config::{analyzer, Config};
use crate::support::http::Reply;
use crate::support::in_process::Server;
use crate::support::otlp::{attribute, log_request, string};
use crate::support::packets::{packet, packets};
use crate::support::poll::{eventually, DEADLINE};
use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

const DOCUMENT: &str = include_str!("../../docs/openapi.json");
const ROUTER: &str = include_str!("../../src/api/mod.rs");

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

// ---------------------------------------------------------------- validator

/// Keywords the validator checks (or, for the annotations, may ignore).
const KEYWORDS: [&str; 24] = [
    "$ref",
    "type",
    "nullable",
    "enum",
    "oneOf",
    "anyOf",
    "allOf",
    "required",
    "properties",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "description",
    "example",
    "title",
];

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local references are supported: {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} does not resolve"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validates `value` against `schema`; each violation is pushed with the
/// JSON path (`at`) where it was found.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return validate(doc, resolve(doc, reference), value, at, errors);
    }
    let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
    if value.is_null() && nullable {
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate(doc, sub, value, at, errors);
        }
    }
    for (keyword, wanted) in [("anyOf", None), ("oneOf", Some(1))] {
        if let Some(choices) = schema.get(keyword).and_then(Value::as_array) {
            let passing = choices
                .iter()
                .filter(|sub| {
                    let mut inner = Vec::new();
                    validate(doc, sub, value, at, &mut inner);
                    inner.is_empty()
                })
                .count();
            let ok = match wanted {
                Some(exactly) => passing == exactly,
                None => passing > 0,
            };
            if !ok {
                errors.push(format!(
                    "{at}: {keyword}: {passing} of {} alternatives match {value}",
                    choices.len()
                ));
            }
        }
    }
    let mut fail = |why: String| errors.push(format!("{at}: {why}"));
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            fail(format!("{value} is not one of {options:?}"));
        }
    }
    if let Some(wanted) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == wanted || (wanted == "number" && actual == "integer");
        if !ok {
            fail(format!("expected {wanted}, got {actual} ({value})"));
            return;
        }
    }
    match value {
        Value::Number(n) => {
            let n = n.as_f64().expect("a number");
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if n < min {
                    fail(format!("{n} is below the minimum {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if n > max {
                    fail(format!("{n} is above the maximum {max}"));
                }
            }
        }
        Value::String(text) => {
            let chars = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if chars < min {
                    fail(format!("{text:?} is shorter than {min}"));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if chars > max {
                    fail(format!("{text:?} is longer than {max}"));
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && chrono::DateTime::parse_from_rfc3339(text).is_err()
            {
                fail(format!("{text:?} is not an RFC 3339 date-time"));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    fail(format!("{} items, fewer than {min}", items.len()));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    fail(format!("{} items, more than {max}", items.len()));
                }
            }
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    validate(doc, item, v, &format!("{at}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().expect("required names are strings");
                if !map.contains_key(name) {
                    fail(format!("required field {name:?} is missing"));
                }
            }
            let count = map.len() as u64;
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
                if count < min {
                    fail(format!("{count} fields, fewer than {min}"));
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
                if count > max {
                    fail(format!("{count} fields, more than {max}"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, v) in map {
                let path = format!("{at}.{name}");
                match (
                    properties.and_then(|p| p.get(name)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(sub), _) => validate(doc, sub, v, &path, errors),
                    (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{at}: field {name:?} is not in the schema"))
                    }
                    (None, Some(sub)) if sub.is_object() => validate(doc, sub, v, &path, errors),
                    (None, _) => {}
                }
            }
        }
        Value::Null if schema.get("type").is_some() => fail("null, but the schema is not nullable".into()),
        _ => {}
    }
}

fn violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate(doc, schema, value, "$", &mut errors);
    errors
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The media type without parameters, lower case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Asserts that `reply` is an answer the document allows for `method
/// template`: a documented status, a documented media type, the required
/// headers, and (for JSON) a body that validates against the schema.
fn conform(doc: &Value, method: &str, template: &str, reply: &Reply) {
    let what = format!("{} {template} → {}", method.to_uppercase(), reply.status.as_u16());
    let operation = doc["paths"][template]
        .get(method)
        .unwrap_or_else(|| panic!("{what}: the document has no such operation"));
    let responses = &operation["responses"];
    let response = responses
        .get(reply.status.as_str())
        .or_else(|| responses.get("default"))
        .unwrap_or_else(|| panic!("{what}: status not documented; body: {}", reply.text));
    for (name, header) in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let header = match header.get("$ref").and_then(Value::as_str) {
            Some(reference) => resolve(doc, reference),
            None => header,
        };
        let value = reply.header(name);
        if header["required"] == true {
            let value = value.unwrap_or_else(|| panic!("{what}: required header {name} is missing"));
            if header["schema"]["type"] == "integer" {
                let number: Value = value
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| panic!("{what}: {name}: {value:?} is not an integer"));
                let errors = violations(doc, &header["schema"], &number);
                assert!(errors.is_empty(), "{what}: header {name}: {errors:#?}");
            }
        }
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            reply.text.is_empty(),
            "{what}: documented without a body, got {}",
            reply.text
        );
        return;
    };
    let content_type = essence(reply.header("content-type").unwrap_or_default());
    let media = content.get(&content_type).unwrap_or_else(|| {
        panic!(
            "{what}: Content-Type {content_type:?} is not one of {:?}",
            content.keys()
        )
    });
    if content_type == "application/json" {
        let body: Value = serde_json::from_str(&reply.text)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {}", reply.text));
        let errors = violations(doc, &media["schema"], &body);
        assert!(
            errors.is_empty(),
            "{what}: the body violates the schema: {errors:#?}\nbody: {body:#}"
        );
    } else {
        assert_eq!(media["schema"]["type"], "string", "{what}");
    }
}

// ---------------------------------------------------------------- the document itself

/// Every schema object in the document, wherever it sits.
fn collect_schemas<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                match key.as_str() {
                    "schema" | "items" => out.push(child),
                    "schemas" | "properties" => {
                        out.extend(child.as_object().into_iter().flatten().map(|(_, s)| s))
                    }
                    "oneOf" | "anyOf" | "allOf" => out.extend(child.as_array().into_iter().flatten()),
                    "additionalProperties" if child.is_object() => out.push(child),
                    _ => {}
                }
                // Examples are data, not schemas.
                if key != "example" {
                    collect_schemas(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_schemas(item, out)),
        _ => {}
    }
}

fn collect_refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    out.push(child.as_str().expect("$ref is a string").to_string());
                } else {
                    collect_refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_well_formed_and_uses_only_keywords_the_validator_knows() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 30, "{refs:?}");
    for reference in &refs {
        resolve(&doc, reference);
    }

    let mut schemas = Vec::new();
    collect_schemas(&doc, &mut schemas);
    for schema in &schemas {
        for key in schema.as_object().expect("a schema is an object").keys() {
            assert!(
                KEYWORDS.contains(&key.as_str()),
                "the validator does not know {key:?}: {schema}"
            );
        }
    }

    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let params: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, operation) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            let id = operation["operationId"]
                .as_str()
                .expect("every operation has an operationId");
            assert!(operation_ids.insert(id), "operationId {id} is used twice");
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p.get("$ref").and_then(Value::as_str) {
                    Some(reference) => resolve(&doc, reference),
                    None => p,
                })
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().expect("a parameter name"))
                .collect();
            assert_eq!(declared, params, "{method} {path}: path parameters");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}: a description"
                );
            }
        }
    }

    // The examples in the document are valid themselves.
    let logs = &doc["paths"]["/api/v1/logs"]["post"]["requestBody"]["content"];
    for media in ["application/json", "application/x-ndjson"] {
        let errors = violations(&doc, &logs[media]["schema"], &logs[media]["example"]);
        assert!(errors.is_empty(), "{media} example: {errors:?}");
    }
    let health = &doc["paths"]["/api/v1/analyzers/{id}/health"]["post"]["requestBody"]["content"];
    let errors = violations(
        &doc,
        &health["application/json"]["schema"],
        &health["application/json"]["example"],
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn the_validator_refuses_what_the_schemas_forbid() {
    let doc = document();
    let error = schema("Error");
    assert!(violations(&doc, &error, &json!({"error": "x"})).is_empty());
    assert!(!violations(&doc, &error, &json!({})).is_empty(), "required");
    assert!(!violations(&doc, &error, &json!({"error": 1})).is_empty(), "type");
    assert!(
        !violations(&doc, &error, &json!({"error": "x", "more": 1})).is_empty(),
        "additionalProperties"
    );

    let verdict = schema("PacketVerdict");
    assert!(violations(&doc, &verdict, &json!({"index": 0, "id": null, "error": "e"})).is_empty());
    assert!(!violations(&doc, &verdict, &json!({"index": -1, "id": null, "error": "e"})).is_empty());
    assert!(!violations(&doc, &verdict, &json!({"index": 0.5, "id": null, "error": "e"})).is_empty());

    let rejected = json!({"oneOf": [schema("Error"), schema("SubmitRejected")]});
    assert!(violations(&doc, &rejected, &json!({"error": "x"})).is_empty());
    let report = json!({"error": "x", "total_packets": 1, "successful": 0, "failed": 1,
                        "processed_packets": [], "errors": [{"index": 0, "id": "a", "error": "e"}]});
    assert!(violations(&doc, &rejected, &report).is_empty());
    assert!(!violations(&doc, &rejected, &json!({"error": "x", "total_packets": 1})).is_empty());

    let override_ = schema("HealthOverride");
    for good in [
        json!({"healthy": false}),
        json!({"mode": "auto"}),
        json!({"healthy": true, "mode": null}),
    ] {
        assert!(violations(&doc, &override_, &good).is_empty(), "{good}");
    }
    for bad in [
        json!({}),
        json!({"healthy": true, "mode": "auto"}),
        json!({"mode": "sometimes"}),
    ] {
        assert!(!violations(&doc, &override_, &bad).is_empty(), "{bad}");
    }

    let info = schema("AnalyzerInfo");
    let mut analyzer = json!({"id": "a", "name": "A", "weight": 1, "is_healthy": true, "in_rotation": true,
        "processed_count": 0, "error_count": 0, "last_health_check": null, "health_mode": "auto",
        "health_reason": "Starting", "health_detail": null, "healthy_since": "2025-01-25T20:30:00Z",
        "endpoint": "simulated"});
    assert!(violations(&doc, &info, &analyzer).is_empty());
    analyzer["healthy_since"] = json!("yesterday");
    assert!(!violations(&doc, &info, &analyzer).is_empty(), "date-time");
    analyzer["healthy_since"] = json!(null);
    assert!(!violations(&doc, &info, &analyzer).is_empty(), "not nullable");
}

// ---------------------------------------------------------------- router and document

/// `(method, path)` of every `.route("PATH", get(..).post(..))` in
/// src/api/mod.rs.
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for line in ROUTER.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(".route(\"") else {
            continue;
        };
        let (path, handlers) = rest.split_once('"').expect("a closing quote");
        let mut found = 0;
        for method in METHODS {
            let call = format!("{method}(");
            let mentioned = handlers.match_indices(&call).any(|(at, _)| {
                at == 0
                    || !(handlers.as_bytes()[at - 1].is_ascii_alphanumeric()
                        || handlers.as_bytes()[at - 1] == b'_')
            });
            if mentioned {
                routes.insert((method.to_string(), path.to_string()));
                found += 1;
            }
        }
        assert!(
            found > 0,
            "no method found on the line of {path:?} (keep each route on one line): {line}"
        );
    }
    routes
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let routes = registered_routes();
    assert!(routes.len() >= 14, "the scan found too few routes: {routes:?}");
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routed but not in docs/openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "in docs/openapi.json but not routed: {unrouted:?}"
    );
}

// ---------------------------------------------------------------- real answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_committed_document_as_json() {
    let server = Server::start(&Config::four(0)).await;
    let reply = server.get("/api/v1/openapi.json").await;
    reply.expect(200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.text, DOCUMENT,
        "GET /api/v1/openapi.json differs from docs/openapi.json"
    );
    conform(&document(), "get", "/api/v1/openapi.json", &reply);
    server.shutdown().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_the_tests_can_provoke_matches_the_document() {
    let doc = document();
    // `good` delivers everything; `bad` fails every delivery and nothing is
    // retried, so its packets are dead letters at once. A small queue and a
    // small body limit make 503 and 413 cheap to provoke.
    let config = Config::new(vec![analyzer("good", 3), analyzer("bad", 1).failing(1.0)])
        .retry("{base_delay: 10ms, max_retries: 0}")
        .queue("{max_in_flight: 20, max_in_flight_bytes: 65536, full_wait: 0s}")
        .limits("{max_body_bytes: 65536}");
    let server = Server::start(&config).await;
    let mut seen: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    let mut check = |method: &str, template: &str, reply: &Reply| {
        conform(&doc, method, template, reply);
        seen.entry((method.into(), template.into()))
            .or_default()
            .insert(reply.status.as_u16());
    };
    let logs = "/api/v1/logs";

    // Ingest: every status.
    check(
        "post",
        logs,
        server.post_logs(&packets("ok", 8)).await.expect(202),
    );
    let partly = json!([packet(Some("fine"), 1), {"id": "loud", "messages": [
        {"level": "LOUD", "message": "m", "source": "s"}]}]);
    check("post", logs, server.post_logs(&partly).await.expect(207));
    let none = json!([{"messages": []}, {"id": "x", "messages": [{"level": "INFO", "message": "m", "source": " "}]}]);
    check("post", logs, server.post_logs(&none).await.expect(400));
    // Raw bodies: malformed, NDJSON, wrong type, too large (also once inflated).
    let json_type: &[(&str, &str)] = &[("content-type", "application/json")];
    let ndjson_type: &[(&str, &str)] = &[("content-type", "application/x-ndjson")];
    let zipped: &[(&str, &str)] = &[("content-type", "application/json"), ("content-encoding", "gzip")];
    let ndjson = format!("{}\n\n{}\n", packet(Some("nd-1"), 1), packet(None, 2));
    let raw_posts = [
        (json_type, b"[{".to_vec(), 400),
        (json_type, b"{}".to_vec(), 400),
        (ndjson_type, ndjson.into_bytes(), 202),
        (ndjson_type, b"{}\n{bad\n".to_vec(), 400),
        (&[("content-type", "text/plain")][..], b"[]".to_vec(), 415),
        (zipped, gzip(&[b' '; 70_000]), 413),
        (json_type, vec![b' '; 66_000], 413),
    ];
    for (headers, body, status) in raw_posts {
        check(
            "post",
            logs,
            server.post_raw(logs, headers, body).await.expect(status),
        );
    }
    // Records: valid and invalid ones (200), nothing usable (400), too
    // large (413), another media type (415).
    let records = "/api/v1/records";
    let record_posts = [
        (
            json_type,
            br#"[{"message":"a","host":"h"},{"log":"b","date":1733390000.5}]"#.to_vec(),
            200,
        ),
        (
            ndjson_type,
            b"{\"msg\":\"c\"}\n{\"level\":\"info\"}\nnot json\n".to_vec(),
            200,
        ),
        (json_type, b"not json".to_vec(), 400),
        (json_type, b"[]".to_vec(), 400),
        (&[("content-type", "text/plain")][..], b"{}".to_vec(), 415),
        (zipped, gzip(&[b' '; 70_000]), 413),
    ];
    for (headers, body, status) in record_posts {
        check(
            "post",
            records,
            server.post_raw(records, headers, body).await.expect(status),
        );
    }

    // OTLP: each answer, in each encoding.
    let otlp = "/v1/logs";
    let protobuf: &[(&str, &str)] = &[("content-type", "application/x-protobuf")];
    let protobuf_zipped: &[(&str, &str)] = &[
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "gzip"),
    ];
    let request = log_request("otlp", &["one", "two"]).encode_to_vec();
    let too_long = log_request("otlp", &["fine", &"x".repeat(10_001)]).encode_to_vec();
    let otlp_json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"j"}}]}]}]}"#;
    // The resource is in every message: 40 records under a body of 3 KB
    // make more packet bytes than the whole queue holds.
    let larger_than_queue = {
        let mut request = log_request("otlp", &["r"; 40]);
        let resource = request.resource_logs[0].resource.as_mut().unwrap();
        resource
            .attributes
            .push(attribute("big", string(&"b".repeat(2000))));
        request.encode_to_vec()
    };
    let mut partial_seen = false;
    let otlp_posts = [
        (protobuf, request.clone(), 200),
        (protobuf, too_long, 200),
        (json_type, otlp_json.to_vec(), 200),
        (
            json_type,
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{}"}}}}]}}]}}]}}"#,
                "y".repeat(10_001)
            )
            .into_bytes(),
            200,
        ),
        (protobuf, b"\xff\xff".to_vec(), 400),
        (json_type, b"{\"resourceLogs\": 1}".to_vec(), 400),
        (&[("content-type", "text/plain")][..], request.clone(), 415),
        (&[][..], request.clone(), 415),
        (protobuf_zipped, gzip(&[0; 70_000]), 413),
        (json_type, vec![b' '; 66_000], 413),
        (protobuf, larger_than_queue, 413),
    ];
    for (headers, body, status) in otlp_posts {
        let reply = server.post_raw(otlp, headers, body).await;
        check("post", otlp, reply.expect(status));
        partial_seen |= reply.json.get("partialSuccess").is_some();
    }
    assert!(
        partial_seen,
        "a partial success in JSON is checked against its schema"
    );

    // Queries, with dead letters in the file.
    eventually("dead letters and nothing in flight", DEADLINE, || async {
        let stats = server.stats().await;
        match (stats["total_dead_lettered"].as_u64(), stats["in_flight"].as_u64()) {
            (Some(dead), Some(0)) if dead > 0 => Ok(()),
            _ => Err(stats.to_string()),
        }
    })
    .await;
    for path in [
        "/api/v1/health",
        "/api/v1/stats",
        "/api/v1/analyzers",
        "/api/v1/traffic",
    ] {
        check("get", path, server.get(path).await.expect(200));
    }
    let page = server.get("/api/v1/dead-letter").await;
    check("get", "/api/v1/dead-letter", page.expect(200));
    assert!(page.json["count"].as_u64() > Some(0), "{}", page.text);
    let dead_id = page.json["packets"][0]["packet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let queries = [
        ("limit=1&offset=0", 200),
        ("offset=999999", 200),
        ("limit=x", 400),
        ("limit=10001", 400),
        ("offset=-1", 400),
        ("page=2", 400),
    ];
    for (query, status) in queries {
        let reply = server.get(&format!("/api/v1/dead-letter?{query}")).await;
        check("get", "/api/v1/dead-letter", reply.expect(status));
    }

    // Admin: health overrides.
    let health = "/api/v1/analyzers/{id}/health";
    check(
        "post",
        health,
        server
            .set_health("good", json!({"healthy": false}))
            .await
            .expect(200),
    );
    check(
        "post",
        health,
        server
            .set_health("good", json!({"mode": "auto"}))
            .await
            .expect(200),
    );
    check(
        "post",
        health,
        server
            .set_health("good", json!({"healthy": true, "mode": "auto"}))
            .await
            .expect(400),
    );
    check(
        "post",
        health,
        server
            .set_health("good", json!({"sometimes": 1}))
            .await
            .expect(400),
    );
    check(
        "post",
        health,
        server
            .set_health("nobody", json!({"healthy": true}))
            .await
            .expect(404),
    );
    let invalid_utf8 = server.api.url("/api/v1/analyzers/%FF/health");
    check(
        "post",
        health,
        server
            .send(server.http.post(invalid_utf8).body("{}"))
            .await
            .expect(400),
    );

    // Replay: 404, 400, 202.
    let replay = "/api/v1/dead-letter/replay";
    check(
        "post",
        replay,
        server.post(replay, &json!({"ids": ["nope"]})).await.expect(404),
    );
    check(
        "post",
        replay,
        server.post(replay, &json!({"ids": "nope"})).await.expect(400),
    );
    check(
        "post",
        replay,
        server
            .post(replay, &json!({"ids": [dead_id, "nope"]}))
            .await
            .expect(202),
    );
    server.drained().await;

    // Handoff from a peer: 200 (then the same batch again), 400, 413.
    let handoff = "/internal/v1/handoff";
    let batch = crate::support::handoff::handoff_body("ld-9", &[(1, "handed-1", 2)]);
    check("post", handoff, server.post(handoff, &batch).await.expect(200));
    check("post", handoff, server.post(handoff, &batch).await.expect(200));
    check(
        "post",
        handoff,
        server.post(handoff, &json!({"origin": "ld-9"})).await.expect(400),
    );
    check(
        "post",
        handoff,
        server
            .post_raw(handoff, json_type, vec![b' '; 66_000])
            .await
            .expect(413),
    );
    server.drained().await;

    // No analyzer in rotation: health 503; packets wait until the queue is
    // full, then ingest and replay answer 503 with Retry-After.
    server
        .set_health("good", json!({"healthy": false}))
        .await
        .expect(200);
    server
        .set_health("bad", json!({"healthy": false}))
        .await
        .expect(200);
    check(
        "get",
        "/api/v1/health",
        server.get("/api/v1/health").await.expect(503),
    );
    server.post_logs(&packets("waiting", 20)).await.expect(202);
    let full = server.post_logs(&packets("refused", 1)).await;
    check("post", logs, full.expect(503));
    assert_eq!(full.header("retry-after"), Some("1"));
    check("post", replay, server.post(replay, &json!({})).await.expect(503));
    let no_room = crate::support::handoff::handoff_body("ld-9", &[(2, "handed-2", 0)]);
    check("post", handoff, server.post(handoff, &no_room).await.expect(503));
    let full = server
        .post_raw(records, json_type, br#"{"msg":"no room"}"#.to_vec())
        .await;
    check("post", records, full.expect(503));
    for headers in [protobuf, json_type] {
        let full = server.post_raw(otlp, headers, request.clone()).await;
        check("post", otlp, full.expect(503));
        assert_eq!(full.header("retry-after"), Some("1"));
    }
    server
        .set_health("good", json!({"mode": "auto"}))
        .await
        .expect(200);
    server
        .set_health("bad", json!({"mode": "auto"}))
        .await
        .expect(200);

    // Ops, the page, this document.
    let metrics = server.get("/metrics").await;
    check("get", "/metrics", metrics.expect(200));
    assert!(metrics.text.contains("# TYPE"), "{}", metrics.text);
    check("get", "/healthz", server.get("/healthz").await.expect(200));
    check("get", "/readyz", server.get("/readyz").await.expect(200));
    check(
        "get",
        "/api/v1/openapi.json",
        server.get("/api/v1/openapi.json").await.expect(200),
    );
    check("get", "/", server.get("/").await.expect(200));
    let revalidated = server.http.get(server.api.url("/")).header("if-none-match", "*");
    check("get", "/", server.send(revalidated).await.expect(304));
    for file in ["app.js", "style.css", "favicon.svg"] {
        check(
            "get",
            "/ui/{file}",
            server.get(&format!("/ui/{file}")).await.expect(200),
        );
    }
    check("get", "/ui/{file}", server.get("/ui/nope.js").await.expect(404));
    check("get", "/ui/{file}", server.get("/ui/%FF").await.expect(400));

    // Every operation of the document was exercised.
    let operations: BTreeSet<(String, String)> = registered_routes().into_iter().collect();
    let exercised: BTreeSet<(String, String)> = seen.keys().cloned().collect();
    let missed: Vec<_> = operations.difference(&exercised).collect();
    assert!(missed.is_empty(), "not exercised: {missed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_answers_of_the_token_checks_match_the_document() {
    let doc = document();
    let secrets = tempfile::tempdir().unwrap();
    let (ingest, admin) = (secrets.path().join("ingest"), secrets.path().join("admin"));
    std::fs::write(&ingest, "in").unwrap();
    std::fs::write(&admin, "ad").unwrap();
    let auth = format!(
        "{{ingest_token_file: {:?}, admin_token_file: {:?}}}",
        ingest.display().to_string(),
        admin.display().to_string()
    );
    let server = Server::start(&Config::four(0).section("auth", &auth)).await;
    let operations = [
        ("post", "/api/v1/logs", "/api/v1/logs", Some(packets("t", 1))),
        ("post", "/v1/logs", "/v1/logs", Some(json!({"resourceLogs": []}))),
        (
            "post",
            "/api/v1/analyzers/{id}/health",
            "/api/v1/analyzers/analyzer-a1/health",
            Some(json!({"mode": "auto"})),
        ),
        ("get", "/api/v1/dead-letter", "/api/v1/dead-letter", None),
        (
            "post",
            "/api/v1/dead-letter/replay",
            "/api/v1/dead-letter/replay",
            Some(json!({})),
        ),
    ];
    for (method, template, path, body) in operations {
        for (token, status) in [(None, 401), (Some("wrong"), 403)] {
            let mut request = match method {
                "get" => server.http.get(server.url(path)),
                _ => server.http.post(server.url(path)),
            };
            if let Some(body) = &body {
                request = request.json(body);
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let reply = server.send(request).await;
            reply.expect(status);
            conform(&doc, method, template, &reply);
        }
    }
    server.shutdown().await;
}
