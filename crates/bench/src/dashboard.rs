//! Measurement 6: what an open dashboard costs the hub.
//!
//! The dashboard page (served by the hub at `/`) is, to the hub, one more
//! subscriber (its live tail, a sampled subscription: at most
//! [`TAIL_PER_SECOND`] events a second are sent to it, the rest only
//! counted) and two GETs a second (`/api/stats`, `/api/clients`). Here
//! that load is made with the same requests from raw clients, not a
//! browser: a browser's own CPU on this 2-core machine would measure the
//! browser, not the hub. Fan-out and latency are measured with and without
//! it, interleaved, on fresh hubs; with the tail alone (no polls), so the
//! tail's share can be told from the polls'; and with one more plain
//! subscriber instead (a control: what a tail receiving every event would
//! cost).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::Hub;

use crate::latency::Percentiles;
use crate::section::SectionReport;
use crate::stats::{Summary, ratio};
use crate::throughput::RAW_FLUSH_EVERY;
use crate::workload::{event, events, hub_with_room_for};
use crate::{BenchError, BenchOptions};

/// Interleaved runs of each side of the fan-out.
const RUNS: usize = 3;

/// Interleaved latency sittings of each load: a sitting is short (a
/// fraction of a second), so its p99 moves a lot from one to the next;
/// five give a median that holds still and a spread that says so.
const LATENCY_SITTINGS: usize = 5;

/// Latency samples discarded first.
const WARM_UP: usize = 200;

/// How often the page polls the API.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// A fan-out run not finished by then is reported as incomplete, not
/// waited for.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// The sample the page's tail asks for (`?sample=50`, as `dashboard.js`).
const TAIL_PER_SECOND: u32 = 50;

/// The hub with the dashboard open against without, same run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dashboard {
    /// Subscribers in the fan-out (the dashboard's tail not counted).
    pub subscribers: usize,
    /// Events per fan-out run.
    pub events: usize,
    /// Fan-out deliveries/s to raw subscribers, no dashboard.
    pub fanout_without: Summary,
    /// The same with the dashboard's tail and polls.
    pub fanout_with: Summary,
    /// The dashboard's sampled tail alone, no polls: the tail's share.
    pub fanout_tail_only: Summary,
    /// The control: one more plain subscriber instead of the dashboard.
    pub fanout_extra_subscriber: Summary,
    /// Median with / median without.
    pub fanout_ratio: f64,
    /// Raw publisher → hub → raw subscriber, one event at a time, no
    /// dashboard.
    pub latency_without: Percentiles,
    /// The same with the dashboard open.
    pub latency_with: Percentiles,
    /// The dashboard's sampled tail alone, no polls.
    pub latency_tail_only: Percentiles,
    /// The control: one more plain subscriber instead of the dashboard.
    pub latency_extra_subscriber: Percentiles,
    /// p99 of each sitting (µs), per load, in the order: without, with
    /// the dashboard, its tail alone, the control. One p99 over all
    /// samples hides how much it moves between sittings; a difference
    /// inside that spread is noise.
    pub latency_p99_sittings: [Summary; 4],
    /// Median of the sittings' p99 with / median without.
    pub latency_ratio_p99: f64,
    /// The dashboard's median sitting p99 lies within the spread of the
    /// sittings without it (or below).
    pub latency_p99_within_noise: bool,
    /// Events the dashboard's tail received over every run with it.
    pub tail_frames: u64,
    /// Events the hub skipped for the tail (its sample's limit) over every
    /// run with it, as the hub had reported them when each run ended (the
    /// last second's report may come after).
    pub tail_skipped: u64,
    /// API requests the dashboard made over every run with it.
    pub polls: u64,
}

impl Dashboard {
    /// This measurement's lines of the report's table.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let rate = |s: &Summary| format!("{:>9.0} {:>9.0}–{:<9.0}", s.median, s.min, s.max);
        let _ = writeln!(
            out,
            "Dashboard open (its tail sampled at {TAIL_PER_SECOND}/s, its API polled once a second) vs not; raw clients"
        );
        let _ = writeln!(
            out,
            "   fan-out, {} events to {} subscribers (deliveries/s; median, min–max of {} runs)",
            self.events,
            self.subscribers,
            self.fanout_without.runs.len()
        );
        let _ = writeln!(
            out,
            "   without                               {}",
            rate(&self.fanout_without)
        );
        let _ = writeln!(
            out,
            "   with the dashboard                    {}",
            rate(&self.fanout_with)
        );
        let _ = writeln!(
            out,
            "   its sampled tail alone, no polls      {}",
            rate(&self.fanout_tail_only)
        );
        let _ = writeln!(
            out,
            "   control: one more plain subscriber    {}",
            rate(&self.fanout_extra_subscriber)
        );
        let _ = writeln!(out, "   ratio with/without {:.2}", self.fanout_ratio);
        let _ = writeln!(
            out,
            "   latency (µs; {} samples)               p50      p99    p99.9",
            self.latency_without.samples
        );
        for (name, p) in [
            ("without", &self.latency_without),
            ("with the dashboard", &self.latency_with),
            ("its sampled tail alone, no polls", &self.latency_tail_only),
            (
                "control: one more plain subscriber",
                &self.latency_extra_subscriber,
            ),
        ] {
            let _ = writeln!(
                out,
                "   {name:<36} {:>7.1}  {:>7.1}  {:>7.1}",
                p.p50_us, p.p99_us, p.p999_us
            );
        }
        let [without, with, tail, control] = &self.latency_p99_sittings;
        let _ = writeln!(
            out,
            "   p99 per sitting (median, min–max of {}): without {}, with {}, tail alone {}, control {}",
            without.runs.len(),
            spread(without),
            spread(with),
            spread(tail),
            spread(control)
        );
        let _ = writeln!(
            out,
            "   ratio p99 with/without {:.2} (medians of the sittings): {}; the tail (at most \
             {TAIL_PER_SECOND}/s) received {} events, {} skipped; {} API requests",
            self.latency_ratio_p99,
            if self.latency_p99_within_noise {
                "within the spread without it"
            } else {
                "ABOVE the spread without it"
            },
            self.tail_frames,
            self.tail_skipped,
            self.polls
        );
        out
    }
}

/// `median (min–max)` of a p99 in µs.
fn spread(s: &Summary) -> String {
    format!("{:.0} ({:.0}–{:.0})", s.median, s.min, s.max)
}

/// What runs beside the measured clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Nothing.
    None,
    /// The dashboard: a sampled tail that parses what it gets, and the
    /// page's polls.
    Dashboard,
    /// The dashboard's sampled tail, without the polls.
    Tail,
    /// One more subscriber that reads and discards, and no polls.
    Subscriber,
}

/// The dashboard's load on one hub: its sampled tail, and the page's
/// polls. Stops when dropped.
struct Open {
    tail: JoinHandle<()>,
    poller: JoinHandle<()>,
    frames: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
    polls: Arc<AtomicU64>,
}

impl Open {
    async fn on(hub: &Hub, load: Load) -> Result<Option<Open>, BenchError> {
        if load == Load::None {
            return Ok(None);
        }
        let dashboard = matches!(load, Load::Dashboard | Load::Tail);
        let polled = load == Load::Dashboard;
        let addr = hub.local_addr();
        let url = if dashboard {
            format!("{}?sample={TAIL_PER_SECOND}", hub.url())
        } else {
            hub.url()
        };
        let (mut tail, _) = tokio_tungstenite::connect_async(url).await?;
        let frames = Arc::new(AtomicU64::new(0));
        let skipped = Arc::new(AtomicU64::new(0));
        let polls = Arc::new(AtomicU64::new(0));
        let (counted, skips) = (Arc::clone(&frames), Arc::clone(&skipped));
        let tail = tokio::spawn(async move {
            // Like the page: parse each frame (it shows id, type, payload).
            while let Some(Ok(message)) = tail.next().await {
                if let Message::Text(text) = message {
                    if dashboard {
                        let value = serde_json::from_str::<serde_json::Value>(&text);
                        if let Ok(value) = value
                            && value["type"] == "skipped"
                        {
                            let total = value["events"].as_u64().unwrap_or(0);
                            skips.store(total, Relaxed);
                            continue;
                        }
                    }
                    counted.fetch_add(1, Relaxed);
                }
            }
        });
        let counted = Arc::clone(&polls);
        let poller = tokio::spawn(async move {
            if !polled {
                return;
            }
            let mut tick = tokio::time::interval(POLL_EVERY);
            loop {
                tick.tick().await;
                for path in ["/api/stats", "/api/clients"] {
                    if get(addr, path).await.is_ok() {
                        counted.fetch_add(1, Relaxed);
                    }
                }
            }
        });
        Ok(Some(Open {
            tail,
            poller,
            frames,
            skipped,
            polls,
        }))
    }

    /// Events the tail got, events the hub skipped for it (as last
    /// reported), API requests made.
    fn counts(&self) -> Counts {
        Counts {
            frames: self.frames.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            polls: self.polls.load(Relaxed),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.tail.abort();
        self.poller.abort();
    }
}

/// What the dashboard's load saw in one run.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    frames: u64,
    skipped: u64,
    polls: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.frames += o.frames;
        self.skipped += o.skipped;
        self.polls += o.polls;
    }
}

/// One plain GET, read to the end (the hub closes after answering).
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await?;
    Ok(answer)
}

pub(crate) async fn section(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    let d = run(options).await?;
    SectionReport::new("dashboard", &d, d.table())
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Dashboard, BenchError> {
    let mut runs: [Vec<f64>; 4] = Default::default();
    let mut seen = Counts::default();
    let loads = [Load::None, Load::Dashboard, Load::Tail, Load::Subscriber];
    for _ in 0..RUNS {
        for (i, load) in loads.into_iter().enumerate() {
            let (rate, counts) = fanout(options, load).await?;
            runs[i].push(rate);
            if load == Load::Dashboard {
                seen += counts;
            }
        }
    }
    // Latency in interleaved sittings too, each load on a fresh hub per
    // sitting: the machine's drift hits every load alike, and the spread
    // of the sittings says what noise is.
    let per = (options.latency_samples / LATENCY_SITTINGS).max(1);
    let mut samples: [Vec<f64>; 4] = Default::default();
    let mut p99s: [Vec<f64>; 4] = Default::default();
    for _ in 0..LATENCY_SITTINGS {
        for (i, load) in loads.into_iter().enumerate() {
            let (measured, counts) = latency(per, load).await?;
            p99s[i].push(Percentiles::of(measured.clone()).p99_us);
            samples[i].extend(measured);
            if load == Load::Dashboard {
                seen += counts;
            }
        }
    }
    let [
        latency_without,
        latency_with,
        latency_tail_only,
        latency_extra_subscriber,
    ] = samples.map(Percentiles::of);
    let latency_p99_sittings = p99s.map(Summary::of);
    let [p99_without, p99_with, ..] = &latency_p99_sittings;
    let latency_ratio_p99 = ratio(p99_with.median, p99_without.median);
    let latency_p99_within_noise = p99_with.median <= p99_without.max;
    let [
        fanout_without,
        fanout_with,
        fanout_tail_only,
        fanout_extra_subscriber,
    ] = runs.map(Summary::of);
    Ok(Dashboard {
        subscribers: options.fanout_subscribers,
        events: options.fanout_events,
        fanout_ratio: ratio(fanout_with.median, fanout_without.median),
        latency_ratio_p99,
        latency_p99_within_noise,
        latency_p99_sittings,
        fanout_without,
        fanout_with,
        fanout_tail_only,
        fanout_extra_subscriber,
        latency_without,
        latency_with,
        latency_tail_only,
        latency_extra_subscriber,
        tail_frames: seen.frames,
        tail_skipped: seen.skipped,
        polls: seen.polls,
    })
}

/// One fan-out run on a fresh hub: raw publisher, raw subscribers; returns
/// deliveries/s and, with the dashboard, what its load saw.
async fn fanout(options: &BenchOptions, load: Load) -> Result<(f64, Counts), BenchError> {
    let n = options.fanout_events;
    // Room for a whole run per client, as in the fan-out section: this
    // measures throughput, not the slow-client policy. (With the default
    // queue a subscriber that fell 8,192 frames behind on a loaded machine
    // lost frames, and the run waited for them forever.)
    let hub = Hub::bind_with("127.0.0.1:0", hub_with_room_for(n)).await?;
    let frames: Vec<String> = events(n)
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    let open = Open::on(&hub, load).await?;
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for _ in 0..options.fanout_subscribers {
        let (mut subscriber, _) = tokio_tungstenite::connect_async(hub.url()).await?;
        let done_tx = done_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                match subscriber.next().await {
                    Some(Ok(Message::Text(_))) => got += 1,
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            let _ = done_tx.send(got);
        }));
    }
    let (mut publisher, _) = tokio_tungstenite::connect_async(hub.url()).await?;
    let want = options.fanout_subscribers as u64 + 1 + u64::from(open.is_some());
    while hub.stats().clients < want {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    for (i, frame) in frames.into_iter().enumerate() {
        publisher.feed(Message::text(frame)).await?;
        if (i + 1) % RAW_FLUSH_EVERY == 0 {
            publisher.flush().await?;
        }
    }
    publisher.flush().await?;
    let mut delivered = 0;
    let gathered = tokio::time::timeout(GIVE_UP_AFTER, async {
        for _ in 0..options.fanout_subscribers {
            delivered += done.recv().await.unwrap_or(0);
        }
    })
    .await;
    if gathered.is_err() {
        for reader in &readers {
            reader.abort();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if delivered < n * options.fanout_subscribers {
        return Err(BenchError::Incomplete(format!(
            "dashboard fan-out: {delivered} of {} deliveries",
            n * options.fanout_subscribers
        )));
    }
    let counts = open.as_ref().map_or_else(Counts::default, Open::counts);
    drop(open);
    hub.shutdown().await;
    Ok((delivered as f64 / seconds, counts))
}

/// Raw publisher → hub → raw subscriber, one event at a time: the
/// round trips in µs.
async fn latency(samples: usize, load: Load) -> Result<(Vec<f64>, Counts), BenchError> {
    let hub = Hub::bind("127.0.0.1:0").await?;
    let open = Open::on(&hub, load).await?;
    let (mut publisher, _) = tokio_tungstenite::connect_async(hub.url()).await?;
    let (mut subscriber, _) = tokio_tungstenite::connect_async(hub.url()).await?;
    let want = 2 + u64::from(open.is_some());
    while hub.stats().clients < want {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut measured = Vec::with_capacity(samples);
    for i in 0..WARM_UP + samples {
        let frame = serde_json::to_string(&event(i as u64))?;
        let start = Instant::now();
        publisher.send(Message::text(frame)).await?;
        loop {
            match subscriber.next().await {
                Some(Ok(Message::Text(_))) => break,
                Some(Ok(_)) => {}
                _ => return Err(BenchError::Incomplete("the subscriber stopped".into())),
            }
        }
        if i >= WARM_UP {
            measured.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    let counts = open.as_ref().map_or_else(Counts::default, Open::counts);
    drop(open);
    hub.shutdown().await;
    Ok((measured, counts))
}
