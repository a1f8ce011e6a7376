//! An analyzer hosted in the test process, on a port of its own on
//! loopback, that records every delivery as it came (headers and raw body)
//! and answers from a script: one status per delivery, then 200. Its
//! `/health` answers 200.

use crate::support::http::serve;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One delivery as the recorder received it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the recorder answered.
    pub status: StatusCode,
}

impl Delivery {
    /// The body's lines (NDJSON), each parsed.
    pub(crate) fn lines(&self) -> Vec<Value> {
        std::str::from_utf8(&self.body)
            .expect("a UTF-8 body")
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("line {line:?}: {e}")))
            .collect()
    }

    /// The body as a JSON array of packets.
    pub(crate) fn packets(&self) -> Vec<Value> {
        serde_json::from_slice::<Vec<Value>>(&self.body).expect("a JSON array of packets")
    }
}

#[derive(Clone)]
pub(crate) struct Recorder {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl Recorder {
    /// Starts a recorder that answers its first deliveries with `script`,
    /// in order, and every later one 200; answers it and its endpoint URL.
    pub(crate) async fn start(script: Vec<StatusCode>) -> (Recorder, String) {
        let recorder = Recorder {
            deliveries: Arc::default(),
        };
        let script = Arc::new(Mutex::new(script.into_iter().rev().collect::<Vec<_>>()));
        let deliveries = recorder.deliveries.clone();
        let app = Router::new().route("/health", get(|| async { "ok" })).route(
            "/",
            post(move |headers: HeaderMap, body: Bytes| {
                let (deliveries, script) = (deliveries.clone(), script.clone());
                async move {
                    let status = script.lock().unwrap().pop().unwrap_or(StatusCode::OK);
                    deliveries.lock().unwrap().push(Delivery {
                        headers,
                        body,
                        status,
                    });
                    (status, "{}")
                }
            }),
        );
        let addr = serve(app).await;
        (recorder, format!("http://{addr}/"))
    }

    /// Every delivery so far, in the order they came.
    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Every packet taken (answered 200) in the packets format, by id.
    pub(crate) fn packets_by_id(&self) -> HashMap<String, Value> {
        self.deliveries()
            .iter()
            .filter(|delivery| delivery.status == StatusCode::OK)
            .flat_map(Delivery::packets)
            .map(|packet| (packet["id"].as_str().expect("a packet id").to_string(), packet))
            .collect()
    }
}
