//! An in-process analyzer that behaves like the original's: it takes
//! `processing_time` per packet (an async sleep: no thread is held), fails a
//! packet with `failure_rate` ("analyzer crashed during processing") and a
//! health probe with `health_failure_rate`.

use super::{DeliveryFailure, ProbeError};
use crate::dispatch::job::Job;
use rand::Rng;
use std::time::Duration;

/// The simulated failure's message, as the original wrote it to the dead letter.
pub(super) const SIMULATED_CRASH: &str = "analyzer crashed during processing";

#[derive(Debug, Clone)]
pub struct Simulated {
    processing_time: Duration,
    failure_rate: f64,
    health_failure_rate: f64,
}

impl Simulated {
    /// Takes `processing_time` per packet; fails a delivery with
    /// `failure_rate` and a probe with `health_failure_rate` (0 to 1).
    pub fn new(processing_time: Duration, failure_rate: f64, health_failure_rate: f64) -> Simulated {
        Simulated {
            processing_time,
            failure_rate,
            health_failure_rate,
        }
    }

    pub async fn deliver(&self, batch: &[Job]) -> Result<(), DeliveryFailure> {
        if !self.processing_time.is_zero() {
            let packets = u32::try_from(batch.len().max(1)).unwrap_or(u32::MAX);
            tokio::time::sleep(self.processing_time.saturating_mul(packets)).await;
        }
        if chance(self.failure_rate) {
            return Err(DeliveryFailure::retryable(SIMULATED_CRASH));
        }
        Ok(())
    }

    pub async fn probe(&self) -> Result<(), ProbeError> {
        if chance(self.health_failure_rate) {
            return Err(ProbeError::Simulated);
        }
        Ok(())
    }
}

fn chance(rate: f64) -> bool {
    rate > 0.0 && rand::rng().random_bool(rate.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulated(failure_rate: f64, health_failure_rate: f64) -> Simulated {
        Simulated::new(Duration::ZERO, failure_rate, health_failure_rate)
    }

    #[tokio::test]
    async fn rates_of_zero_and_one_are_exact() {
        assert!(simulated(0.0, 0.0).deliver(&[]).await.is_ok());
        assert!(simulated(0.0, 0.0).probe().await.is_ok());
        let failure = simulated(1.0, 1.0).deliver(&[]).await.unwrap_err();
        assert_eq!(failure.message, SIMULATED_CRASH);
        assert!(simulated(1.0, 1.0).probe().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn processing_sleeps_without_holding_a_thread() {
        let s = Simulated::new(Duration::from_millis(100), 0.0, 0.0);
        let start = tokio::time::Instant::now();
        // 1000 deliveries at once on a paused clock finish together after 100 ms.
        let all = (0..1000).map(|_| s.deliver(&[]));
        futures_util::future::join_all(all).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }
}
