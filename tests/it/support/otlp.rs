//! OTLP/HTTP as the tests speak it: log requests built from the crate's
//! protobuf types, sent as protobuf or OTLP/JSON, the answers decoded; and
//! the distributor binary over two reference analyzers that record every
//! message they receive.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::config::{remote, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::http::{Api, Reply};
use crate::support::poll::{eventually, DEADLINE};
use logs_distributor::otlp::response::Status;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

pub(crate) const PROTOBUF: &str = "application/x-protobuf";
pub(crate) const JSON: &str = "application/json";

/// The distributor binary over two reference analyzers (weights 1:1) that
/// record every packet with its messages.
pub(crate) struct OtlpSetup {
    pub dir: TempDir,
    pub analyzers: Vec<AnalyzerProcess>,
    pub distributor: Distributor,
    /// The configuration file, for a restart.
    pub config: PathBuf,
}

impl OtlpSetup {
    /// Starts the analyzers, then the distributor with `configure` applied
    /// to its configuration (with the test's directory, for files).
    pub(crate) async fn start(configure: impl FnOnce(Config, &Path) -> Config) -> OtlpSetup {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut analyzers = Vec::new();
        for name in ["otlp-a", "otlp-b"] {
            analyzers.push(AnalyzerProcess::start(dir.path(), name, &["--record-messages"]).await);
        }
        let specs = analyzers
            .iter()
            .map(|a| remote(&a.name, 1, &a.endpoint()))
            .collect();
        let config = write_config(
            dir.path(),
            "distributor.yaml",
            &configure(Config::new(specs).http("{timeout: 5s}"), dir.path()),
        );
        let distributor = Distributor::start(&config, &dir.path().join("data"), dir.path()).await;
        OtlpSetup {
            dir,
            analyzers,
            distributor,
            config,
        }
    }

    pub(crate) fn api(&self) -> &Api {
        &self.distributor.api
    }

    /// Every message the analyzers recorded, once there are `count` of
    /// them (more fails the test: nothing may arrive twice here).
    pub(crate) async fn delivered(&self, count: usize) -> Vec<Value> {
        let messages = eventually("the records at the analyzers", DEADLINE * 2, || async {
            let messages = self.recorded_messages();
            if messages.len() >= count {
                Ok(messages)
            } else {
                Err(format!("{} of {count} messages arrived", messages.len()))
            }
        })
        .await;
        assert_eq!(messages.len(), count, "more messages than sent arrived");
        messages
    }

    /// What the analyzers recorded so far, packet by packet, every message.
    pub(crate) fn recorded_messages(&self) -> Vec<Value> {
        self.analyzers
            .iter()
            .flat_map(|a| a.recorded_packets())
            .flat_map(|packet| packet["messages"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

pub(crate) fn string(text: &str) -> AnyValue {
    AnyValue {
        value: Some(AnyKind::StringValue(text.into())),
    }
}

pub(crate) fn attribute(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// A request of one resource (`service.name` = `service`) and one scope,
/// a record per body, each with the attribute `index`.
pub(crate) fn log_request(service: &str, bodies: &[&str]) -> ExportLogsServiceRequest {
    let records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| LogRecord {
            time_unix_nano: 1_733_390_000_000_000_000 + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(string(body)),
            attributes: vec![attribute(
                "index",
                AnyValue {
                    value: Some(AnyKind::IntValue(i as i64)),
                },
            )],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", string(service))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "it".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// POSTs `body` to `/v1/logs` with `content_type` and the extra headers.
pub(crate) async fn post_otlp(
    api: &Api,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut all = vec![("content-type", content_type)];
    all.extend_from_slice(headers);
    api.post_raw("/v1/logs", &all, body).await
}

/// The `google.rpc.Status` of an error answer, in the answer's encoding
/// (which must be `encoding`).
pub(crate) fn status(reply: &Reply, encoding: &str) -> Status {
    assert_eq!(
        reply.header("content-type"),
        Some(encoding),
        "the answer's encoding; body: {}",
        reply.text
    );
    if encoding == PROTOBUF {
        Status::decode(reply.bytes.as_slice())
            .unwrap_or_else(|e| panic!("not a protobuf Status ({e}): {:?}", reply.bytes))
    } else {
        let code = reply.json["code"].as_i64().expect("a Status has a code") as i32;
        let message = reply.json["message"].as_str().expect("a Status has a message");
        assert_eq!(reply.json["error"], message, "the error key says the same");
        Status {
            code,
            message: message.into(),
        }
    }
}

/// The `partial_success` of a 200 in `encoding`: rejected records and the
/// message (0 and "" when there is none).
pub(crate) fn partial_success(reply: &Reply, encoding: &str) -> (i64, String) {
    reply.expect(200);
    assert_eq!(reply.header("content-type"), Some(encoding), "{}", reply.text);
    if encoding == PROTOBUF {
        let response =
            ExportLogsServiceResponse::decode(reply.bytes.as_slice()).expect("an ExportLogsServiceResponse");
        response
            .partial_success
            .map(|p| (p.rejected_log_records, p.error_message))
            .unwrap_or_default()
    } else {
        let partial = &reply.json["partialSuccess"];
        if partial.is_null() {
            assert_eq!(reply.json, serde_json::json!({}), "{}", reply.text);
            return (0, String::new());
        }
        let rejected = partial["rejectedLogRecords"]
            .as_str()
            .expect("int64 is written as a string")
            .parse()
            .expect("a decimal");
        (
            rejected,
            partial["errorMessage"].as_str().unwrap_or_default().into(),
        )
    }
}
