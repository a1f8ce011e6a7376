//! When to try a failed delivery again, and the timer that does it.
//!
//! [`Backoff`] is the schedule: the k-th retry waits `base * factor^(k-1)`
//! (2 s, 4 s, 8 s by default), capped, with optional full jitter.
//! [`Backoff::decide`] turns a failure into a [`RetryAction`]: classifying
//! the failure is the transport's job, counting retries is this one's.
//!
//! [`RetryTimer`] holds every waiting retry in one `DelayQueue` driven by a
//! single task, so thousands of waiting retries cost a heap entry each, not
//! a sleeping task each.
//!
//! [`RetryBudget`] (Envoy's retry budget) keeps a failing analyzer from
//! multiplying the load on the others: retries out at once stay under a
//! percentage of all deliveries out at once, with a floor.

use crate::config::RetryConfig;
use crate::transport::{DeliveryFailure, FailureClass};
use futures_util::StreamExt;
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::time::DelayQueue;

/// A validated retry schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    base: Duration,
    factor: f64,
    max_retries: u32,
    max_delay: Duration,
    jitter: bool,
}

/// What to do with a packet whose delivery failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAction {
    /// Try again after this wait; the packet's retry count becomes `retry`.
    Retry { after: Duration, retry: u32 },
    /// Give up: write it to the dead letter with this reason.
    DeadLetter { final_error: String },
}

impl Backoff {
    pub fn try_new(config: &RetryConfig) -> Result<Backoff, String> {
        if !config.factor.is_finite() || config.factor < 1.0 {
            return Err(format!("retry.factor {} must be at least 1", config.factor));
        }
        if config.max_delay < config.base_delay {
            return Err("retry.max_delay must not be below retry.base_delay".into());
        }
        Ok(Backoff {
            base: config.base_delay,
            factor: config.factor,
            max_retries: config.max_retries,
            max_delay: config.max_delay,
            jitter: config.jitter,
        })
    }

    /// The wait before retry number `retry` (1-based), before jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let seconds = self.base.as_secs_f64() * self.factor.powi(exponent);
        if seconds.is_finite() && seconds < self.max_delay.as_secs_f64() {
            Duration::from_secs_f64(seconds)
        } else {
            self.max_delay
        }
    }

    /// Decides the fate of a packet that has been retried `retries_so_far`
    /// times and just failed with `failure`.
    pub fn decide(&self, retries_so_far: u32, failure: &DeliveryFailure) -> RetryAction {
        if failure.class != FailureClass::Retryable {
            return RetryAction::DeadLetter {
                final_error: failure.message.clone(),
            };
        }
        if retries_so_far >= self.max_retries {
            return RetryAction::DeadLetter {
                final_error: failure.message.clone(),
            };
        }
        let retry = retries_so_far + 1;
        let mut after = self.delay(retry);
        if self.jitter {
            after = rand::rng().random_range(Duration::ZERO..=after);
        }
        if let Some(asked) = failure.retry_after {
            after = after.max(asked.min(self.max_delay));
        }
        RetryAction::Retry { after, retry }
    }
}

/// Something a retry timer holds: it counts the packets it stands for.
pub(crate) trait Packets {
    fn packets(&self) -> usize;
}

/// Holds retries until their wait is over, then hands them to `on_due`.
pub(crate) struct RetryTimer<T> {
    schedule: mpsc::UnboundedSender<(T, Duration)>,
    /// Packets waiting.
    waiting: Arc<AtomicUsize>,
}

impl<T: Packets + Send + 'static> RetryTimer<T> {
    /// Starts the timer task; it ends when the `RetryTimer` is dropped.
    pub(crate) fn spawn(on_due: impl Fn(T) + Send + 'static) -> RetryTimer<T> {
        let (schedule, mut incoming) = mpsc::unbounded_channel::<(T, Duration)>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let counter = waiting.clone();
        tokio::spawn(async move {
            let mut queue = DelayQueue::new();
            loop {
                tokio::select! {
                    next = incoming.recv() => match next {
                        Some((job, after)) => { queue.insert(job, after); }
                        None => break,
                    },
                    Some(expired) = queue.next(), if !queue.is_empty() => {
                        let due = expired.into_inner();
                        counter.fetch_sub(due.packets(), Ordering::Relaxed);
                        on_due(due);
                    }
                }
            }
        });
        RetryTimer { schedule, waiting }
    }

    /// Hands `retry` back after `after`.
    pub(crate) fn schedule(&self, retry: T, after: Duration) {
        let packets = retry.packets();
        self.waiting.fetch_add(packets, Ordering::Relaxed);
        if self.schedule.send((retry, after)).is_err() {
            self.waiting.fetch_sub(packets, Ordering::Relaxed);
            tracing::error!("retry timer has stopped; a retry was not scheduled");
        }
    }

    /// Packets waiting for their retry.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Caps retries out at once to `percent` of the deliveries out at once,
/// never below `min_concurrent`.
#[derive(Debug)]
pub struct RetryBudget {
    percent: f64,
    min_concurrent: usize,
    outstanding: AtomicUsize,
}

impl RetryBudget {
    pub fn new(percent: f64, min_concurrent: usize) -> RetryBudget {
        RetryBudget {
            percent,
            min_concurrent,
            outstanding: AtomicUsize::new(0),
        }
    }

    /// Takes places for `packets` retried together if the budget allows
    /// them all, given how many packets are being delivered or queued for
    /// delivery now. When no retry is out, any number may go, so that a
    /// retry larger than the budget is not held back for ever.
    pub fn try_acquire(&self, packets: usize, active_deliveries: usize) -> bool {
        let allowed = ((active_deliveries as f64 * self.percent / 100.0) as usize).max(self.min_concurrent);
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == 0 || now + packets <= allowed).then_some(now + packets)
            })
            .is_ok()
    }

    /// Gives back the place of a retried packet whose attempt has ended.
    pub fn release(&self) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| now.checked_sub(1));
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl Packets for &'static str {
        fn packets(&self) -> usize {
            1
        }
    }

    fn backoff(jitter: bool) -> Backoff {
        Backoff::try_new(&RetryConfig {
            jitter,
            ..RetryConfig::default()
        })
        .unwrap()
    }

    fn retryable(message: &str) -> DeliveryFailure {
        DeliveryFailure::retryable(message)
    }

    #[test]
    fn the_default_schedule_is_2_4_8_then_dead_letter() {
        let b = backoff(false);
        let failure = retryable("analyzer crashed during processing");
        let waits: Vec<_> = (0..3)
            .map(|k| match b.decide(k, &failure) {
                RetryAction::Retry { after, retry } => {
                    assert_eq!(retry, k + 1);
                    after.as_secs()
                }
                other => panic!("retry {k}: {other:?}"),
            })
            .collect();
        assert_eq!(waits, [2, 4, 8]);
        assert_eq!(
            b.decide(3, &failure),
            RetryAction::DeadLetter {
                final_error: "analyzer crashed during processing".into()
            }
        );
    }

    #[test]
    fn permanent_failures_skip_the_retries() {
        let failure = DeliveryFailure::permanent("HTTP 400: bad packet");
        assert!(matches!(
            backoff(false).decide(0, &failure),
            RetryAction::DeadLetter { .. }
        ));
    }

    #[test]
    fn a_longer_retry_after_wins() {
        let mut failure = retryable("HTTP 429");
        failure.retry_after = Some(Duration::from_secs(30));
        assert_eq!(
            backoff(false).decide(0, &failure),
            RetryAction::Retry {
                after: Duration::from_secs(30),
                retry: 1
            }
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        let bad_factor = RetryConfig {
            factor: 0.5,
            ..RetryConfig::default()
        };
        assert!(Backoff::try_new(&bad_factor).is_err());
        let bad_cap = RetryConfig {
            max_delay: Duration::from_millis(1),
            ..RetryConfig::default()
        };
        assert!(Backoff::try_new(&bad_cap).is_err());
    }

    proptest! {
        #[test]
        fn delays_grow_and_stay_within_the_cap(
            base_ms in 1u64..5_000, factor in 1.0f64..10.0, cap_s in 5u64..3_600, retry in 1u32..200,
        ) {
            let b = Backoff::try_new(&RetryConfig {
                base_delay: Duration::from_millis(base_ms),
                factor,
                max_retries: u32::MAX,
                max_delay: Duration::from_secs(cap_s),
                jitter: false,
                ..RetryConfig::default()
            }).unwrap();
            let d = b.delay(retry);
            prop_assert!(d <= Duration::from_secs(cap_s));
            prop_assert!(d >= Duration::from_millis(base_ms).min(Duration::from_secs(cap_s)));
            prop_assert!(b.delay(retry + 1) >= d);
        }

        #[test]
        fn jitter_stays_between_zero_and_the_delay(retry in 0u32..3) {
            let b = backoff(true);
            match b.decide(retry, &retryable("x")) {
                RetryAction::Retry { after, .. } => prop_assert!(after <= b.delay(retry + 1)),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }

    #[test]
    fn the_budget_allows_a_percentage_of_active_deliveries_with_a_floor() {
        let budget = RetryBudget::new(20.0, 3);
        // 10 active deliveries: 20% is 2, the floor of 3 wins.
        assert!((0..3).all(|_| budget.try_acquire(1, 10)));
        assert!(!budget.try_acquire(1, 10));
        // 100 active deliveries: 20 retries may be out.
        assert!((0..17).all(|_| budget.try_acquire(1, 100)));
        assert!(!budget.try_acquire(1, 100));
        assert_eq!(budget.outstanding(), 20);
        budget.release();
        assert!(budget.try_acquire(1, 100));
        for _ in 0..30 {
            budget.release();
        }
        assert_eq!(budget.outstanding(), 0, "never below zero");
    }

    #[test]
    fn packets_retried_together_take_a_place_each_and_may_all_go_when_none_is_out() {
        let budget = RetryBudget::new(20.0, 3);
        assert!(budget.try_acquire(2, 10));
        assert!(!budget.try_acquire(2, 10), "2 + 2 over the floor of 3");
        assert!(budget.try_acquire(1, 10));
        (0..3).for_each(|_| budget.release());
        assert!(
            budget.try_acquire(256, 10),
            "a batch larger than the budget goes when no retry is out"
        );
        assert!(!budget.try_acquire(1, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_hands_jobs_back_in_due_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let timer = RetryTimer::spawn(move |job: &'static str| {
            let _ = tx.send((job, tokio::time::Instant::now()));
        });
        let start = tokio::time::Instant::now();
        timer.schedule("late", Duration::from_secs(8));
        timer.schedule("early", Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert_eq!(timer.waiting(), 2);
        let (first, at) = rx.recv().await.unwrap();
        assert_eq!((first, (at - start).as_secs()), ("early", 2));
        let (second, at) = rx.recv().await.unwrap();
        assert_eq!((second, (at - start).as_secs()), ("late", 8));
        assert_eq!(timer.waiting(), 0);
    }

    /// `retry.max_delay` is at most `config::MAX_DURATION`: a wait that
    /// long must not stop the timer that every other retry goes through.
    #[tokio::test(start_paused = true)]
    async fn the_longest_configurable_wait_leaves_the_timer_working() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let timer = RetryTimer::spawn(move |job: &'static str| {
            let _ = tx.send(job);
        });
        timer.schedule("longest", crate::config::MAX_DURATION);
        timer.schedule("next", Duration::from_secs(2));
        assert_eq!(rx.recv().await, Some("next"));
        assert_eq!(timer.waiting(), 1);
    }
}
