//! Real OpenTelemetry Collectors (built from Go modules by
//! `scripts/otelcol.sh`) on both sides of the distributor:
//!
//! - as analyzers: two collectors (OTLP receiver over HTTP, file exporter
//!   writing OTLP/JSON lines) behind `format: otlp` analyzers weighted 3:1,
//!   the heavier one over HTTPS taking only a bearer token
//!   (`bearertokenauth`); their files are audited record by record;
//! - as a client: a collector tails a file (`file_log` receiver) and
//!   exports it with `otlp_http` (protobuf, gzip) to the distributor's
//!   `/v1/logs`, in front of two reference analyzers weighted 3:1, across a
//!   `kill -9` of the distributor; every line is audited at the analyzers.
//!
//! Compiled with the feature `test-otel-collector` (`make test` turns it on).
//! Each test runs alone: exact splits need a machine that answers at once.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::collector::{file_records, Collector, FileRecord};
use crate::support::config::{remote, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::pki::Pki;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::ports::free_port;
use crate::support::serial;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// How long the collectors' files may take to hold everything delivered.
const AUDIT_DEADLINE: Duration = Duration::from_secs(30);

/// HTTPS and a bearer token in front of a collector's OTLP receiver: the
/// server certificate and key files, the CA file and the token file the
/// distributor is given.
struct Secure {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    token: PathBuf,
}

const TOKEN: &str = "collector-s3cr3t";

impl Secure {
    fn new(dir: &Path, name: &str) -> Secure {
        let pki = Pki::new();
        let file = |suffix: &str| dir.join(format!("{name}-{suffix}"));
        let secure = Secure {
            cert: file("cert.pem"),
            key: file("key.pem"),
            ca: file("ca.pem"),
            token: file("token"),
        };
        pki.issue(name, 1, &secure.cert, &secure.key);
        std::fs::write(&secure.ca, pki.ca_pem()).unwrap();
        std::fs::write(&secure.token, format!("{TOKEN}\n")).unwrap();
        secure
    }
}

/// A collector as an analyzer: its OTLP receiver on `otlp_port` (over
/// HTTPS, taking only the bearer token, when `secure`) writing every record
/// to `out` with the file exporter.
fn analyzer_collector_config(
    otlp_port: u16,
    health_port: u16,
    out: &Path,
    secure: Option<&Secure>,
) -> String {
    let (receiver_security, auth_extension, extensions) = match secure {
        Some(secure) => (
            format!(
                "        tls:\n          cert_file: {}\n          key_file: {}\n        auth:\n          authenticator: bearertokenauth\n",
                secure.cert.display(),
                secure.key.display()
            ),
            format!("  bearertokenauth:\n    token: {TOKEN}\n"),
            "[health_check, bearertokenauth]",
        ),
        None => (String::new(), String::new(), "[health_check]"),
    };
    format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}
{receiver_security}exporters:
  file:
    path: {out}
    flush_interval: 100ms
extensions:
  health_check:
    endpoint: 127.0.0.1:{health_port}
{auth_extension}service:
  extensions: {extensions}
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
"#,
        out = out.display()
    )
}

/// A collector started as an analyzer, and where its records land.
struct AnalyzerCollector {
    collector: Collector,
    endpoint: String,
    /// Its `health_check` extension, on a port of its own.
    health_url: String,
    /// The analyzer's `tls` and `auth` keys when it is behind HTTPS.
    security: Option<String>,
    out: PathBuf,
}

impl AnalyzerCollector {
    /// The analyzer's YAML keys besides its endpoint: OTLP, probed at the
    /// collector's health_check extension, and HTTPS with the token.
    fn keys(&self) -> String {
        let mut keys = format!("format: otlp, health_check: {{url: {:?}}}", self.health_url);
        if let Some(security) = &self.security {
            keys.push_str(", ");
            keys.push_str(security);
        }
        keys
    }
}

async fn analyzer_collector(dir: &Path, name: &str, secure: Option<Secure>) -> AnalyzerCollector {
    let (otlp_port, health_port) = (free_port(), free_port());
    let out = dir.join(format!("{name}-out.jsonl"));
    let config = analyzer_collector_config(otlp_port, health_port, &out, secure.as_ref());
    let collector = Collector::start(dir, name, &config, health_port).await;
    let scheme = if secure.is_some() { "https" } else { "http" };
    AnalyzerCollector {
        collector,
        endpoint: format!("{scheme}://127.0.0.1:{otlp_port}/v1/logs"),
        health_url: format!("http://127.0.0.1:{health_port}/"),
        security: secure.map(|s| {
            format!(
                "tls: {{ca_file: {:?}}}, auth: {{token_file: {:?}}}",
                s.ca.display().to_string(),
                s.token.display().to_string()
            )
        }),
        out,
    }
}

/// The packets of the audit: `count` packets of two messages, each message
/// with metadata of every JSON kind, its own `seq`, levels and sources
/// varying.
fn audit_packets(count: usize) -> Vec<Value> {
    let levels = ["INFO", "ERROR", "WARNING", "DEBUG"];
    (0..count)
        .map(|p| {
            let messages: Vec<Value> = (0..2)
                .map(|m| {
                    let seq = p * 2 + m;
                    json!({
                        "level": levels[seq % levels.len()],
                        "message": format!("message {seq} of packet {p}"),
                        "source": format!("service-{}", p % 3),
                        "timestamp": format!("2025-01-25T20:30:{:02}.{:09}Z", seq % 60, seq),
                        "metadata": {
                            "seq": seq,
                            "user": format!("user-{p}"),
                            "ratio": 0.25,
                            "big": 18_446_744_073_709_551_615u64,
                            "first": m == 0,
                            "tags": ["collector", p],
                            "context": {"region": "eu-west-1", "attempt": {"n": m}},
                            "nothing": null,
                        },
                    })
                })
                .collect();
            json!({"id": format!("otel-{p:04}"), "messages": messages})
        })
        .collect()
}

/// OTLP severity numbers of the levels the audit sends.
fn severity_number(level: &str) -> u64 {
    match level {
        "DEBUG" => 5,
        "INFO" => 9,
        "WARNING" => 13,
        "ERROR" => 17,
        other => panic!("no severity for {other}"),
    }
}

/// The records of each file, once each (by packet id and seq), by the
/// name of the collector that wrote them.
fn records_by_collector(
    collectors: &[&AnalyzerCollector],
) -> BTreeMap<String, BTreeMap<(String, u64), FileRecord>> {
    collectors
        .iter()
        .map(|c| {
            let records = file_records(&c.out)
                .into_iter()
                .map(|r| {
                    let id = r.attributes["logs_distributor.packet_id"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let seq = r.attributes["seq"].as_u64().unwrap();
                    ((id, seq), r)
                })
                .collect();
            (c.collector.name.clone(), records)
        })
        .collect()
}

/// Checks one delivered record against the message it came from.
fn check_record(record: &FileRecord, packet_id: &str, message: &Value) -> Result<(), String> {
    let mut expected: Map<String, Value> = message["metadata"].as_object().unwrap().clone();
    // Past i64::MAX an integer goes as a double.
    expected.insert("big".into(), json!(18_446_744_073_709_551_615.0f64));
    expected.insert("logs_distributor.packet_id".into(), json!(packet_id));
    if record.attributes != expected {
        return Err(format!(
            "attributes {:?}, expected {expected:?}",
            record.attributes
        ));
    }
    let service = record.resource.get("service.name");
    if service != Some(&message["source"]) {
        return Err(format!(
            "service.name {service:?}, sent source {}",
            message["source"]
        ));
    }
    let body = &record.record["body"]["stringValue"];
    if body != &message["message"] {
        return Err(format!("body {body}, sent {}", message["message"]));
    }
    let level = message["level"].as_str().unwrap();
    let severity = (&record.record["severityNumber"], &record.record["severityText"]);
    if severity != (&json!(severity_number(level)), &json!(level)) {
        return Err(format!("severity {severity:?} for {level}"));
    }
    let time: chrono::DateTime<chrono::Utc> = message["timestamp"].as_str().unwrap().parse().unwrap();
    let nanos = time.timestamp_nanos_opt().unwrap().to_string();
    if record.record["timeUnixNano"] != json!(nanos) {
        return Err(format!(
            "timeUnixNano {}, sent {nanos}",
            record.record["timeUnixNano"]
        ));
    }
    Ok(())
}

/// Two collectors behind `format: otlp` analyzers weighted 3:1, probed at
/// their health_check extensions; the heavier one serves its OTLP receiver
/// over HTTPS only and takes only requests with its bearer token. Every
/// message of every packet reaches exactly one of them, with its attributes
/// typed as sent, its severity, body, time and source; the packets split
/// exactly 3:1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_as_analyzers_get_every_record_split_by_weight_with_attributes_intact() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    // The heavier one over HTTPS with a bearer token.
    let three = analyzer_collector(
        dir.path(),
        "collector-three",
        Some(Secure::new(dir.path(), "collector-three")),
    )
    .await;
    let one = analyzer_collector(dir.path(), "collector-one", None).await;
    let config = Config::new(vec![
        remote("three", 3, &three.endpoint).with(&three.keys()),
        remote("one", 1, &one.endpoint).with(&one.keys()),
    ])
    .http("{timeout: 5s}");
    let path = write_config(dir.path(), "distributor.yaml", &config);
    let distributor = Distributor::start(&path, &dir.path().join("data"), dir.path()).await;
    assert!(three.endpoint.starts_with("https://"), "{}", three.endpoint);
    for id in ["three", "one"] {
        eventually(&format!("a passed probe of {id}"), DEADLINE, || async {
            let reply = distributor.get("/api/v1/analyzers").await;
            let info = &reply.json["analyzers"][id];
            if info["last_health_check"].is_string() && info["in_rotation"] == true {
                Ok(())
            } else {
                Err(reply.text.clone())
            }
        })
        .await;
    }

    const PACKETS: usize = 400;
    let packets = audit_packets(PACKETS);
    for chunk in packets.chunks(100) {
        distributor
            .post_logs(&Value::Array(chunk.to_vec()))
            .await
            .expect(202);
    }
    let stats = distributor.drained().await;
    assert_eq!(stats["analyzers"]["three"]["processed_count"], 300, "{stats}");
    assert_eq!(stats["analyzers"]["one"]["processed_count"], 100, "{stats}");
    assert!(distributor.dead_letter().await.is_empty());

    let collectors = [&three, &one];
    let seen = eventually(
        "every record in the collectors' files",
        AUDIT_DEADLINE,
        || async {
            let seen = records_by_collector(&collectors);
            let total: usize = seen.values().map(BTreeMap::len).sum();
            if total >= PACKETS * 2 {
                Ok(seen)
            } else {
                Err(format!("{total} of {} records", PACKETS * 2))
            }
        },
    )
    .await;

    let mut packets_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut problems = Vec::new();
    for packet in &packets {
        let id = packet["id"].as_str().unwrap();
        for message in packet["messages"].as_array().unwrap() {
            let key = (id.to_string(), message["metadata"]["seq"].as_u64().unwrap());
            let holders: Vec<&str> = seen
                .iter()
                .filter(|(_, records)| records.contains_key(&key))
                .map(|(name, _)| name.as_str())
                .collect();
            match holders.as_slice() {
                [holder] => {
                    packets_of.entry(holder).or_default().insert(id);
                    if let Err(problem) = check_record(&seen[*holder][&key], id, message) {
                        problems.push(format!("{key:?} at {holder}: {problem}"));
                    }
                }
                other => problems.push(format!("{key:?} is at {other:?}")),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems, the first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    let split: BTreeMap<&str, usize> = packets_of.iter().map(|(name, ids)| (*name, ids.len())).collect();
    assert_eq!(
        split,
        BTreeMap::from([("collector-one", 100), ("collector-three", 300)])
    );
    for collector in collectors {
        let log = collector.collector.stderr();
        assert!(
            !log.contains("\terror\t"),
            "{} logged errors:\n{log}",
            collector.collector.name
        );
    }
}

/// A collector as a client: it tails `input` and sends every line to the
/// distributor's `/v1/logs` with `otlp_http` (protobuf and gzip, its
/// defaults), retrying without a time limit while the distributor is down.
fn client_collector_config(input: &Path, distributor_port: u16, health_port: u16) -> String {
    format!(
        r#"receivers:
  file_log:
    include: [{input}]
    start_at: beginning
    poll_interval: 50ms
    resource:
      service.name: tailed-app
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:{distributor_port}
    timeout: 5s
    retry_on_failure:
      enabled: true
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0
extensions:
  health_check:
    endpoint: 127.0.0.1:{health_port}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
  pipelines:
    logs:
      receivers: [file_log]
      exporters: [otlp_http]
"#,
        input = input.display()
    )
}

/// The packets a reference analyzer recorded with `--record-messages`:
/// (packet id, message texts), in the order received.
fn recorded(analyzer: &AnalyzerProcess) -> Vec<(String, Vec<String>)> {
    let text = match std::fs::read_to_string(&analyzer.record) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", analyzer.record.display()),
    };
    text.lines()
        .map(|line| {
            let packet: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let messages = packet["messages"]
                .as_array()
                .unwrap_or_else(|| panic!("no messages recorded: {line}"))
                .iter()
                .map(|m| {
                    assert_eq!(m["source"], "tailed-app", "{m}");
                    m["message"].as_str().unwrap().to_string()
                })
                .collect();
            (packet["id"].as_str().unwrap().to_string(), messages)
        })
        .collect()
}

/// The collector tails a file and exports to `/v1/logs`; the distributor
/// is killed with SIGKILL halfway through and started again on the same
/// port and data directory. The collector's retries send again what was
/// not acknowledged, the write-ahead log keeps what was: every line
/// reaches the reference analyzers, and the packets (at most 10 lines
/// each, by `limits.max_messages_per_packet`) split 3:1 by weight within
/// what one restart of the routing can shift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_tailing_a_file_gets_every_line_to_the_analyzers_across_a_kill_9() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let three = AnalyzerProcess::start(dir.path(), "three", &["--record-messages"]).await;
    let one = AnalyzerProcess::start(dir.path(), "one", &["--record-messages"]).await;
    let config = Config::new(vec![
        remote("three", 3, &three.endpoint()),
        remote("one", 1, &one.endpoint()),
    ])
    .http("{timeout: 5s}")
    // Packets of at most 10 lines: a few hundred packets to split.
    .limits("{max_messages_per_packet: 10}");
    let config = write_config(dir.path(), "distributor.yaml", &config);
    let data = dir.path().join("data");
    let mut distributor = Distributor::stopped(free_port(), dir.path());
    distributor.launch(&config, &data, &[]).await;

    let input = dir.path().join("app.log");
    let mut file = std::fs::File::create(&input).unwrap();
    let health_port = free_port();
    let collector = Collector::start(
        dir.path(),
        "client",
        &client_collector_config(&input, distributor.port, health_port),
        health_port,
    )
    .await;

    const LINES: usize = 3000;
    const CHUNK: usize = 50;
    let line = |i: usize| {
        format!(
            "line {i:05} of the tailed file: user=u{} status={}",
            i % 97,
            200 + i % 5
        )
    };
    let mut killed_after = None;
    for (n, start) in (0..LINES).step_by(CHUNK).enumerate() {
        let chunk: String = (start..start + CHUNK).map(|i| line(i) + "\n").collect();
        file.write_all(chunk.as_bytes()).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        if n == LINES / CHUNK / 2 {
            assert!(distributor.kill9(), "the distributor was running");
            killed_after = Some(start + CHUNK);
            // Lines go on being written while it is down.
            tokio::time::sleep(Duration::from_millis(500)).await;
            distributor.launch(&config, &data, &[]).await;
        }
    }
    let killed_after = killed_after.unwrap();

    let lines: BTreeSet<String> = (0..LINES).map(line).collect();
    let packets = eventually("every line at the analyzers", DEADLINE * 6, || async {
        let packets: Vec<(&str, (String, Vec<String>))> = [("three", &three), ("one", &one)]
            .into_iter()
            .flat_map(|(name, analyzer)| recorded(analyzer).into_iter().map(move |p| (name, p)))
            .collect();
        let arrived: BTreeSet<&String> = packets.iter().flat_map(|(_, (_, messages))| messages).collect();
        let missing = lines.iter().filter(|l| !arrived.contains(l)).count();
        if missing == 0 {
            Ok(packets)
        } else {
            Err(format!(
                "{missing} of {LINES} lines missing; collector log:\n{}",
                collector.stderr()
            ))
        }
    })
    .await;

    let unknown: Vec<&String> = packets
        .iter()
        .flat_map(|(_, (_, messages))| messages)
        .filter(|m| !lines.contains(*m))
        .collect();
    assert!(unknown.is_empty(), "lines nobody wrote arrived: {unknown:?}");
    let deliveries = |name: &str| packets.iter().filter(|(n, _)| *n == name).count();
    let (to_three, to_one) = (deliveries("three"), deliveries("one"));
    // Each start of the distributor routes 3:1 exactly, to within one
    // round of four packets: two starts, two rounds at most.
    assert!(
        to_three.abs_diff(3 * to_one) < 8,
        "{to_three} deliveries to three, {to_one} to one"
    );
    let messages = packets.iter().map(|(_, (_, m))| m.len()).sum::<usize>();
    let distinct: BTreeSet<&str> = packets.iter().map(|(_, (id, _))| id.as_str()).collect();
    eprintln!(
        "collector as client: {LINES} lines written (distributor killed after line {killed_after}), \
         {messages} messages arrived in {} deliveries of {} packets ({to_three} to three, {to_one} to one), \
         {} lines more than once",
        packets.len(),
        distinct.len(),
        messages - LINES
    );
    assert!(
        !collector.stderr().contains("Dropping data"),
        "the collector dropped data:\n{}",
        collector.stderr()
    );
}
