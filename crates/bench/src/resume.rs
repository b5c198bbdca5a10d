//! History and resume: how long a reconnecting subscriber takes to get
//! 1,000 missed events replayed, against the same 1,000 arriving live; and
//! what the hub's history costs in resident memory per event held.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use watchtower_hub::{Hub, HubConfig};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{ResumeOutcome, TransportBuilder};

use crate::child::{ChildProcess, status_kib};
use crate::stats::Summary;
use crate::workload::{event, event_size};
use crate::{BenchError, BenchOptions};

/// Events replayed (and sent live) per run.
const REPLAYED: usize = 1_000;

/// What the resume measurement found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Resume {
    /// Milliseconds from the start of a reconnect presenting a position
    /// until 1,000 missed events were handled (connect included).
    pub replay_ms: Summary,
    /// Milliseconds from publishing 1,000 events until a connected
    /// subscriber handled them all.
    pub live_ms: Summary,
    /// Events held in the memory measurement.
    pub history_events: usize,
    /// Bytes of one event frame.
    pub event_bytes: usize,
    /// The hub process's resident growth while its history filled.
    pub history_kib: u64,
}

impl Resume {
    /// The growth over the payload bytes held (target: under 2).
    pub fn overhead(&self) -> f64 {
        let payload = (self.history_events * self.event_bytes) as f64;
        if payload == 0.0 {
            return 0.0;
        }
        self.history_kib as f64 * 1024.0 / payload
    }
}

impl std::fmt::Display for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "resume: {REPLAYED} events replayed on reconnect  median {:.1} ms (min {:.1}, max {:.1})",
            self.replay_ms.median, self.replay_ms.min, self.replay_ms.max
        )?;
        writeln!(
            f,
            "resume: {REPLAYED} events live                   median {:.1} ms (min {:.1}, max {:.1})",
            self.live_ms.median, self.live_ms.min, self.live_ms.max
        )?;
        write!(
            f,
            "resume: hub RSS with {} {}-byte events in history: +{} KiB ({:.2}x the payload bytes)",
            self.history_events,
            self.event_bytes,
            self.history_kib,
            self.overhead()
        )
    }
}

/// Runs both measurements: `options.runs` timed runs each, and one memory
/// run holding `options.flood_events / 10` events (100,000 in the full
/// benchmark).
pub(crate) async fn section(options: &BenchOptions) -> Result<crate::SectionReport, BenchError> {
    let resume = run(options).await?;
    crate::SectionReport::new("resume", &resume, format!("{resume}\n"))
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Resume, BenchError> {
    let hub = Hub::bind_with("127.0.0.1:0", HubConfig::default()).await?;
    let mut config = WebSocketConfig::new(hub.url());
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await?;
    let mut replay = Vec::new();
    let mut live = Vec::new();
    for _ in 0..options.runs.max(1) {
        replay.push(replay_once(&hub, &publisher).await?);
        live.push(live_once(&hub, &publisher).await?);
    }
    publisher.shutdown().await?;
    hub.shutdown().await;
    let history_events = (options.flood_events / 10).max(REPLAYED);
    Ok(Resume {
        replay_ms: Summary::of(replay),
        live_ms: Summary::of(live),
        history_events,
        event_bytes: event_size(),
        history_kib: history_memory(history_events).await?,
    })
}

fn subscriber(hub: &Hub) -> TransportBuilder {
    WebSocketTransport::builder(WebSocketConfig::new(hub.url())).mailbox_size(REPLAYED * 2)
}

/// A counting subscription; returns the count.
async fn counting(transport: &WebSocketTransport) -> Result<Arc<AtomicUsize>, BenchError> {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    transport
        .subscribe(vec![], move |_| {
            counter.fetch_add(1, Relaxed);
            Box::pin(async { Ok(()) })
        })
        .await?;
    Ok(count)
}

async fn until_count(count: &AtomicUsize, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Relaxed) < n {
        if Instant::now() > deadline {
            return Err(BenchError::Incomplete(format!(
                "{} of {n} events arrived",
                count.load(Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}

async fn publish(publisher: &WebSocketTransport) -> Result<(), BenchError> {
    for n in 0..REPLAYED as u64 {
        publisher.publish(event(n)).await?;
    }
    publisher.flush().await?;
    Ok(())
}

/// A subscriber leaves, 1,000 events are published, it comes back with its
/// position: milliseconds until it handled them all.
async fn replay_once(hub: &Hub, publisher: &WebSocketTransport) -> Result<f64, BenchError> {
    let gone = subscriber(hub).connect().await?;
    let position = gone
        .position()
        .ok_or_else(|| BenchError::Incomplete("the hub gave no position".into()))?;
    gone.shutdown().await?;
    publish(publisher).await?;
    let started = Instant::now();
    let back = subscriber(hub).resume_from(position).connect().await?;
    let count = counting(&back).await?;
    until_count(&count, REPLAYED).await?;
    let elapsed = started.elapsed();
    // `flush` returns once the hub has read every event, and its last burst
    // may still be on its way into the history: those few arrive live.
    if !matches!(back.last_resume(), Some(ResumeOutcome::Recovered { .. })) {
        return Err(BenchError::Incomplete(format!(
            "resume answered {:?}",
            back.last_resume()
        )));
    }
    back.shutdown().await?;
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// A connected subscriber: milliseconds from the first publish until it
/// handled all 1,000.
async fn live_once(hub: &Hub, publisher: &WebSocketTransport) -> Result<f64, BenchError> {
    let here = subscriber(hub).connect().await?;
    let count = counting(&here).await?;
    let started = Instant::now();
    publish(publisher).await?;
    until_count(&count, REPLAYED).await?;
    let elapsed = started.elapsed();
    here.shutdown().await?;
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// A hub in a child process; `events` published to it: its resident growth
/// in KiB once they are all in its history.
async fn history_memory(events: usize) -> Result<u64, BenchError> {
    let mut hub = ChildProcess::spawn(&["history-hub", &events.to_string()])?;
    let addr = hub.value("ADDR").await?;
    let url = format!("ws://{addr}/events");
    let mut config = WebSocketConfig::new(url);
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await?;
    // One event first, so the connection's own buffers are in `before`.
    publisher.publish(event(0)).await?;
    publisher.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = status_kib(hub.pid(), "VmRSS:").unwrap_or(0);
    for n in 1..=events as u64 {
        publisher.publish(event(n)).await?;
    }
    publisher.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = status_kib(hub.pid(), "VmRSS:").unwrap_or(0);
    publisher.shutdown().await?;
    hub.finish().await?;
    Ok(after.saturating_sub(before))
}

/// In a `bench-child history-hub N` process: a hub keeping `N` events.
pub(crate) async fn history_hub(events: &str) -> Result<(), BenchError> {
    let events: usize = events
        .parse()
        .map_err(|_| BenchError::Incomplete(format!("bad event count {events}")))?;
    let mut config = HubConfig::default();
    config.history_size = events + 1;
    config.history_ttl = Duration::from_secs(3600);
    config.history_bytes = 1 << 30;
    let hub = Hub::bind_with("127.0.0.1:0", config).await?;
    println!("ADDR {}", hub.local_addr());
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    hub.shutdown().await;
    Ok(())
}
