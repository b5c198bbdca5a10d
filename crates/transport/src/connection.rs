//! The connection task: the one owner of the socket.
//!
//! It connects (with the reconnect policy and the circuit breaker), then runs
//! a session: a writer that drains the queue in batches and flushes once per
//! batch, a reader that decodes frames and dispatches them to subscriptions,
//! and a keepalive watch, all polled by this one task. When a session ends
//! it accounts for every frame — written, put back, or dead-lettered — and
//! reconnects.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use watchtower_core::{ControlFrame, EventHeader, WatchtowerError};
use watchtower_dlq::DeadLetterReason;

use crate::connect::{Ws, connect_once};
use crate::shared::{Lifecycle, Shared};
use crate::stats::{ConnectionState, add, bump};

/// How the first connection is made.
pub(crate) enum First {
    /// `connect()` already made it.
    Connected(Box<Ws>),
    /// Make it in the background (`connect_lazily`).
    Connect,
}

/// Why connecting stopped.
pub(crate) enum Failed {
    /// The attempts ran out; the last error.
    GaveUp(WatchtowerError),
    /// The transport is shutting down.
    Stopped,
}

/// The connection task.
pub(crate) async fn run(shared: Arc<Shared>, first: First) {
    let mut next = first;
    let mut sessions = 0u64;
    loop {
        let ws = match std::mem::replace(&mut next, First::Connect) {
            First::Connected(ws) => *ws,
            First::Connect => match connect_with_retries(&shared, sessions == 0).await {
                Ok(ws) => ws,
                Err(Failed::Stopped) => break,
                Err(Failed::GaveUp(error)) => match circuit_open(&shared, &error).await {
                    Some(ws) => ws,
                    None => break,
                },
            },
        };
        let reconnect = sessions > 0;
        sessions += 1;
        if let SessionEnd::Finished = session(&shared, ws, reconnect).await {
            break;
        }
    }
    finish(&shared);
}

/// Final accounting once the task stops: nothing queued is lost silently.
pub(crate) fn finish(shared: &Shared) {
    let n = shared.abandon_queue(
        DeadLetterReason::Shutdown,
        "not sent: the transport shut down before the event could be written",
    );
    if n > 0 {
        tracing::warn!(
            events = n,
            "shut down with events unsent; they are in the dead-letter queue"
        );
    }
    shared.set_state(ConnectionState::Closed);
    shared.gave_up.notify_waiters();
    shared.progress.notify_waiters();
}

/// Connects, retrying on the policy's schedule.
///
/// The first connect of a transport tries at once and then retries
/// `max_attempts` times; a reconnect waits before each of its
/// `max_attempts` tries (the spec's `delay * attempt`).
pub(crate) async fn connect_with_retries(shared: &Shared, initial: bool) -> Result<Ws, Failed> {
    let mut schedule = shared.settings.policy.schedule();
    let mut immediate = initial;
    let mut auth_rejected = false;
    let mut last_error = None;
    loop {
        if !shared.is_running() {
            return Err(Failed::Stopped);
        }
        if immediate {
            immediate = false;
            shared.set_state(ConnectionState::Connecting);
        } else {
            let Some(delay) = schedule.next() else {
                return Err(Failed::GaveUp(last_error.unwrap_or_else(|| {
                    WatchtowerError::connection(
                        "the connection was lost and reconnecting is disabled (max_reconnect_attempts is 0)",
                    )
                })));
            };
            shared.set_state(ConnectionState::Reconnecting {
                attempt: schedule.attempt(),
            });
            tracing::debug!(attempt = schedule.attempt(), ?delay, "waiting to reconnect");
            if !sleep_unless_stopped(shared, delay).await {
                return Err(Failed::Stopped);
            }
        }
        match attempt_connect(shared).await {
            Ok(ws) => return Ok(ws),
            Err(error) => {
                bump(&shared.counters.failed_connects);
                if initial {
                    // `connect()` returns the final error to its caller.
                    tracing::debug!(url = %shared.settings.url, %error, "connect failed");
                } else {
                    tracing::warn!(url = %shared.settings.url, %error, "reconnect failed");
                }
                if let WatchtowerError::Auth { .. } = error {
                    // Rejected credentials: ask the provider for fresh ones
                    // once, at once; a second rejection stops the retries
                    // rather than hammering the server with a bad token.
                    if auth_rejected || shared.settings.credential_provider.is_none() {
                        return Err(Failed::GaveUp(error));
                    }
                    auth_rejected = true;
                    immediate = true;
                }
                last_error = Some(error);
            }
        }
    }
}

/// One attempt through the circuit breaker.
async fn attempt_connect(shared: &Shared) -> Result<Ws, WatchtowerError> {
    let permit = shared
        .breaker
        .try_acquire()
        .map_err(|rejected| WatchtowerError::CircuitOpen {
            retry_after: rejected.retry_after,
        })?;
    match connect_once(&shared.settings).await {
        Ok(ws) => {
            permit.success();
            Ok(ws)
        }
        Err(error) => {
            permit.failure();
            Err(error)
        }
    }
}

/// The attempts ran out: open the breaker, dead-letter what is queued (it
/// cannot be sent), release blocked publishers, then make one trial connect
/// each time the breaker's timeout passes, until one succeeds.
async fn circuit_open(shared: &Shared, error: &WatchtowerError) -> Option<Ws> {
    shared.breaker.trip();
    bump(&shared.counters.gave_up);
    shared.set_state(ConnectionState::CircuitOpen);
    shared.gave_up.notify_waiters();
    let abandoned = shared.abandon_queue(
        DeadLetterReason::SendFailed,
        &format!("not sent: reconnect attempts ran out and the circuit breaker opened; last error: {error}"),
    );
    tracing::error!(url = %shared.settings.url, %error, dead_lettered = abandoned,
        "giving up: the circuit breaker is open; publish fails fast until a trial connect succeeds");
    loop {
        // At least a millisecond, so a breaker that is not open yet cannot spin us.
        let wait = shared
            .breaker
            .retry_after()
            .unwrap_or_default()
            .max(Duration::from_millis(1));
        if !sleep_unless_stopped(shared, wait).await {
            return None;
        }
        match attempt_connect(shared).await {
            Ok(ws) => {
                tracing::info!(url = %shared.settings.url, "trial connect succeeded; the circuit breaker is closed");
                return Some(ws);
            }
            Err(WatchtowerError::CircuitOpen { .. }) => {}
            Err(error) => {
                bump(&shared.counters.failed_connects);
                tracing::warn!(url = %shared.settings.url, %error, "trial connect failed; the circuit breaker stays open");
            }
        }
    }
}

/// Sleeps for `delay`; false if the transport began to stop meanwhile.
async fn sleep_unless_stopped(shared: &Shared, delay: Duration) -> bool {
    let mut lifecycle = shared.lifecycle.subscribe();
    tokio::select! {
        _ = sleep(delay) => shared.is_running(),
        _ = lifecycle.wait_for(|l| *l != Lifecycle::Running) => false,
    }
}

enum SessionEnd {
    /// The connection was lost; reconnect.
    Lost,
    /// Shut down; stop.
    Finished,
}

/// Why a session ended.
enum End {
    Lost(Reason),
    /// The queue was closed by `shutdown` and everything in it is written.
    Drained,
    /// The shutdown deadline passed.
    DeadlineExpired,
}

enum Reason {
    Eof,
    ServerClosed(String),
    Oversize(String),
    KeepaliveTimeout(Duration),
    Read(tungstenite::Error),
    Write(tungstenite::Error),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Eof => f.write_str("the server closed the TCP connection"),
            Reason::ServerClosed(frame) => write!(f, "the server closed the WebSocket ({frame})"),
            Reason::Oversize(e) => write!(
                f,
                "an incoming message was too large ({e}); closed with 1009"
            ),
            Reason::KeepaliveTimeout(d) => {
                write!(f, "nothing arrived for {d:?} (keepalive timeout)")
            }
            Reason::Read(e) => write!(f, "read failed: {e}"),
            Reason::Write(e) => write!(f, "write failed: {e}"),
        }
    }
}

/// State the session's reader, writer and keepalive share. They run in one
/// task, but the task must be `Send`, so atomics and a short-held mutex
/// rather than `Cell`s.
struct Cells {
    epoch: Instant,
    last_rx: AtomicU64,
    last_ping: AtomicU64,
    /// Event frames flushed on this connection.
    flushed: AtomicU64,
    /// Of those, how many the server confirmed (via pong).
    confirmed: AtomicU64,
    /// Pings in flight, oldest first: what each one confirms when its pong
    /// comes back. Never held across an `.await`.
    pings: Mutex<VecDeque<PingRecord>>,
    next_ping: AtomicU64,
    /// Wakes an idle writer: a ping arrived (flush, so the queued pong goes
    /// out) or a pong did (re-arm the keepalive ping).
    wake_writer: Notify,
}

/// What a ping's pong proves: the server has read everything we wrote
/// before the ping — `frames` event frames and the filter of `filter_epoch`.
#[derive(Clone, Copy)]
struct PingRecord {
    id: u64,
    frames: u64,
    filter_epoch: u64,
}

/// Pings remembered at most; older ones are forgotten (their pongs then
/// confirm nothing, which is only less precise).
const MAX_PINGS_IN_FLIGHT: usize = 1024;

impl Cells {
    fn new() -> Cells {
        Cells {
            epoch: Instant::now(),
            last_rx: AtomicU64::new(0),
            last_ping: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            pings: Mutex::new(VecDeque::new()),
            next_ping: AtomicU64::new(1),
            wake_writer: Notify::new(),
        }
    }

    fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, nanos: &AtomicU64) -> Instant {
        self.epoch + Duration::from_nanos(nanos.load(Relaxed))
    }

    fn touch(&self) {
        self.last_rx.store(self.since_epoch(), Relaxed);
    }

    fn pings(&self) -> std::sync::MutexGuard<'_, VecDeque<PingRecord>> {
        self.pings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ping_outstanding(&self) -> bool {
        !self.pings().is_empty()
    }

    /// Remembers a ping about to be sent; returns its payload.
    fn record_ping(&self, frames: u64, filter_epoch: u64) -> [u8; 8] {
        let id = self.next_ping.fetch_add(1, Relaxed);
        let mut pings = self.pings();
        if pings.len() >= MAX_PINGS_IN_FLIGHT {
            pings.pop_front();
        }
        pings.push_back(PingRecord {
            id,
            frames,
            filter_epoch,
        });
        self.last_ping.store(self.since_epoch(), Relaxed);
        id.to_be_bytes()
    }

    /// A pong answers the ping with its id and every earlier one (peers
    /// answer only the latest of several). Returns how many more frames it
    /// confirmed and the filter epoch it confirmed, if any.
    fn on_pong(&self, payload: &[u8]) -> (u64, Option<u64>) {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            // Not our payload (a non-conforming peer): it answers
            // something, so forget what is in flight, but confirms nothing.
            self.pings().clear();
            return (0, None);
        };
        let id = u64::from_be_bytes(bytes);
        let mut answered = None;
        {
            let mut pings = self.pings();
            while pings.front().is_some_and(|p| p.id <= id) {
                answered = pings.pop_front();
            }
        }
        let Some(record) = answered.filter(|r| r.id == id) else {
            return (0, None);
        };
        let upto = record.frames.min(self.flushed.load(Relaxed));
        let more = upto.saturating_sub(self.confirmed.fetch_max(upto, Relaxed));
        (more, Some(record.filter_epoch))
    }

    /// Frames written but not confirmed, plus `unflushed` fed ones.
    fn unconfirmed(&self, unflushed: usize) -> u64 {
        self.flushed
            .load(Relaxed)
            .saturating_sub(self.confirmed.load(Relaxed))
            + unflushed as u64
    }
}

/// The writer's current batch: frames popped from the queue; the first
/// `fed` of them have been handed to the socket and are not yet flushed.
#[derive(Default)]
struct Batch {
    frames: Vec<Utf8Bytes>,
    fed: usize,
    fed_bytes: u64,
}

type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

async fn session(shared: &Shared, ws: Ws, reconnect: bool) -> SessionEnd {
    bump(&shared.counters.connects);
    if reconnect {
        bump(&shared.counters.reconnects);
    }
    shared.set_state(ConnectionState::Connected);
    tracing::info!(url = %shared.settings.url, reconnect, "connected");

    let (mut sink, mut stream) = ws.split();
    let cells = Cells::new();
    let mut batch = Batch::default();
    let end = tokio::select! {
        biased;
        end = shutdown_deadline(shared) => end,
        end = keepalive_watch(shared, &cells) => end,
        end = read_loop(shared, &cells, &mut stream) => end,
        end = write_loop(shared, &cells, &mut batch, &mut sink) => end,
    };

    // Frames popped but never handed to the socket go back to the front of
    // the queue, in order; frames handed to it are the at-most-once window.
    let unfed: Vec<Utf8Bytes> = batch.frames.drain(batch.fed..).collect();
    let unconfirmed = cells.unconfirmed(batch.fed);
    // Fed but not flushed: handed to the socket all the same, so written
    // (and in the at-most-once window), never requeued.
    add(&shared.counters.frames_out, batch.fed as u64);
    add(&shared.counters.bytes_out, batch.fed_bytes);
    match end {
        End::Drained => {
            let clean = close_gracefully(shared, &mut sink, &mut stream).await;
            if !clean {
                add(&shared.counters.frames_unconfirmed_lost, unconfirmed);
            }
            shared.clean_close.store(clean, Relaxed);
            SessionEnd::Finished
        }
        End::DeadlineExpired => {
            add(&shared.counters.frames_unconfirmed_lost, unconfirmed);
            shared.dead_letter_frames(
                unfed,
                DeadLetterReason::Shutdown,
                "not sent: the shutdown deadline passed before the event could be written",
            );
            SessionEnd::Finished
        }
        End::Lost(reason) => {
            bump(&shared.counters.disconnects);
            add(&shared.counters.frames_unconfirmed_lost, unconfirmed);
            let requeued = unfed.len();
            let overflow = shared.queue.push_front(unfed);
            add(
                &shared.counters.frames_requeued,
                (requeued - overflow.len()) as u64,
            );
            shared.dead_letter_frames(
                overflow,
                DeadLetterReason::Overflow,
                "evicted: no room to put the event back in the full queue after the connection was lost",
            );
            let close = match &reason {
                Reason::Oversize(_) => Some(CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                }),
                // The reply to the server's close is already queued; flushing sends it.
                Reason::ServerClosed(_) => None,
                _ => {
                    tracing::warn!(url = %shared.settings.url, %reason, unconfirmed, "connection lost");
                    return SessionEnd::Lost;
                }
            };
            tracing::warn!(url = %shared.settings.url, %reason, unconfirmed, "connection lost");
            let grace = shared
                .settings
                .keepalive
                .map_or(Duration::from_secs(1), |k| {
                    k.pong_timeout.min(Duration::from_secs(1))
                });
            let _ = timeout(grace, async {
                if let Some(frame) = close {
                    sink.send(Message::Close(Some(frame))).await
                } else {
                    sink.flush().await
                }
            })
            .await;
            SessionEnd::Lost
        }
    }
}

/// Sends a normal close and waits for the server's, by the shutdown
/// deadline. True if the handshake completed: the server then has read
/// every frame we wrote.
async fn close_gracefully(shared: &Shared, sink: &mut Sink, stream: &mut Stream) -> bool {
    let deadline = match shared.lifecycle() {
        Lifecycle::Draining { deadline } => deadline,
        _ => Instant::now(),
    };
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "shutdown".into(),
    };
    let handshake = async {
        sink.send(Message::Close(Some(frame))).await.ok()?;
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Close(_)) => return Some(()),
                Ok(Message::Text(t)) => on_frame(shared, t, &mut WarnLimiter::default()),
                Ok(Message::Binary(b)) => on_binary(shared, b, &mut WarnLimiter::default()),
                Ok(_) => {}
                // tungstenite reports the end of a completed handshake this way.
                Err(tungstenite::Error::ConnectionClosed) => return Some(()),
                Err(_) => return None,
            }
        }
        None
    };
    timeout_at(deadline, handshake)
        .await
        .ok()
        .flatten()
        .is_some()
}

async fn shutdown_deadline(shared: &Shared) -> End {
    let mut lifecycle = shared.lifecycle.subscribe();
    loop {
        let current = *lifecycle.borrow_and_update();
        match current {
            Lifecycle::Running => {}
            Lifecycle::Draining { deadline } => {
                sleep_until(deadline).await;
                return End::DeadlineExpired;
            }
            Lifecycle::Stopped => return End::DeadlineExpired,
        }
        if lifecycle.changed().await.is_err() {
            return End::DeadlineExpired;
        }
    }
}

/// Declares the connection dead when nothing has arrived for
/// `interval + pong_timeout`. The writer pings after `interval` of silence,
/// so a live server always answers in time.
async fn keepalive_watch(shared: &Shared, cells: &Cells) -> End {
    let Some(keepalive) = shared.settings.keepalive else {
        return std::future::pending().await;
    };
    loop {
        let deadline = cells.at(&cells.last_rx) + keepalive.dead_after();
        if Instant::now() >= deadline {
            bump(&shared.counters.keepalive_timeouts);
            return End::Lost(Reason::KeepaliveTimeout(keepalive.dead_after()));
        }
        sleep_until(deadline).await;
    }
}

async fn read_loop(shared: &Shared, cells: &Cells, stream: &mut Stream) -> End {
    let mut warn = WarnLimiter::default();
    loop {
        let Some(message) = stream.next().await else {
            return End::Lost(Reason::Eof);
        };
        cells.touch();
        match message {
            Ok(Message::Text(text)) => on_frame(shared, text, &mut warn),
            Ok(Message::Binary(bytes)) => on_binary(shared, bytes, &mut warn),
            Ok(Message::Ping(_)) => cells.wake_writer.notify_one(),
            Ok(Message::Pong(payload)) => {
                bump(&shared.counters.pongs_received);
                let (confirmed, filter_epoch) = cells.on_pong(&payload);
                add(&shared.counters.frames_confirmed, confirmed);
                if let Some(epoch) = filter_epoch {
                    shared.filter_confirmed(epoch);
                }
                cells.wake_writer.notify_one();
            }
            Ok(Message::Close(frame)) => {
                let described = match frame {
                    Some(f) => {
                        format!("code {}, reason {:?}", u16::from(f.code), f.reason.as_str())
                    }
                    None => "no close code".to_string(),
                };
                return End::Lost(Reason::ServerClosed(described));
            }
            Ok(Message::Frame(_)) => {}
            Err(tungstenite::Error::Capacity(e)) => {
                bump(&shared.counters.oversize);
                return End::Lost(Reason::Oversize(e.to_string()));
            }
            Err(tungstenite::Error::Utf8(_)) => {
                // RFC 6455 makes invalid UTF-8 in a text frame fatal (1007).
                bump(&shared.counters.invalid_utf8);
                return End::Lost(Reason::Read(tungstenite::Error::Utf8(String::new())));
            }
            Err(e) => return End::Lost(Reason::Read(e)),
        }
    }
}

/// A binary frame holding JSON: events are UTF-8, so check that once and
/// treat it as text.
fn on_binary(shared: &Shared, bytes: Bytes, warn: &mut WarnLimiter) {
    match Utf8Bytes::try_from(bytes) {
        Ok(text) => on_frame(shared, text, warn),
        Err(_) => {
            bump(&shared.counters.frames_in);
            bump(&shared.counters.invalid_utf8);
            warn.warn(&"a binary frame is not UTF-8, so it cannot hold JSON", 0);
        }
    }
}

/// Routes one data frame to the subscriptions that want it; anything else
/// is counted by reason and logged (rate-limited), never fatal.
///
/// Only the header is read here (each subscription decodes its own copy),
/// so the reader stays cheap however much the payload holds.
fn on_frame(shared: &Shared, text: Utf8Bytes, warn: &mut WarnLimiter) {
    bump(&shared.counters.frames_in);
    add(&shared.counters.bytes_in, text.len() as u64);
    // A lone subscription reads the frame itself. Control frames (the hub
    // writes them `{"type":…` first) are handled here in any case.
    let text = if text.starts_with(r#"{"type":"#) {
        text
    } else {
        match shared.subs.deliver_unread(shared, text) {
            Ok(()) => return,
            Err(text) => text,
        }
    };
    let error = match EventHeader::peek(&text) {
        Ok(header) => {
            bump(&shared.counters.events_received);
            // The header borrows the frame; dispatch shares a counted copy.
            if shared
                .subs
                .dispatch(shared, &header.event_type, text.clone())
            {
                return;
            }
            bump(&shared.counters.events_unmatched);
            // Nobody decodes it, so check it strictly here, to count it if bad.
            match EventHeader::parse(text.as_bytes()) {
                Ok(_) => return,
                Err(error) => error,
            }
        }
        Err(error) => {
            if ControlFrame::from_json(text.as_bytes()).is_some() {
                bump(&shared.counters.control_frames_in);
                return;
            }
            error
        }
    };
    shared.counters.malformed(error.kind());
    warn.warn(&error, text.len());
}

/// At most one malformed-frame warning per second, with a count of the rest,
/// so a peer sending garbage cannot flood the logs.
#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn warn(&mut self, error: &dyn fmt::Display, len: usize) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(reason = %error, bytes = len, suppressed = self.suppressed, "malformed frame dropped");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

async fn write_loop(shared: &Shared, cells: &Cells, batch: &mut Batch, sink: &mut Sink) -> End {
    let settings = &shared.settings;
    let max = settings.write_batch;
    let lost = |e| End::Lost(Reason::Write(e));
    // A new connection receives everything until told otherwise, a superset
    // of any filter; narrow it first thing, if there is anything to narrow.
    if settings.server_filters {
        shared.filter_dirty.store(false, Relaxed);
        if shared.subs.len() > 0
            && let Err(e) = send_filter(shared, cells, sink).await
        {
            return lost(e);
        }
    }
    let ping_timer = sleep_until(Instant::now());
    tokio::pin!(ping_timer);
    loop {
        if settings.server_filters
            && shared.filter_dirty.swap(false, Relaxed)
            && let Err(e) = send_filter(shared, cells, sink).await
        {
            return lost(e);
        }
        if batch.frames.is_empty() {
            // Idle: wait for frames, a filter change, a ping to answer, or
            // the time to ping.
            let ping_at = next_ping_at(shared, cells);
            if let Some(at) = ping_at {
                ping_timer.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                _ = shared.filter_changed.notified(), if settings.server_filters => continue,
                _ = cells.wake_writer.notified() => {
                    if let Err(e) = sink.flush().await {
                        return lost(e);
                    }
                    continue;
                }
                n = shared.queue.pop_batch(max, &mut batch.frames) => {
                    if n == 0 {
                        return End::Drained;
                    }
                }
                _ = &mut ping_timer, if ping_at.is_some() => {
                    let flushed = cells.flushed.load(Relaxed);
                    if let Err(e) = send_ping(shared, cells, sink, flushed, true).await {
                        return lost(e);
                    }
                    continue;
                }
            }
        }
        // Feed the batch, topping it up while the queue has more, then flush
        // once: a flush per event costs 5–9× the throughput.
        loop {
            while batch.fed < batch.frames.len() {
                let frame = batch.frames[batch.fed].clone();
                let len = frame.len() as u64;
                if let Err(e) = sink.feed(Message::Text(frame)).await {
                    return lost(e);
                }
                batch.fed += 1;
                batch.fed_bytes += len;
            }
            let room = max.saturating_sub(batch.frames.len());
            if room == 0 || shared.queue.try_pop_batch(room, &mut batch.frames) == 0 {
                break;
            }
        }
        // A ping after each batch doubles as a receipt: its pong proves the
        // server read every frame before it, which keeps the at-most-once
        // window (frames lost with a dying connection) down to the frames
        // not yet confirmed. Peers answer only the latest of several
        // pings, which is the one that confirms the most.
        if settings.keepalive.is_some() {
            let upto = cells.flushed.load(Relaxed) + batch.fed as u64;
            if let Err(e) = send_ping(shared, cells, sink, upto, false).await {
                return lost(e);
            }
        }
        if let Err(e) = sink.flush().await {
            return lost(e);
        }
        cells.flushed.fetch_add(batch.fed as u64, Relaxed);
        add(&shared.counters.frames_out, batch.fed as u64);
        add(&shared.counters.bytes_out, batch.fed_bytes);
        batch.frames.clear();
        batch.fed = 0;
        batch.fed_bytes = 0;
        shared.progress.notify_waiters();
    }
}

/// When the next keepalive ping is due: after `interval` of silence, and
/// never while one is unanswered (the keepalive watch handles that).
fn next_ping_at(shared: &Shared, cells: &Cells) -> Option<Instant> {
    let keepalive = shared.settings.keepalive?;
    if cells.ping_outstanding() {
        return None;
    }
    let last = cells.at(&cells.last_rx).max(cells.at(&cells.last_ping));
    Some(last + keepalive.interval)
}

async fn send_ping(
    shared: &Shared,
    cells: &Cells,
    sink: &mut Sink,
    frames: u64,
    flush: bool,
) -> Result<(), tungstenite::Error> {
    let payload = cells.record_ping(frames, shared.filter_epoch_sent.load(Relaxed));
    bump(&shared.counters.pings_sent);
    let ping = Message::Ping(Bytes::copy_from_slice(&payload));
    if flush {
        sink.send(ping).await
    } else {
        sink.feed(ping).await
    }
}

/// Tells a hub which event types the subscriptions want, then pings: the
/// pong confirms the hub applied the filter (it reads frames in order), and
/// `subscribe` waits for that.
async fn send_filter(
    shared: &Shared,
    cells: &Cells,
    sink: &mut Sink,
) -> Result<(), tungstenite::Error> {
    // Read the epoch before the subscriptions: a change after this read
    // bumps the epoch again and sends another filter.
    let epoch = shared.filter_epoch.load(Relaxed);
    let frame = shared.subs.server_filter();
    tracing::debug!(?frame, epoch, "sending subscription filter");
    sink.feed(Message::Text(frame.to_json().into())).await?;
    shared.filter_epoch_sent.fetch_max(epoch, Relaxed);
    let flushed = cells.flushed.load(Relaxed);
    send_ping(shared, cells, sink, flushed, true).await
}
