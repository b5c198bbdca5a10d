//! The reader: routes incoming frames to subscriptions, answers pongs and
//! acknowledgements, and counts everything it cannot use.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use watchtower_core::{ControlFrame, DecodeErrorKind, EventHeader, WarnLimiter};

use super::session::{End, Reason, SessionState, Stream};
use crate::shared::Shared;
use crate::stats::{add, bump};

/// Frames read one after another without waiting for the socket, at most,
/// between two readings of the clock for the keepalive watch.
const TOUCH_EVERY: u32 = 32;

/// When the reader tells the keepalive watch that frames arrived.
///
/// Reading the clock for every frame cost nearly as much as routing the
/// frame (`clock_gettime` in a profile of the fan-out benchmark). It is
/// read before the reader waits (so the watch sees when the last frame of
/// a burst came) and every [`TOUCH_EVERY`] frames of a longer burst.
/// Nothing between two frames waits, so a frame is never more than that
/// many frames' handling older than the watch thinks.
#[derive(Default)]
struct Touches {
    /// Frames read since the clock was last read.
    untouched: u32,
}

impl Touches {
    fn frame(&mut self, conn: &SessionState) {
        self.untouched += 1;
        if self.untouched >= TOUCH_EVERY {
            self.before_waiting(conn);
        }
    }

    fn before_waiting(&mut self, conn: &SessionState) {
        if self.untouched > 0 {
            conn.touch();
            self.untouched = 0;
        }
    }
}

pub(super) async fn read_loop(shared: &Shared, conn: &SessionState, stream: &mut Stream) -> End {
    let mut warn = WarnLimiter::default();
    let blocks = shared.subs.blocks();
    let mut touches = Touches::default();
    loop {
        // Boxed, and only when a mailbox is full: inline, the wait's state
        // would size every connection task for its whole life.
        if blocks && shared.subs.first_full().is_some() {
            touches.before_waiting(conn);
            Box::pin(wait_for_room(shared, conn)).await;
        }
        let next = std::future::poll_fn(|cx| {
            let next = stream.poll_next_unpin(cx);
            if next.is_pending() {
                touches.before_waiting(conn);
            }
            next
        })
        .await;
        let Some(message) = next else {
            return End::Lost(Reason::Eof);
        };
        touches.frame(conn);
        match message {
            Ok(Message::Text(text)) => on_frame(shared, conn, text, &mut warn),
            Ok(Message::Binary(bytes)) => on_binary(shared, conn, bytes, &mut warn),
            Ok(Message::Ping(_)) => conn.wake_writer.notify_one(),
            Ok(Message::Pong(payload)) => {
                bump(&shared.counters.pongs_received);
                let (confirmed, filter_epoch) = conn.on_pong(&payload);
                if confirmed > 0 {
                    add(&shared.counters.frames_confirmed, confirmed);
                    // At most once with keepalive, `flush` waits for this.
                    shared.progress.notify_waiters();
                }
                if let Some(epoch) = filter_epoch {
                    shared.filter_confirmed(epoch);
                }
                conn.wake_writer.notify_one();
            }
            Ok(Message::Close(frame)) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                let described = match frame {
                    Some(f) => {
                        format!("code {}, reason {:?}", u16::from(f.code), f.reason.as_str())
                    }
                    None => "no close code".to_string(),
                };
                return End::Lost(Reason::ServerClosed { code, described });
            }
            Ok(Message::Frame(_)) => {}
            Err(tungstenite::Error::Capacity(e)) => {
                bump(&shared.counters.oversize);
                return End::Lost(Reason::Oversize(e.to_string()));
            }
            Err(tungstenite::Error::Utf8(_)) => {
                // RFC 6455 makes invalid UTF-8 in a text frame fatal (1007).
                shared
                    .counters
                    .malformed
                    .record(DecodeErrorKind::InvalidUtf8);
                return End::Lost(Reason::Read(tungstenite::Error::Utf8(String::new())));
            }
            Err(e) => return End::Lost(Reason::Read(e)),
        }
    }
}

/// `Block` mode: reads nothing while a subscription's mailbox is full, so
/// no event has to be dropped; TCP then pushes back to the server. The
/// silence is ours, so the keepalive watch is told to ignore it, acks are
/// not timed meanwhile (they may be waiting unread behind events), and
/// the transport says whose mailbox it waits for: `health_check` once the
/// pause lasts, and a `flush` by that very handler at once (it would wait
/// for a confirmation the reader cannot read until the handler returns).
async fn wait_for_room(shared: &Shared, conn: &SessionState) {
    let mut paused: Option<Paused<'_>> = None;
    while let Some((id, room, held, capacity)) = shared.subs.first_full() {
        let notified = room.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if held.held() < capacity {
            continue;
        }
        if paused.as_ref().is_none_or(|p| p.subscription != id) {
            // The pause for another mailbox ends before this one begins.
            drop(paused.take());
            paused = Some(Paused::new(shared, conn, id));
        }
        // Look again now and then: the subscription may have been removed.
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

/// A pause of the reader for subscription `subscription`'s mailbox; ends
/// when dropped (room, or the connection ended meanwhile).
struct Paused<'a> {
    shared: &'a Shared,
    conn: &'a SessionState,
    subscription: u64,
}

impl<'a> Paused<'a> {
    fn new(shared: &'a Shared, conn: &'a SessionState, subscription: u64) -> Paused<'a> {
        conn.pause_reading();
        shared.reading_paused_for(Some(subscription));
        Paused {
            shared,
            conn,
            subscription,
        }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.shared.reading_paused_for(None);
        self.conn.resume_reading();
    }
}

/// A binary frame holding JSON: events are UTF-8, so check that once and
/// treat it as text.
fn on_binary(shared: &Shared, conn: &SessionState, bytes: Bytes, warn: &mut WarnLimiter) {
    match Utf8Bytes::try_from(bytes) {
        Ok(text) => on_frame(shared, conn, text, warn),
        Err(_) => {
            bump(&shared.counters.frames_in);
            shared
                .counters
                .malformed
                .record(DecodeErrorKind::InvalidUtf8);
            warn_malformed(
                warn,
                &"a binary frame is not UTF-8, so it cannot hold JSON",
                0,
            );
        }
    }
}

/// Routes one data frame to the subscriptions that want it; anything else
/// is counted by reason and logged (rate-limited), never fatal.
///
/// Only the header is read here (each subscription decodes its own copy),
/// so the reader stays cheap however much the payload holds.
fn on_frame(shared: &Shared, conn: &SessionState, text: Utf8Bytes, warn: &mut WarnLimiter) {
    bump(&shared.counters.frames_in);
    add(&shared.counters.bytes_in, text.len() as u64);
    // Every frame but a control frame is an event frame read, with a read
    // index; once it is in every mailbox it goes to (or settled without
    // one), the handled position may count it.
    let index = shared.resume.next_index();
    if route(shared, conn, text, warn, index) {
        shared.resume.handed_off(index);
    }
}

/// [`on_frame`]'s routing; false for a control frame.
fn route(
    shared: &Shared,
    conn: &SessionState,
    text: Utf8Bytes,
    warn: &mut WarnLimiter,
    index: u64,
) -> bool {
    let at_least_once = shared.settings.acks.is_some();
    // A lone subscription reads the frame itself. Control frames (the hub
    // writes them `{"type":…` first) are handled here in any case, and at
    // least once every event id is checked here for duplicates.
    let control_shaped = text.starts_with(r#"{"type":"#);
    if !control_shaped {
        // Read: a reconnect asks only for what comes after it.
        shared.resume.read(&text, index);
    }
    let text = if control_shaped || at_least_once {
        text
    } else {
        match shared.subs.deliver_unread(shared, text, index) {
            Ok(()) => return true,
            Err(text) => text,
        }
    };
    let error = match EventHeader::peek(&text) {
        Ok(header) => {
            if control_shaped {
                shared.resume.read(&text, index);
            }
            bump(&shared.counters.events_received);
            if at_least_once && shared.is_duplicate(text.as_bytes()) {
                bump(&shared.counters.duplicates_dropped);
                return true;
            }
            // The header borrows the frame; dispatch shares a counted copy.
            if shared
                .subs
                .dispatch(shared, &header.event_type, text.clone(), index)
            {
                return true;
            }
            bump(&shared.counters.events_unmatched);
            // Nobody decodes it, so check it strictly here, to count it if bad.
            match EventHeader::parse(text.as_bytes()) {
                Ok(_) => return true,
                Err(error) => error,
            }
        }
        Err(error) => match ControlFrame::from_json(text.as_bytes()) {
            Some(control) => {
                on_control(shared, conn, control);
                return false;
            }
            None => {
                if control_shaped {
                    shared.resume.read(&text, index);
                }
                error
            }
        },
    };
    shared.counters.malformed.record(error.kind());
    warn_malformed(warn, &error, text.len());
    true
}

/// A control frame from the server: acknowledgements settle in-flight
/// events; others are counted.
fn on_control(shared: &Shared, conn: &SessionState, control: ControlFrame) {
    bump(&shared.counters.control_frames_in);
    if let ControlFrame::Position { seq } = control {
        shared
            .resume
            .mark(seq, |read| shared.subs.handled_upto(read));
        return;
    }
    if let ControlFrame::Ack { upto } = control
        && shared.settings.acks.is_some()
    {
        let (acked, left) = {
            let mut in_flight = conn.in_flight();
            (in_flight.ack(upto), in_flight.len())
        };
        shared.counters.in_flight.store(left as u64, Relaxed);
        if acked > 0 {
            add(&shared.counters.acked, acked);
            // Room in the window, and `flush` callers may be done.
            conn.wake_writer.notify_one();
            shared.progress.notify_waiters();
        }
    }
}

/// Logs a malformed frame, at most once a second (see [`WarnLimiter`]).
fn warn_malformed(warn: &mut WarnLimiter, error: &dyn fmt::Display, len: usize) {
    if let Some(suppressed) = warn.allow() {
        tracing::warn!(reason = %error, bytes = len, suppressed, "malformed frame dropped");
    }
}
