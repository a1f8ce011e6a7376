//! HTTP as the tests speak it: the one reply type, the client, `Api` (the
//! endpoints of one distributor) and servers a test hosts in its own
//! process.

use crate::support::poll::{eventually, DEADLINE};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// An answer: status, headers, the body's bytes, its text and the text
/// parsed as JSON (`Value::Null` when it is not JSON).
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// Reads the whole answer; an error while reading the body is an error
    /// of the request (the answer was not received).
    pub(crate) async fn read(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?.to_vec();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            bytes,
            text,
            json,
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    pub(crate) fn expect(&self, status: u16) -> &Reply {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts the shape every error shares: a JSON object with an `error`
    /// string; answers that string.
    pub(crate) fn error(&self) -> &str {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error with content type {content_type:?}: {}",
            self.text
        );
        self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error body without an `error` string: {}", self.text))
    }

    /// The `processed_packets` of an ingest answer.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.json["processed_packets"]
            .as_array()
            .unwrap_or_else(|| panic!("no processed_packets in {}", self.text))
            .iter()
            .map(|id| id.as_str().expect("ids are strings").to_string())
            .collect()
    }
}

/// An HTTP client for tests: a request may take 10 s, a connection 2 s.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// `GET url`; an error when no whole answer came (refused, cut, timed out).
pub(crate) async fn get(client: &reqwest::Client, url: &str) -> Result<Reply, reqwest::Error> {
    Reply::read(client.get(url).send().await?).await
}

/// `POST url` with a JSON body; an error when no whole answer came.
pub(crate) async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<Reply, reqwest::Error> {
    Reply::read(client.post(url).json(body).send().await?).await
}

/// Serves `app` on 127.0.0.1, on a port the system picks; answers the address.
pub(crate) async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A client bound to one distributor. Every request must be answered:
/// one that is not fails the test.
#[derive(Clone)]
pub(crate) struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub(crate) fn new(addr: SocketAddr) -> Api {
        Api {
            http: client(),
            base: format!("http://{addr}"),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        get(&self.http, &self.url(path)).await.expect("GET")
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        post(&self.http, &self.url(path), body).await.expect("POST")
    }

    /// POSTs raw bytes with the given headers.
    pub(crate) async fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut request = self.http.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        Reply::read(response).await.expect("response body")
    }

    pub(crate) async fn post_logs(&self, packets: &Value) -> Reply {
        self.post("/api/v1/logs", packets).await
    }

    pub(crate) async fn stats(&self) -> Value {
        let reply = self.get("/api/v1/stats").await;
        reply.expect(200);
        reply.json
    }

    /// Forces an analyzer in or out, or back to auto: `{"healthy": false}`...
    pub(crate) async fn set_health(&self, id: &str, body: Value) -> Reply {
        self.post(&format!("/api/v1/analyzers/{id}/health"), &body).await
    }

    /// Waits until nothing is in flight; answers the stats then.
    pub(crate) async fn drained(&self) -> Value {
        eventually("nothing in flight", DEADLINE, || async {
            let stats = self.stats().await;
            if stats["in_flight"] == 0 {
                Ok(stats)
            } else {
                Err(format!("in_flight = {}", stats["in_flight"]))
            }
        })
        .await
    }

    /// Every dead-letter entry, through `GET /api/v1/dead-letter`, page by page.
    pub(crate) async fn dead_letter(&self) -> Vec<Value> {
        let mut entries = Vec::new();
        loop {
            let reply = self
                .get(&format!(
                    "/api/v1/dead-letter?limit=10000&offset={}",
                    entries.len()
                ))
                .await;
            reply.expect(200);
            let page = reply.json["packets"]
                .as_array()
                .expect("dead-letter packets")
                .clone();
            let total = reply.json["total"].as_u64().expect("dead-letter total") as usize;
            let empty = page.is_empty();
            entries.extend(page);
            if entries.len() >= total || empty {
                return entries;
            }
        }
    }
}

/// `processed_count` of each analyzer of the stats, by id.
pub(crate) fn processed(stats: &Value) -> std::collections::BTreeMap<String, u64> {
    counter(stats, "processed_count")
}

/// One per-analyzer counter of the stats, by id.
pub(crate) fn counter(stats: &Value, field: &str) -> std::collections::BTreeMap<String, u64> {
    stats["analyzers"]
        .as_object()
        .expect("stats.analyzers")
        .iter()
        .map(|(id, a)| (id.clone(), a[field].as_u64().expect("a count")))
        .collect()
}
