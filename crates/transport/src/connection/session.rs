//! One connection's life: the reader, the writer and the keepalive watch,
//! polled together by the connection task, and the accounting when it ends.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use watchtower_dlq::DeadLetterReason;

use super::acks::{InFlight, Outgoing};
use super::reader::read_loop;
use super::writer::write_loop;
use crate::connect::Ws;
use crate::shared::{Lifecycle, Shared};
use crate::stats::{ConnectionState, add, bump};

pub(crate) enum SessionEnd {
    /// The connection was lost; reconnect. `move_on`: the server asked us
    /// to go elsewhere or come back later (closed with 1001 "going away"
    /// or 1013 "try again later"): with fallbacks, try the next URL.
    Lost { move_on: bool },
    /// Shut down; stop.
    Finished,
}

/// Why a session ended.
pub(super) enum End {
    Lost(Reason),
    /// The queue was closed by `shutdown` and everything in it is written.
    Drained,
    /// The shutdown deadline passed.
    DeadlineExpired,
}

pub(super) enum Reason {
    Eof,
    ServerClosed {
        code: Option<u16>,
        described: String,
    },
    Oversize(String),
    KeepaliveTimeout(Duration),
    /// At least once: the oldest event's ack did not come in time.
    AckTimeout(Duration),
    /// A pending write went this long without the socket taking a byte:
    /// the server stopped reading.
    WriteTimeout(Duration),
    Read(tungstenite::Error),
    Write(tungstenite::Error),
}

impl Reason {
    /// Whether the server said it is going away (1001) or too busy (1013).
    fn asks_to_move_on(&self) -> bool {
        matches!(
            self,
            Reason::ServerClosed {
                code: Some(1001 | 1013),
                ..
            }
        )
    }

    /// Whether the server closed the connection to refuse what we sent:
    /// protocol error, unsupported or invalid data, policy, too big.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            Reason::ServerClosed {
                code: Some(1002 | 1003 | 1007 | 1008 | 1009),
                ..
            }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Eof => f.write_str("the server closed the TCP connection"),
            Reason::ServerClosed { described, .. } => {
                write!(f, "the server closed the WebSocket ({described})")
            }
            Reason::Oversize(e) => write!(
                f,
                "an incoming message was too large ({e}); closed with 1009"
            ),
            Reason::KeepaliveTimeout(d) => {
                write!(f, "nothing arrived for {d:?} (keepalive timeout)")
            }
            Reason::AckTimeout(d) => write!(
                f,
                "no acknowledgement within {d:?} (ack timeout); resending on a new connection"
            ),
            Reason::WriteTimeout(d) => write!(
                f,
                "a pending write made no progress for {d:?} (write timeout): the server \
                 stopped reading"
            ),
            Reason::Read(e) => write!(f, "read failed: {e}"),
            Reason::Write(e) => write!(f, "write failed: {e}"),
        }
    }
}

/// State the session's reader, writer and keepalive share. They run in one
/// task, but the task must be `Send`, so atomics and a short-held mutex
/// rather than `Cell`s.
pub(super) struct SessionState {
    epoch: Instant,
    pub(super) last_rx: AtomicU64,
    pub(super) last_ping: AtomicU64,
    /// Event frames flushed on this connection.
    pub(super) flushed: AtomicU64,
    /// Of those, how many the server confirmed (via pong).
    confirmed: AtomicU64,
    /// Pings in flight, oldest first: what each one confirms when its pong
    /// comes back. Never held across an `.await`.
    pings: Mutex<VecDeque<PingRecord>>,
    next_ping: AtomicU64,
    /// Wakes an idle writer: a ping arrived (flush, so the queued pong goes
    /// out), a pong did (re-arm the keepalive ping), or an ack did (room in
    /// the in-flight window).
    pub(super) wake_writer: Notify,
    /// At least once: the events of this connection awaiting an ack.
    in_flight: Mutex<InFlight>,
    /// Set while the reader waits for a full mailbox (`Block` mode): the
    /// silence is ours, so keepalive does not count it, and acks are not
    /// timed (see [`reading_clock`](Self::reading_clock)).
    pub(super) reading_paused: AtomicBool,
    /// Bytes the socket has taken (see [`Socket`](crate::connect::Socket)):
    /// the writer's measure of progress.
    pub(super) written: Arc<AtomicU64>,
    /// When the current pause began (nanoseconds since `epoch`).
    paused_at: AtomicU64,
    /// How long the pauses that have ended lasted, in all (nanoseconds).
    paused_for: AtomicU64,
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

impl SessionState {
    pub(super) fn new(written: Arc<AtomicU64>) -> SessionState {
        SessionState {
            written,
            epoch: Instant::now(),
            last_rx: AtomicU64::new(0),
            last_ping: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            pings: Mutex::new(VecDeque::new()),
            next_ping: AtomicU64::new(1),
            wake_writer: Notify::new(),
            in_flight: Mutex::new(InFlight::default()),
            reading_paused: AtomicBool::new(false),
            paused_at: AtomicU64::new(0),
            paused_for: AtomicU64::new(0),
        }
    }

    /// The reader stops reading (a mailbox is full).
    pub(super) fn pause_reading(&self) {
        self.paused_at.store(self.since_epoch(), Relaxed);
        self.reading_paused.store(true, Relaxed);
    }

    /// The reader reads again. The writer is woken to time acks again.
    pub(super) fn resume_reading(&self) {
        if self.reading_paused.swap(false, Relaxed) {
            let paused = self
                .since_epoch()
                .saturating_sub(self.paused_at.load(Relaxed));
            self.paused_for.fetch_add(paused, Relaxed);
        }
        self.touch();
        self.wake_writer.notify_one();
    }

    /// The time the reader has been reading: the clock, less every pause
    /// for a full mailbox. Acks are timed on it: while the reader waits
    /// for a handler it cannot read an ack that came, so an event whose
    /// ack may be there unread is never called unacknowledged for it.
    pub(super) fn reading_clock(&self) -> Instant {
        let now = self.since_epoch();
        let mut paused = self.paused_for.load(Relaxed);
        if self.reading_paused.load(Relaxed) {
            paused += now.saturating_sub(self.paused_at.load(Relaxed));
        }
        self.epoch + Duration::from_nanos(now.saturating_sub(paused))
    }

    /// Gives back the room a burst grew in the pings and the in-flight
    /// window (see [`room`](super::room)).
    pub(super) fn give_back_room(&self) {
        super::room::give_back(&mut *self.pings());
        self.in_flight().give_back_room();
    }

    pub(super) fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn at(&self, nanos: &AtomicU64) -> Instant {
        self.epoch + Duration::from_nanos(nanos.load(Relaxed))
    }

    pub(super) fn touch(&self) {
        self.last_rx.store(self.since_epoch(), Relaxed);
    }

    fn pings(&self) -> std::sync::MutexGuard<'_, VecDeque<PingRecord>> {
        self.pings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn ping_outstanding(&self) -> bool {
        !self.pings().is_empty()
    }

    /// Remembers a ping about to be sent; returns its payload.
    pub(super) fn record_ping(&self, frames: u64, filter_epoch: u64) -> [u8; 8] {
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
    pub(super) fn on_pong(&self, payload: &[u8]) -> (u64, Option<u64>) {
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

    /// Frames written but not confirmed, taken once: they are settled by
    /// the caller, so a second call counts none of them again.
    fn take_unconfirmed(&self) -> u64 {
        let flushed = self.flushed.load(Relaxed);
        flushed.saturating_sub(self.confirmed.fetch_max(flushed, Relaxed))
    }
}

/// The writer's current batch: frames popped from the queue; the first
/// `fed` of them have been handed to the socket and are not yet flushed.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) frames: Vec<Outgoing>,
    pub(super) fed: usize,
    /// Of the fed frames, those written for the first time (not resends),
    /// and their bytes: what `frames_out` and `bytes_out` count.
    pub(super) first_sends: u64,
    pub(super) first_bytes: u64,
}

pub(super) type Sink = SplitSink<Ws, Message>;
pub(super) type Stream = SplitStream<Ws>;

/// `ws` comes boxed: an argument stays in the session's state for its
/// whole life (an `async fn` never gives an argument's room back), and
/// the split moves the stream out of the box and frees it at once.
///
/// `conn` and `batch` are the caller's, so that what they hold can still
/// be settled if the session panics (see [`rescue`]).
pub(super) async fn session(
    shared: &Shared,
    ws: Box<Ws>,
    reconnect: bool,
    conn: &SessionState,
    batch: &mut Batch,
) -> SessionEnd {
    bump(&shared.counters.connects);
    if reconnect {
        bump(&shared.counters.reconnects);
    }
    shared.set_state(ConnectionState::Connected);
    tracing::info!(url = %shared.current_url(), reconnect, "connected");

    let (mut sink, mut stream) = split(ws);
    // The reader comes before the keepalive watch: a task that could not
    // run for a while (a starved runtime) wakes with both its keepalive
    // deadline passed and frames waiting in its socket. Read first, and
    // the watch sees that the link is alive; judged first, a live link
    // would be called dead.
    let end = tokio::select! {
        biased;
        end = shutdown_deadline(shared) => end,
        end = read_loop(shared, conn, &mut stream) => end,
        end = keepalive_watch(shared, conn) => end,
        end = write_loop(shared, conn, batch, &mut sink) => end,
    };

    // Settle every frame this connection took. A frame fed to the socket
    // but not flushed is not written: at least once it is still in flight
    // (and resent); at most once it is lost with the connection, and
    // counted.
    let Taken {
        unfed,
        unconfirmed,
        unflushed,
    } = take_batch(shared, conn, batch);
    let lose_unconfirmed = || {
        add(&shared.counters.frames_unconfirmed_lost, unconfirmed);
        add(&shared.counters.lost_unflushed, unflushed);
    };
    let ended = match end {
        End::Drained => {
            let clean = close_gracefully(shared, &mut sink, &mut stream).await;
            if clean {
                // The close handshake proves the server read everything.
                add(&shared.counters.frames_confirmed, unconfirmed);
            } else {
                lose_unconfirmed();
            }
            shared.clean_close.store(clean, Relaxed);
            SessionEnd::Finished
        }
        End::DeadlineExpired => {
            lose_unconfirmed();
            let unacked = conn.in_flight().take_all(None, false);
            let frames = unacked.into_iter().chain(unfed).map(|o| o.frame).collect();
            shared.dead_letter_frames(
                frames,
                DeadLetterReason::Shutdown,
                "not sent (or not acknowledged): the shutdown deadline passed first",
            );
            SessionEnd::Finished
        }
        End::Lost(reason) => {
            bump(&shared.counters.disconnects);
            lose_unconfirmed();
            add(&shared.counters.frames_requeued, unfed.len() as u64);
            let unacked = unacked_to_resend(shared, conn, &reason);
            put_back(shared, unacked, unfed);
            lost(shared, reason, unconfirmed, &mut sink).await
        }
    };
    // `flush` callers wait on what was just settled.
    shared.progress.notify_waiters();
    ended
}

/// What a session's batch held when it ended, taken out and counted.
struct Taken {
    /// Popped but not handed to the socket.
    unfed: Vec<Outgoing>,
    /// At most once: written, not confirmed, and now in doubt.
    unconfirmed: u64,
    /// At most once: handed to the socket but not flushed.
    unflushed: u64,
}

/// Empties the batch: what was handed to the socket is counted as sent
/// once, whatever becomes of it; the rest is returned. Taken once: a
/// second call finds nothing.
fn take_batch(shared: &Shared, conn: &SessionState, batch: &mut Batch) -> Taken {
    let at_least_once = shared.settings.acks.is_some();
    add(&shared.counters.frames_out, batch.first_sends);
    add(&shared.counters.bytes_out, batch.first_bytes);
    let unfed = batch.frames.drain(batch.fed..).collect();
    let fed = std::mem::take(&mut batch.fed) as u64;
    batch.frames.clear();
    (batch.first_sends, batch.first_bytes) = (0, 0);
    shared.counters.in_flight.store(0, Relaxed);
    // At most once, frames written but unconfirmed may be lost with the
    // connection; at least once, they are unacked and will be sent again.
    let (unconfirmed, unflushed) = if at_least_once {
        (0, 0)
    } else {
        (conn.take_unconfirmed() + fed, fed)
    };
    Taken {
        unfed,
        unconfirmed,
        unflushed,
    }
}

/// The session panicked (a bug of ours, or a user's tracing layer that
/// panics on a log line): what the connection held — its batch and, at
/// least once, its window awaiting acks — goes back in the carry, which
/// the supervisor dead-letters and counts as it stops the transport, so
/// none of it vanishes with the session.
pub(super) fn rescue(shared: &Shared, conn: &SessionState, batch: &mut Batch) {
    let taken = take_batch(shared, conn, batch);
    add(&shared.counters.frames_unconfirmed_lost, taken.unconfirmed);
    add(&shared.counters.lost_unflushed, taken.unflushed);
    let unacked = conn.in_flight().take_all(None, false);
    put_back(shared, unacked, taken.unfed);
}

/// Puts frames back in the carry, for the next connection to send first
/// in the order they were first published: the unacknowledged (sent
/// earliest), then the unsent, then what was carried before.
fn put_back(shared: &Shared, unacked: Vec<Outgoing>, unfed: Vec<Outgoing>) {
    let mut carry = shared.carry();
    for outgoing in unacked.into_iter().chain(unfed).rev() {
        carry.push_front(outgoing);
    }
}

/// Splits the stream out of its box. A function of its own: a box moved
/// out of is freed only where it goes out of scope, which in `session`
/// would be when the connection ends.
fn split(ws: Box<Ws>) -> (Sink, Stream) {
    (*ws).split()
}

/// At least once: the events the lost connection did not acknowledge, in
/// order, less those that have now failed on `ack_attempts` connections,
/// which are dead-lettered with the reason.
fn unacked_to_resend(shared: &Shared, conn: &SessionState, reason: &Reason) -> Vec<Outgoing> {
    let Some(acks) = shared.settings.acks else {
        return Vec::new();
    };
    let timed_out_before = match reason {
        Reason::AckTimeout(after) => conn.reading_clock().checked_sub(*after),
        _ => None,
    };
    let unacked = conn
        .in_flight()
        .take_all(timed_out_before, reason.is_refusal());
    let (dead, resend): (Vec<Outgoing>, Vec<Outgoing>) = unacked
        .into_iter()
        .partition(|o| o.failures >= acks.attempts);
    if !dead.is_empty() {
        let frames: Vec<_> = dead.into_iter().map(|o| o.frame).collect();
        let (kind, why) = match reason {
            Reason::AckTimeout(after) => (
                DeadLetterReason::AckTimeout,
                format!(
                    "ack timeout: no acknowledgement within {after:?} on {} connections (does \
                     the server speak the ack protocol?)",
                    acks.attempts
                ),
            ),
            _ => (
                DeadLetterReason::SendFailed,
                format!(
                    "refused: the server closed the connection ({reason}) {} times while this \
                     event was the oldest it had not acknowledged",
                    acks.attempts
                ),
            ),
        };
        tracing::warn!(events = frames.len(), reason = %why, "events dead-lettered");
        shared.dead_letter_frames(frames, kind, &why);
    }
    resend
}

/// Logs a lost connection and says goodbye where there is someone to say
/// it to.
async fn lost(shared: &Shared, reason: Reason, unconfirmed: u64, sink: &mut Sink) -> SessionEnd {
    tracing::warn!(url = %shared.current_url(), %reason, unconfirmed, "connection lost");
    let move_on = reason.asks_to_move_on();
    let close = match &reason {
        Reason::Oversize(_) => Some(CloseFrame {
            code: CloseCode::Size,
            reason: "message too big".into(),
        }),
        // The reply to the server's close is already queued; flushing sends it.
        Reason::ServerClosed { .. } => None,
        _ => return SessionEnd::Lost { move_on },
    };
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
    SessionEnd::Lost { move_on }
}

/// Sends a normal close and waits for the server's, by the shutdown
/// deadline. True if the handshake completed: the server then has read
/// every frame we wrote.
///
/// What arrives meanwhile is not taken: no event is dispatched (nor
/// dead-lettered by a full mailbox) and no position frame moves the
/// position. Those events were never handled, so the position does not
/// cover them and a process that continues from it gets them again.
async fn close_gracefully(shared: &Shared, sink: &mut Sink, stream: &mut Stream) -> bool {
    let deadline = match shared.lifecycle() {
        Lifecycle::Draining { deadline } => deadline,
        _ => Instant::now(),
    };
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "shutdown".into(),
    };
    let mut ignored = 0u64;
    let handshake = async {
        sink.send(Message::Close(Some(frame))).await.ok()?;
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Close(_)) => return Some(()),
                Ok(Message::Text(_) | Message::Binary(_)) => {
                    bump(&shared.counters.frames_in);
                    ignored += 1;
                }
                Ok(_) => {}
                // tungstenite reports the end of a completed handshake this way.
                Err(tungstenite::Error::ConnectionClosed) => return Some(()),
                Err(_) => return None,
            }
        }
        None
    };
    let clean = timeout_at(deadline, handshake)
        .await
        .ok()
        .flatten()
        .is_some();
    if ignored > 0 {
        tracing::debug!(
            frames = ignored,
            "frames that arrived during the close handshake were not taken"
        );
    }
    clean
}

async fn shutdown_deadline(shared: &Shared) -> End {
    if let Lifecycle::Draining { deadline } = shared.lifecycle.stopping().await {
        sleep_until(deadline).await;
    }
    End::DeadlineExpired
}

/// Declares the connection dead when nothing has arrived for
/// `interval + pong_timeout`. The writer pings after `interval` of silence,
/// so a live server always answers in time.
async fn keepalive_watch(shared: &Shared, conn: &SessionState) -> End {
    let Some(keepalive) = shared.settings.keepalive else {
        return std::future::pending().await;
    };
    loop {
        let deadline = conn.at(&conn.last_rx) + keepalive.dead_after();
        if conn.reading_paused.load(Relaxed) {
            // Waiting for a mailbox, not for the server: look again later.
            sleep_until(Instant::now() + keepalive.dead_after()).await;
            continue;
        }
        if Instant::now() >= deadline {
            bump(&shared.counters.keepalive_timeouts);
            return End::Lost(Reason::KeepaliveTimeout(keepalive.dead_after()));
        }
        sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::WebSocketConfig;
    use crate::transport::WebSocketTransport;

    /// What a panicked session's batch held is put back for the
    /// supervisor to settle, in order, and counted once however often it
    /// is rescued: one frame handed to the socket (sent once, at most once
    /// in doubt), two not yet.
    #[test]
    fn a_rescued_batch_goes_back_to_the_carry_and_is_counted_once() {
        let settings = WebSocketTransport::builder(WebSocketConfig::new("ws://127.0.0.1:9/x"))
            .into_settings()
            .unwrap();
        let shared = Shared::new(settings).unwrap();
        let conn = SessionState::new(Arc::new(AtomicU64::new(0)));
        let frames: Vec<Outgoing> = ["a", "b", "c"]
            .into_iter()
            .map(|f| Outgoing::new(f.into()))
            .collect();
        let mut batch = Batch {
            frames,
            fed: 1,
            first_sends: 1,
            first_bytes: 1,
        };
        rescue(&shared, &conn, &mut batch);
        rescue(&shared, &conn, &mut batch);
        let carried: Vec<String> = shared.carry().iter().map(|o| o.frame.to_string()).collect();
        assert_eq!(carried, ["b", "c"]);
        let counters = &shared.counters;
        assert_eq!(counters.frames_out.load(Relaxed), 1);
        assert_eq!(counters.lost_unflushed.load(Relaxed), 1);
        assert_eq!(counters.frames_unconfirmed_lost.load(Relaxed), 1);
    }
}
