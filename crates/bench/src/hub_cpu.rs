//! The hub's CPU time per relayed event and per delivered frame: a hub in
//! a process of its own, its CPU time read from `/proc` before and after a
//! raw publisher sends events to raw subscribers. With a baseline binary
//! (`--baseline-hub`), its hub is measured the same way, turn by turn.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::child::{ChildProcess, cpu_seconds};
use crate::raw::Tasks;
use crate::section::{Curve, SectionReport, Series};
use crate::throughput::RAW_FLUSH_EVERY;
use crate::{BenchError, BenchOptions};

/// The hub's CPU cost at one subscriber count.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HubCpuPoint {
    /// Subscribers.
    pub subscribers: usize,
    /// Events published.
    pub events: usize,
    /// Frames the subscribers received.
    pub delivered: u64,
    /// CPU seconds the hub used meanwhile.
    pub cpu_seconds: f64,
    /// Microseconds of hub CPU per relayed event.
    pub us_per_event: f64,
    /// Microseconds of hub CPU per delivered frame.
    pub us_per_frame: f64,
    /// The baseline hub's microseconds per relayed event, if one was given
    /// (median of its turns; this build's figures are then medians too).
    pub baseline_us_per_event: Option<f64>,
}

/// Turns each hub gets at each point when a baseline is measured beside.
const BASELINE_TURNS: usize = 3;

/// The hub's CPU cost against the number of subscribers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HubCpu {
    /// One point per subscriber count.
    pub points: Vec<HubCpuPoint>,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    crate::child::raise_open_files();
    let mut cpu = HubCpu::default();
    let baseline = options.baseline_hub.as_deref();
    for &subs in &options.cpu_subscribers {
        let point = match baseline {
            None => one(options.cpu_events, subs, None).await?,
            Some(path) => beside(options.cpu_events, subs, path).await?,
        };
        eprintln!(
            "  {subs} subscribers: {:.2} µs per event, {:.3} µs per frame{}",
            point.us_per_event,
            point.us_per_frame,
            point
                .baseline_us_per_event
                .map(|b| format!("; baseline {b:.2} µs per event"))
                .unwrap_or_default()
        );
        cpu.points.push(point);
    }
    let mut table = String::from(
        "Hub CPU time (/proc/<pid>/task/*/schedstat, before and after)\n   subscribers   events   delivered   cpu s   µs/event   µs/frame\n",
    );
    let mut per_event = Series::new("hub CPU per relayed event");
    let mut per_frame = Series::new("hub CPU per delivered frame");
    for p in &cpu.points {
        table.push_str(&format!(
            "   {:>11} {:>8} {:>11} {:>7.2} {:>10.2} {:>10.3}",
            p.subscribers, p.events, p.delivered, p.cpu_seconds, p.us_per_event, p.us_per_frame
        ));
        if let Some(b) = p.baseline_us_per_event {
            table.push_str(&format!(
                "   baseline {b:.2} µs/event, this/baseline {:.2}",
                p.us_per_event / b.max(f64::MIN_POSITIVE)
            ));
        }
        table.push('\n');
        per_event
            .points
            .push((p.subscribers as f64, p.us_per_event));
        per_frame
            .points
            .push((p.subscribers as f64, p.us_per_frame));
    }
    let curve = |name: &str, title: &str, series: Series| Curve {
        name: name.into(),
        title: title.into(),
        x_label: "subscribers".into(),
        y_label: "µs of hub CPU".into(),
        log_x: true,
        series: vec![series],
    };
    Ok(SectionReport::new("hub-cpu", &cpu, table)?
        .curve(curve(
            "hub-cpu-per-event",
            "Hub CPU per relayed event",
            per_event,
        ))
        .curve(curve(
            "hub-cpu-per-frame",
            "Hub CPU per delivered frame",
            per_frame,
        )))
}

/// This build's hub and the baseline's, turn by turn; medians of each.
async fn beside(n: usize, subs: usize, baseline: &Path) -> Result<HubCpuPoint, BenchError> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..BASELINE_TURNS {
        ours.push(one(n, subs, None).await?);
        theirs.push(one(n, subs, Some(baseline)).await?.us_per_event);
    }
    ours.sort_by(|a, b| a.us_per_event.total_cmp(&b.us_per_event));
    theirs.sort_by(f64::total_cmp);
    let mut point = ours.swap_remove(ours.len() / 2);
    point.baseline_us_per_event = Some(theirs[theirs.len() / 2]);
    Ok(point)
}

/// A hub under measurement: this build's (a bench child) or a baseline
/// binary's `watchtower hub`.
enum HubProcess {
    Ours(ChildProcess),
    Baseline(tokio::process::Child),
}

impl HubProcess {
    async fn start(
        subs: usize,
        baseline: Option<&Path>,
    ) -> Result<(HubProcess, String), BenchError> {
        let Some(exe) = baseline else {
            let mut hub = ChildProcess::spawn(&["hub", &(subs + 16).to_string()])?;
            let addr = hub.value("ADDR").await?;
            return Ok((HubProcess::Ours(hub), format!("ws://{addr}/events")));
        };
        let mut child = tokio::process::Command::new(exe)
            .args(["hub", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BenchError::Incomplete(format!(
                    "could not start the baseline hub {}: {e}",
                    exe.display()
                ))
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| BenchError::Incomplete("the baseline hub has no stderr".into()))?;
        // Every version prints `... listening on ws://ADDR/events ...`.
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let Some(line) = lines.next_line().await? else {
                return Err(BenchError::Incomplete(format!(
                    "the baseline hub {} exited without printing its address",
                    exe.display()
                )));
            };
            if let Some(at) = line.find("ws://") {
                break line[at..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        // Keep reading, so the hub never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((HubProcess::Baseline(child), url))
    }

    fn pid(&self) -> u32 {
        match self {
            HubProcess::Ours(child) => child.pid(),
            HubProcess::Baseline(child) => child.id().unwrap_or(0),
        }
    }

    async fn finish(self) -> Result<(), BenchError> {
        match self {
            HubProcess::Ours(child) => child.finish().await,
            HubProcess::Baseline(mut child) => {
                child.kill().await?;
                Ok(())
            }
        }
    }
}

async fn one(n: usize, subs: usize, baseline: Option<&Path>) -> Result<HubCpuPoint, BenchError> {
    let (hub, url) = HubProcess::start(subs, baseline).await?;
    let mut load = RawLoad::connect(&url, subs, n).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cpu_seconds(hub.pid()).unwrap_or(0.0);
    let delivered = load.run().await?;
    let after = cpu_seconds(hub.pid()).unwrap_or(0.0);
    load.close().await;
    hub.finish().await?;
    let cpu = (after - before).max(0.0);
    Ok(HubCpuPoint {
        subscribers: subs,
        events: n,
        delivered,
        cpu_seconds: cpu,
        us_per_event: cpu * 1e6 / n.max(1) as f64,
        us_per_frame: cpu * 1e6 / delivered.max(1) as f64,
        baseline_us_per_event: None,
    })
}

/// The load every hub-CPU measurement applies: one raw publisher and raw
/// subscribers on one hub, the bench's events serialised before the clock
/// starts. Public so that a hub can be profiled from outside under the
/// very same load (`examples/hub_cpu_load.rs`, with `perf`).
pub struct RawLoad {
    received: Arc<AtomicU64>,
    _readers: Tasks,
    publisher: WebSocketStream<MaybeTlsStream<TcpStream>>,
    frames: Vec<String>,
    subscribers: usize,
}

impl std::fmt::Debug for RawLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawLoad")
            .field("subscribers", &self.subscribers)
            .field("events", &self.frames.len())
            .field("received", &self.received.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl RawLoad {
    /// Connects `subscribers` counting readers and a publisher to `url`,
    /// with `events` events ready to send.
    pub async fn connect(
        url: &str,
        subscribers: usize,
        events: usize,
    ) -> Result<RawLoad, BenchError> {
        let received = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            let received = Arc::clone(&received);
            readers.push(tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() {
                        received.fetch_add(1, Relaxed);
                    }
                }
            }));
        }
        let (publisher, _) = tokio_tungstenite::connect_async(url).await?;
        let frames = crate::workload::events(events)
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        Ok(RawLoad {
            received,
            _readers: Tasks::many(readers),
            publisher,
            frames,
            subscribers,
        })
    }

    /// Publishes every event (`feed`, a flush every 64), then waits until
    /// each subscriber has them all, 60 s at most; returns the frames the
    /// subscribers received.
    pub async fn run(&mut self) -> Result<u64, BenchError> {
        let n = self.frames.len();
        for (i, frame) in std::mem::take(&mut self.frames).into_iter().enumerate() {
            self.publisher.feed(Message::Text(frame.into())).await?;
            if (i + 1) % RAW_FLUSH_EVERY == 0 {
                self.publisher.flush().await?;
            }
        }
        self.publisher.flush().await?;
        let target = (n * self.subscribers) as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.received.load(Relaxed) < target && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(self.received.load(Relaxed))
    }

    /// Closes the publisher; the subscribers' readers stop when this is
    /// dropped.
    pub async fn close(mut self) {
        let _ = self.publisher.close(None).await;
    }
}
