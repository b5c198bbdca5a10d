//! History and resume: how long a reconnecting subscriber takes to get
//! 1,000 missed events replayed, against the same 1,000 arriving live; how
//! fast one catches up after a long absence (50,000 events over 30 s),
//! against the same number arriving live; and what the hub's history costs
//! in resident memory per event held.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use watchtower_hub::{Hub, HubConfig};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{ResumeOutcome, TransportBuilder};

use crate::child::{ChildProcess, status_kib};
use crate::stats::Summary;
use crate::workload::{event, event_size};
use crate::{BenchError, BenchOptions};

/// Events replayed (and sent live) per run.
const REPLAYED: usize = 1_000;

/// What the resume measurement found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Resume {
    /// Milliseconds from the start of a reconnect presenting a position
    /// until 1,000 missed events were handled (connect included).
    pub replay_ms: Summary,
    /// Milliseconds from publishing 1,000 events until a connected
    /// subscriber handled them all.
    pub live_ms: Summary,
    /// Events held in the memory measurement.
    pub history_events: usize,
    /// Bytes of one event frame.
    pub event_bytes: usize,
    /// The hub process's resident growth while its history filled.
    pub history_kib: u64,
    /// Catch-up after a long absence, beside the same events live.
    pub catch_up: CatchUp,
}

impl Resume {
    /// The growth over the payload bytes held (target: under 2).
    pub fn overhead(&self) -> f64 {
        let payload = (self.history_events * self.event_bytes) as f64;
        if payload == 0.0 {
            return 0.0;
        }
        self.history_kib as f64 * 1024.0 / payload
    }
}

impl std::fmt::Display for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "resume: {REPLAYED} events replayed on reconnect  median {:.1} ms (min {:.1}, max {:.1})",
            self.replay_ms.median, self.replay_ms.min, self.replay_ms.max
        )?;
        writeln!(
            f,
            "resume: {REPLAYED} events live                   median {:.1} ms (min {:.1}, max {:.1})",
            self.live_ms.median, self.live_ms.min, self.live_ms.max
        )?;
        write!(
            f,
            "resume: hub RSS with {} {}-byte events in history: +{} KiB ({:.2}x the payload bytes)",
            self.history_events,
            self.event_bytes,
            self.history_kib,
            self.overhead()
        )?;
        write!(f, "\n{}", self.catch_up)
    }
}

/// Runs the measurements: `options.runs` timed runs each of replay and
/// live, one memory run holding `options.flood_events / 10` events
/// (100,000 in the full benchmark), and one catch-up run beside its live
/// run (see [`CatchUp`]).
pub(crate) async fn section(options: &BenchOptions) -> Result<crate::SectionReport, BenchError> {
    let resume = run(options).await?;
    crate::SectionReport::new("resume", &resume, format!("{resume}\n"))
}

pub(crate) async fn run(options: &BenchOptions) -> Result<Resume, BenchError> {
    let hub = Hub::bind_with("127.0.0.1:0", HubConfig::default()).await?;
    let mut config = WebSocketConfig::new(hub.url());
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await?;
    let mut replay = Vec::new();
    let mut live = Vec::new();
    for _ in 0..options.runs.max(1) {
        replay.push(replay_once(&hub, &publisher).await?);
        live.push(live_once(&hub, &publisher).await?);
    }
    publisher.shutdown().await?;
    hub.shutdown().await;
    let history_events = (options.flood_events / 10).max(REPLAYED);
    Ok(Resume {
        replay_ms: Summary::of(replay),
        live_ms: Summary::of(live),
        history_events,
        event_bytes: event_size(),
        history_kib: history_memory(history_events).await?,
        catch_up: catch_up(options).await?,
    })
}

fn subscriber(hub: &Hub) -> TransportBuilder {
    WebSocketTransport::builder(WebSocketConfig::new(hub.url())).mailbox_size(REPLAYED * 2)
}

/// A counting subscription; returns the count.
async fn counting(transport: &WebSocketTransport) -> Result<Arc<AtomicUsize>, BenchError> {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    transport
        .subscribe(vec![], move |_| {
            counter.fetch_add(1, Relaxed);
            Box::pin(async { Ok(()) })
        })
        .await?;
    Ok(count)
}

async fn until_count(count: &AtomicUsize, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Relaxed) < n {
        if Instant::now() > deadline {
            return Err(BenchError::Incomplete(format!(
                "{} of {n} events arrived",
                count.load(Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}

async fn publish(publisher: &WebSocketTransport) -> Result<(), BenchError> {
    for n in 0..REPLAYED as u64 {
        publisher.publish(event(n)).await?;
    }
    publisher.flush().await?;
    Ok(())
}

/// A subscriber leaves, 1,000 events are published, it comes back with its
/// position: milliseconds until it handled them all.
async fn replay_once(hub: &Hub, publisher: &WebSocketTransport) -> Result<f64, BenchError> {
    let gone = subscriber(hub).connect().await?;
    let position = gone
        .position()
        .ok_or_else(|| BenchError::Incomplete("the hub gave no position".into()))?;
    gone.shutdown().await?;
    publish(publisher).await?;
    let started = Instant::now();
    let back = subscriber(hub).resume_from(position).connect().await?;
    let count = counting(&back).await?;
    until_count(&count, REPLAYED).await?;
    let elapsed = started.elapsed();
    // `flush` returns once the hub has read every event, and its last burst
    // may still be on its way into the history: those few arrive live.
    if !matches!(back.last_resume(), Some(ResumeOutcome::Recovered { .. })) {
        return Err(BenchError::Incomplete(format!(
            "resume answered {:?}",
            back.last_resume()
        )));
    }
    back.shutdown().await?;
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// A connected subscriber: milliseconds from the first publish until it
/// handled all 1,000.
async fn live_once(hub: &Hub, publisher: &WebSocketTransport) -> Result<f64, BenchError> {
    let here = subscriber(hub).connect().await?;
    let count = counting(&here).await?;
    let started = Instant::now();
    publish(publisher).await?;
    until_count(&count, REPLAYED).await?;
    let elapsed = started.elapsed();
    here.shutdown().await?;
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// A hub in a child process; `events` published to it: its resident growth
/// in KiB once they are all in its history.
async fn history_memory(events: usize) -> Result<u64, BenchError> {
    let mut hub = ChildProcess::spawn(&["history-hub", &events.to_string()])?;
    let addr = hub.value("ADDR").await?;
    let url = format!("ws://{addr}/events");
    let mut config = WebSocketConfig::new(url);
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await?;
    // One event first, so the connection's own buffers are in `before`.
    publisher.publish(event(0)).await?;
    publisher.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = status_kib(hub.pid(), "VmRSS:").unwrap_or(0);
    for n in 1..=events as u64 {
        publisher.publish(event(n)).await?;
    }
    publisher.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = status_kib(hub.pid(), "VmRSS:").unwrap_or(0);
    publisher.shutdown().await?;
    hub.finish().await?;
    Ok(after.saturating_sub(before))
}

/// In a `bench-child history-hub N` process: a hub keeping `N` events.
pub(crate) async fn history_hub(events: &str) -> Result<(), BenchError> {
    let events: usize = events
        .parse()
        .map_err(|_| BenchError::Incomplete(format!("bad event count {events}")))?;
    let mut config = HubConfig::default();
    config.history_size = events + 1;
    config.history_ttl = Duration::from_secs(3600);
    config.history_bytes = 1 << 30;
    let hub = Hub::bind_with("127.0.0.1:0", config).await?;
    println!("ADDR {}", hub.local_addr());
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    hub.shutdown().await;
    Ok(())
}

/// Events published while the catch-up subscriber is away (full run).
const ABSENT_EVENTS: usize = 50_000;
/// How long it is away, publishing paced evenly over it (full run).
const ABSENCE: Duration = Duration::from_secs(30);
/// The same for `--quick`.
const QUICK_ABSENT_EVENTS: usize = 2_000;
/// The same for `--quick`.
const QUICK_ABSENCE: Duration = Duration::from_secs(1);
/// How long to wait for a catch-up (or the live run) with nothing new
/// arriving before reporting what arrived.
const STALL: Duration = Duration::from_secs(10);

/// Catch-up after an absence: a subscriber of a hub with default settings
/// (a child process) records its position and goes away while events are
/// published at an even pace, then comes back with `resume_from` that
/// position; beside it, the same number of events published flat out to a
/// connected subscriber.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CatchUp {
    /// Events published during the absence.
    pub events: usize,
    /// Milliseconds the publishing took (the absence, until `flush`).
    pub absence_ms: f64,
    /// Milliseconds from the start of the reconnect until every event was
    /// handled (or until it stopped waiting, when some never arrived).
    pub catch_up_ms: f64,
    /// `events` / `catch_up_ms`, per second.
    pub catch_up_events_per_second: f64,
    /// Distinct events the returning subscriber handled.
    pub arrived: usize,
    /// Events it handled more than once.
    pub duplicates: usize,
    /// The hub's answer to the resume, as the transport reports it.
    pub answer: String,
    /// Events the hub said it replayed (`None` unless recovered).
    pub replayed: Option<u64>,
    /// Milliseconds from the first publish until a connected subscriber
    /// handled the same number of events, published flat out.
    pub live_ms: f64,
    /// `events` / `live_ms`, per second.
    pub live_events_per_second: f64,
    /// Distinct events the connected subscriber handled.
    pub live_arrived: usize,
    /// catch-up events/s ÷ live events/s.
    pub ratio: f64,
}

impl std::fmt::Display for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "resume: catch-up after {:.1} s away ({} events published paced, default hub): \
             {:.0} events/s ({:.0} ms), {} of {} arrived ({} duplicates), answer {}",
            self.absence_ms / 1e3,
            self.events,
            self.catch_up_events_per_second,
            self.catch_up_ms,
            self.arrived,
            self.events,
            self.duplicates,
            self.answer,
        )?;
        write!(
            f,
            "resume: the same {} events live (published flat out):   {:.0} events/s ({:.0} ms), \
             {} of {} arrived; catch-up / live {:.2}",
            self.events,
            self.live_events_per_second,
            self.live_ms,
            self.live_arrived,
            self.events,
            self.ratio
        )?;
        if self.arrived < self.events || self.live_arrived < self.events {
            write!(f, "\nresume: INCOMPLETE: events were missing (see above)")?;
        }
        Ok(())
    }
}

/// Which of `n` events (by their `seq`) a subscriber handled.
struct Seen {
    seen: std::sync::Mutex<Vec<bool>>,
    distinct: AtomicUsize,
    duplicates: AtomicUsize,
}

impl Seen {
    fn new(n: usize) -> Arc<Seen> {
        Arc::new(Seen {
            seen: std::sync::Mutex::new(vec![false; n]),
            distinct: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
        })
    }

    fn mark(&self, event: &watchtower_websocket::Event) {
        let Some(seq) = event.payload.get("seq").and_then(|s| s.as_u64()) else {
            return;
        };
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        match seen.get_mut(seq as usize) {
            Some(slot) if !*slot => {
                *slot = true;
                self.distinct.fetch_add(1, Relaxed);
            }
            Some(_) => {
                self.duplicates.fetch_add(1, Relaxed);
            }
            None => {}
        }
    }

    /// Waits until all `n` arrived, or nothing new arrived for [`STALL`]:
    /// the distinct events handled by then.
    async fn wait_for(&self, n: usize) -> usize {
        let mut last = self.distinct.load(Relaxed);
        let mut last_change = Instant::now();
        loop {
            let now = self.distinct.load(Relaxed);
            if now >= n {
                return now;
            }
            if now != last {
                (last, last_change) = (now, Instant::now());
            } else if last_change.elapsed() > STALL {
                return now;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

/// A subscription marking what it handles in `seen`.
async fn marking(transport: &WebSocketTransport, seen: &Arc<Seen>) -> Result<(), BenchError> {
    let seen = Arc::clone(seen);
    transport
        .subscribe(vec![], move |event| {
            seen.mark(&event);
            Box::pin(async { Ok(()) })
        })
        .await?;
    Ok(())
}

/// The catch-up measurement (see [`CatchUp`]).
async fn catch_up(options: &BenchOptions) -> Result<CatchUp, BenchError> {
    let (events, absence) = if options.quick {
        (QUICK_ABSENT_EVENTS, QUICK_ABSENCE)
    } else {
        (ABSENT_EVENTS, ABSENCE)
    };
    let mut hub = ChildProcess::spawn(&["hub"])?;
    let url = format!("ws://{}/events", hub.value("ADDR").await?);
    let mut config = WebSocketConfig::new(url.clone());
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await?;
    let subscriber = || {
        WebSocketTransport::builder(WebSocketConfig::new(url.clone())).mailbox_size(events + 1024)
    };

    // Away: connect, record the position, go.
    let gone = subscriber().connect().await?;
    let position = gone
        .position()
        .ok_or_else(|| BenchError::Incomplete("the hub gave no position".into()))?;
    gone.shutdown().await?;
    let started = Instant::now();
    for n in 0..events {
        let due = started + absence.mul_f64(n as f64 / events as f64);
        tokio::time::sleep_until(due.into()).await;
        publisher.publish(event(n as u64)).await?;
    }
    publisher.flush().await?;
    let absence_ms = started.elapsed().as_secs_f64() * 1e3;

    // Back: timed from the reconnect until all are handled.
    let seen = Seen::new(events);
    let started = Instant::now();
    let back = subscriber().resume_from(position).connect().await?;
    marking(&back, &seen).await?;
    let arrived = seen.wait_for(events).await;
    let catch_up_ms = started.elapsed().as_secs_f64() * 1e3;
    let outcome = back.last_resume();
    back.shutdown().await?;

    // Live: the same number to a connected subscriber, flat out.
    let here = subscriber().connect().await?;
    let live = Seen::new(events);
    marking(&here, &live).await?;
    let started = Instant::now();
    for n in 0..events {
        publisher.publish(event(n as u64)).await?;
    }
    publisher.flush().await?;
    let live_arrived = live.wait_for(events).await;
    let live_ms = started.elapsed().as_secs_f64() * 1e3;
    here.shutdown().await?;
    publisher.shutdown().await?;
    hub.finish().await?;

    let per_second = |ms: f64| crate::stats::ratio(events as f64 * 1e3, ms);
    Ok(CatchUp {
        events,
        absence_ms,
        catch_up_ms,
        catch_up_events_per_second: per_second(catch_up_ms),
        arrived,
        duplicates: seen.duplicates.load(Relaxed),
        answer: match outcome {
            Some(ResumeOutcome::Recovered { replayed }) => {
                format!("recovered, {replayed} replayed")
            }
            Some(other) => format!("{other:?}"),
            None => "none".to_string(),
        },
        replayed: match outcome {
            Some(ResumeOutcome::Recovered { replayed }) => Some(replayed),
            _ => None,
        },
        live_ms,
        live_events_per_second: per_second(live_ms),
        live_arrived,
        ratio: crate::stats::ratio(per_second(catch_up_ms), per_second(live_ms)),
    })
}
