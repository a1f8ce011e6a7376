//! OpenTelemetry Collectors as processes of a test: the binary that
//! `scripts/otelcol.sh` builds once from Go modules with the collector
//! builder (and caches under `~/.cache/logs-distributor`), started with a
//! configuration the test writes, and the OTLP/JSON its file exporter
//! writes, read back.

use crate::support::poll::DEADLINE;
use crate::support::processes::tail;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The collector binary: what `scripts/otelcol.sh` prints (it builds the
/// collector the first time, which takes minutes; `make test` runs it
/// before the tests).
pub(crate) fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/otelcol.sh");
        let output = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        assert!(
            path.is_file(),
            "{} printed {path:?}, which is no file",
            script.display()
        );
        path
    })
}

/// A collector running as its own process, killed when dropped.
pub(crate) struct Collector {
    child: Option<Child>,
    pub name: String,
    log: PathBuf,
}

impl Collector {
    /// Writes `config` to `dir/NAME.yaml`, starts the collector with it and
    /// waits until its `health_check` extension, on 127.0.0.1:`health_port`,
    /// answers 200.
    pub(crate) async fn start(dir: &Path, name: &str, config: &str, health_port: u16) -> Collector {
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config).expect("write the collector's configuration");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("collector log file"))
            .spawn()
            .expect("spawn the collector");
        let mut collector = Collector {
            child: Some(child),
            name: name.into(),
            log,
        };
        let health = format!("http://127.0.0.1:{health_port}/");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = collector
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!(
                    "collector {name} exited with {status} during start-up:\n{}",
                    tail(&collector.stderr(), 40)
                );
            }
            if let Ok(response) = client.get(&health).send().await {
                if response.status().is_success() {
                    return collector;
                }
            }
            assert!(
                Instant::now() < deadline,
                "collector {name} not healthy at {health} after {DEADLINE:?}:\n{}",
                tail(&collector.stderr(), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the collector logged so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One log record as a file exporter wrote it (OTLP/JSON), with the
/// attributes of the resource it came under; attributes as natural JSON.
#[derive(Debug, Clone)]
pub(crate) struct FileRecord {
    pub resource: Map<String, Value>,
    pub attributes: Map<String, Value>,
    /// The `logRecord` object itself.
    pub record: Value,
}

/// Every record of a file exporter's output (one `ExportLogsServiceRequest`
/// in OTLP/JSON per line); no file is no records. A line still being
/// written (no newline yet) is left for the next read.
pub(crate) fn file_records(path: &Path) -> Vec<FileRecord> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    let mut records = Vec::new();
    for line in complete.lines().filter(|line| !line.trim().is_empty()) {
        let request: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: a line that is not JSON ({e}): {line}", path.display()));
        for resource_logs in array(&request["resourceLogs"]) {
            let resource = attributes(&resource_logs["resource"]["attributes"]);
            for scope_logs in array(&resource_logs["scopeLogs"]) {
                for record in array(&scope_logs["logRecords"]) {
                    records.push(FileRecord {
                        resource: resource.clone(),
                        attributes: attributes(&record["attributes"]),
                        record: record.clone(),
                    });
                }
            }
        }
    }
    records
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// OTLP/JSON `[{"key": k, "value": AnyValue}]` as a natural JSON object.
pub(crate) fn attributes(list: &Value) -> Map<String, Value> {
    array(list)
        .iter()
        .map(|kv| {
            let key = kv["key"].as_str().expect("an attribute has a key").to_string();
            (key, natural(&kv["value"]))
        })
        .collect()
}

/// An OTLP/JSON AnyValue as natural JSON: int64 (a string in OTLP/JSON) as
/// a number, bytes as `{"bytes_base64": ...}`, kvlist as an object, an
/// empty value as null.
pub(crate) fn natural(any: &Value) -> Value {
    let Some(object) = any.as_object() else {
        return Value::Null;
    };
    if let Some(s) = object.get("stringValue") {
        return s.clone();
    }
    if let Some(b) = object.get("boolValue") {
        return b.clone();
    }
    if let Some(i) = object.get("intValue") {
        return match i {
            Value::String(text) => Value::from(text.parse::<i64>().expect("an int64")),
            other => other.clone(),
        };
    }
    if let Some(d) = object.get("doubleValue") {
        return d.clone();
    }
    if let Some(a) = object.get("arrayValue") {
        return Value::Array(array(&a["values"]).iter().map(natural).collect());
    }
    if let Some(l) = object.get("kvlistValue") {
        return Value::Object(attributes(&l["values"]));
    }
    if let Some(b) = object.get("bytesValue") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b.as_str().expect("bytes as base64"))
            .expect("valid base64");
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        return serde_json::json!({"bytes_base64": text});
    }
    Value::Null
}
