//! Measurement 1: publish throughput to a counting server.

use std::sync::Arc;
use std::time::Instant;

use futures_util::SinkExt;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::Hub;
use watchtower_websocket::AtLeastOnce;
use watchtower_websocket::prelude::*;

use crate::raw::CountingServer;
use crate::section::{SectionReport, Target};
use crate::stats::{Summary, ratio, ratios};
use crate::workload::events;
use crate::{BenchError, BenchOptions};

/// Frames fed before each flush by the hand-written batching contender.
pub(crate) const RAW_FLUSH_EVERY: usize = 64;

/// Events per second delivered to the counting server, per contender.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// (a) raw tokio-tungstenite, `send()` per message.
    pub raw_send: Summary,
    /// (b) raw tokio-tungstenite, `feed` + `flush` every 64.
    pub raw_feed_flush: Summary,
    /// (c) `WebSocketTransport::publish` from one task.
    pub transport_1: Summary,
    /// (c) `WebSocketTransport::publish` from 8 tasks at once.
    pub transport_8: Summary,
    /// Median c1 / median b.
    pub ratio_c1_b: f64,
    /// Median c8 / median b.
    pub ratio_c8_b: f64,
    /// Median c1 / median a.
    pub ratio_c1_a: f64,
    /// Our transport, plain mode, to the hub (until the hub has them all).
    pub hub_plain: Summary,
    /// Our transport, at-least-once, to the hub (until every ack is back).
    pub hub_at_least_once: Summary,
    /// Median at-least-once / median plain, both to the hub.
    pub ratio_at_least_once: f64,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let t = run(options).await?;
    let rate = |s: &Summary| format!("{:>9.0} {:>9.0}–{:<9.0}", s.median, s.min, s.max);
    let mut table = String::new();
    let mut line = |l: String| {
        table.push_str(&l);
        table.push('\n');
    };
    line(format!(
        "Publish throughput (events/s to a counting server; median, min–max of {} sittings)",
        t.raw_send.runs.len()
    ));
    line(format!(
        "   (a) raw tokio-tungstenite send() per message      {}",
        rate(&t.raw_send)
    ));
    line(format!(
        "   (b) raw tokio-tungstenite feed + flush every {RAW_FLUSH_EVERY:<3}  {}",
        rate(&t.raw_feed_flush)
    ));
    line(format!(
        "   (c) WebSocketTransport::publish, 1 task          {}",
        rate(&t.transport_1)
    ));
    line(format!(
        "   (c) WebSocketTransport::publish, 8 tasks         {}",
        rate(&t.transport_8)
    ));
    line(format!(
        "   to the hub, plain                                {}",
        rate(&t.hub_plain)
    ));
    line(format!(
        "   to the hub, at least once (until acked)          {}",
        rate(&t.hub_at_least_once)
    ));
    line(format!(
        "   ratios of medians: c1/b {:.2}  c8/b {:.2}  c1/a {:.2}  at-least-once/plain {:.2}",
        t.ratio_c1_b, t.ratio_c8_b, t.ratio_c1_a, t.ratio_at_least_once
    ));
    let per_sitting = |x: &Summary, y: &Summary| ratios(&x.runs, &y.runs);
    Ok(SectionReport::new("throughput", &t, table)?
        .target(Target::at_least(
            "publish, 1 task / raw feed+flush (c1/b)",
            "×",
            1.0,
            per_sitting(&t.transport_1, &t.raw_feed_flush),
        ))
        .target(Target::at_least(
            "publish, 8 tasks / raw feed+flush (c8/b)",
            "×",
            1.2,
            per_sitting(&t.transport_8, &t.raw_feed_flush),
        ))
        .target(Target::at_least(
            "to the hub, at least once / plain",
            "×",
            0.7,
            per_sitting(&t.hub_at_least_once, &t.hub_plain),
        )))
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Throughput, BenchError> {
    let server = CountingServer::start().await?;
    let n = options.throughput_events;
    let (mut a, mut b, mut c1, mut c8) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut plain, mut alo) = (Vec::new(), Vec::new());
    // Interleaved: a drift in the machine's load hits every contender.
    for run in 0..options.runs {
        a.push(raw(&server, events(n), 1).await?);
        b.push(raw(&server, events(n), RAW_FLUSH_EVERY).await?);
        c1.push(transport(&server, vec![events(n)]).await?);
        c8.push(transport(&server, (0..8).map(|_| events(n / 8)).collect()).await?);
        plain.push(to_hub(n, false).await?);
        alo.push(to_hub(n, true).await?);
        eprintln!(
            "  sitting {}: send {:.0}/s, feed+flush {:.0}/s, publish x1 {:.0}/s, publish x8 {:.0}/s, to hub plain {:.0}/s, at least once {:.0}/s",
            run + 1,
            a[run],
            b[run],
            c1[run],
            c8[run],
            plain[run],
            alo[run]
        );
    }
    let (plain, alo) = (Summary::of(plain), Summary::of(alo));
    let (a, b, c1, c8) = (
        Summary::of(a),
        Summary::of(b),
        Summary::of(c1),
        Summary::of(c8),
    );
    Ok(Throughput {
        ratio_c1_b: ratio(c1.median, b.median),
        ratio_c8_b: ratio(c8.median, b.median),
        ratio_c1_a: ratio(c1.median, a.median),
        raw_send: a,
        raw_feed_flush: b,
        transport_1: c1,
        transport_8: c8,
        ratio_at_least_once: ratio(alo.median, plain.median),
        hub_plain: plain,
        hub_at_least_once: alo,
    })
}

/// One contender of the throughput section, run alone by [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// (b) raw tokio-tungstenite, `feed` + `flush` every 64.
    RawFeedFlush,
    /// (c1) `WebSocketTransport::publish` from one task.
    Publish1,
}

/// Runs one contender alone, `n` events to a counting server, and
/// returns its events/s: a process that runs nothing else, so that
/// `perf stat` and `perf record` around it see one contender's cost per
/// event (the `throughput_probe` example).
pub async fn probe(contender: Contender, n: usize) -> Result<f64, BenchError> {
    let server = CountingServer::start().await?;
    match contender {
        Contender::RawFeedFlush => raw(&server, events(n), RAW_FLUSH_EVERY).await,
        Contender::Publish1 => transport(&server, vec![events(n)]).await,
    }
}

/// One publisher to the hub, plain or at least once; done when the hub has
/// relayed every event (plain) or every ack is back (at least once).
async fn to_hub(n: usize, at_least_once: bool) -> Result<f64, BenchError> {
    let hub = Hub::bind("127.0.0.1:0").await?;
    let mut config = WebSocketConfig::new(hub.url());
    config.backpressure.strategy = BackpressureStrategy::Block;
    let mut builder = WebSocketTransport::builder(config);
    if at_least_once {
        builder = builder.delivery(AtLeastOnce::default());
    }
    let transport = builder.connect().await?;
    let events = events(n);
    let start = Instant::now();
    for event in events {
        transport.publish(event).await?;
    }
    transport.flush().await?;
    while hub.stats().events_in < n as u64 {
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    transport.shutdown().await?;
    hub.shutdown().await;
    Ok(rate)
}

/// A hand-written client: serialise each event and send it, flushing every
/// `flush_every` frames (1 = `send()` per message).
pub(crate) async fn raw(
    server: &CountingServer,
    events: Vec<Event>,
    flush_every: usize,
) -> Result<f64, BenchError> {
    let n = events.len();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url()).await?;
    server.expect(n as u64);
    let start = Instant::now();
    // By value, as `publish` takes them: every contender pays for dropping
    // its events inside the timing.
    for (i, event) in events.into_iter().enumerate() {
        let text = serde_json::to_string(&event)?;
        drop(event);
        if flush_every == 1 {
            ws.send(Message::Text(text.into())).await?;
        } else {
            ws.feed(Message::Text(text.into())).await?;
            if (i + 1) % flush_every == 0 {
                ws.flush().await?;
            }
        }
    }
    ws.flush().await?;
    server.reached().await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    Ok(rate)
}

/// Our transport, with one publisher task per batch sharing it. `Block`,
/// so that every event is delivered and the figure is end to end.
pub(crate) async fn transport(
    server: &CountingServer,
    mut batches: Vec<Vec<Event>>,
) -> Result<f64, BenchError> {
    let mut config = WebSocketConfig::new(server.url());
    config.backpressure.strategy = BackpressureStrategy::Block;
    let transport = Arc::new(WebSocketTransport::new(config).await?);
    let total: usize = batches.iter().map(Vec::len).sum();
    server.expect(total as u64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for batch in batches.drain(..) {
        let transport = Arc::clone(&transport);
        tasks.push(tokio::spawn(async move {
            for event in batch {
                transport.publish(event).await?;
            }
            Ok::<_, WatchtowerError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Incomplete(format!("publisher task: {e}")))??;
    }
    server.reached().await;
    let rate = total as f64 / start.elapsed().as_secs_f64();
    transport.shutdown().await?;
    Ok(rate)
}
