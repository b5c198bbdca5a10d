//! The reader: takes bursts of frames, relays events (dropping ack-mode
//! duplicates), applies control frames within the filter limits, and queues
//! acks.

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};
use watchtower_core::{DecodeError, EventHeader, WarnLimiter};

use crate::gates::pace::Pace;
use crate::relay::control::{self, Control, Parsed};
use crate::relay::dedup::{DedupWindow, Key};
use crate::relay::fanout::{Burst, MAX_BURST};
use crate::relay::filter::{FilterLimits, OverLimit};
use crate::relay::outbox::FrameSet;
use crate::relay::outbox::Outbox;
use crate::shared::Shared;
use crate::stats::{Counters, add, bump, high_water};

use super::liveness::Clock;
use super::{End, Stream};
use crate::relay::collect::{Frames, Types};

/// Bytes one read burst may take before it is fanned out and the task
/// yields: 1 MiB, four times a burst of 256 typical events, so only
/// bursts of large frames are cut short.
const BURST_BYTES: usize = 1 << 20;

/// Control frames one read burst may apply before the task yields. Each
/// is bounded by the filter limits, but parsing and applying is the
/// costliest thing a client can ask for.
const BURST_CONTROL_FRAMES: usize = 32;

/// Reads bursts: after one awaited frame, takes whatever else is already
/// buffered without waiting, then fans the events out as one shared burst.
/// For an ack-mode client, duplicates are dropped before the fan-out and
/// the ack is queued after it.
pub(super) async fn read_loop<S>(
    shared: &Shared,
    outbox: &Arc<Outbox>,
    clock: &Clock,
    stream: &mut Stream<S>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = Reader {
        clock,
        counters: &shared.counters,
        outbox,
        dedup: &shared.dedup,
        limits: FilterLimits::from_config(&shared.config),
        data_read: false,
        burst_bytes: 0,
        burst_controls: 0,
        frames: Frames::new(shared.config.history_size > 0),
        types: Types::default(),
        keyed: Vec::new(),
        acks: false,
        data_frames: 0,
        acked: 0,
        warn: WarnLimiter::default(),
        control_pace: Pace::per_second(shared.config.control_bytes_per_second),
        control_wait: None,
    };
    let history = shared.config.history_size > 0;
    loop {
        let message = stream.next().await;
        reader.burst_bytes = 0;
        reader.burst_controls = 0;
        let mut end = reader.on_message(message);
        let mut reads = 1;
        while end.is_none() && reads < MAX_BURST && !reader.burst_is_costly() {
            // Polls once; `None` means nothing more is buffered right now.
            let Some(message) = stream.next().now_or_never() else {
                break;
            };
            reads += 1;
            end = reader.on_message(message);
        }
        if std::mem::take(&mut reader.data_read) {
            // Once per burst, not per frame: reading the clock was a
            // fiftieth of the CPU per relayed event, and a burst is read
            // without waiting, so its end is when its frames arrived.
            clock.alive();
        }
        if reader.keyed.is_empty() {
            reader.relay(shared, history);
        } else {
            // Checked against the window and relayed in one step: a
            // resend on another connection can neither be taken for a
            // duplicate before its original is relayed, nor overtake it.
            let keyed = std::mem::take(&mut reader.keyed);
            shared
                .dedup
                .check_then(outbox.origin(), &keyed, |duplicates| {
                    reader.drop_duplicates(&duplicates);
                    reader.relay(shared, history);
                });
            reader.keyed = keyed;
            reader.keyed.clear();
        }
        if let Some(end) = end {
            return end;
        }
        if let Some(wait) = reader.control_wait.take() {
            // Over its control budget: nothing more is read from this
            // client until the budget is back, so its frames wait in its
            // own socket buffer, not on the hub's CPU.
            bump(&shared.counters.control_paced);
            tokio::time::sleep(wait).await;
        } else if reader.burst_is_costly() || reader.burst_controls > 0 {
            // Let the other clients' tasks on this worker run: a client
            // sending large or control frames flat out must not hold it.
            tokio::task::yield_now().await;
        }
    }
}

/// The reader's per-message work and the burst being collected.
struct Reader<'a> {
    clock: &'a Clock,
    counters: &'a Counters,
    outbox: &'a Arc<Outbox>,
    dedup: &'a DedupWindow,
    limits: FilterLimits,
    /// A data frame was read in the current burst: the client is alive.
    data_read: bool,
    /// Bytes and control frames read in the current burst.
    burst_bytes: usize,
    burst_controls: usize,
    frames: Frames,
    types: Types,
    /// `(index in frames, frame key)` of the burst's events that arrived in
    /// ack mode: only those are checked against the window and recorded.
    keyed: Vec<(usize, Key)>,
    /// The client said `{"type":"hello","acks":true}` (and not since
    /// `false`).
    acks: bool,
    /// Event and malformed frames read on this connection, duplicates
    /// included: what an ack's `upto` counts. Control frames are not
    /// counted; the client does not count them either.
    data_frames: u64,
    /// The last `upto` handed to the writer.
    acked: u64,
    warn: WarnLimiter,
    /// Bytes of control frames parsed, against `control_bytes_per_second`.
    control_pace: Pace,
    /// Set when the budget is spent: the burst ends and the reader waits.
    control_wait: Option<std::time::Duration>,
}

impl Reader<'_> {
    /// Handles one read; `Some` when the connection must end.
    fn on_message(&mut self, message: Option<Result<Message, tungstenite::Error>>) -> Option<End> {
        use tungstenite::Error;
        let message = match message {
            None => return Some(End::Gone),
            Some(Ok(message)) => {
                self.clock.message_read();
                message
            }
            Some(Err(error)) => {
                return Some(match error {
                    Error::Capacity(_) => End::Oversize,
                    Error::Utf8(_) => End::InvalidUtf8,
                    Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                    | Error::ConnectionClosed
                    | Error::AlreadyClosed => End::Gone,
                    Error::Protocol(e) => End::Protocol(e),
                    e => End::ReadFailed(e),
                });
            }
        };
        match message {
            Message::Text(text) => {
                self.data_read = true;
                self.on_text(text)
            }
            Message::Binary(bytes) => {
                self.data_read = true;
                self.on_binary(bytes)
            }
            Message::Close(_) => Some(End::PeerClosed),
            Message::Pong(payload) => {
                self.clock.pong(&payload);
                None
            }
            // tungstenite answers pings itself on the next read. A ping
            // proves nothing: a client that never reads can send them.
            Message::Ping(_) | Message::Frame(_) => None,
        }
    }

    /// True once the current burst has read enough that the task should
    /// fan it out and yield.
    fn burst_is_costly(&self) -> bool {
        self.burst_bytes >= BURST_BYTES
            || self.burst_controls >= BURST_CONTROL_FRAMES
            || self.control_wait.is_some()
    }

    /// A frame whose first key is not `"id"` or `"event_type"` (as in
    /// every event the transport writes) is parsed as a control frame
    /// first, so a control frame is parsed exactly once; `Some` when it
    /// was one (applied or refused), `None` to go on as with an event.
    fn control_first(&mut self, bytes: &[u8]) -> Option<Option<End>> {
        if !control::may_be_control(bytes) {
            return None;
        }
        let parsed = control::parse(bytes, &self.limits);
        // Parsing is the cost, whatever the frame turns out to be.
        if let Some(wait) = self.control_pace.charge(bytes.len()) {
            self.control_wait = Some(wait);
        }
        match parsed {
            Parsed::Control(control) => Some(self.on_control(control)),
            // An event may carry a `type` key, and even a long
            // `event_types` list: let the event parse decide.
            Parsed::OverLimit(over) if EventHeader::parse(bytes).is_err() => {
                Some(self.over_limit(over))
            }
            Parsed::OverLimit(_) | Parsed::NotControl => None,
        }
    }

    fn on_text(&mut self, text: Utf8Bytes) -> Option<End> {
        self.received(text.len());
        if let Some(done) = self.control_first(text.as_bytes()) {
            return done;
        }
        self.on_event(text);
        None
    }

    /// Binary frames holding a valid JSON event are relayed as text.
    fn on_binary(&mut self, bytes: Bytes) -> Option<End> {
        self.received(bytes.len());
        if let Some(done) = self.control_first(&bytes) {
            return done;
        }
        let len = bytes.len();
        match Utf8Bytes::try_from(bytes) {
            Ok(text) => self.on_event(text),
            Err(e) => self.malformed(
                &DecodeError::InvalidUtf8 {
                    valid_up_to: e.valid_up_to(),
                },
                len,
            ),
        }
        None
    }

    /// Adds a frame to the burst if it is an event, with its key in ack
    /// mode; counts it as malformed otherwise.
    fn on_event(&mut self, frame: Utf8Bytes) {
        let key = match EventHeader::parse_text(frame.as_str()) {
            Ok(header) => {
                self.types.push(&header.event_type);
                self.acks.then(|| self.dedup.key(frame.as_bytes()))
            }
            Err(error) => return self.malformed(&error, frame.len()),
        };
        self.data_frames += 1;
        if let Some(key) = key {
            self.keyed.push((self.frames.len(), key));
        }
        self.frames.push(frame);
    }

    fn received(&mut self, len: usize) {
        self.burst_bytes += len;
        bump(&self.counters.frames_in);
        add(&self.counters.bytes_in, len as u64);
    }

    /// Takes the duplicates out of the burst.
    fn drop_duplicates(&mut self, duplicates: &FrameSet) {
        if duplicates.is_empty() {
            return;
        }
        add(&self.counters.duplicates_dropped, duplicates.len() as u64);
        self.frames.remove(duplicates);
        self.types.remove(duplicates);
    }

    /// Relays the burst read (if any) and, in ack mode, queues the ack for
    /// every frame counted so far: the fan-out sends it once they are
    /// relayed (or, with a backplane, stored), which is what an ack
    /// promises.
    fn relay(&mut self, shared: &Shared, history: bool) {
        let ack = (self.acks && self.data_frames > self.acked).then(|| {
            self.acked = self.data_frames;
            self.acked
        });
        let burst = (!self.frames.is_empty()).then(|| {
            let burst = Burst::new(self.outbox.origin(), self.frames.take(), self.types.take());
            // The keys positions name events by, made here, outside the
            // history's lock.
            Arc::new(if history { burst.keyed() } else { burst })
        });
        if burst.is_none() && ack.is_none() {
            return;
        }
        let counters = &shared.counters;
        let events = burst.as_ref().map_or(0, |b| b.frames.len() as u64);
        let delivery = shared.fanout.relay(burst, self.outbox, ack);
        // Counted once relayed (and in the history): a test that waits
        // for `events_in` may then rely on both.
        add(&counters.events_in, events);
        add(&counters.frames_queued, delivery.queued);
        add(&counters.dropped_frames, delivery.dropped);
        high_water(&counters.client_bytes_high_water, delivery.max_held as u64);
    }

    /// A control frame updates this client's filter or, for `hello`, its
    /// ack mode. One that would take the filter over a limit ends the
    /// connection with 1008, so the client learns of it.
    fn on_control(&mut self, control: Control) -> Option<End> {
        self.burst_controls += 1;
        match control {
            Control::Hello { acks } => {
                self.acks = acks;
                self.outbox.set_acks(acks);
                tracing::debug!(acks, "hello");
            }
            Control::Filter(change) => {
                if let Err(over) = self.outbox.apply(&change) {
                    return self.over_limit(over);
                }
                tracing::debug!(?change, "filter updated");
            }
            Control::Ack => {}
        }
        bump(&self.counters.control_frames);
        None
    }

    fn over_limit(&self, over: OverLimit) -> Option<End> {
        // Counted in `control_rejected` by `count`, as the connection ends.
        tracing::warn!(
            limit = over.field(),
            "control frame refused: over the filter limits; closing with 1008"
        );
        Some(End::FilterOverLimit(over))
    }

    fn malformed(&mut self, error: &DecodeError, len: usize) {
        // The client counted it as an event it sent.
        self.data_frames += 1;
        self.counters.malformed.record(error.kind());
        // The reason only: the error text can quote the frame, and payloads
        // never go to logs at warn.
        if let Some(suppressed) = self.warn.allow() {
            tracing::warn!(reason = ?error.kind(), bytes = len, suppressed, "malformed frame ignored");
        }
        tracing::debug!(%error, bytes = len, "malformed frame");
    }
}
