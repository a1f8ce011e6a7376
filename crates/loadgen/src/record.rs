//! `--record FILE`: the ids of the packets the server accepted, one JSON
//! line each, written by one task from the workers' chunks.

use anyhow::Context;
use serde::Serialize;
use std::borrow::Cow;
use std::path::Path;
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A worker hands its recorded ids to the file writer in chunks of about this size.
const RECORD_CHUNK_BYTES: usize = 64 * 1024;

/// A worker's pending `--record` lines, handed to the file writer in chunks.
pub(crate) struct RecordBuffer {
    lines: Vec<u8>,
    sink: mpsc::Sender<Vec<u8>>,
}

#[derive(Serialize)]
struct RecordLine<'a> {
    id: &'a str,
    status: u16,
}

impl RecordBuffer {
    pub(crate) fn new(sink: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            lines: Vec::new(),
            sink,
        }
    }

    pub(crate) async fn record(&mut self, ids: &[Cow<'_, str>], status: u16) {
        for id in ids {
            let line = RecordLine { id, status };
            serde_json::to_writer(&mut self.lines, &line).expect("serializing into a Vec cannot fail");
            self.lines.push(b'\n');
        }
        if self.lines.len() >= RECORD_CHUNK_BYTES {
            self.flush().await;
        }
    }

    pub(crate) async fn flush(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.lines);
        // Fails only when the writer has stopped on an error, which `run` reports.
        let _ = self.sink.send(chunk).await;
    }
}

/// Creates the record file and starts the task that writes chunks into it until every
/// worker's sender is gone.
pub(crate) async fn start_record_writer(
    path: &Path,
) -> anyhow::Result<(mpsc::Sender<Vec<u8>>, JoinHandle<anyhow::Result<()>>)> {
    let file = File::create(path)
        .await
        .with_context(|| format!("cannot create record file {}", path.display()))?;
    let (sink, chunks) = mpsc::channel(64);
    let path = path.to_owned();
    let writer = tokio::spawn(async move {
        write_record_chunks(BufWriter::new(file), chunks)
            .await
            .with_context(|| format!("cannot write record file {}", path.display()))
    });
    Ok((sink, writer))
}

async fn write_record_chunks(
    mut out: BufWriter<File>,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    while let Some(chunk) = chunks.recv().await {
        out.write_all(&chunk).await?;
    }
    out.flush().await
}
