//! Measurement 5: bounded memory under flood, with the server down.

use serde::Serialize;

use crate::child::ChildProcess;
use crate::section::SectionReport;
use crate::{BenchError, BenchOptions};

/// The queue the floods run with (the spec's default).
const QUEUE: usize = 1_000;

/// One flood, measured in its own process.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FloodRun {
    /// Events published.
    pub events: u64,
    /// Peak resident memory of the process, KiB.
    pub peak_rss_kib: u64,
    /// Events still queued at the end (≤ the queue size).
    pub queued: u64,
    /// Events evicted by DropOldest (dead-lettered).
    pub evicted: u64,
    /// Dead-letter queue length at the end (≤ its capacity).
    pub dlq_len: u64,
}

/// A small flood and a large one: bounded memory means the same peak.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Flood {
    /// The queue size.
    pub queue_size: usize,
    /// A tenth of the events.
    pub small: FloodRun,
    /// All the events.
    pub large: FloodRun,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let fl = run(options).await?;
    let mut table = format!(
        "Flood with the server down: DropOldest, queue {} (peak RSS of a fresh process)\n",
        fl.queue_size
    );
    for run in [&fl.small, &fl.large] {
        table.push_str(&format!(
            "   {:>9} events: peak {:>7} KiB, queued {}, evicted {}, dead-lettered {}\n",
            run.events, run.peak_rss_kib, run.queued, run.evicted, run.dlq_len
        ));
    }
    SectionReport::new("flood", &fl, table)
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Flood, BenchError> {
    Ok(Flood {
        queue_size: QUEUE,
        small: one(options.flood_events as u64 / 10).await?,
        large: one(options.flood_events as u64).await?,
    })
}

async fn one(events: u64) -> Result<FloodRun, BenchError> {
    let mut child = ChildProcess::spawn(&["flood", &events.to_string(), &QUEUE.to_string()])?;
    let number = |s: String| s.trim().parse::<u64>().unwrap_or(0);
    let run = FloodRun {
        events,
        peak_rss_kib: number(child.value("PEAK_RSS_KB").await?),
        queued: number(child.value("QUEUED").await?),
        evicted: number(child.value("EVICTED").await?),
        dlq_len: number(child.value("DLQ").await?),
    };
    child.finish().await?;
    Ok(run)
}
