//! How a batch's messages group into `ResourceLogs` and `ScopeLogs`.

use super::*;

/// A scope's name and the bodies of its records.
type ScopeGroup = (String, Vec<String>);

#[test]
fn consecutive_messages_share_their_resource_and_scope_in_order() {
    let scoped = |source: &str, scope: &str| {
        message(
            Level::Info,
            &format!("{source}/{scope}"),
            source,
            Some(json!({"resource": {"service.name": source}, "scope": {"name": scope}})),
        )
    };
    let request = request(&[
        packet("p-1", vec![scoped("a", "x"), scoped("a", "x"), scoped("a", "y")]),
        // The next packet continues the same resource and scope.
        packet("p-2", vec![scoped("a", "y"), scoped("b", "y"), scoped("a", "y")]),
        packet(
            "p-3",
            vec![
                message(Level::Info, "plain", "a", None),
                message(Level::Info, "plain", "a", None),
            ],
        ),
    ]);
    let shape: Vec<(String, Vec<ScopeGroup>)> = request
        .resource_logs
        .iter()
        .map(|rl| {
            let service = match attribute(&rl.resource.as_ref().unwrap().attributes, "service.name") {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("service.name: {other:?}"),
            };
            let scopes = rl
                .scope_logs
                .iter()
                .map(|sl| {
                    let name = sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    let bodies = sl
                        .log_records
                        .iter()
                        .map(|r| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                            Some(Value::StringValue(s)) => s.clone(),
                            other => panic!("body: {other:?}"),
                        })
                        .collect();
                    (name, bodies)
                })
                .collect();
            (service, scopes)
        })
        .collect();
    let group =
        |scope: &str, bodies: &[&str]| (scope.to_string(), bodies.iter().map(|b| b.to_string()).collect());
    assert_eq!(
        shape,
        [
            (
                "a".to_string(),
                vec![group("x", &["a/x", "a/x"]), group("y", &["a/y", "a/y"])]
            ),
            ("b".to_string(), vec![group("y", &["b/y"])]),
            // The plain messages have the same resource (service.name "a")
            // but no scope: a ScopeLogs of their own in the same ResourceLogs.
            (
                "a".to_string(),
                vec![group("y", &["a/y"]), group("", &["plain", "plain"])]
            ),
        ]
    );
    let ids: Vec<&Value> = request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .map(|r| attribute(&r.attributes, PACKET_ID_ATTRIBUTE).unwrap())
        .collect();
    let expected: Vec<Value> = ["p-1", "p-1", "p-1", "p-2", "p-2", "p-2", "p-3", "p-3"]
        .iter()
        .map(|s| Value::StringValue(s.to_string()))
        .collect();
    assert_eq!(ids, expected.iter().collect::<Vec<_>>());
}

#[test]
fn scopes_equal_in_value_share_a_scope_logs_and_a_new_schema_url_starts_one() {
    let with = |scope: Json, url: &str| {
        let metadata = json!({"scope": scope, "scope_schema_url": url, "time_unix_nano": "1"});
        message(Level::Info, "m", "s", Some(metadata))
    };
    let (x, x_too) = (json!({"name": "x"}), json!({"name": "x", "version": ""}));
    let messages = vec![
        with(x.clone(), "u"),
        with(x_too.clone(), "u"),
        with(x_too, "v"),
        with(x, "v"),
    ];
    let request = request(&[
        packet("p", messages),
        packet("q", vec![message(Level::Info, "m", "s", None)]),
    ]);
    let scopes: Vec<(Option<&str>, &str, usize)> = (request.resource_logs.iter())
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| {
            (
                sl.scope.as_ref().map(|s| s.name.as_str()),
                sl.schema_url.as_str(),
                sl.log_records.len(),
            )
        })
        .collect();
    assert_eq!(scopes, [(Some("x"), "u", 2), (Some("x"), "v", 2), (None, "", 1)]);
}
