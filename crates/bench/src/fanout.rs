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
    /// Decomposition: the hub with raw clients (and a raw publisher).
    pub hub_raw_clients: Summary,
    /// Decomposition: the raw server with our transport as subscribers.
    pub raw_server_transport_clients: Summary,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Raw,
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Fanout, BenchError> {
    let mut runs: [Vec<f64>; 4] = Default::default();
    let mut dropped = 0;
    // (server, subscribers, publisher), interleaved per run.
    let setups = [
        (Side::Ours, Side::Ours, Side::Ours),
        (Side::Raw, Side::Raw, Side::Raw),
        (Side::Ours, Side::Raw, Side::Raw),
        (Side::Raw, Side::Ours, Side::Raw),
    ];
    for _ in 0..RUNS {
        for (i, (server, subscribers, publisher)) in setups.into_iter().enumerate() {
            let (rate, d) = one(options, server, subscribers, publisher).await?;
            runs[i].push(rate);
            dropped += d;
        }
    }
    let [hub, raw, hub_raw_clients, raw_server_transport_clients] = runs.map(Summary::of);
    Ok(Fanout {
        subscribers: options.fanout_subscribers,
        events: options.fanout_events,
        ratio: ratio(hub.median, raw.median),
        hub,
        raw,
        hub_raw_clients,
        raw_server_transport_clients,
        hub_dropped: dropped,
    })
}

/// One run: `n` events to every subscriber; returns deliveries/s and the
/// frames the hub dropped.
async fn one(
    options: &BenchOptions,
    server: Side,
    subscribers: Side,
    publisher: Side,
) -> Result<(f64, u64), BenchError> {
    let (n, subs) = (options.fanout_events, options.fanout_subscribers);
    let (hub, raw_server, sub_url, pub_url) = match server {
        Side::Ours => {
            // Room for a whole run per client: this measures throughput,
            // not the slow-client policy.
            let mut config = HubConfig::default();
            config.client_queue_frames = n.max(1024);
            let hub = Hub::bind_with("127.0.0.1:0", config).await?;
            let url = hub.url();
            (Some(hub), None, url.clone(), url)
        }
        Side::Raw => {
            let (addr, server) = broadcast_server(n.next_power_of_two()).await?;
            (
                None,
                Some(server),
                format!("ws://{addr}/subscribe"),
                format!("ws://{addr}/publish"),
            )
        }
    };
    let counter = Counter::new((n * subs) as u64);
    let mut transports = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..subs {
        let counter = Arc::clone(&counter);
        match subscribers {
            Side::Ours => {
                let transport = WebSocketTransport::builder(WebSocketConfig::new(&sub_url))
                    .mailbox_size(n.max(1024))
                    .connect()
                    .await?;
                transport
                    .subscribe(vec![], move |_event| {
                        counter.add();
                        Box::pin(async { Ok(()) })
                    })
                    .await?;
                transports.push(transport);
            }
            Side::Raw => {
                let (mut ws, _) = tokio_tungstenite::connect_async(&sub_url).await?;
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
        }
    }
    // Both servers register a client before its handshake completes, so
    // every subscriber receives from here on.
    let events = events(n);
    let start = match publisher {
        Side::Ours => {
            let mut config = WebSocketConfig::new(&pub_url);
            config.backpressure.strategy = BackpressureStrategy::Block;
            let transport = WebSocketTransport::new(config).await?;
            let start = Instant::now();
            for event in events {
                transport.publish(event).await?;
            }
            counter.reached().await;
            transports.push(transport);
            start
        }
        Side::Raw => {
            let (mut ws, _) = tokio_tungstenite::connect_async(&pub_url).await?;
            let start = Instant::now();
            for (i, event) in events.into_iter().enumerate() {
                ws.feed(Message::Text(serde_json::to_string(&event)?.into()))
                    .await?;
                if (i + 1) % RAW_FLUSH_EVERY == 0 {
                    ws.flush().await?;
                }
            }
            ws.flush().await?;
            counter.reached().await;
            start
        }
    };
    let rate = (n * subs) as f64 / start.elapsed().as_secs_f64();
    let dropped = hub.as_ref().map_or(0, |h| h.stats().dropped_frames);
    for reader in readers {
        reader.abort();
    }
    drop(transports);
    if let Some(hub) = hub {
        hub.shutdown().await;
    }
    drop(raw_server);
    Ok((rate, dropped))
}
