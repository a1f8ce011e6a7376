//! Answers from a remote server, read by the `http1` client connection: the
//! first byte sets how many bytes each read from the socket yields (so the
//! answer meets the parser in pieces of every size), the rest is what the
//! server sends. Requests are exchanged on the one kept-alive connection
//! until an answer fails or ends it. Must never panic and always end; an
//! answer read has a three-digit status and no more body than was sent.
#![no_main]

use http1::Connection;
use libfuzzer_sys::fuzz_target;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const REQUEST_HEAD: &[u8] = b"POST /api/v1/logs HTTP/1.1\r\nHost: fuzz\r\n";

/// A server that has sent `answers` and closes after them; what it is sent
/// is taken and dropped.
struct Remote<'a> {
    answers: &'a [u8],
    piece: usize,
}

impl AsyncRead for Remote<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let length = self.piece.min(self.answers.len()).min(buf.remaining());
        let (piece, rest) = self.answers.split_at(length);
        buf.put_slice(piece);
        self.answers = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Remote<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime starts")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, answers)) = data.split_first() else {
        return;
    };
    let remote = Remote {
        answers,
        piece: usize::from(piece).max(1),
    };
    runtime().block_on(async {
        let mut connection = Connection::new(remote);
        loop {
            let (answer, ended) = connection.exchange(REQUEST_HEAD, b"[]").await;
            let Ok(answer) = answer else {
                break;
            };
            assert!(answer.status <= 999, "status {}", answer.status);
            assert!(
                answer.body.len() <= answers.len(),
                "a body of {} bytes from {} bytes sent",
                answer.body.len(),
                answers.len()
            );
            if ended {
                break;
            }
        }
    });
});
