//! CPU work of milliseconds moved off the request threads: on one of
//! those, it would hold back every request and delivery queued behind it.
//! (Reading a 143 KB OTLP protobuf request into packets, about 0.5 ms,
//! was no faster there: the hop's cost matched what it saved.) Each kind
//! of work runs on tokio's blocking threads, at most one piece
//! per CPU at once, so that the data being worked on (and its memory)
//! stays as little as when it ran on the request threads.

use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// Building OTLP delivery bodies (decoding packets, mapping messages).
pub(crate) static DELIVERY_BODIES: Offload = Offload::new();

/// One kind of work, with its own bound.
pub(crate) struct Offload {
    permits: LazyLock<Semaphore>,
}

impl Offload {
    const fn new() -> Offload {
        Offload {
            permits: LazyLock::new(|| {
                Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
            }),
        }
    }

    /// Runs `work` on a blocking thread once a place is free; `None` when
    /// the runtime is stopping and has no thread to give. A panic in
    /// `work` goes on in the caller. The work holds its place until it
    /// ends, even when the caller stops waiting for it.
    pub(crate) async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let place = self.permits.acquire().await.expect("never closed");
        let work = move || {
            let done = work();
            drop(place);
            done
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(done) => Some(done),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }

    /// Places free now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_pieces_run_at_once_than_there_are_cpus() {
        static WORK: Offload = Offload::new();
        let cpus = WORK.free();
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let pieces = (0..cpus * 4).map(|n| {
            let (running, most) = (running.clone(), most.clone());
            tokio::spawn(async move {
                WORK.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    n * 2
                })
                .await
            })
        });
        let done: Vec<_> = futures_util::future::join_all(pieces).await;
        let answers: Vec<usize> = done.into_iter().map(|d| d.unwrap().unwrap()).collect();
        assert_eq!(answers, (0..cpus * 4).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), cpus, "{cpus} CPUs");
        assert_eq!(WORK.free(), cpus);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_whose_caller_stopped_waiting_keeps_its_place_until_it_ends() {
        static WORK: Offload = Offload::new();
        let cpus = WORK.free();
        let (started, finish) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let (started_tx, started_rx) = started;
        let (finish_tx, finish_rx) = finish;
        let caller = tokio::spawn(WORK.run(move || {
            started_tx.send(()).unwrap();
            finish_rx.recv().unwrap();
        }));
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(WORK.free(), cpus - 1, "the running work lost its place");
        finish_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while WORK.free() != cpus {
            assert!(std::time::Instant::now() < deadline, "the place never came back");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    #[should_panic(expected = "in the work")]
    async fn a_panic_in_the_work_goes_on_in_the_caller() {
        static WORK: Offload = Offload::new();
        WORK.run(|| panic!("in the work")).await;
    }
}
