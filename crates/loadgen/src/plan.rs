//! The plan every worker follows: the request head they all send, the
//! packet budget, the deadline (closed loop) or the schedule (open loop);
//! it hands out the next [`Job`].

use crate::args::{LoadgenArgs, DEFAULT_DURATION};
use crate::body::BodyFormat;
use crate::schedule::{Job, PacketBudget, Schedule};
use crate::stats::LoadStats;
use crate::target::Target;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

/// Granularity of tokio timers: an open-loop slot due sooner than this is sent at once.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// State all workers share: what to send and how the run is paced and bounded.
pub(crate) struct Shared {
    pub(crate) target: Target,
    /// Request line and headers but `Content-Length`, the same for every request.
    pub(crate) request_head: Vec<u8>,
    pub(crate) timeout: Duration,
    pub(crate) budget: PacketBudget,
    /// `--otlp`: a 200 is the success answer.
    pub(crate) otlp: bool,
    next_request: AtomicU64,
    /// Closed loop: no request starts after this instant.
    deadline: Option<Instant>,
    /// Open loop: when requests are due.
    schedule: Option<Schedule>,
}

impl Shared {
    pub(crate) fn new(args: &LoadgenArgs, target: Target, started: Instant) -> Self {
        let duration = match (args.duration, args.packets) {
            (None, None) => Some(DEFAULT_DURATION),
            (duration, _) => duration,
        };
        let request_head = request_head(&target, args);
        Self {
            target,
            request_head,
            timeout: args.timeout,
            otlp: args.otlp,
            budget: PacketBudget {
                total_packets: args.packets,
                packets_per_request: u64::from(args.packets_per_request),
            },
            next_request: AtomicU64::new(0),
            deadline: duration.map(|duration| started + duration),
            schedule: args.rate.map(|rate| Schedule::new(started, rate, duration)),
        }
    }

    /// Waits until the next request should go out, or returns `None` when the run is over.
    pub(crate) async fn next_job(&self, stats: &RefCell<LoadStats>) -> Option<Job> {
        match &self.schedule {
            None => self.next_closed_loop_job(),
            Some(schedule) => self.next_open_loop_job(schedule, stats).await,
        }
    }

    fn next_closed_loop_job(&self) -> Option<Job> {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        let (first_packet, packets) = self.claim_request()?;
        Some(Job {
            first_packet,
            packets,
            overdue_since: None,
        })
    }

    async fn next_open_loop_job(&self, schedule: &Schedule, stats: &RefCell<LoadStats>) -> Option<Job> {
        let claimed_at = Instant::now();
        let slot = schedule.claim(claimed_at, &mut stats.borrow_mut().dropped_by_client)?;
        let (first_packet, packets) = self.claim_request()?;
        let due = schedule.due(slot);
        if due > claimed_at + TIMER_RESOLUTION {
            sleep_until(due).await;
        }
        // A slot that came due while every worker was busy counts its wait as latency.
        let overdue_since = (due <= claimed_at).then_some(due);
        Some(Job {
            first_packet,
            packets,
            overdue_since,
        })
    }

    fn claim_request(&self) -> Option<(u64, u64)> {
        let index = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.budget.packets_of_request(index)
    }

    /// Requests handed out so far, for the progress bar.
    pub(crate) fn requests_started(&self) -> u64 {
        let claimed = self.next_request.load(Ordering::Relaxed);
        self.budget
            .total_requests()
            .map_or(claimed, |total| claimed.min(total))
    }
}

/// `POST <path> HTTP/1.1` and the headers every request carries.
fn request_head(target: &Target, args: &LoadgenArgs) -> Vec<u8> {
    let content_type = BodyFormat::from_args(args).content_type();
    let mut head = http1::request_head("POST", &target.path.to_string(), &target.host);
    head.push_str(&format!("Content-Type: {content_type}\r\n"));
    if args.gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    head.into_bytes()
}
