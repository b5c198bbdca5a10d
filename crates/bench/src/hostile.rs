//! Measurement 6: a legitimate pair under attack. Publisher → hub →
//! subscriber latency alone, then while clients abuse filters, then while
//! subscribers that never read are fed large events; and the hub's CPU
//! time per costly control frame. The hub runs in a child process, so its
//! CPU time (from `/proc/PID/stat`) is its own.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::child::{ChildProcess, status_kib};
use crate::latency::Percentiles;
use crate::section::SectionReport;
use crate::stats::ratio;
use crate::{BenchError, BenchOptions};

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Event types in one abusive filter: the default `max_filter_types`.
const ABUSE_TYPES: usize = 4096;
/// Bytes of each: 4096 × 15 stays within the default 64 KiB filter budget.
const ABUSE_TYPE_LEN: usize = 15;
/// Subscribers that never read, in the never-reader attack.
const NEVER_READERS: usize = 4;
/// Payload bytes of the large events they are fed.
const LARGE_EVENT_BYTES: usize = 64 * 1024;
/// Attacking clients sending abusive filters at once.
const FILTER_ATTACKERS: usize = 2;

/// Latency of a legitimate pair alone and under two attacks, and what a
/// costly control frame costs the hub.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hostile {
    /// Raw publisher → hub → raw subscriber, nothing else running.
    pub alone: Percentiles,
    /// The same while clients send maximal `subscribe` frames flat out.
    pub filter_abuse: Percentiles,
    /// The same while subscribers that never read are fed 64 KiB events.
    pub never_readers: Percentiles,
    /// filter_abuse p99 / alone p99.
    pub ratio_p99_filter_abuse: f64,
    /// never_readers p99 / alone p99.
    pub ratio_p99_never_readers: f64,
    /// Bytes of one abusive `subscribe` frame (4096 types).
    pub control_frame_bytes: usize,
    /// Hub CPU time (user + system) per abusive control frame, µs.
    pub hub_cpu_us_per_control_frame: f64,
    /// Control frames the CPU figure is measured over.
    pub control_frames_measured: u64,
    /// The hub's resident memory at the end of the never-reader attack
    /// (KiB): what the four subscribers' queues and the history hold.
    pub hub_rss_kib_never_readers: u64,
    /// The hub's peak resident memory by then (KiB, `VmHWM`).
    pub hub_peak_rss_kib: u64,
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let h = run(options).await?;
    let mut table =
        String::from("A legitimate pair under attack (raw publisher → hub → raw subscriber, µs)\n");
    for (name, p) in [
        ("alone", &h.alone),
        ("filter abuse", &h.filter_abuse),
        ("never-reading subscribers", &h.never_readers),
    ] {
        table.push_str(&format!(
            "   {name:<26} p50 {:>8.0}   p99 {:>8.0}   ({} samples)\n",
            p.p50_us, p.p99_us, p.samples
        ));
    }
    table.push_str(&format!(
        "   p99 ratios to alone: filter abuse {:.2}, never-readers {:.2}\n",
        h.ratio_p99_filter_abuse, h.ratio_p99_never_readers
    ));
    table.push_str(&format!(
        "   hub RSS at the end of the never-reader attack: {} KiB (peak {} KiB)\n",
        h.hub_rss_kib_never_readers, h.hub_peak_rss_kib
    ));
    table.push_str(&format!(
        "   hub CPU per {}-byte subscribe frame of 4096 types: {:.0} µs (over {} frames, no budget)\n",
        h.control_frame_bytes, h.hub_cpu_us_per_control_frame, h.control_frames_measured
    ));
    SectionReport::new("hostile", &h, table)
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Hostile, BenchError> {
    let mut hub = ChildProcess::spawn(&["hub"])?;
    let addr = hub.value("ADDR").await?;
    let url = format!("ws://{addr}/");
    let samples = options.latency_samples / 4;
    let mut pair = Pair::connect(&url).await?;

    let alone = pair.round_trips(samples).await?;
    // Each attack runs in its own process, so its CPU use is not the
    // measuring pair's scheduling delay.
    let under = |kind: &'static str| {
        let addr = addr.clone();
        async move {
            let mut attack = ChildProcess::spawn(&["attack", kind, &addr])?;
            attack.value("ATTACKING").await?;
            Ok::<_, BenchError>(attack)
        }
    };
    let attack = under("filter-abuse").await?;
    let filter_abuse = pair.round_trips(samples).await?;
    attack.finish().await?;
    let attack = under("never-readers").await?;
    let never_readers = pair.round_trips(samples).await?;
    let hub_rss_kib_never_readers = status_kib(hub.pid(), "VmRSS:").unwrap_or(0);
    let hub_peak_rss_kib = status_kib(hub.pid(), "VmHWM:").unwrap_or(0);
    attack.finish().await?;
    drop(pair);
    hub.finish().await?;

    // CPU per control frame, on a hub without the control budget (which
    // would make this take minutes) and with nothing else running: one
    // client sends a known number of frames, then closes; the hub's close
    // reply comes after it has read them all.
    let mut hub = ChildProcess::spawn(&["hub-unpaced"])?;
    let url = format!("ws://{}/", hub.value("ADDR").await?);
    let frame = abusive_filter();
    let frames = (options.latency_samples / 20).max(50) as u64;
    let before = cpu_ticks(hub.pid())?;
    abuse_filters(url, frame.clone(), Some(frames)).await;
    let used = cpu_ticks(hub.pid())?.saturating_sub(before);
    hub.finish().await?;

    Ok(Hostile {
        ratio_p99_filter_abuse: ratio(filter_abuse.p99_us, alone.p99_us),
        ratio_p99_never_readers: ratio(never_readers.p99_us, alone.p99_us),
        alone,
        filter_abuse,
        never_readers,
        control_frame_bytes: frame.len(),
        hub_cpu_us_per_control_frame: ratio(
            used as f64 * 1e6 / CLOCK_TICKS_PER_SECOND,
            frames as f64,
        ),
        control_frames_measured: frames,
        hub_rss_kib_never_readers,
        hub_peak_rss_kib,
    })
}

/// Starts an attack on the hub at `addr` in this (child) process: its
/// tasks run until the process exits.
pub(crate) fn attack(kind: &str, addr: &str) -> Result<(), BenchError> {
    let url = format!("ws://{addr}/");
    match kind {
        "filter-abuse" => {
            let frame = abusive_filter();
            for _ in 0..FILTER_ATTACKERS {
                tokio::spawn(abuse_filters(url.clone(), frame.clone(), None));
            }
        }
        "never-readers" => {
            for _ in 0..NEVER_READERS {
                tokio::spawn(never_read(url.clone()));
            }
            tokio::spawn(feed_large_events(url));
        }
        other => {
            return Err(BenchError::Incomplete(format!("unknown attack {other}")));
        }
    }
    Ok(())
}

/// Linux reports `/proc/PID/stat` times in USER_HZ, which is 100 on every
/// architecture it supports (the kernel ABI fixes it, whatever `HZ` is).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU ticks of a process so far.
fn cpu_ticks(pid: u32) -> Result<u64, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; fields are counted after it.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| BenchError::Incomplete(format!("unreadable /proc/{pid}/stat")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (field(11), field(12)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => Err(BenchError::Incomplete(format!(
            "no CPU times in /proc/{pid}/stat"
        ))),
    }
}

/// A legitimate publisher and a subscriber filtered to its events.
struct Pair {
    publisher: Client,
    subscriber: Client,
    sent: u64,
}

impl Pair {
    async fn connect(url: &str) -> Result<Pair, BenchError> {
        let (publisher, _) = tokio_tungstenite::connect_async(url).await?;
        let (subscriber, _) = tokio_tungstenite::connect_async(url).await?;
        let (mut publisher, mut subscriber) = (publisher, subscriber);
        // The publisher never reads: it must not be sent anything.
        publisher
            .send(Message::text(
                r#"{"type":"subscribe","event_types":["nothing"],"replace":true}"#,
            ))
            .await?;
        subscriber
            .send(Message::text(
                r#"{"type":"subscribe","event_types":["legit"],"replace":true}"#,
            ))
            .await?;
        let mut pair = Pair {
            publisher,
            subscriber,
            sent: 0,
        };
        // The first round trip also proves the filter is in place.
        pair.round_trips(10).await?;
        Ok(pair)
    }

    async fn round_trips(&mut self, samples: usize) -> Result<Percentiles, BenchError> {
        let mut measured = Vec::with_capacity(samples);
        for _ in 0..samples {
            self.sent += 1;
            let id = format!("legit-{}", self.sent);
            let frame = format!(
                r#"{{"id":"{id}","event_type":"legit","timestamp":"2026-11-30T00:00:00Z","payload":{{"n":{}}},"metadata":{{}}}}"#,
                self.sent
            );
            let start = Instant::now();
            self.publisher.send(Message::text(frame)).await?;
            loop {
                match self.subscriber.next().await {
                    Some(Ok(Message::Text(text))) if text.contains(id.as_str()) => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => {
                        return Err(BenchError::Incomplete(
                            "the legitimate subscriber was disconnected".into(),
                        ));
                    }
                }
            }
            measured.push(start.elapsed().as_secs_f64() * 1e6);
        }
        Ok(Percentiles::of(measured))
    }
}

/// A `subscribe` frame replacing the filter with the most types of the
/// longest length the default limits admit.
fn abusive_filter() -> String {
    let types: Vec<String> = (0..ABUSE_TYPES)
        .map(|i| format!("{i:0>width$}", width = ABUSE_TYPE_LEN))
        .collect();
    serde_json::json!({ "type": "subscribe", "event_types": types, "replace": true }).to_string()
}

/// Sends `frame` flat out (reconnecting when closed), or `count` times
/// and then closes, waiting for the hub's close reply.
async fn abuse_filters(url: String, frame: String, count: Option<u64>) {
    let mut sent = 0;
    loop {
        let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            return;
        };
        let (mut sink, mut stream) = ws.split();
        // Read (and drop) whatever the hub sends, so it never sees a slow
        // client; reading also answers its pings.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        while count.is_none_or(|count| sent < count) {
            if sink.send(Message::text(frame.as_str())).await.is_err() {
                break;
            }
            sent += 1;
        }
        if count.is_some_and(|count| sent >= count) {
            let _ = sink.send(Message::Close(None)).await;
            let _ = reader.await;
            return;
        }
        reader.abort();
    }
}

/// Subscribes to everything and never reads. Never reading means never
/// noticing the hub's close either, so it reconnects on a timer, a little
/// after the hub's default `slow_client_timeout` (5 s) has closed it.
async fn never_read(url: String) {
    loop {
        let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            return;
        };
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        drop(ws);
    }
}

/// Publishes large events flat out, for the never-readers.
async fn feed_large_events(url: String) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        return;
    };
    let text = "x".repeat(LARGE_EVENT_BYTES);
    for n in 0u64.. {
        let frame = format!(
            r#"{{"id":"big-{n}","event_type":"big","timestamp":"2026-11-30T00:00:00Z","payload":{{"text":"{text}"}},"metadata":{{}}}}"#
        );
        if ws.send(Message::text(frame)).await.is_err() {
            return;
        }
    }
}
