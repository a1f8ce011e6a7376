//! The progress bar on stderr (when it is a terminal and not `--quiet`).

use crate::args::{LoadgenArgs, DEFAULT_DURATION};
use crate::plan::Shared;
use crate::report::per_second;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

const PROGRESS_REFRESH: Duration = Duration::from_millis(250);

pub(crate) fn show_progress(args: &LoadgenArgs) -> bool {
    !args.quiet && std::io::stderr().is_terminal()
}

/// Progress bar on stderr, refreshed from the shared request counter.
pub(crate) struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    pub(crate) fn start(shared: Arc<Shared>, args: &LoadgenArgs) -> Self {
        let by_requests = shared.budget.total_requests();
        let length =
            by_requests.unwrap_or_else(|| duration_millis(args.duration.unwrap_or(DEFAULT_DURATION)));
        let bar = ProgressBar::new(length).with_style(
            ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {percent:>3}% {msg}")
                .expect("the progress template is valid"),
        );
        let ticker = tokio::spawn(refresh_progress(bar.clone(), shared, by_requests.is_some()));
        Self { bar, ticker }
    }

    pub(crate) fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

async fn refresh_progress(bar: ProgressBar, shared: Arc<Shared>, by_requests: bool) {
    let started = Instant::now();
    loop {
        let requests = shared.requests_started();
        let elapsed = started.elapsed();
        bar.set_position(if by_requests {
            requests
        } else {
            duration_millis(elapsed)
        });
        bar.set_message(format!(
            "{requests} requests, {:.0}/s",
            per_second(requests, elapsed.as_secs_f64())
        ));
        sleep(PROGRESS_REFRESH).await;
    }
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
