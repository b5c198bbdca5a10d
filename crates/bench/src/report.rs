//! The report: a table for people, JSON for the record.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::BenchOptions;
use crate::dashboard::Dashboard;
use crate::fanout::Fanout;
use crate::flood::Flood;
use crate::latency::Latency;
use crate::memory::Memory;
use crate::stats::Summary;
use crate::throughput::{RAW_FLUSH_EVERY, Throughput};
use crate::workload::event_size;

/// Everything one run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Logical cores the machine offers.
    pub cores: usize,
    /// The commit measured (`git rev-parse HEAD`), or "unknown".
    pub commit: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// Whether this was the reduced `--quick` run.
    pub quick: bool,
    /// Bytes of the benchmark event as JSON.
    pub event_bytes: usize,
    /// Wall time of the whole run.
    pub seconds: f64,
    /// 1. Publish throughput.
    pub throughput: Throughput,
    /// 2. Latency.
    pub latency: Latency,
    /// 3. Fan-out.
    pub fanout: Fanout,
    /// 4. Idle memory.
    pub memory: Memory,
    /// 5. Flood.
    pub flood: Flood,
    /// 6. The hub's dashboard open, against not.
    pub dashboard: Dashboard,
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

impl Report {
    pub(crate) fn new(options: &BenchOptions) -> Report {
        Report {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            commit: commit(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            quick: *options
                == BenchOptions {
                    report_dir: options.report_dir.clone(),
                    ..BenchOptions::quick()
                },
            event_bytes: event_size(),
            ..Report::default()
        }
    }

    /// Writes the JSON report to `dir` (default: `target/bench/` beside the
    /// running binary) as `report-<unix time>.json` and `latest.json`.
    pub(crate) fn write(&self, dir: Option<&Path>) -> Result<PathBuf, crate::BenchError> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => default_dir(),
        };
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_string_pretty(self)?;
        let path = dir.join(format!("report-{}.json", self.started_unix));
        std::fs::write(&path, &json)?;
        std::fs::write(dir.join("latest.json"), &json)?;
        Ok(path)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let t = &self.throughput;
        let rate = |s: &Summary| format!("{:>9.0} {:>9.0}–{:<9.0}", s.median, s.min, s.max);
        let _ = writeln!(
            out,
            "Watchtower WebSocket benchmark — {} cores, commit {}, event {} bytes{}",
            self.cores,
            short(&self.commit),
            self.event_bytes,
            if self.quick {
                " (QUICK: figures too small to quote)"
            } else {
                ""
            }
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "1. Publish throughput (events/s to a counting server; median, min–max of {} runs)",
            t.raw_send.runs.len()
        );
        let _ = writeln!(
            out,
            "   (a) raw tokio-tungstenite send() per message      {}",
            rate(&t.raw_send)
        );
        let _ = writeln!(
            out,
            "   (b) raw tokio-tungstenite feed + flush every {RAW_FLUSH_EVERY:<3}  {}",
            rate(&t.raw_feed_flush)
        );
        let _ = writeln!(
            out,
            "   (c) WebSocketTransport::publish, 1 task          {}",
            rate(&t.transport_1)
        );
        let _ = writeln!(
            out,
            "   (c) WebSocketTransport::publish, 8 tasks         {}",
            rate(&t.transport_8)
        );
        let _ = writeln!(
            out,
            "   ratios: c1/b {:.2} (target ≥ 0.9)   c8/b {:.2} (target ≥ 1.0)   c1/a {:.2} (target ≥ 3)",
            t.ratio_c1_b, t.ratio_c8_b, t.ratio_c1_a
        );
        let _ = writeln!(
            out,
            "   to the hub, plain                                {}",
            rate(&t.hub_plain)
        );
        let _ = writeln!(
            out,
            "   to the hub, at least once (until acked)          {}",
            rate(&t.hub_at_least_once)
        );
        let _ = writeln!(
            out,
            "   ratio at-least-once/plain {:.2} (target ≥ 0.7)",
            t.ratio_at_least_once
        );
        let l = &self.latency;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "2. Latency publisher → relay → subscriber, one at a time (µs; {} samples)",
            l.hub.samples
        );
        let _ = writeln!(
            out,
            "                                        p50      p99    p99.9"
        );
        let _ = writeln!(
            out,
            "   raw client → raw relay → raw client  {:>7.1}  {:>7.1}  {:>7.1}",
            l.raw.p50_us, l.raw.p99_us, l.raw.p999_us
        );
        let _ = writeln!(
            out,
            "   transport → hub → transport          {:>7.1}  {:>7.1}  {:>7.1}",
            l.hub.p50_us, l.hub.p99_us, l.hub.p999_us
        );
        let _ = writeln!(
            out,
            "   ratio p99 hub/raw {:.2} (target ≤ 1.5)",
            l.ratio_p99
        );
        let _ = writeln!(
            out,
            "   at least once, transport → hub → transport {:>7.1}  {:>7.1}  {:>7.1}",
            l.hub_at_least_once.p50_us, l.hub_at_least_once.p99_us, l.hub_at_least_once.p999_us
        );
        let _ = writeln!(
            out,
            "   ratio p99 at-least-once/plain {:.2}",
            l.ratio_at_least_once_p99
        );
        let f = &self.fanout;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "3. Fan-out: {} events to {} subscribers (deliveries/s; median, min–max of {} runs)",
            f.events,
            f.subscribers,
            f.hub.runs.len()
        );
        let _ = writeln!(
            out,
            "   raw broadcast server, raw clients     {}",
            rate(&f.raw)
        );
        let _ = writeln!(
            out,
            "   hub, WebSocketTransport subscribers   {}",
            rate(&f.hub)
        );
        let _ = writeln!(
            out,
            "   decomposition: hub, raw clients       {}",
            rate(&f.hub_raw_clients)
        );
        let _ = writeln!(
            out,
            "   raw server, transport subscribers     {}",
            rate(&f.raw_server_transport_clients)
        );
        let _ = writeln!(
            out,
            "   ratio hub/raw {:.2} (target ≥ 0.8); frames the hub dropped: {}",
            f.ratio, f.hub_dropped
        );
        let m = &self.memory;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "4. Idle memory per connection, {} connections (KiB of RSS)",
            m.connections
        );
        let _ = writeln!(
            out,
            "   client: WebSocketTransport {:>7.1}   raw tokio-tungstenite (defaults) {:>7.1}   ratio {:.2}",
            m.transport_client_kib, m.raw_client_kib, m.ratio_client
        );
        let _ = writeln!(
            out,
            "   server: hub                {:>7.1}   raw broadcast server             {:>7.1}",
            m.hub_kib, m.raw_server_kib
        );
        let _ = writeln!(
            out,
            "   target ≤ 16 KiB per connection, client and hub side"
        );
        let fl = &self.flood;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "5. Flood with the server down: DropOldest, queue {} (peak RSS of a fresh process)",
            fl.queue_size
        );
        for run in [&fl.small, &fl.large] {
            let _ = writeln!(
                out,
                "   {:>9} events: peak {:>7} KiB, queued {}, evicted {}, dead-lettered {}",
                run.events, run.peak_rss_kib, run.queued, run.evicted, run.dlq_len
            );
        }
        out.push_str(&self.dashboard.table());
        let _ = writeln!(out);
        let _ = writeln!(out, "({:.0} s)", self.seconds);
        out
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn default_dir() -> PathBuf {
    // target/<profile>/watchtower → target/bench
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}
