//! Measurement 2: latency, publisher → relay → subscriber, one event at a time.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::Hub;
use watchtower_websocket::AtLeastOnce;
use watchtower_websocket::prelude::*;

use crate::raw::relay_server;
use crate::section::{SectionReport, Target};
use crate::stats::{quantile, ratio, ratios};
use crate::workload::event;
use crate::{BenchError, BenchOptions};

/// Samples discarded before measuring: connections and caches warm up.
const WARM_UP: usize = 500;

/// Percentiles of one contender, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples measured.
    pub samples: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

impl Percentiles {
    pub(crate) fn of(mut samples: Vec<f64>) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        Percentiles {
            samples: samples.len(),
            p50_us: quantile(&samples, 0.5),
            p99_us: quantile(&samples, 0.99),
            p999_us: quantile(&samples, 0.999),
        }
    }
}

/// Hub latency against the raw round trip.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Our transport → hub → our transport.
    pub hub: Percentiles,
    /// Raw tokio-tungstenite client → raw relay → raw client.
    pub raw: Percentiles,
    /// hub p99 / raw p99.
    pub ratio_p99: f64,
    /// Our transport → hub → our transport, both at least once.
    pub hub_at_least_once: Percentiles,
    /// At-least-once p99 / plain hub p99.
    pub ratio_at_least_once_p99: f64,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let (l, sittings) = run(options).await?;
    let mut table = String::new();
    let mut line = |l: String| {
        table.push_str(&l);
        table.push('\n');
    };
    line(format!(
        "Latency publisher → relay → subscriber, one at a time (µs; {} samples in {} sittings)",
        l.hub.samples,
        sittings.hub_p99.len()
    ));
    line("                                              p50      p99    p99.9".into());
    for (name, p) in [
        ("raw client → raw relay → raw client   ", &l.raw),
        ("transport → hub → transport           ", &l.hub),
        (
            "  the same, at least once             ",
            &l.hub_at_least_once,
        ),
    ] {
        line(format!(
            "   {name}  {:>7.1}  {:>7.1}  {:>7.1}",
            p.p50_us, p.p99_us, p.p999_us
        ));
    }
    line(format!(
        "   p99 ratios of all samples: hub/raw {:.2}  at-least-once/plain {:.2}",
        l.ratio_p99, l.ratio_at_least_once_p99
    ));
    Ok(
        SectionReport::new("latency", &l, table)?.target(Target::at_most(
            "latency p99, transport → hub → transport / raw",
            "×",
            1.2,
            ratios(&sittings.hub_p99, &sittings.raw_p99),
        )),
    )
}

/// p99 of each sitting, per contender.
pub(crate) struct Sittings {
    raw_p99: Vec<f64>,
    hub_p99: Vec<f64>,
}

/// A way to send one event and wait for it at the other end.
trait Probe {
    async fn round_trip(&mut self, n: u64) -> Result<f64, BenchError>;
    /// Closes the connections and stops the relay.
    async fn shutdown(self) -> Result<(), BenchError>;
}

/// `count` round trips through `probe`, events numbered from `from`, in µs.
async fn sample(probe: &mut impl Probe, from: u64, count: usize) -> Result<Vec<f64>, BenchError> {
    let mut measured = Vec::with_capacity(count);
    for i in 0..count as u64 {
        measured.push(probe.round_trip(from + i).await?);
    }
    Ok(measured)
}

/// One sitting of one contender: a fresh relay and clients, warmed up,
/// measured, then shut down, so no other contender's idle connections and
/// timers share the runtime while it is measured.
async fn sitting<P: Probe>(probe: P, from: u64, count: usize) -> Result<Vec<f64>, BenchError> {
    let mut probe = probe;
    sample(&mut probe, from, WARM_UP).await?;
    let measured = sample(&mut probe, from + WARM_UP as u64, count).await?;
    probe.shutdown().await?;
    Ok(measured)
}

pub(crate) async fn run(options: &BenchOptions) -> Result<(Latency, Sittings), BenchError> {
    let sittings_n = options.runs.max(1);
    let per = (options.latency_samples / sittings_n).max(1);
    let (mut all_raw, mut all_hub, mut all_alo) = (Vec::new(), Vec::new(), Vec::new());
    let mut sittings = Sittings {
        raw_p99: Vec::new(),
        hub_p99: Vec::new(),
    };
    // Interleaved sittings: a drift in the machine's load hits each side.
    for k in 0..sittings_n {
        let from = (k * (WARM_UP + per)) as u64;
        let r = sitting(RawProbe::start().await?, from, per).await?;
        let h = sitting(HubProbe::start(false).await?, from, per).await?;
        let a = sitting(HubProbe::start(true).await?, from, per).await?;
        let (rp, hp) = (Percentiles::of(r.clone()), Percentiles::of(h.clone()));
        eprintln!(
            "  sitting {}: p99 raw {:.1} µs, hub {:.1} µs",
            k + 1,
            rp.p99_us,
            hp.p99_us
        );
        sittings.raw_p99.push(rp.p99_us);
        sittings.hub_p99.push(hp.p99_us);
        all_raw.extend(r);
        all_hub.extend(h);
        all_alo.extend(a);
    }
    let (raw, hub, alo) = (
        Percentiles::of(all_raw),
        Percentiles::of(all_hub),
        Percentiles::of(all_alo),
    );
    Ok((
        Latency {
            ratio_p99: ratio(hub.p99_us, raw.p99_us),
            ratio_at_least_once_p99: ratio(alo.p99_us, hub.p99_us),
            hub_at_least_once: alo,
            hub,
            raw,
        },
        sittings,
    ))
}

/// Our transport on both ends of a hub of its own.
struct HubProbe {
    hub: Hub,
    publisher: WebSocketTransport,
    subscriber: WebSocketTransport,
    ids: mpsc::UnboundedReceiver<String>,
}

impl HubProbe {
    async fn start(at_least_once: bool) -> Result<HubProbe, BenchError> {
        let hub = Hub::bind("127.0.0.1:0").await?;
        let connect = || {
            let builder = WebSocketTransport::builder(WebSocketConfig::new(hub.url()));
            let builder = if at_least_once {
                builder.delivery(AtLeastOnce::default())
            } else {
                builder
            };
            builder.connect()
        };
        let publisher = connect().await?;
        let subscriber = connect().await?;
        let (tx, ids) = mpsc::unbounded_channel();
        subscriber
            .subscribe(vec![], move |event| {
                let _ = tx.send(event.id);
                Box::pin(async { Ok(()) })
            })
            .await?;
        Ok(HubProbe {
            hub,
            publisher,
            subscriber,
            ids,
        })
    }
}

impl Probe for HubProbe {
    async fn shutdown(self) -> Result<(), BenchError> {
        self.publisher.shutdown().await?;
        self.subscriber.shutdown().await?;
        self.hub.shutdown().await;
        Ok(())
    }

    async fn round_trip(&mut self, n: u64) -> Result<f64, BenchError> {
        let event = event(n);
        let id = event.id.clone();
        let start = Instant::now();
        self.publisher.publish(event).await?;
        wait_for(&mut self.ids, &id).await?;
        Ok(start.elapsed().as_secs_f64() * 1e6)
    }
}

async fn wait_for(ids: &mut mpsc::UnboundedReceiver<String>, id: &str) -> Result<(), BenchError> {
    loop {
        match ids.recv().await {
            Some(got) if got == id => return Ok(()),
            Some(_) => continue,
            None => return Err(BenchError::Incomplete("the subscriber stopped".into())),
        }
    }
}

/// Raw tokio-tungstenite clients on both ends of a raw relay.
struct RawProbe {
    publisher: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    ids: mpsc::UnboundedReceiver<String>,
    _relay: crate::raw::Tasks,
    _reader: crate::raw::Tasks,
}

impl RawProbe {
    async fn start() -> Result<RawProbe, BenchError> {
        let (addr, relay) = relay_server().await?;
        let url = format!("ws://{addr}/events");
        let (publisher, _) = tokio_tungstenite::connect_async(&url).await?;
        let (subscriber, _) = tokio_tungstenite::connect_async(&url).await?;
        let (tx, ids) = mpsc::unbounded_channel();
        // Like a user would: decode each frame into an event.
        let reader = tokio::spawn(async move {
            let mut subscriber = subscriber;
            while let Some(Ok(message)) = subscriber.next().await {
                if let Message::Text(text) = message
                    && let Ok(event) = Event::from_json(text.as_bytes())
                {
                    let _ = tx.send(event.id);
                }
            }
        });
        Ok(RawProbe {
            publisher,
            ids,
            _relay: relay,
            _reader: crate::raw::Tasks::one(reader),
        })
    }
}

impl Probe for RawProbe {
    async fn shutdown(mut self) -> Result<(), BenchError> {
        self.publisher.close(None).await?;
        Ok(())
    }

    async fn round_trip(&mut self, n: u64) -> Result<f64, BenchError> {
        let event = event(n);
        let id = event.id.clone();
        let start = Instant::now();
        self.publisher
            .send(Message::Text(serde_json::to_string(&event)?.into()))
            .await?;
        wait_for(&mut self.ids, &id).await?;
        Ok(start.elapsed().as_secs_f64() * 1e6)
    }
}
