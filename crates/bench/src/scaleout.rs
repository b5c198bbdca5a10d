//! Scaling out (feature `nats`): one hub on its own against two hubs
//! sharing a NATS JetStream stream, publisher on one and subscriber on the
//! other; throughput and publish→subscriber latency, in one run.
//!
//! Needs a `nats-server` (`NATS_SERVER`, or on `PATH`); without one the
//! measurement says so and is skipped. The server is started here on a
//! free port with a temporary store and killed at the end.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use watchtower_hub::{Hub, NatsConfig};
use watchtower_websocket::prelude::*;

use crate::latency::Percentiles;
use crate::workload::{event, hub_with_room_for};
use crate::{BenchError, BenchOptions};

/// Samples discarded before measuring.
const WARM_UP: usize = 500;

/// One setup's figures.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Setup {
    /// Events a second, publisher's first publish to subscriber's last
    /// event.
    pub events_per_sec: f64,
    /// Publish → subscriber, one event at a time.
    pub latency: Percentiles,
}

/// Single hub against two hubs on NATS.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScaleOut {
    /// Events per throughput run.
    pub events: usize,
    /// Publisher and subscriber on one hub, no backplane.
    pub single: Setup,
    /// Publisher on hub A, subscriber on hub B, one JetStream stream.
    pub nats: Setup,
}

impl std::fmt::Display for ScaleOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, s) in [
            ("single hub      ", &self.single),
            ("two hubs on NATS", &self.nats),
        ] {
            writeln!(
                f,
                "scale-out: {name}  {:>9.0} events/s ({} events)   latency p50 {:.0} us  p99 {:.0} us",
                s.events_per_sec, self.events, s.latency.p50_us, s.latency.p99_us
            )?;
        }
        Ok(())
    }
}

/// Runs both setups; `None` (said on stderr) without a `nats-server`.
pub(crate) async fn section(options: &BenchOptions) -> Result<crate::SectionReport, BenchError> {
    match run(options).await? {
        Some(scaleout) => crate::SectionReport::new("scaleout", &scaleout, format!("{scaleout}")),
        None => crate::SectionReport::new(
            "scaleout",
            &serde_json::Value::Null,
            "Scale-out: SKIPPED, no nats-server (NATS_SERVER or PATH)\n".to_string(),
        ),
    }
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Option<ScaleOut>, BenchError> {
    let Some(binary) = nats_server() else {
        eprintln!(
            "bench: SKIPPED scale-out: no nats-server (set NATS_SERVER or install it: apt-get install nats-server)"
        );
        return Ok(None);
    };
    let server = NatsProcess::start(&binary).await?;
    let events = (options.throughput_events / 4).max(1_000);
    let samples = (options.latency_samples / 4).max(500);

    // Room for the whole run in every client's queue: a plain subscriber
    // that falls behind by more than the default queue loses the oldest
    // frames (the hub's slow-client policy), and this measures throughput.
    let room = || hub_with_room_for(events + WARM_UP + samples);
    let hub = Hub::bind_with("127.0.0.1:0", room()).await?;
    let single = measure(&hub.url(), &hub.url(), events, samples).await?;
    hub.shutdown().await;

    let stream = format!("bench{}", std::process::id());
    let nats = || NatsConfig::new(server.url()).stream(&stream);
    let a = Hub::builder()
        .config(room())
        .nats(nats())
        .bind("127.0.0.1:0")
        .await?;
    let b = Hub::builder()
        .config(room())
        .nats(nats())
        .bind("127.0.0.1:0")
        .await?;
    let pair = measure(&a.url(), &b.url(), events, samples).await?;
    a.shutdown().await;
    b.shutdown().await;
    Ok(Some(ScaleOut {
        events,
        single,
        nats: pair,
    }))
}

async fn measure(
    publish_to: &str,
    subscribe_to: &str,
    events: usize,
    samples: usize,
) -> Result<Setup, BenchError> {
    let mut config = WebSocketConfig::new(publish_to);
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await?;
    let subscriber = WebSocketTransport::builder(WebSocketConfig::new(subscribe_to))
        .resume(false)
        .mailbox_size(events + WARM_UP + samples)
        .connect()
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(Notify::new());
    {
        let (count, arrived) = (Arc::clone(&count), Arc::clone(&arrived));
        subscriber
            .subscribe(vec![], move |event| {
                let _ = tx.send(event.id);
                count.fetch_add(1, Relaxed);
                arrived.notify_one();
                Box::pin(async { Ok(()) })
            })
            .await?;
    }

    let mut measured = Vec::with_capacity(samples);
    for i in 0..WARM_UP + samples {
        let event = event(i as u64);
        let id = event.id.clone();
        let start = Instant::now();
        publisher.publish(event).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(got)) if got == id => break,
                Ok(Some(_)) => continue,
                _ => {
                    return Err(BenchError::Incomplete(
                        "scale-out: an event never arrived".into(),
                    ));
                }
            }
        }
        if i >= WARM_UP {
            measured.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }

    let base = count.load(Relaxed);
    let batch: Vec<Event> = (0..events as u64).map(|n| event(1_000_000 + n)).collect();
    let start = Instant::now();
    for event in batch {
        publisher.publish(event).await?;
    }
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        while count.load(Relaxed) < base + events {
            arrived.notified().await;
        }
    })
    .await;
    if all.is_err() {
        return Err(BenchError::Incomplete(format!(
            "scale-out: {} of {events} events arrived",
            count.load(Relaxed) - base
        )));
    }
    let seconds = start.elapsed().as_secs_f64();
    publisher.shutdown().await?;
    subscriber.shutdown().await?;
    Ok(Setup {
        events_per_sec: events as f64 / seconds,
        latency: Percentiles::of(measured),
    })
}

/// The `nats-server` binary: `NATS_SERVER`, or the first on `PATH`.
fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// A `nats-server -js` on a free port with a temporary store, killed when
/// dropped.
struct NatsProcess {
    port: u16,
    store: PathBuf,
    _child: tokio::process::Child,
}

impl NatsProcess {
    async fn start(binary: &PathBuf) -> Result<NatsProcess, BenchError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store =
            std::env::temp_dir().join(format!("watchtower-bench-nats-{}", std::process::id()));
        let child = tokio::process::Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(BenchError::Incomplete("nats-server did not start".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(NatsProcess {
            port,
            store,
            _child: child,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
