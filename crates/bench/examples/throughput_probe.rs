//! One contender of the throughput section alone, for `perf stat` and
//! `perf record`: `throughput_probe b|c1 [EVENTS] [ROUNDS]`.
//!
//! The bench runs every contender in one process, so a profile of it mixes
//! them; this runs one, on the runtime and allocator the `watchtower`
//! binary uses (a multi-threaded runtime, jemalloc), so instructions and
//! context switches per event can be compared between `b` (raw
//! tokio-tungstenite, feed + flush every 64) and `c1` (one publishing
//! task). Setting up the server and the connection is included, so run
//! enough events (default 1,000,000) for it not to matter.

use std::process::ExitCode;

use watchtower_bench::{Contender, probe};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let contender = match args.first().map(String::as_str) {
        Some("b") => Contender::RawFeedFlush,
        Some("c1") => Contender::Publish1,
        _ => {
            eprintln!("usage: throughput_probe b|c1 [EVENTS] [ROUNDS]");
            return ExitCode::from(2);
        }
    };
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(Ok(default), |s| s.parse::<usize>())
            .map_err(|e| format!("argument {}: {e}", i + 1))
    };
    let (events, rounds) = match (number(1, 1_000_000), number(2, 1)) {
        (Ok(events), Ok(rounds)) => (events, rounds),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    for _ in 0..rounds {
        match runtime.block_on(probe(contender, events)) {
            Ok(rate) => println!("{rate:.0} events/s"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
