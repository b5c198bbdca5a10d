//! `watchtower`: run a Watchtower hub, publish events to it and subscribe
//! to them from the command line.
//!
//! ```text
//! watchtower hub --listen 127.0.0.1:8080
//! watchtower subscribe --url ws://127.0.0.1:8080/events --type notification.sent
//! watchtower publish --url ws://127.0.0.1:8080/events --type notification.sent --payload '{"user_id":456}'
//! watchtower bench --quick
//! ```
//!
//! Exit codes: 0 success, 1 a runtime failure (could not connect, could not
//! deliver), 2 a usage or configuration error (bad flag, URL or JSON).
//! Errors are printed as one line on stderr; `-v` adds logs.

mod alloc;
mod bench;
mod connect;
mod error;
mod hub;
mod publish;
mod reload;
mod signal;
mod subscribe;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::error::CliError;

/// Publish and subscribe to JSON events over WebSocket, or run the hub that
/// relays them.
#[derive(Debug, Parser)]
#[command(name = "watchtower", version, propagate_version = true)]
struct Cli {
    /// Log more on stderr: -v info, -vv debug, -vvv trace [default: warnings].
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a hub until Ctrl-C: relays every event to every other client
    /// whose filter matches, then prints its stats.
    Hub(hub::HubArgs),
    /// Publish one event, or one per line of stdin, and wait until written.
    Publish(publish::PublishArgs),
    /// Print received events as JSON lines, reconnecting while the hub
    /// restarts.
    Subscribe(subscribe::SubscribeArgs),
    /// Benchmark against raw tokio-tungstenite on this machine: throughput,
    /// latency, fan-out, memory. Build with --release for real figures.
    Bench(bench::BenchArgs),
    /// A benchmark child process (started by `bench`; not for direct use).
    #[command(hide = true, name = "bench-child")]
    BenchChild {
        /// The role and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    // On bad arguments clap prints usage and exits with 2.
    let cli = Cli::parse();
    // A benchmark fills publish queues on purpose: their "filling up"
    // warnings would bury its progress.
    let benchmark = matches!(cli.command, Command::Bench(_) | Command::BenchChild { .. });
    init_logging(cli.verbose, benchmark);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Do not wait for a blocking stdin read that will never finish.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Hub(args) => hub::run(args).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchChild { args } => bench::child(args).await,
    }
}

/// Logs go to stderr, so stdout carries only data (`subscribe`'s events).
fn init_logging(verbose: u8, benchmark: bool) {
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let mut filter = Targets::new().with_default(level);
    if benchmark && verbose == 0 {
        filter = filter.with_target("watchtower_backpressure", LevelFilter::ERROR);
    }
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Fails only if a logger is already set, which cannot happen here.
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
