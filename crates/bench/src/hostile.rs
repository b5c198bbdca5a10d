//! Measurement 6: a legitimate pair under attack. Publisher → hub →
//! subscriber latency alone, then while clients abuse filters, then while
//! subscribers that never read are fed large events, then while clients
//! upgrade in a loop presenting resume positions with forged keys; and the
//! hub's CPU
//! time per costly control frame. The hub runs in a child process, so its
//! CPU time (from `/proc/PID/stat`) is its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use watchtower_core::{POSITION_HEADER, Position, RECOVERED_HEADER, RESUME_HEADER, RESUME_NEW};

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
/// Clients upgrading in a loop with forged resume keys.
const FORGERS: u64 = 4;
/// Events published before the forged-key attack, so the history holds
/// something a forged key could have made the hub scan.
const HELD_EVENTS: u64 = 5_000;

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
    /// The same while four clients upgrade in a loop, each presenting a
    /// resume position with the hub's epoch, a sequence number inside its
    /// history and a made-up key.
    pub forged_keys: Percentiles,
    /// forged_keys p99 / alone p99.
    pub ratio_p99_forged_keys: f64,
    /// The control for it: the same four clients upgrading in a loop
    /// without a position (what connection churn alone costs the pair).
    pub upgrade_churn: Percentiles,
    /// upgrade_churn p99 / alone p99.
    pub ratio_p99_upgrade_churn: f64,
    /// Upgrades per second of the control.
    pub churn_upgrades_per_second: f64,
    /// Upgrades of the control answered 429 (the hub's per-address
    /// handshake budget); its phase is measured once the first came.
    pub churn_refused: u64,
    /// Events published just before that attack (the history held them).
    pub forged_held_events: u64,
    /// Upgrades with a forged key the hub accepted during the attack.
    pub forged_upgrades: u64,
    /// The same per second of the attack.
    pub forged_upgrades_per_second: f64,
    /// Upgrades that failed (refused or cut) during the attack.
    pub forged_failed: u64,
    /// Of those, upgrades answered 429 (the per-address handshake
    /// budget); the phase is measured once the first came.
    pub forged_refused: u64,
    /// Forged positions the hub answered as recovered (it should be none).
    pub forged_recovered: u64,
    /// The hub's last `Watchtower-Recovered` answer to a forged position.
    pub forged_answer: String,
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
        ("upgrade churn (control)", &h.upgrade_churn),
        ("forged resume keys", &h.forged_keys),
    ] {
        table.push_str(&format!(
            "   {name:<26} p50 {:>8.0}   p99 {:>8.0}   ({} samples)\n",
            p.p50_us, p.p99_us, p.samples
        ));
    }
    table.push_str(&format!(
        "   p99 ratios to alone: filter abuse {:.2}, never-readers {:.2}, forged keys {:.2}\n",
        h.ratio_p99_filter_abuse, h.ratio_p99_never_readers, h.ratio_p99_forged_keys
    ));
    table.push_str(&format!(
        "   upgrade churn: {FORGERS} clients upgrading in a loop without a position ({:.0}/s, \
         {} answered 429): p99 ratio to alone {:.2}\n",
        h.churn_upgrades_per_second, h.churn_refused, h.ratio_p99_upgrade_churn
    ));
    table.push_str(&format!(
        "   forged keys: {FORGERS} clients, {} upgrades ({:.0}/s), {} failed ({} answered 429), \
         {} answered recovered (last answer {:?}), {} events held before\n",
        h.forged_upgrades,
        h.forged_upgrades_per_second,
        h.forged_failed,
        h.forged_refused,
        h.forged_recovered,
        h.forged_answer,
        h.forged_held_events
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
    let attack = under("upgrade-churn").await?;
    let upgrade_churn = pair.round_trips(samples).await?;
    let churn = ForgedTally::stop(attack).await?;
    let attack = under("forged-keys").await?;
    let forged_keys = pair.round_trips(samples).await?;
    let forged = ForgedTally::stop(attack).await?;
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
        ratio_p99_forged_keys: ratio(forged_keys.p99_us, alone.p99_us),
        forged_keys,
        ratio_p99_upgrade_churn: ratio(upgrade_churn.p99_us, alone.p99_us),
        upgrade_churn,
        churn_upgrades_per_second: ratio(churn.upgrades as f64, churn.seconds),
        churn_refused: churn.refused,
        forged_held_events: HELD_EVENTS,
        forged_upgrades: forged.upgrades,
        forged_upgrades_per_second: ratio(forged.upgrades as f64, forged.seconds),
        forged_failed: forged.failed,
        forged_refused: forged.refused,
        forged_recovered: forged.recovered,
        forged_answer: forged.answer,
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

/// What an upgrading attacker tells the parent when it stops.
struct ForgedTally {
    upgrades: u64,
    failed: u64,
    refused: u64,
    recovered: u64,
    seconds: f64,
    answer: String,
}

impl ForgedTally {
    /// Stops the attacker and reads the tally it prints as it stops.
    async fn stop(mut attack: ChildProcess) -> Result<ForgedTally, BenchError> {
        attack.close_stdin();
        let tally = ForgedTally {
            upgrades: number(attack.value("UPGRADES").await?)?,
            failed: number(attack.value("FAILED").await?)?,
            refused: number(attack.value("REFUSED").await?)?,
            recovered: number(attack.value("RECOVERED").await?)?,
            seconds: attack
                .value("SECONDS")
                .await?
                .parse()
                .map_err(|_| BenchError::Incomplete("bad SECONDS from the attacker".into()))?,
            answer: attack.value("ANSWER").await?,
        };
        attack.finish().await?;
        Ok(tally)
    }
}

fn number(text: String) -> Result<u64, BenchError> {
    text.parse()
        .map_err(|_| BenchError::Incomplete(format!("bad count {text:?} from the attacker")))
}

/// Starts an attack on the hub at `addr` in this (child) process: its
/// tasks run until the process exits. The upgrading attacks (forged keys
/// and their control, upgrade churn) return their tally, to print (see
/// [`Tally::print`]) once the parent stops them.
pub(crate) async fn attack(kind: &str, addr: &str) -> Result<Option<Arc<Tally>>, BenchError> {
    let url = format!("ws://{addr}/");
    match kind {
        "forged-keys" => return upgrading(&url, true).await.map(Some),
        "upgrade-churn" => return upgrading(&url, false).await.map(Some),
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
    Ok(None)
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

/// The forged-key attackers' counts.
#[derive(Debug)]
pub(crate) struct Tally {
    started: Instant,
    upgrades: AtomicU64,
    failed: AtomicU64,
    /// Of the failed, those answered 429.
    refused: AtomicU64,
    recovered: AtomicU64,
    answer: std::sync::Mutex<String>,
}

impl Tally {
    /// Prints the counts as `KEY value` lines, in the order the parent
    /// reads them.
    pub(crate) fn print(&self) {
        println!("UPGRADES {}", self.upgrades.load(Relaxed));
        println!("FAILED {}", self.failed.load(Relaxed));
        println!("REFUSED {}", self.refused.load(Relaxed));
        println!("RECOVERED {}", self.recovered.load(Relaxed));
        println!("SECONDS {}", self.started.elapsed().as_secs_f64());
        let answer = self.answer.lock().map(|a| a.clone()).unwrap_or_default();
        println!("ANSWER {answer}");
    }
}

/// Where the hub's history stands: the `Watchtower-Position` answer to an
/// upgrade presenting `new`.
async fn hub_position(url: &str) -> Result<Position, BenchError> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert(RESUME_HEADER, HeaderValue::from_static(RESUME_NEW));
    let (mut ws, response) = connect_paced(request).await?;
    let position = response
        .headers()
        .get(POSITION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Position>().ok())
        .ok_or_else(|| BenchError::Incomplete("the hub answered no position".into()))?;
    let _ = ws.close(None).await;
    Ok(position)
}

/// Fills the hub's history with [`HELD_EVENTS`] events, then starts
/// [`FORGERS`] clients upgrading in a loop, with forged positions if
/// `forged`, else without a position.
async fn upgrading(url: &str, forged: bool) -> Result<Arc<Tally>, BenchError> {
    let before = hub_position(url).await?;
    let (mut publisher, _) = connect_paced(url.into_client_request()?).await?;
    publisher
        .send(Message::text(
            r#"{"type":"subscribe","event_types":["nothing"],"replace":true}"#,
        ))
        .await?;
    for n in 0..HELD_EVENTS {
        let frame = format!(
            r#"{{"id":"held-{n}","event_type":"held","timestamp":"2026-11-30T00:00:00Z","payload":{{"n":{n}}},"metadata":{{}}}}"#
        );
        publisher.feed(Message::text(frame)).await?;
    }
    publisher.flush().await?;
    // Kept open (and read, so its pings are answered) until the end.
    tokio::spawn(async move { while let Some(Ok(_)) = publisher.next().await {} });
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let now = hub_position(url).await?;
        if now.seq() >= before.seq() + HELD_EVENTS {
            break now;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Incomplete(format!(
                "the history reached seq {} of {}",
                now.seq(),
                before.seq() + HELD_EVENTS
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tally = Arc::new(Tally {
        started: Instant::now(),
        upgrades: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        recovered: AtomicU64::new(0),
        answer: std::sync::Mutex::new(String::new()),
    });
    for forger in 0..FORGERS {
        tokio::spawn(forge(
            url.to_string(),
            before,
            held,
            forger,
            forged,
            Arc::clone(&tally),
        ));
    }
    // The pair is measured once the attackers' address has spent its
    // handshake burst (the hub's first 429), so the phase shows what a
    // looping client costs it for as long as it loops, not the one-off
    // burst an address is allowed. A hub without the budget never says
    // 429: measured after a bound, then.
    let spent = Instant::now() + Duration::from_secs(30);
    while tally.refused.load(Relaxed) == 0 && Instant::now() < spent {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(tally)
}

/// Whether the hub refused an upgrade with 429.
fn too_many_requests(error: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(error, tokio_tungstenite::tungstenite::Error::Http(response) if response.status() == 429)
}

/// Connects, waiting out the hub's 429s (the attack's own setup shares
/// its address's handshake budget with the attack before it).
async fn connect_paced(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<
    (
        Client,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    BenchError,
> {
    let mut tries = 0;
    loop {
        match tokio_tungstenite::connect_async(request.clone()).await {
            Err(error) if too_many_requests(&error) && tries < 60 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Upgrades in a loop, if `forged` presenting positions of the hub's
/// epoch at sequence numbers from `from` up to `to` (so events follow
/// each) with made-up keys; closes each connection at once.
async fn forge(
    url: String,
    from: Position,
    to: Position,
    forger: u64,
    forged: bool,
    tally: Arc<Tally>,
) {
    let span = to.seq().saturating_sub(from.seq()).max(1);
    for i in 0u64.. {
        let seq = from.seq() + (i * 7_919 + forger * 1_237) % span;
        let position = Position::new(to.epoch(), seq).after(Some(made_up_key(forger << 40 | i)));
        let Ok(mut request) = url.as_str().into_client_request() else {
            return;
        };
        let Ok(value) = HeaderValue::from_str(&position.to_string()) else {
            return;
        };
        if forged {
            request.headers_mut().insert(RESUME_HEADER, value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut ws, response)) => {
                tally.upgrades.fetch_add(1, Relaxed);
                let answer = response
                    .headers()
                    .get(RECOVERED_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if answer.trim_start().starts_with("true") {
                    tally.recovered.fetch_add(1, Relaxed);
                }
                if let Ok(mut last) = tally.answer.lock() {
                    *last = answer;
                }
                let _ = ws.close(None).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
            Err(error) => {
                tally.failed.fetch_add(1, Relaxed);
                if too_many_requests(&error) {
                    tally.refused.fetch_add(1, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// A key no frame has (splitmix64 of `n`).
fn made_up_key(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
