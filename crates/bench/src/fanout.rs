//! Measurement 3: fan-out from one publisher to many subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::{Hub, HubConfig};
use watchtower_websocket::prelude::*;

use crate::raw::broadcast_server;
use crate::stats::{Summary, ratio};
use crate::throughput::RAW_FLUSH_EVERY;
use crate::workload::events;
use crate::{BenchError, BenchOptions};

/// Interleaved runs of each side.
const RUNS: usize = 3;

/// Deliveries per second (events × subscribers / time).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fanout {
    /// Subscribers.
    pub subscribers: usize,
    /// Events published per run.
    pub events: usize,
    /// Hub with our transport on both ends.
    pub hub: Summary,
    /// Raw broadcast server with raw clients.
    pub raw: Summary,
    /// Frames the hub dropped for slow clients (should be 0).
    pub hub_dropped: u64,
    /// Median hub / median raw.
    pub ratio: f64,
}

/// Counts deliveries; wakes a waiter at a target.
struct Counter {
    count: AtomicU64,
    target: u64,
    done: Notify,
}

impl Counter {
    fn new(target: u64) -> Arc<Counter> {
        Arc::new(Counter {
            count: AtomicU64::new(0),
            target,
            done: Notify::new(),
        })
    }

    fn add(&self) {
        if self.count.fetch_add(1, Relaxed) + 1 == self.target {
            self.done.notify_one();
        }
    }

    async fn reached(&self) {
        loop {
            let notified = self.done.notified();
            if self.count.load(Relaxed) >= self.target {
                return;
            }
            notified.await;
        }
    }
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Fanout, BenchError> {
    let (mut hub_runs, mut raw_runs, mut dropped) = (Vec::new(), Vec::new(), 0);
    for _ in 0..RUNS {
        let (rate, d) = hub_run(options).await?;
        hub_runs.push(rate);
        dropped += d;
        raw_runs.push(raw_run(options).await?);
    }
    let (hub, raw) = (Summary::of(hub_runs), Summary::of(raw_runs));
    Ok(Fanout {
        subscribers: options.fanout_subscribers,
        events: options.fanout_events,
        ratio: ratio(hub.median, raw.median),
        hub,
        raw,
        hub_dropped: dropped,
    })
}

async fn hub_run(options: &BenchOptions) -> Result<(f64, u64), BenchError> {
    let (n, subs) = (options.fanout_events, options.fanout_subscribers);
    // Room for a whole run per client: this measures throughput, not the
    // slow-client policy.
    let mut config = HubConfig::default();
    config.client_queue_frames = n.max(1024);
    let hub = Hub::bind_with("127.0.0.1:0", config).await?;
    let counter = Counter::new((n * subs) as u64);
    let mut subscribers = Vec::with_capacity(subs);
    for _ in 0..subs {
        let transport = WebSocketTransport::builder(WebSocketConfig::new(hub.url()))
            .mailbox_size(n.max(1024))
            .connect()
            .await?;
        let counter = Arc::clone(&counter);
        transport
            .subscribe(vec![], move |_event| {
                counter.add();
                Box::pin(async { Ok(()) })
            })
            .await?;
        subscribers.push(transport);
    }
    let mut config = WebSocketConfig::new(hub.url());
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::new(config).await?;
    while hub.stats().clients < (subs + 1) as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let events = events(n);
    let start = Instant::now();
    for event in events {
        publisher.publish(event).await?;
    }
    counter.reached().await;
    let rate = (n * subs) as f64 / start.elapsed().as_secs_f64();
    let dropped = hub.stats().dropped_frames;
    publisher.shutdown().await?;
    drop(subscribers);
    hub.shutdown().await;
    Ok((rate, dropped))
}

async fn raw_run(options: &BenchOptions) -> Result<f64, BenchError> {
    let (n, subs) = (options.fanout_events, options.fanout_subscribers);
    let (addr, _server) = broadcast_server(n.next_power_of_two()).await?;
    let counter = Counter::new((n * subs) as u64);
    let mut readers = Vec::with_capacity(subs);
    for _ in 0..subs {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/subscribe")).await?;
        let counter = Arc::clone(&counter);
        // Like a user would: decode each frame into an event.
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message
                    && Event::from_json(text.as_bytes()).is_ok()
                {
                    counter.add();
                }
            }
        }));
    }
    // The server subscribes each client to the broadcast as it accepts it,
    // before the handshake completes: all are registered by now.
    let (mut publisher, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/publish")).await?;
    let events = events(n);
    let start = Instant::now();
    for (i, event) in events.iter().enumerate() {
        publisher
            .feed(Message::Text(serde_json::to_string(event)?.into()))
            .await?;
        if (i + 1) % RAW_FLUSH_EVERY == 0 {
            publisher.flush().await?;
        }
    }
    publisher.flush().await?;
    counter.reached().await;
    let rate = (n * subs) as f64 / start.elapsed().as_secs_f64();
    for reader in readers {
        reader.abort();
    }
    Ok(rate)
}
