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
use crate::stats::{quantile, ratio};
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

pub(crate) async fn run(options: &BenchOptions) -> Result<Latency, BenchError> {
    let raw = raw_round_trips(options.latency_samples).await?;
    let hub = hub_round_trips(options.latency_samples, false).await?;
    let alo = hub_round_trips(options.latency_samples, true).await?;
    Ok(Latency {
        ratio_p99: ratio(hub.p99_us, raw.p99_us),
        ratio_at_least_once_p99: ratio(alo.p99_us, hub.p99_us),
        hub_at_least_once: alo,
        hub,
        raw,
    })
}

async fn hub_round_trips(samples: usize, at_least_once: bool) -> Result<Percentiles, BenchError> {
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
    let (tx, mut rx) = mpsc::unbounded_channel();
    subscriber
        .subscribe(vec![], move |event| {
            let _ = tx.send(event.id);
            Box::pin(async { Ok(()) })
        })
        .await?;
    let mut measured = Vec::with_capacity(samples);
    for i in 0..WARM_UP + samples {
        let event = event(i as u64);
        let id = event.id.clone();
        let start = Instant::now();
        publisher.publish(event).await?;
        loop {
            match rx.recv().await {
                Some(got) if got == id => break,
                Some(_) => continue,
                None => return Err(BenchError::Incomplete("the subscriber stopped".into())),
            }
        }
        if i >= WARM_UP {
            measured.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    publisher.shutdown().await?;
    subscriber.shutdown().await?;
    hub.shutdown().await;
    Ok(Percentiles::of(measured))
}

async fn raw_round_trips(samples: usize) -> Result<Percentiles, BenchError> {
    let (addr, _server) = relay_server().await?;
    let url = format!("ws://{addr}/events");
    let (mut publisher, _) = tokio_tungstenite::connect_async(&url).await?;
    let (subscriber, _) = tokio_tungstenite::connect_async(&url).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
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
    let mut measured = Vec::with_capacity(samples);
    for i in 0..WARM_UP + samples {
        let event = event(i as u64);
        let id = event.id.clone();
        let start = Instant::now();
        publisher
            .send(Message::Text(serde_json::to_string(&event)?.into()))
            .await?;
        loop {
            match rx.recv().await {
                Some(got) if got == id => break,
                Some(_) => continue,
                None => return Err(BenchError::Incomplete("the raw subscriber stopped".into())),
            }
        }
        if i >= WARM_UP {
            measured.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    reader.abort();
    Ok(Percentiles::of(measured))
}
