//! The settings' tests: defaults, the documented keys, and the errors
//! that name the key.

use super::*;

fn error_of(yaml: &str) -> String {
    Settings::from_yaml(yaml).unwrap_err().to_string()
}

#[test]
fn defaults_reproduce_the_original_service() {
    let s = Settings::default();
    s.check().unwrap();
    let summary: Vec<_> = s
        .analyzers
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                a.name.as_deref().unwrap(),
                a.weight,
                a.simulated.as_ref().unwrap().processing_time_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("analyzer-a1", "Analyzer A", 40, 100),
            ("analyzer-a2", "Analyzer B", 30, 150),
            ("analyzer-a3", "Analyzer C", 20, 80),
            ("analyzer-a4", "Analyzer D", 10, 200),
        ]
    );
    assert_eq!(s.retry.base_delay, Duration::from_secs(2));
    assert_eq!(s.retry.max_retries, 3);
    assert_eq!(s.health.interval, Duration::from_secs(10));
    assert_eq!(s.checkpoint.interval, Duration::from_secs(30));
    assert_eq!(s.analyzers[0].simulated.as_ref().unwrap().failure_rate, 0.05);
}

#[test]
fn the_documented_keys_parse() {
    let s = Settings::from_yaml(
        "analyzers:\n  - {id: analyzer-a1, name: Analyzer A, weight: 40,\n     simulated: {processing_time_ms: 100, failure_rate: 0.05, health_failure_rate: 0.05}}\n\
         retry: {base_delay: 2s, factor: 2, max_retries: 3, jitter: false}\n\
         health: {interval: 10s}\ncheckpoint: {interval: 30s}\nlimits: {max_packets_per_request: 50}\nqueue: {max_in_flight: 10}\n",
    )
    .unwrap();
    assert_eq!(s.analyzers.len(), 1);
    assert_eq!(s.limits.max_packets_per_request, Some(50));
    assert_eq!(s.queue.max_in_flight, 10);
    let ms = Settings::from_yaml("retry: {base_delay: 150ms}\n").unwrap();
    assert_eq!(ms.retry.base_delay, Duration::from_millis(150));
}

#[test]
fn the_rendered_defaults_read_back_identically() {
    let s = Settings::default();
    assert_eq!(Settings::from_yaml(&s.to_yaml()).unwrap(), s);
}

#[test]
fn bad_files_name_the_key() {
    let one = |rest: &str| format!("analyzers:\n  - {{id: a, weight: 1, simulated: {{}}}}\n{rest}");
    assert!(error_of("colour: red\n").contains("colour"));
    assert!(error_of("analyzers:\n  - {id: a, weight: 5000, simulated: {}}\n")
        .contains("analyzers[0].weight: 5000 is out of range"));
    assert!(error_of("analyzers:\n  - {id: a, weight: -1, simulated: {}}\n").contains("analyzers[0].weight"));
    assert!(error_of(
        "analyzers:\n  - {id: a, weight: 1, simulated: {}}\n  - {id: a, weight: 1, simulated: {}}\n"
    )
    .contains("analyzers[1].id: duplicate id \"a\""));
    assert!(error_of("analyzers: []\n").contains("analyzers: at least one"));
    assert!(error_of("analyzers:\n  - {id: a, weight: 0, simulated: {}}\n").contains("total weight is 0"));
    assert!(
        error_of(&one("retry: {base_delay: soon}\n")).contains("base_delay")
            || error_of(&one("retry: {base_delay: soon}\n")).contains("soon")
    );
    assert!(error_of(&one("health: {interval: 0s}\n")).contains("health.interval"));
    assert!(
        error_of("analyzers:\n  - {id: a, weight: 1, simulated: {failure_rate: 2}}\n")
            .contains("simulated.failure_rate")
    );
    assert!(
        error_of("analyzers:\n  - {id: a, weight: 1}\n").contains("analyzers[0].endpoint: an analyzer needs")
    );
    assert!(
        error_of("analyzers:\n  - {id: a, weight: 1, endpoint: 'ftp://x'}\n")
            .contains("analyzers[0].endpoint")
    );
    assert!(
        error_of("analyzers:\n  - {id: a, weight: 1, endpoint: 'http://x:1/', simulated: {}}\n")
            .contains("not both")
    );
}

/// Values the types accept but the running service cannot use: each is
/// refused at start-up, in one line naming its key.
#[test]
fn settings_that_would_break_the_running_service_name_the_key() {
    let one = |rest: &str| format!("analyzers:\n  - {{id: a, weight: 1, simulated: {{}}}}\n{rest}");
    let cases = [
        (
            "kubernetes: {status_interval: 0s}\n",
            "kubernetes.status_interval",
        ),
        ("kubernetes: {lease_name: Leader_1}\n", "kubernetes.lease_name"),
        ("kubernetes: {lease_name: ''}\n", "kubernetes.lease_name"),
        ("retry: {max_delay: 3years}\n", "retry.max_delay"),
        (
            "retry: {base_delay: 800days, max_delay: 900days}\n",
            "retry.base_delay",
        ),
        (
            "limits: {max_packet_bytes: 68157440}\n",
            "limits.max_packet_bytes",
        ),
        (
            "shutdown: {drain_timeout: 400000000000years}\n",
            "shutdown.drain_timeout",
        ),
        ("batch: {linger: 400000000000years}\n", "batch.linger"),
        ("health: {interval: 400000000000years}\n", "health.interval"),
        (
            "checkpoint: {interval: 400000000000years}\n",
            "checkpoint.interval",
        ),
        (
            "tls: {reload_interval: 400000000000years}\n",
            "tls.reload_interval",
        ),
        ("wal: {commit_delay: 400000000000years}\n", "wal.commit_delay"),
        (
            "queue: {analyzer_concurrency: 4611686018427387904}\n",
            "queue.analyzer_concurrency",
        ),
        (
            "server: {max_connections: 4611686018427387904}\n",
            "server.max_connections",
        ),
    ];
    for (rest, key) in cases {
        let error = error_of(&one(rest));
        assert!(
            error.starts_with(&format!("configuration: {key}: ")),
            "{rest:?}: {error:?} does not name {key}"
        );
        assert_eq!(error.lines().count(), 1, "{error:?}");
    }
    let per_analyzer = [
        (
            "health_check: {interval: 0s}",
            "analyzers[0].health_check.interval",
        ),
        ("health_check: {timeout: 0s}", "analyzers[0].health_check.timeout"),
        (
            "health_check: {interval: 400000000000years}",
            "analyzers[0].health_check.interval",
        ),
        ("concurrency: 4611686018427387904", "analyzers[0].concurrency"),
        ("max_batch_packets: 0", "analyzers[0].max_batch_packets"),
    ];
    for (field, key) in per_analyzer {
        let error = error_of(&format!(
            "analyzers:\n  - {{id: a, weight: 1, simulated: {{}}, {field}}}\n"
        ));
        assert!(
            error.starts_with(&format!("configuration: {key}: ")),
            "{field:?}: {error:?} does not name {key}"
        );
    }
    // The largest accepted values still work.
    Settings::from_yaml(&one(
        "retry: {max_delay: 365days}\nlimits: {max_packet_bytes: 16777216}\nkubernetes: {status_interval: 1s}\n",
    ))
    .unwrap();
}

#[test]
fn the_body_memory_holds_the_largest_request() {
    let defaults = Settings::default();
    assert_eq!(defaults.max_body_memory(), 4 * defaults.limits.max_body_bytes);
    let derived = Settings::from_yaml("limits: {max_body_bytes: 1000}\n").unwrap();
    assert_eq!(derived.max_body_memory(), 4000);
    let set =
        Settings::from_yaml("limits: {max_body_bytes: 1000}\nserver: {max_body_memory: 3000}\n").unwrap();
    assert_eq!(set.max_body_memory(), 3000);
    assert_eq!(
        error_of("limits: {max_body_bytes: 1000}\nserver: {max_body_memory: 2999}\n"),
        "configuration: server.max_body_memory: 2999 must be at least 3 x limits.max_body_bytes (1000): a gzip body, what it inflates to, and a buffer growing"
    );
}

#[test]
fn the_records_section_parses_and_is_checked() {
    let s = Settings::from_yaml(
        "records:\n  message_fields: [text]\n  source_fields: [app, kubernetes.labels.app]\n  default_level: warn\n  default_source: edge\n  max_messages_per_packet: 500\n  invalid: refuse\n",
    )
    .unwrap();
    assert_eq!(s.records.message_fields, ["text"]);
    assert_eq!(s.records.default_level, crate::model::Level::Warning);
    assert_eq!(s.records.invalid, crate::model::records::InvalidRecords::Refuse);
    assert_eq!(s.records.max_messages_per_packet, Some(500));
    assert_eq!(
        s.records.timestamp_fields,
        RecordRules::default().timestamp_fields,
        "unset keys keep their defaults"
    );
    assert_eq!(Settings::from_yaml(&s.to_yaml()).unwrap(), s);
    for (yaml, says) in [
        (
            "records: {message_fields: []}\n",
            "configuration: records.message_fields: name at least one field",
        ),
        (
            "records: {max_messages_per_packet: 0}\n",
            "configuration: records.max_messages_per_packet: 0 is out of range 1..=1000 (limits.max_messages_per_packet)",
        ),
        (
            "records: {default_level: loud}\n",
            "unknown level \"loud\"",
        ),
        ("records: {invalid: drop}\n", "drop"),
        ("records: {colour: red}\n", "colour"),
    ] {
        let error = error_of(yaml);
        assert!(error.contains(says), "{yaml:?}: {error}");
    }
}

#[test]
fn a_request_the_body_limit_lets_in_must_fit_in_the_queue() {
    assert_eq!(Settings::default().limits.max_packets_per_request, None);
    assert_eq!(
        error_of("limits: {max_body_bytes: 2000}\nqueue: {max_in_flight_bytes: 1999}\n"),
        "configuration: queue.max_in_flight_bytes: 1999 is below limits.max_body_bytes (2000): a request the body limit lets in could never fit in the queue"
    );
    Settings::from_yaml("limits: {max_body_bytes: 2000}\nqueue: {max_in_flight_bytes: 2000}\n").unwrap();
}

#[test]
fn the_documented_defaults_are_the_defaults() {
    let doc = include_str!("../../docs/configuration.md");
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/configuration.md has a yaml block of the defaults");
    let documented = Settings::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(documented, Settings::default());
}

/// An HTTPS analyzer with a token, a header and a probe on another port, as
/// docs/configuration.md shows it.
const HTTPS_ANALYZER: &str = "analyzers:
  - id: otel
    weight: 1
    endpoint: https://collector.example:4318/v1/logs
    tls: {ca_file: /etc/ld/ca.pem, cert_file: /etc/ld/tls.crt, key_file: /etc/ld/tls.key, server_name: collector.internal}
    auth: {token_file: /var/run/secrets/otel/token}
    headers: {X-Scope-OrgID: tenant-a}
    health_check: {url: 'http://collector.example:13133/', method: HEAD, expected_statuses: [200, '202-204']}
";

#[test]
fn an_https_analyzer_with_credentials_and_a_probe_url_parses_and_prints_back() {
    let s = Settings::from_yaml(HTTPS_ANALYZER).unwrap();
    let otel = &s.analyzers[0];
    let tls = otel.tls.as_ref().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("collector.internal"));
    assert_eq!(
        otel.auth.as_ref().unwrap().token_file,
        Some(crate::transport::material::Material::File(
            "/var/run/secrets/otel/token".into()
        ))
    );
    assert_eq!(otel.headers.0["X-Scope-OrgID"], "tenant-a");
    let check = otel.health_check.as_ref().unwrap();
    assert_eq!(check.method, Some(ProbeMethod::Head));
    let expected = check.expected_statuses.as_ref().unwrap();
    assert!(expected.contains(203) && !expected.contains(201));
    let printed = s.to_yaml();
    assert!(
        printed.contains("token_file: /var/run/secrets/otel/token"),
        "{printed}"
    );
    assert_eq!(Settings::from_yaml(&printed).unwrap(), s);
}

#[test]
fn bad_analyzer_transports_name_the_key() {
    let endpoint =
        |url: &str, rest: &str| format!("analyzers:\n  - {{id: a, weight: 1, endpoint: '{url}', {rest}}}\n");
    let cases = [
        (endpoint("https://x/", "tls: {cert_file: /c}"), "analyzers[0].tls: give both `cert_file` and `key_file`"),
        (endpoint("http://x/", "tls: {ca_file: /c}"), "analyzers[0].tls: http://x/ is an http:// endpoint; TLS settings need https://"),
        (endpoint("https://x/", "tls: {server_name: 'a b'}"), "analyzers[0].tls.server_name: \"a b\" is not a DNS name"),
        (endpoint("https://x/", "auth: {}"), "analyzers[0].auth: give `token_file`"),
        (endpoint("https://x/", "auth: {token_file: /t, username_file: /u}"), "analyzers[0].auth: give one of"),
        (endpoint("https://x/", "auth: {password_file: /p}"), "analyzers[0].auth: basic credentials need both"),
        (endpoint("https://x/", "headers: {Content-Type: text/plain}"), "analyzers[0].headers: Content-Type is set by the distributor"),
        (endpoint("https://x/", "headers: {X-A: \"a\\nb\"}"), "analyzers[0].headers.X-A: the value must be visible ASCII"),
        (endpoint("https://u:p@x/", "name: a"), "analyzers[0].endpoint: https://x... holds credentials"),
        (endpoint("https://x/", "health_check: {url: 'ftp://x/'}"), "analyzers[0].health_check.url: ftp://x/ must be an http:// or https:// URL"),
        (endpoint("https://x/", "health_path: /h, health_check: {url: /ready}"), "analyzers[0].health_check.url: give health_check.url or health_path, not both"),
        (endpoint("https://x/", "health_check: {expected_statuses: [700]}"), "700 is not an HTTP status"),
        (endpoint("https://x/", "health_check: {method: POST}"), "POST"),
        (
            "analyzers:\n  - {id: a, weight: 1, simulated: {}, headers: {X-A: b}}\n".to_string(),
            "analyzers[0].simulated: tls, auth and headers are for an analyzer with an `endpoint`",
        ),
        (
            "analyzers:\n  - {id: a, weight: 1, simulated: {}, health_check: {passive: true}}\nhealth: {ejection_threshold: 0}\n".to_string(),
            "analyzers[0].health_check.passive: a passive analyzer leaves the rotation only on failed deliveries",
        ),
    ];
    for (yaml, expected) in cases {
        let error = error_of(&yaml);
        assert!(error.contains(expected), "{yaml}: {error}");
        assert_eq!(error.lines().count(), 1, "{error:?}");
    }
}

#[test]
fn the_receivers_of_analyzers_md_are_a_valid_configuration_with_their_formats() {
    let doc = include_str!("../../docs/analyzers.md");
    let yaml = doc
        .split("## Receivers")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("docs/analyzers.md has a yaml block of receivers");
    let settings = Settings::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    let formats: Vec<(&str, DeliveryFormat)> = settings
        .analyzers
        .iter()
        .map(|a| (a.id.as_str(), a.format))
        .collect();
    assert_eq!(
        formats,
        [
            ("otel", DeliveryFormat::Otlp),
            ("vector", DeliveryFormat::Ndjson),
            ("fluent-bit", DeliveryFormat::Packets),
            ("logstash", DeliveryFormat::Ndjson),
        ]
    );
}

#[test]
fn a_request_waits_for_room_within_the_request_timeout() {
    assert_eq!(Settings::default().full_wait(), Duration::from_secs(1));
    // Unset, it stays below a short request timeout: half of it.
    let short = Settings::from_yaml("server: {request_timeout: 1s}\n").unwrap();
    assert_eq!(short.full_wait(), Duration::from_millis(500));
    assert!(!short.to_yaml().contains("full_wait"), "{}", short.to_yaml());
    assert_eq!(
        error_of("queue: {full_wait: 1s}\nserver: {request_timeout: 1s}\n"),
        "configuration: queue.full_wait: 1s must be below server.request_timeout (1s): a request waiting for room would time out first"
    );
    assert_eq!(
        error_of("queue: {full_wait: 30s}\n"),
        "configuration: queue.full_wait: 30s must be below server.request_timeout (30s): a request waiting for room would time out first"
    );
    let settings = Settings::from_yaml("queue: {full_wait: 0s}\nserver: {request_timeout: 2s}\n").unwrap();
    assert_eq!(settings.full_wait(), Duration::ZERO);
    let set = Settings::from_yaml("queue: {full_wait: 1500ms}\nserver: {request_timeout: 2s}\n").unwrap();
    assert_eq!(set.full_wait(), Duration::from_millis(1500));
    assert!(set.to_yaml().contains("full_wait: 1s 500ms"), "{}", set.to_yaml());
}
