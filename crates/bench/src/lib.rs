//! Benchmarks of Watchtower against raw tokio-tungstenite, measured side by
//! side in one run on this machine: `watchtower bench` (or
//! `cargo xtask bench`).
//!
//! Sections (see `sections.rs`; `--only NAME` runs some of them):
//!
//! - `throughput`: publish throughput to a counting server — raw `send()`
//!   per message, raw `feed` + `flush` every 64, and
//!   `WebSocketTransport::publish` from 1 and from 8 tasks; interleaved.
//! - `sizes`: the same, raw `feed` + `flush` against one publisher, for
//!   events of 64 B to 256 KiB (a curve).
//! - `latency`: publisher → hub → subscriber with our transport on both
//!   ends, against a raw round trip over a raw relay, one at a time.
//! - `load`: p50/p99 latency while publishing at 10%, 50% and 90% of the
//!   measured maximum (a curve).
//! - `fanout`: fan-out to 100 subscribers through the hub, against a raw
//!   broadcast server; `fanout-scale`: the same at 1 to 1,000 subscribers.
//! - `memory`: idle memory per connection, client and server side;
//!   `idle-hub`: a hub holding 10,000 idle connections.
//! - `hub-cpu`: the hub's CPU time per relayed event and per delivered
//!   frame, from `/proc/<pid>/stat`.
//! - `flood`: bounded memory while the server is down and events keep
//!   being published with `DropOldest`.
//! - `dashboard`: fan-out and latency through the hub with the dashboard's
//!   tail subscribed and its API polled, against without.
//! - `resume`: replaying 1,000 events on reconnect against the same
//!   1,000 live, and hub RSS with 100,000 events in history.
//! - `scaleout` (feature `nats`): one hub against two hubs sharing a NATS
//!   JetStream stream, throughput and p50/p99.
//! - `hostile`: a legitimate pair's latency through a hub alone, while
//!   clients abuse filters, and while subscribers that never read are fed
//!   large events; and the hub's CPU time per costly control frame.
//!
//! Every target is printed with its figure in each of several sittings of
//! the one run (median, min–max) and whether it is met.
//!
//! The machine is shared and noisy, so only ratios within one run mean
//! anything; nothing here is asserted. The results print as a table and are
//! written as JSON under `target/bench/`, with one SVG chart per curve.
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
//! (the raw contenders), serde_json (the report), plotters (the charts, SVG
//! backend only), rlimit (descriptors for 10,000 connections).

#![deny(missing_docs)]

mod chart;
mod child;
mod dashboard;
mod fanout;
mod flood;
mod hostile;
mod hub_cpu;
mod idle_hub;
mod latency;
mod load;
mod memory;
mod raw;
mod report;
mod resume;
#[cfg(feature = "nats")]
mod scaleout;
mod section;
mod sections;
mod sizes;
mod stats;
mod throughput;
mod workload;

use std::path::PathBuf;

pub use child::child;
pub use dashboard::Dashboard;
pub use fanout::{Fanout, FanoutScale, ScalePoint};
pub use flood::{Flood, FloodRun};
pub use hostile::Hostile;
pub use hub_cpu::{HubCpu, HubCpuPoint, RawLoad};
pub use idle_hub::IdleHub;
pub use latency::{Latency, Percentiles};
pub use load::{Load, LoadPoint};
pub use memory::Memory;
pub use report::Report;
pub use resume::Resume;
#[cfg(feature = "nats")]
pub use scaleout::{ScaleOut, Setup};
pub use section::{Curve, Goal, SectionReport, Series, Target};
pub use sections::names as section_names;
pub use sizes::{SizePoint, Sizes};
pub use stats::Summary;
pub use throughput::{Contender, Throughput, probe};

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
    /// Whether this is the reduced smoke run (its figures are not quoted).
    pub quick: bool,
    /// Events per throughput run.
    pub throughput_events: usize,
    /// Interleaved runs (sittings) of each throughput contender.
    pub runs: usize,
    /// Latency samples per contender (after a warm-up), over all sittings.
    pub latency_samples: usize,
    /// Subscribers in the fan-out measurement.
    pub fanout_subscribers: usize,
    /// Events the fan-out publisher sends.
    pub fanout_events: usize,
    /// Subscriber counts of the fan-out curve.
    pub fanout_scale: Vec<usize>,
    /// Deliveries (events × subscribers) per point of the fan-out curve.
    pub fanout_scale_deliveries: usize,
    /// Event sizes of the size curve, bytes of JSON.
    pub event_sizes: Vec<usize>,
    /// Bytes published per point of the size curve (fewer events when
    /// they are large; at most `throughput_events`).
    pub size_bytes: usize,
    /// Milliseconds of publishing at each load level.
    pub load_millis: u64,
    /// Idle connections in the memory measurement.
    pub memory_connections: usize,
    /// Idle connections the idle-hub measurement opens.
    pub idle_connections: usize,
    /// Subscriber counts of the hub CPU measurement.
    pub cpu_subscribers: Vec<usize>,
    /// Events published per hub CPU measurement.
    pub cpu_events: usize,
    /// A `watchtower` binary of another build (an earlier commit, say):
    /// the hub-cpu section then runs its hub (`watchtower hub`) beside this
    /// build's, turn by turn, and prints both and their ratio, so a change
    /// is measured before and after in one sitting.
    pub baseline_hub: Option<PathBuf>,
    /// Events published in the largest flood.
    pub flood_events: usize,
    /// Where the JSON report goes; default `target/bench/`.
    pub report_dir: Option<PathBuf>,
    /// Run only these sections (see [`section_names`]); empty: all.
    pub only: Vec<String>,
    /// The global allocator of the binary that runs the benchmark (both
    /// sides of every ratio run on it), printed in the report's heading:
    /// the library cannot tell, so the binary says (`watchtower bench`
    /// does); "unknown" otherwise.
    pub allocator: String,
}

impl BenchOptions {
    /// The full benchmark (a few minutes on 2 cores).
    pub fn full() -> Self {
        BenchOptions {
            quick: false,
            throughput_events: 200_000,
            runs: 5,
            latency_samples: 20_000,
            fanout_subscribers: 100,
            fanout_events: 20_000,
            fanout_scale: vec![1, 10, 100, 1_000],
            fanout_scale_deliveries: 2_000_000,
            event_sizes: vec![64, 1024, 16 * 1024, 256 * 1024],
            size_bytes: 64 << 20,
            load_millis: 2_000,
            memory_connections: 1_000,
            idle_connections: 10_000,
            cpu_subscribers: vec![1, 10, 100],
            cpu_events: 50_000,
            baseline_hub: None,
            flood_events: 1_000_000,
            report_dir: None,
            only: Vec::new(),
            allocator: "unknown".to_string(),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    /// A reduced run for smoke tests: every section and code path runs
    /// lightly, in well under a minute; the figures are too small to quote.
    pub fn quick() -> Self {
        BenchOptions {
            quick: true,
            throughput_events: 20_000,
            runs: 2,
            latency_samples: 2_000,
            fanout_subscribers: 10,
            fanout_events: 2_000,
            fanout_scale: vec![1, 10],
            fanout_scale_deliveries: 20_000,
            event_sizes: vec![64, 1024, 16 * 1024, 256 * 1024],
            size_bytes: 2 << 20,
            load_millis: 200,
            memory_connections: 100,
            idle_connections: 200,
            cpu_subscribers: vec![1, 10],
            cpu_events: 2_000,
            baseline_hub: None,
            flood_events: 100_000,
            report_dir: None,
            only: Vec::new(),
            allocator: "unknown".to_string(),
        }
    }
}

/// Runs the sections asked for, prints progress to stderr, writes the
/// JSON report and the charts, and returns the report.
pub async fn run(options: BenchOptions) -> Result<Report, BenchError> {
    if let Some(unknown) = options
        .only
        .iter()
        .find(|name| !sections::names().contains(&name.as_str()))
    {
        return Err(BenchError::Incomplete(format!(
            "no section {unknown:?}; the sections are {}",
            sections::names().join(", ")
        )));
    }
    let started = std::time::Instant::now();
    let mut report = Report::new(&options);
    for section in sections::SECTIONS {
        if !options.wants(section.name) {
            continue;
        }
        eprintln!("bench: {} — {}", section.name, section.about);
        report.sections.push((section.run)(&options).await?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    let path = report.write(options.report_dir.as_deref())?;
    eprintln!("bench: report written to {}", path.display());
    Ok(report)
}
