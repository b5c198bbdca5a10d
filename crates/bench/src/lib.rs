//! Benchmarks of Watchtower against raw tokio-tungstenite, measured side by
//! side in one run on this machine: `watchtower bench` (or
//! `cargo xtask bench`).
//!
//! Five measurements, each with the same ~200-byte JSON event:
//!
//! 1. **Publish throughput** to a counting server: raw `send()` per message,
//!    raw `feed` + `flush` every 64, and `WebSocketTransport::publish` with
//!    1 and with 8 publisher tasks; interleaved runs, medians.
//! 2. **Latency** publisher → hub → subscriber with our transport on both
//!    ends, against a raw round trip over a raw relay.
//! 3. **Fan-out** to many subscribers through the hub, against a raw
//!    broadcast server that shares one serialised frame.
//! 4. **Idle memory** per connection, client and server side.
//! 5. **Bounded memory under flood**: the server is down and events keep
//!    being published with `DropOldest`.
//!
//! The machine is shared and noisy, so only ratios within one run mean
//! anything; nothing here is asserted. The results print as a table and are
//! written as JSON under `target/bench/`.
//!
//! ```no_run
//! # async fn run() -> Result<(), watchtower_bench::BenchError> {
//! let report = watchtower_bench::run(watchtower_bench::BenchOptions::quick()).await?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```
//!
//! With feature `nats`, a sixth: one hub against two hubs sharing a NATS
//! JetStream stream (throughput and latency; needs a `nats-server`).
//!
//! Memory is measured in child processes (the running binary re-executed
//! with `bench-child`), so one measurement's heap does not blur another's.
//!
//! Dependencies: the facade and the hub (what is measured), tokio-tungstenite
//! (the raw contenders), serde_json (the report).

#![deny(missing_docs)]

mod child;
mod fanout;
mod flood;
mod latency;
mod memory;
mod raw;
mod report;
mod resume;
#[cfg(feature = "nats")]
mod scaleout;
mod stats;
mod throughput;
mod workload;

use std::path::PathBuf;

pub use child::child;
pub use fanout::Fanout;
pub use flood::{Flood, FloodRun};
pub use latency::{Latency, Percentiles};
pub use memory::Memory;
pub use report::Report;
pub use resume::Resume;
#[cfg(feature = "nats")]
pub use scaleout::{ScaleOut, Setup};
pub use stats::Summary;
pub use throughput::Throughput;

/// What went wrong while benchmarking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The transport under test failed.
    #[error("transport: {0}")]
    Transport(#[from] watchtower_websocket::WatchtowerError),
    /// The hub under test failed.
    #[error("hub: {0}")]
    Hub(#[from] watchtower_hub::HubError),
    /// A raw tokio-tungstenite contender failed.
    #[error("raw websocket: {0}")]
    Raw(#[from] tokio_tungstenite::tungstenite::Error),
    /// Sockets, files, child processes.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising an event or the report.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A measurement did not complete (e.g. events went missing).
    #[error("{0}")]
    Incomplete(String),
}

/// Sizes of one benchmark run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Events per throughput run.
    pub throughput_events: usize,
    /// Interleaved runs of each throughput contender (median reported).
    pub runs: usize,
    /// Latency samples per contender (after a warm-up).
    pub latency_samples: usize,
    /// Subscribers in the fan-out measurement.
    pub fanout_subscribers: usize,
    /// Events the fan-out publisher sends.
    pub fanout_events: usize,
    /// Idle connections in the memory measurement.
    pub memory_connections: usize,
    /// Events published in the largest flood.
    pub flood_events: usize,
    /// Where the JSON report goes; default `target/bench/`.
    pub report_dir: Option<PathBuf>,
    /// Run only these measurements (`throughput`, `latency`, `fanout`,
    /// `memory`, `flood`, `resume`, and with feature `nats` `scaleout`);
    /// empty: all of them.
    pub only: Vec<String>,
}

impl BenchOptions {
    /// The full benchmark (about a minute on 2 cores).
    pub fn full() -> Self {
        BenchOptions {
            throughput_events: 200_000,
            runs: 5,
            latency_samples: 20_000,
            fanout_subscribers: 100,
            fanout_events: 20_000,
            memory_connections: 1_000,
            flood_events: 1_000_000,
            report_dir: None,
            only: Vec::new(),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    /// A reduced run for smoke tests: everything runs, in well under a
    /// minute; the figures are too small to quote.
    pub fn quick() -> Self {
        BenchOptions {
            throughput_events: 20_000,
            runs: 2,
            latency_samples: 2_000,
            fanout_subscribers: 10,
            fanout_events: 2_000,
            memory_connections: 100,
            flood_events: 100_000,
            report_dir: None,
            only: Vec::new(),
        }
    }
}

/// Runs every measurement, prints progress to stderr, writes the JSON
/// report, and returns it.
pub async fn run(options: BenchOptions) -> Result<Report, BenchError> {
    let started = std::time::Instant::now();
    let mut report = Report::new(&options);
    if options.wants("throughput") {
        eprintln!(
            "bench: publish throughput ({} events x {} runs)",
            options.throughput_events, options.runs
        );
        report.throughput = throughput::run(&options).await?;
    }
    if options.wants("latency") {
        eprintln!("bench: latency ({} samples)", options.latency_samples);
        report.latency = latency::run(&options).await?;
    }
    if options.wants("fanout") {
        eprintln!(
            "bench: fan-out ({} events to {} subscribers)",
            options.fanout_events, options.fanout_subscribers
        );
        report.fanout = fanout::run(&options).await?;
    }
    if options.wants("memory") {
        eprintln!(
            "bench: idle memory ({} connections)",
            options.memory_connections
        );
        report.memory = memory::run(&options).await?;
    }
    if options.wants("flood") {
        eprintln!(
            "bench: flood ({} events, server down)",
            options.flood_events
        );
        report.flood = flood::run(&options).await?;
    }
    if options.wants("resume") {
        // Printed here, not (yet) part of the JSON report.
        eprintln!("bench: resume (replay of 1,000 events, history memory)");
        let resume = resume::run(&options).await?;
        eprintln!("{resume}");
    }
    #[cfg(feature = "nats")]
    if options.wants("scaleout") {
        // Printed here, not (yet) part of the JSON report.
        eprintln!("bench: scale-out (one hub, then two hubs on NATS JetStream)");
        if let Some(scaleout) = scaleout::run(&options).await? {
            eprint!("{scaleout}");
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    let path = report.write(options.report_dir.as_deref())?;
    eprintln!("bench: report written to {}", path.display());
    Ok(report)
}
