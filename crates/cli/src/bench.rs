//! `watchtower bench`: the benchmarks of `watchtower-bench`, the same code
//! `cargo xtask bench` runs.

use std::path::PathBuf;

use clap::Args;
use watchtower_bench::{BenchError, BenchOptions};

use crate::error::CliError;

/// Options of `watchtower bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// A reduced run (well under a minute) that exercises every
    /// measurement; its figures are too small to quote.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report [default: target/bench/ beside the binary].
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Run only this section (repeatable).
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(watchtower_bench::section_names()))]
    only: Vec<String>,
    /// A `watchtower` binary of another build: the hub-cpu section measures
    /// its hub beside this one's and prints the ratio (before and after a
    /// change, in one sitting).
    #[arg(long, value_name = "PATH")]
    baseline_hub: Option<PathBuf>,
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), CliError> {
    let mut options = if args.quick {
        BenchOptions::quick()
    } else {
        BenchOptions::full()
    };
    options.report_dir = args.report_dir;
    options.only = args.only;
    options.baseline_hub = args.baseline_hub;
    options.allocator = crate::alloc::NAME.to_string();
    let report = watchtower_bench::run(options).await.map_err(runtime)?;
    println!("{}", report.table());
    Ok(())
}

/// A benchmark child process (`bench-child ROLE …`), started by `bench`.
pub(crate) async fn child(args: Vec<String>) -> Result<(), CliError> {
    watchtower_bench::child(&args).await.map_err(runtime)
}

fn runtime(error: BenchError) -> CliError {
    CliError::Runtime(format!("benchmark failed: {error}"))
}
