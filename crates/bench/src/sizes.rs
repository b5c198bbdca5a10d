//! Publish throughput against event size: raw `feed` + `flush` and one
//! `WebSocketTransport` publisher, to a counting server, for each size.

use serde::Serialize;

use crate::raw::CountingServer;
use crate::section::{Curve, SectionReport, Series};
use crate::stats::{Summary, ratio};
use crate::throughput::{RAW_FLUSH_EVERY, raw, transport};
use crate::workload::sized_event;
use crate::{BenchError, BenchOptions};

/// One event size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SizePoint {
    /// Bytes of JSON per event (about).
    pub event_bytes: usize,
    /// Events published per sitting.
    pub events: usize,
    /// Raw `feed` + `flush` every 64, events/s.
    pub raw_feed_flush: Summary,
    /// `publish` from one task, events/s.
    pub transport_1: Summary,
    /// Median transport / median raw.
    pub ratio: f64,
}

/// Publish throughput against event size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sizes {
    /// One point per size, smallest first.
    pub points: Vec<SizePoint>,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let server = CountingServer::start().await?;
    let sittings = options.runs.clamp(1, 3);
    let mut sizes = Sizes::default();
    for &bytes in &options.event_sizes {
        let n = (options.size_bytes / bytes.max(1)).clamp(16, options.throughput_events);
        let make = || {
            (0..n as u64)
                .map(|i| sized_event(i, bytes))
                .collect::<Vec<_>>()
        };
        let (mut r, mut t) = (Vec::new(), Vec::new());
        for _ in 0..sittings {
            r.push(raw(&server, make(), RAW_FLUSH_EVERY).await?);
            t.push(transport(&server, vec![make()]).await?);
        }
        let (r, t) = (Summary::of(r), Summary::of(t));
        eprintln!(
            "  {bytes} B: raw {:.0}/s, publish {:.0}/s",
            r.median, t.median
        );
        sizes.points.push(SizePoint {
            event_bytes: bytes,
            events: n,
            ratio: ratio(t.median, r.median),
            raw_feed_flush: r,
            transport_1: t,
        });
    }
    let mut table = format!(
        "Publish throughput against event size (medians of {sittings} sittings)\n   \
         bytes    events   raw events/s   raw MB/s   publish events/s   publish MB/s   ratio\n"
    );
    let mut raw_series = Series::new(&format!("raw feed + flush every {RAW_FLUSH_EVERY}"));
    let mut ours = Series::new("WebSocketTransport::publish, 1 task");
    for p in &sizes.points {
        let mb = |rate: f64| rate * p.event_bytes as f64 / 1e6;
        table.push_str(&format!(
            "   {:>6} {:>8} {:>14.0} {:>10.1} {:>18.0} {:>14.1} {:>7.2}\n",
            p.event_bytes,
            p.events,
            p.raw_feed_flush.median,
            mb(p.raw_feed_flush.median),
            p.transport_1.median,
            mb(p.transport_1.median),
            p.ratio
        ));
        raw_series
            .points
            .push((p.event_bytes as f64, mb(p.raw_feed_flush.median)));
        ours.points
            .push((p.event_bytes as f64, mb(p.transport_1.median)));
    }
    Ok(SectionReport::new("sizes", &sizes, table)?.curve(Curve {
        name: "publish-by-size".into(),
        title: "Publish throughput against event size".into(),
        x_label: "event size, bytes of JSON".into(),
        y_label: "MB/s to a counting server".into(),
        log_x: true,
        series: vec![raw_series, ours],
    }))
}
