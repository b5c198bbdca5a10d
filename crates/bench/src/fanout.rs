//! Measurement 3: fan-out from one publisher to many subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::Hub;
use watchtower_websocket::prelude::*;

use crate::raw::broadcast_server;
use crate::section::{Curve, SectionReport, Series, Target};
use crate::stats::{Summary, ratio, ratios};
use crate::throughput::RAW_FLUSH_EVERY;
use crate::workload::{events, hub_with_room_for};
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
    /// Hub with our transport on both ends (the spec's per-event handler).
    pub hub: Summary,
    /// Raw broadcast server with raw clients.
    pub raw: Summary,
    /// Decomposition: the hub with raw clients (and a raw publisher).
    pub hub_raw_clients: Summary,
    /// Decomposition: the raw server with our transport as subscribers.
    pub raw_server_transport_clients: Summary,
    /// The hub with transport subscribers whose handler drops the event
    /// and boxes an empty future: the same work, but with glibc the box
    /// is the eighth live block of its size class, one more than the
    /// per-thread cache holds (see the section's source).
    pub hub_empty_future: Summary,
    /// Frames the hub dropped for slow clients (should be 0).
    pub hub_dropped: u64,
    /// Median hub / median raw.
    pub ratio: f64,
    /// CPU time of this whole process (publisher, server, subscribers)
    /// per delivery, µs: hub with transport subscribers. Less sensitive
    /// to other load on the machine than the rates.
    pub cpu_us_hub: Summary,
    /// The same, raw broadcast server with raw clients.
    pub cpu_us_raw: Summary,
}

/// A fan-out run not finished by then is reported as incomplete.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

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

    /// Waits for the target; a run that stops short of it is reported
    /// as incomplete after [`GIVE_UP_AFTER`], not waited for forever.
    async fn reached(&self) -> Result<(), BenchError> {
        let wait = async {
            loop {
                let notified = self.done.notified();
                if self.count.load(Relaxed) >= self.target {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(GIVE_UP_AFTER, wait)
            .await
            .map_err(|_| {
                BenchError::Incomplete(format!(
                    "fan-out: {} of {} deliveries after {} s",
                    self.count.load(Relaxed),
                    self.target,
                    GIVE_UP_AFTER.as_secs()
                ))
            })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Raw,
}

/// Who receives: our transport (the spec's per-event handler), or raw
/// clients that decode each frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Receivers {
    Ours(Handler),
    Raw,
}

/// The shape of the subscribers' handler. Both count the event and box a
/// future, as the spec's handler type asks; they differ in what is alive
/// when the box is made, which glibc's allocator notices.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handler {
    /// The spec's form: the future owns the event, which is dropped when
    /// it completes. The measured figure.
    OwnsEvent,
    /// Drops the event in the closure and boxes `async { Ok(()) }`: a
    /// one-byte future, boxed while the event's strings are still alive.
    /// With the benchmark event that is the eighth live block of glibc's
    /// smallest size class, one more than its per-thread cache holds, so
    /// every event takes the allocator's slow path (`_int_malloc`,
    /// `_int_free`): about a tenth of the subscriber's cost here, which
    /// `GLIBC_TUNABLES=glibc.malloc.tcache_count=8` removes. Printed so
    /// that a user who writes handlers this way knows.
    DropsEvent,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let f = run(options).await?;
    let rate = |s: &Summary| format!("{:>9.0} {:>9.0}–{:<9.0}", s.median, s.min, s.max);
    let mut table = String::new();
    let mut line = |l: String| {
        table.push_str(&l);
        table.push('\n');
    };
    line(format!(
        "Fan-out: {} events to {} subscribers (deliveries/s; median, min–max of {} sittings)",
        f.events,
        f.subscribers,
        f.hub.runs.len()
    ));
    line(format!(
        "   raw broadcast server, raw clients        {}",
        rate(&f.raw)
    ));
    line(format!(
        "   hub, transport subscribers (per event)   {}",
        rate(&f.hub)
    ));
    line(format!(
        "   decomposition: hub, raw clients          {}",
        rate(&f.hub_raw_clients)
    ));
    line(format!(
        "   raw server, transport subscribers        {}",
        rate(&f.raw_server_transport_clients)
    ));
    line(format!(
        "   hub, handler drops event, empty future   {}",
        rate(&f.hub_empty_future)
    ));
    line(format!(
        "   ratio of medians hub/raw {:.2}; frames the hub dropped: {}",
        f.ratio, f.hub_dropped
    ));
    line(format!(
        "   CPU per delivery, whole process (µs): raw {:.3}, hub {:.3}; hub/raw {:.2}",
        f.cpu_us_raw.median,
        f.cpu_us_hub.median,
        ratio(f.cpu_us_hub.median, f.cpu_us_raw.median)
    ));
    Ok(
        SectionReport::new("fanout", &f, table)?.target(Target::at_least(
            &format!("fan-out to {}, hub + transport / raw", f.subscribers),
            "×",
            0.95,
            ratios(&f.hub.runs, &f.raw.runs),
        )),
    )
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Fanout, BenchError> {
    let mut runs: [Vec<f64>; 5] = Default::default();
    let mut cpu: [Vec<f64>; 5] = Default::default();
    let mut dropped = 0;
    let (n, subs) = (options.fanout_events, options.fanout_subscribers);
    // (server, subscribers, publisher), interleaved per run.
    let ours = Receivers::Ours(Handler::OwnsEvent);
    let setups = [
        (Side::Ours, ours, Side::Ours),
        (Side::Raw, Receivers::Raw, Side::Raw),
        (Side::Ours, Receivers::Raw, Side::Raw),
        (Side::Raw, ours, Side::Raw),
        (Side::Ours, Receivers::Ours(Handler::DropsEvent), Side::Ours),
    ];
    for sitting in 0..RUNS {
        for (i, (server, subscribers, publisher)) in setups.into_iter().enumerate() {
            let (rate, d, cpu_us) = one(n, subs, server, subscribers, publisher).await?;
            runs[i].push(rate);
            cpu[i].push(cpu_us);
            dropped += d;
        }
        eprintln!(
            "  sitting {}: hub {:.0}/s, raw {:.0}/s",
            sitting + 1,
            runs[0][sitting],
            runs[1][sitting]
        );
    }
    let [
        hub,
        raw,
        hub_raw_clients,
        raw_server_transport_clients,
        hub_empty_future,
    ] = runs.map(Summary::of);
    let [cpu_hub, cpu_raw, ..] = cpu.map(Summary::of);
    Ok(Fanout {
        subscribers: subs,
        events: n,
        ratio: ratio(hub.median, raw.median),
        hub,
        raw,
        hub_raw_clients,
        raw_server_transport_clients,
        hub_empty_future,
        hub_dropped: dropped,
        cpu_us_hub: cpu_hub,
        cpu_us_raw: cpu_raw,
    })
}

/// Deliveries/s against the number of subscribers, ours and raw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FanoutScale {
    /// One point per subscriber count.
    pub points: Vec<ScalePoint>,
}

/// One subscriber count.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScalePoint {
    /// Subscribers.
    pub subscribers: usize,
    /// Events published.
    pub events: usize,
    /// Hub, transport subscribers.
    pub hub: Summary,
    /// Raw broadcast server, raw clients.
    pub raw: Summary,
}

pub(crate) async fn scale_section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    crate::child::raise_open_files();
    let sittings = if options.quick { 1 } else { 2 };
    let mut scale = FanoutScale::default();
    for &subs in &options.fanout_scale {
        let n =
            (options.fanout_scale_deliveries / subs.max(1)).clamp(10, options.throughput_events);
        let mut runs: [Vec<f64>; 2] = Default::default();
        for _ in 0..sittings {
            runs[0].push(
                one(
                    n,
                    subs,
                    Side::Ours,
                    Receivers::Ours(Handler::OwnsEvent),
                    Side::Ours,
                )
                .await?
                .0,
            );
            runs[1].push(one(n, subs, Side::Raw, Receivers::Raw, Side::Raw).await?.0);
        }
        let [hub, raw] = runs.map(Summary::of);
        eprintln!(
            "  {subs} subscribers: hub {:.0}/s, raw {:.0}/s",
            hub.median, raw.median
        );
        scale.points.push(ScalePoint {
            subscribers: subs,
            events: n,
            hub,
            raw,
        });
    }
    let mut table = String::from(
        "Fan-out against subscribers (deliveries/s, medians)\n   subscribers   events        raw       hub  hub/raw\n",
    );
    let mut series = [
        Series::new("raw broadcast server, raw clients"),
        Series::new("hub, transport subscribers"),
    ];
    for p in &scale.points {
        table.push_str(&format!(
            "   {:>11} {:>8} {:>10.0} {:>9.0} {:>8.2}\n",
            p.subscribers,
            p.events,
            p.raw.median,
            p.hub.median,
            ratio(p.hub.median, p.raw.median)
        ));
        let x = p.subscribers as f64;
        series[0].points.push((x, p.raw.median));
        series[1].points.push((x, p.hub.median));
    }
    Ok(
        SectionReport::new("fanout-scale", &scale, table)?.curve(Curve {
            name: "fanout-scale".into(),
            title: "Fan-out: deliveries/s against subscribers".into(),
            x_label: "subscribers".into(),
            y_label: "deliveries/s".into(),
            log_x: true,
            series: series.into(),
        }),
    )
}

/// One run: `n` events to every subscriber; returns deliveries/s and the
/// frames the hub dropped.
async fn one(
    n: usize,
    subs: usize,
    server: Side,
    subscribers: Receivers,
    publisher: Side,
) -> Result<(f64, u64, f64), BenchError> {
    let (hub, raw_server, sub_url, pub_url) = match server {
        Side::Ours => {
            let hub = Hub::bind_with("127.0.0.1:0", hub_with_room_for(n)).await?;
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
            Receivers::Ours(handler) => {
                let transport = WebSocketTransport::builder(WebSocketConfig::new(&sub_url))
                    .mailbox_size(n.max(1024))
                    .connect()
                    .await?;
                match handler {
                    Handler::OwnsEvent => {
                        transport
                            .subscribe(vec![], move |event| {
                                counter.add();
                                Box::pin(async move {
                                    drop(event);
                                    Ok(())
                                })
                            })
                            .await?
                    }
                    Handler::DropsEvent => {
                        transport
                            .subscribe(vec![], move |_event| {
                                counter.add();
                                Box::pin(async { Ok(()) })
                            })
                            .await?
                    }
                };
                transports.push(transport);
            }
            Receivers::Raw => {
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
    let cpu_before = crate::child::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let start = match publisher {
        Side::Ours => {
            let mut config = WebSocketConfig::new(&pub_url);
            config.backpressure.strategy = BackpressureStrategy::Block;
            let transport = WebSocketTransport::new(config).await?;
            let start = Instant::now();
            for event in events {
                transport.publish(event).await?;
            }
            counter.reached().await?;
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
            counter.reached().await?;
            start
        }
    };
    let rate = (n * subs) as f64 / start.elapsed().as_secs_f64();
    let cpu = crate::child::cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu_before;
    let cpu_us = cpu.max(0.0) * 1e6 / (n * subs).max(1) as f64;
    let dropped = hub.as_ref().map_or(0, |h| h.stats().dropped_frames);
    for reader in readers {
        reader.abort();
    }
    drop(transports);
    if let Some(hub) = hub {
        hub.shutdown().await;
    }
    drop(raw_server);
    Ok((rate, dropped, cpu_us))
}
