//! Latency under load: publisher → relay → subscriber while publishing at
//! 10%, 50% and 90% of the measured maximum, ours (transport → hub →
//! transport) against raw (client → raw relay → client).
//!
//! Each event carries the time it was published; the subscriber records
//! how long ago that was. Both contenders are offered the same rate: the
//! fraction of the smaller of their two maxima, so neither is overloaded.
//! Publishing is paced by the millisecond timer: each tick sends what is
//! due, so events leave in bursts of up to a millisecond's worth.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::Hub;
use watchtower_websocket::prelude::*;

use crate::latency::Percentiles;
use crate::raw::{Tasks, relay_server};
use crate::section::{Curve, SectionReport, Series};
use crate::throughput::RAW_FLUSH_EVERY;
use crate::workload::{event, hub_with_room_for};
use crate::{BenchError, BenchOptions};

/// Load levels, as fractions of the measured maximum.
const LEVELS: [f64; 3] = [0.1, 0.5, 0.9];

/// One load level.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadPoint {
    /// Fraction of the maximum.
    pub level: f64,
    /// Events per second offered to both.
    pub rate: f64,
    /// Transport → hub → transport.
    pub hub: Percentiles,
    /// Raw client → raw relay → raw client.
    pub raw: Percentiles,
}

/// Latency under load.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Load {
    /// Delivered events/s publishing flat out, through the hub.
    pub hub_max: f64,
    /// Delivered events/s publishing flat out, through the raw relay.
    pub raw_max: f64,
    /// One point per level.
    pub points: Vec<LoadPoint>,
}

/// The clock events are stamped with.
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn stamped(n: u64) -> Event {
    let mut event = event(n);
    if let serde_json::Value::Object(payload) = &mut event.payload {
        payload.insert("sent_ns".into(), now_ns().into());
    }
    event
}

/// What a subscriber saw: latencies and when the last event came.
#[derive(Default)]
struct Recorder {
    latencies_us: Mutex<Vec<f64>>,
    count: AtomicU64,
    last_ns: AtomicU64,
}

impl Recorder {
    fn record(&self, event: &Event) {
        let now = now_ns();
        if let Some(sent) = event.payload.get("sent_ns").and_then(|v| v.as_u64()) {
            self.latencies_us
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(now.saturating_sub(sent) as f64 / 1e3);
        }
        self.last_ns.store(now, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn take(&self) -> Vec<f64> {
        std::mem::take(
            &mut *self
                .latencies_us
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Waits until `target` events arrived or nothing has come for a second.
    async fn settle(&self, target: u64) {
        let mut seen = self.count.load(Relaxed);
        let mut quiet = Instant::now();
        while seen < target && quiet.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = self.count.load(Relaxed);
            if now != seen {
                (seen, quiet) = (now, Instant::now());
            }
        }
    }
}

/// A publisher under test.
trait Publisher {
    /// Publishes events `from..from + count` as fast as it can.
    async fn burst(&mut self, from: u64, count: u64) -> Result<(), BenchError>;
}

struct Ours(WebSocketTransport);

impl Publisher for Ours {
    async fn burst(&mut self, from: u64, count: u64) -> Result<(), BenchError> {
        for n in from..from + count {
            self.0.publish(stamped(n)).await?;
        }
        Ok(())
    }
}

type RawStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Raw(RawStream);

impl Publisher for Raw {
    async fn burst(&mut self, from: u64, count: u64) -> Result<(), BenchError> {
        for (i, n) in (from..from + count).enumerate() {
            let text = serde_json::to_string(&stamped(n))?;
            self.0.feed(Message::Text(text.into())).await?;
            if (i + 1) % RAW_FLUSH_EVERY == 0 {
                self.0.flush().await?;
            }
        }
        self.0.flush().await?;
        Ok(())
    }
}

/// One contender: its publisher, what its subscriber saw, and how many
/// events it has published.
struct Contender<P> {
    publisher: P,
    recorder: Arc<Recorder>,
    sent: u64,
}

impl<P: Publisher> Contender<P> {
    /// Delivered events/s publishing `n` flat out.
    async fn max_rate(&mut self, n: u64) -> Result<f64, BenchError> {
        let (count0, start) = (self.recorder.count.load(Relaxed), now_ns());
        self.publisher.burst(self.sent, n).await?;
        self.sent += n;
        self.recorder.settle(count0 + n).await;
        let _ = self.recorder.take();
        let delivered = self.recorder.count.load(Relaxed) - count0;
        let seconds = self.recorder.last_ns.load(Relaxed).saturating_sub(start) as f64 / 1e9;
        Ok(if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        })
    }

    /// Latencies while publishing at `rate` for `time`.
    async fn paced(&mut self, rate: f64, time: Duration) -> Result<Percentiles, BenchError> {
        let count0 = self.recorder.count.load(Relaxed);
        let _ = self.recorder.take();
        let total = (rate * time.as_secs_f64()).max(1.0) as u64;
        let start = Instant::now();
        let mut sent = 0;
        while sent < total {
            let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
            if due > sent {
                self.publisher.burst(self.sent + sent, due - sent).await?;
                sent = due;
            } else {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        self.sent += total;
        self.recorder.settle(count0 + total).await;
        Ok(Percentiles::of(self.recorder.take()))
    }
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let flat_out = (options.throughput_events / 4).max(1_000) as u64;
    let time = Duration::from_millis(options.load_millis);

    let hub = Hub::bind_with("127.0.0.1:0", hub_with_room_for(flat_out as usize)).await?;
    let recorder = Arc::new(Recorder::default());
    let subscriber = WebSocketTransport::builder(WebSocketConfig::new(hub.url()))
        .mailbox_size(flat_out as usize)
        .connect()
        .await?;
    let r = Arc::clone(&recorder);
    subscriber
        .subscribe(vec![], move |event| {
            r.record(&event);
            Box::pin(async { Ok(()) })
        })
        .await?;
    let mut config = WebSocketConfig::new(hub.url());
    config.backpressure.strategy = BackpressureStrategy::Block;
    let mut ours = Contender {
        publisher: Ours(WebSocketTransport::new(config).await?),
        recorder,
        sent: 0,
    };

    let (addr, _relay) = relay_server().await?;
    let url = format!("ws://{addr}/events");
    // With TCP_NODELAY, as our transport and a careful user set it: with
    // Nagle's algorithm a burst waits for the last one's ack.
    let (publisher, _) = tokio_tungstenite::connect_async_with_config(&url, None, true).await?;
    let (mut sub, _) = tokio_tungstenite::connect_async_with_config(&url, None, true).await?;
    let recorder = Arc::new(Recorder::default());
    let r = Arc::clone(&recorder);
    // Like a user would: decode each frame into an event.
    let _reader = Tasks::one(tokio::spawn(async move {
        while let Some(Ok(message)) = sub.next().await {
            if let Message::Text(text) = message
                && let Ok(event) = Event::from_json(text.as_bytes())
            {
                r.record(&event);
            }
        }
    }));
    let mut raw = Contender {
        publisher: Raw(publisher),
        recorder,
        sent: 0,
    };

    let hub_max = ours.max_rate(flat_out).await?;
    let raw_max = raw.max_rate(flat_out).await?;
    eprintln!("  flat out: hub {hub_max:.0}/s, raw relay {raw_max:.0}/s");
    let max = hub_max.min(raw_max);
    let mut load = Load {
        hub_max,
        raw_max,
        points: Vec::new(),
    };
    for level in LEVELS {
        let rate = max * level;
        let raw_p = raw.paced(rate, time).await?;
        let hub_p = ours.paced(rate, time).await?;
        eprintln!(
            "  {:.0}% ({rate:.0}/s): p99 hub {:.1} µs, raw {:.1} µs",
            level * 100.0,
            hub_p.p99_us,
            raw_p.p99_us
        );
        load.points.push(LoadPoint {
            level,
            rate,
            hub: hub_p,
            raw: raw_p,
        });
    }
    ours.publisher.0.shutdown().await?;
    subscriber.shutdown().await?;
    hub.shutdown().await;

    let mut table = format!(
        "Latency under load (µs; rate = a fraction of min(hub {hub_max:.0}/s, raw relay {raw_max:.0}/s) flat out)\n   \
         load    events/s   raw p50   raw p99   hub p50   hub p99   p99 hub/raw\n"
    );
    let mut series = [
        Series::new("raw p50"),
        Series::new("raw p99"),
        Series::new("hub p50"),
        Series::new("hub p99"),
    ];
    for p in &load.points {
        table.push_str(&format!(
            "   {:>3.0}% {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>13.2}\n",
            p.level * 100.0,
            p.rate,
            p.raw.p50_us,
            p.raw.p99_us,
            p.hub.p50_us,
            p.hub.p99_us,
            crate::stats::ratio(p.hub.p99_us, p.raw.p99_us)
        ));
        let x = p.level * 100.0;
        series[0].points.push((x, p.raw.p50_us));
        series[1].points.push((x, p.raw.p99_us));
        series[2].points.push((x, p.hub.p50_us));
        series[3].points.push((x, p.hub.p99_us));
    }
    Ok(SectionReport::new("load", &load, table)?.curve(Curve {
        name: "latency-under-load".into(),
        title: "Latency under load, publisher → relay → subscriber".into(),
        x_label: "load, % of the measured maximum".into(),
        y_label: "µs".into(),
        log_x: false,
        series: series.into(),
    }))
}
