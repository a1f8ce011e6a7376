//! A connection whose output must be taken by the client within a bound.
//!
//! A client that stops reading its answers (or pipelines requests and
//! never reads) leaves the server's writes pending for as long as it likes,
//! holding its connection and one of `server.max_connections`. Wrapped in
//! [`WriteDeadline`], the connection's writes fail with `TimedOut` once
//! output has waited for the client longer than the bound, and the server
//! closes it.
//!
//! The clock starts when a write first finds the socket full and stops
//! only when a flush completes, which hyper asks for once everything it
//! had to send is written: progress in between does not restart it, so a
//! client that reads a few bytes now and then is cut off too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner` with writes bounded by `limit` (see the module).
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// When output waiting for the client gives up; armed while it waits.
    deadline: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// The write found no room: starts the clock if it is not running;
    /// an error once it has run out.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.armed {
            self.armed = true;
            self.deadline.as_mut().reset(Instant::now() + self.limit);
        }
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client did not take its answer within {}",
                humantime::format_duration(self.limit)
            ),
        )))
    }

    /// Passes `polled` on, watching the clock while it is pending.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.waiting(cx),
            ready => ready,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            self.armed = false;
        }
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn output_the_client_does_not_take_fails_after_the_limit() {
        let (end, _never_read) = tokio::io::duplex(16);
        let mut server = WriteDeadline::new(end, Duration::from_secs(5));
        let started = Instant::now();
        let error = server.write_all(&[7; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn reading_a_byte_now_and_then_does_not_restart_the_clock() {
        let (end, mut client) = tokio::io::duplex(16);
        let mut server = WriteDeadline::new(end, Duration::from_secs(5));
        let drip = tokio::spawn(async move {
            let mut byte = [0; 1];
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        let started = Instant::now();
        let error = server.write_all(&[7; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(server);
        drip.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn output_taken_in_time_stops_the_clock_at_each_flush() {
        let (end, mut client) = tokio::io::duplex(32);
        let mut server = WriteDeadline::new(end, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut taken = 0;
            let mut buf = [0; 32];
            while taken < 96 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                taken += client.read(&mut buf).await.unwrap();
            }
            taken
        });
        // Each answer waits 3 s for the client, 6 s in all: each is within
        // the bound, as the clock stops once it has been flushed.
        for _ in 0..3 {
            server.write_all(&[7; 32]).await.unwrap();
            server.flush().await.unwrap();
        }
        assert_eq!(reader.await.unwrap(), 96);
    }
}
