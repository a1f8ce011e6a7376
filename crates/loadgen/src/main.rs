//! The `logs-distributor-loadgen` binary: parses the command line, runs the
//! load, prints the report; exits 1 when the run could not be made.

use clap::Parser;
use loadgen::LoadgenArgs;
use std::process::ExitCode;

/// Send load to a distributor and report throughput and latency.
#[derive(Parser)]
#[command(name = "logs-distributor-loadgen", version)]
struct Cli {
    #[command(flatten)]
    args: LoadgenArgs,
}

fn main() -> ExitCode {
    match run(Cli::parse().args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logs-distributor-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    // The load runs on threads of its own (one per core); this runtime only
    // connects, shows progress and writes the recorded ids.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(loadgen::run(args)).map(|_report| ())
}
