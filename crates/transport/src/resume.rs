//! Resume: the subscriber's position in the hub's history, presented on
//! every (re)connect, and what the hub answered.
//!
//! The position moves only as the reader reads: the hub's position frames
//! move its `seq`, and the last event frame read since the last one is
//! remembered (its key goes with the position), so a reconnect asks for
//! exactly what was not read yet. Events read are already in the
//! subscriptions' mailboxes, which survive reconnects.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue};
use watchtower_core::{
    NotRecoveredReason, POSITION_HEADER, Position, RECOVERED_HEADER, RESUME_NEW, frame_key,
    parse_recovered_header,
};

use crate::stats::{Counters, add, bump};

/// What the server answered to the position presented on a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeOutcome {
    /// Every event after the position follows: `replayed` from the
    /// history, then live ones.
    Recovered {
        /// Events the hub replayed.
        replayed: u64,
    },
    /// Nothing was replayed: events published since the position may be
    /// missing. The position moved to the hub's current one. Reload what
    /// you keep from your source of truth.
    NotRecovered {
        /// Why: another epoch (the hub restarted), expired (the history no
        /// longer holds them) or too many.
        reason: NotRecoveredReason,
    },
    /// There was no position yet (a first connect without
    /// `resume_from`): the transport starts at the hub's current one.
    Started,
    /// The server keeps no history (a plain server, or a hub with history
    /// off): a reconnect may miss events.
    NotSupported,
}

/// The position and the last answer. Locked by the reader per event read
/// (uncontended: only the reader and `position()` callers take it).
#[derive(Debug)]
pub(crate) struct Resume {
    enabled: bool,
    state: Mutex<State>,
    /// Set by the first `subscribe`: a replay then has somewhere to go.
    subscribed: AtomicBool,
    first_subscription: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The epoch and seq of the last position frame (or answer).
    position: Option<Position>,
    /// The last event frame read since then.
    last: LastFrame,
    outcome: Option<ResumeOutcome>,
}

/// Frames up to this size are copied into [`LastFrame`]'s buffer; larger
/// ones are shared.
const COPY_UP_TO: usize = 1024;

/// The last event frame read past the position, kept for its key. A small
/// frame is copied, into a buffer reused until the next position frame:
/// sharing it would touch the reference count that every frame cut from
/// the same read buffer shares, which the subscriptions' tasks change on
/// other cores as they drop their frames — twice per event (the share,
/// and letting go of the one before; about 0.04 of the 1.1 µs of CPU per
/// delivery in the fan-out benchmark). Copying a few hundred bytes is
/// cheaper.
#[derive(Debug, Default)]
enum LastFrame {
    #[default]
    None,
    /// A small frame's bytes, in a buffer reused for the next small one.
    Copied(Vec<u8>),
    /// A large frame, shared rather than copied.
    Shared(Utf8Bytes),
}

impl LastFrame {
    fn set(&mut self, frame: &Utf8Bytes) {
        if frame.len() > COPY_UP_TO {
            *self = LastFrame::Shared(frame.clone());
        } else if let LastFrame::Copied(buffer) = self {
            buffer.clear();
            buffer.extend_from_slice(frame.as_bytes());
        } else {
            *self = LastFrame::Copied(frame.as_bytes().to_vec());
        }
    }

    /// After a position frame (every 10 ms or so while events flow): the
    /// buffer goes too, so an idle connection keeps none.
    fn clear(&mut self) {
        *self = LastFrame::None;
    }

    fn bytes(&self) -> Option<&[u8]> {
        match self {
            LastFrame::None => None,
            LastFrame::Copied(buffer) => Some(buffer),
            LastFrame::Shared(frame) => Some(frame.as_bytes()),
        }
    }
}

impl Resume {
    /// `from`: a position given at build (it may carry the key of its
    /// last event, kept until the first position frame).
    pub(crate) fn new(enabled: bool, from: Option<Position>) -> Resume {
        Resume {
            enabled,
            state: Mutex::new(State {
                position: from,
                last: LastFrame::default(),
                outcome: None,
            }),
            subscribed: AtomicBool::new(false),
            first_subscription: Notify::new(),
        }
    }

    /// A subscription was added.
    pub(crate) fn subscribed(&self) {
        if !self.subscribed.swap(true, Relaxed) {
            self.first_subscription.notify_waiters();
        }
    }

    /// Resolves once there is a subscription: a connect that presents a
    /// position given at build waits for it, so that the replay is not
    /// read before anything can take it.
    pub(crate) async fn wait_for_subscription(&self) {
        loop {
            let notified = self.first_subscription.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.subscribed.load(Relaxed) {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The position now: the last position frame read, and the key of the
    /// last event read past it.
    pub(crate) fn position(&self) -> Option<Position> {
        let state = self.lock();
        let position = state.position?;
        Some(match state.last.bytes() {
            Some(frame) => position.after(Some(frame_key(frame))),
            None => position,
        })
    }

    pub(crate) fn outcome(&self) -> Option<ResumeOutcome> {
        self.lock().outcome
    }

    /// The request header to send: the position, or `new`.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        if !self.enabled {
            return None;
        }
        let text = self
            .position()
            .map_or_else(|| RESUME_NEW.to_string(), |p| p.to_string());
        HeaderValue::from_str(&text).ok()
    }

    /// An event frame was read.
    pub(crate) fn read(&self, frame: &Utf8Bytes) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        if state.position.is_some() {
            state.last.set(frame);
        }
    }

    /// A position frame: everything up to `seq` was read.
    pub(crate) fn mark(&self, seq: u64) {
        let mut state = self.lock();
        if let Some(p) = state.position {
            state.position = Some(Position::new(p.epoch(), seq));
            state.last.clear();
        }
    }

    /// Reads the hub's answer from the upgrade response, moves the
    /// position accordingly, counts and logs it.
    pub(crate) fn answered(&self, headers: &HeaderMap, counters: &Counters, url: &str) {
        if !self.enabled {
            return;
        }
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = text(POSITION_HEADER).and_then(|v| v.parse::<Position>().ok());
        let answer = text(RECOVERED_HEADER).and_then(parse_recovered_header);
        let mut state = self.lock();
        let outcome = match (now, answer) {
            (None, _) => ResumeOutcome::NotSupported,
            (Some(now), None) => {
                state.position = Some(now);
                state.last.clear();
                ResumeOutcome::Started
            }
            (Some(_), Some(Ok(replayed))) => ResumeOutcome::Recovered { replayed },
            (Some(now), Some(Err(reason))) => {
                state.position = Some(now);
                state.last.clear();
                ResumeOutcome::NotRecovered { reason }
            }
        };
        let first_unsupported = outcome == ResumeOutcome::NotSupported && state.outcome.is_none();
        state.outcome = Some(outcome);
        drop(state);
        match outcome {
            ResumeOutcome::Recovered { replayed } => {
                bump(&counters.resumes_recovered);
                add(&counters.events_replayed, replayed);
                tracing::debug!(url, replayed, "resumed: every missed event follows");
            }
            ResumeOutcome::NotRecovered { reason } => {
                bump(&counters.resumes_not_recovered);
                tracing::warn!(url, %reason,
                    "resume not recovered: events published while disconnected may be missing; \
                     reload state from its source of truth");
            }
            ResumeOutcome::NotSupported => {
                bump(&counters.resumes_not_supported);
                if first_unsupported {
                    tracing::debug!(
                        url,
                        "the server keeps no history: reconnects may miss events"
                    );
                }
            }
            ResumeOutcome::Started => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(position: &str, recovered: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(POSITION_HEADER, HeaderValue::from_str(position).unwrap());
        if let Some(r) = recovered {
            h.insert(RECOVERED_HEADER, HeaderValue::from_str(r).unwrap());
        }
        h
    }

    #[test]
    fn the_position_moves_only_with_what_was_read() {
        let counters = Counters::default();
        let resume = Resume::new(true, None);
        assert_eq!(resume.header().unwrap(), RESUME_NEW);
        resume.answered(&HeaderMap::new(), &counters, "u");
        assert_eq!(resume.outcome(), Some(ResumeOutcome::NotSupported));
        assert_eq!(resume.position(), None);

        resume.answered(&headers("00000000000000aa:5", None), &counters, "u");
        assert_eq!(resume.outcome(), Some(ResumeOutcome::Started));
        assert_eq!(resume.position(), Some(Position::new(0xaa, 5)));
        let frame = Utf8Bytes::from_static(r#"{"id":"x","event_type":"t"}"#);
        resume.read(&frame);
        let key = frame_key(frame.as_bytes());
        assert_eq!(
            resume.position(),
            Some(Position::new(0xaa, 5).after(Some(key)))
        );
        assert_eq!(
            resume.header().unwrap().to_str().unwrap(),
            Position::new(0xaa, 5).after(Some(key)).to_string()
        );
        resume.mark(9);
        assert_eq!(resume.position(), Some(Position::new(0xaa, 9)));

        resume.answered(
            &headers("00000000000000aa:12", Some("true; replayed=3")),
            &counters,
            "u",
        );
        assert_eq!(
            resume.outcome(),
            Some(ResumeOutcome::Recovered { replayed: 3 })
        );
        // Recovered: the position moves with the replay's position frames.
        assert_eq!(resume.position(), Some(Position::new(0xaa, 9)));

        resume.answered(
            &headers("00000000000000bb:2", Some("false; reason=epoch")),
            &counters,
            "u",
        );
        assert_eq!(resume.position(), Some(Position::new(0xbb, 2)));
        let stats = counters.snapshot();
        assert_eq!(
            (
                stats.resumes_recovered,
                stats.resumes_not_recovered,
                stats.events_replayed,
                stats.resumes_not_supported
            ),
            (1, 1, 3, 1)
        );
    }

    #[test]
    fn a_small_last_frame_is_copied_and_a_large_one_shared() {
        let resume = Resume::new(true, Some(Position::new(7, 1)));
        let small_text = r#"{"id":"a","event_type":"t"}"#;
        let large_text = format!(
            r#"{{"id":"b","event_type":"t","payload":"{}"}}"#,
            "x".repeat(2000)
        );
        // A frame cut from a read buffer, as the reader gets it.
        let mut read = bytes::BytesMut::from(format!("{small_text}{{\"id\"").as_bytes());
        let small = Utf8Bytes::try_from(read.split_to(small_text.len()).freeze()).unwrap();
        drop(read);
        let large = Utf8Bytes::from(large_text);

        resume.read(&small);
        // Nothing of the read buffer is held: its count is left to the
        // reader and the subscriptions.
        let small = bytes::Bytes::from(small);
        assert!(small.is_unique());
        let key = |b: &[u8]| Some(Position::new(7, 1).after(Some(frame_key(b))));
        assert_eq!(resume.position(), key(&small));

        resume.read(&large);
        assert_eq!(resume.position(), key(large.as_bytes()));
        // A large frame is shared, not copied.
        let large = bytes::Bytes::from(large);
        assert!(!large.is_unique());

        // Read after a large one, a small one is copied again.
        let again = Utf8Bytes::try_from(small.clone()).unwrap();
        resume.read(&again);
        assert_eq!(resume.position(), key(&small));

        resume.mark(4);
        assert_eq!(resume.position(), Some(Position::new(7, 4)));
    }

    #[test]
    fn off_sends_nothing() {
        let resume = Resume::new(false, Some(Position::new(1, 1)));
        assert!(resume.header().is_none());
    }
}
