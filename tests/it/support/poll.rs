//! Waiting for a condition, with a deadline: the one polling loop of the
//! tests.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long any condition may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `probe` every 10 ms until it answers `Ok`; fails the test with
/// the last `Err` once `timeout` has passed.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_every(what, timeout, Duration::from_millis(10), probe).await
}

/// [`eventually`], polling every `every` (for probes that cost more than a
/// request on loopback, such as running kubectl).
pub(crate) async fn eventually_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
