//! Resume: the subscriber's position in the hub's history, presented on
//! every (re)connect, and what the hub answered.
//!
//! There are two positions. The *read* position moves only as the reader
//! reads: the hub's position frames move its `seq`, and the last event
//! frame read since the last one is remembered (its key goes with the
//! position), so a reconnect asks for exactly what was not read yet.
//! Events read are already in the subscriptions' mailboxes, which survive
//! reconnects.
//!
//! The *handled* position — what [`position`](crate::WebSocketTransport::position)
//! and checkpoints hand out — covers only what every subscription has
//! handled (or dead-lettered). Every event frame read gets a read index;
//! each subscription says up to which index it has finished (see
//! [`Progress`](crate::subscription::Progress)), and the position frames
//! are remembered with the index they came at ([`Mark`]), so the handled
//! position is the last mark at or before the lowest finished index, plus
//! the key of the event at that index. Keys are computed only when a
//! position is asked for, never per event.

use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
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

/// The positions and the last answer. Locked by the reader per event read
/// (uncontended: only the reader and `position()` callers take it).
#[derive(Debug)]
pub(crate) struct Resume {
    enabled: bool,
    /// A position was given at build (`resume_from` or a checkpoint): the
    /// first connect waits for the first subscription.
    deferred: bool,
    state: Mutex<State>,
    /// The read index of the last event frame read *and handed to the
    /// subscriptions* (0: none yet). Only the reader stores it, after the
    /// hand-off, so every event up to it is counted in the mailboxes it
    /// went to.
    read: AtomicU64,
    /// Set by the first `subscribe`: a replay then has somewhere to go.
    subscribed: AtomicBool,
    first_subscription: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The epoch and seq of the last position frame (or answer): the
    /// newest mark.
    position: Option<Position>,
    /// The read index `position` was set at.
    position_at: u64,
    /// The last event frame read since then.
    last: LastFrame,
    /// The read index of the frame in `last`.
    last_index: u64,
    outcome: Option<ResumeOutcome>,
    /// Where the read position stood before `position`, as events were
    /// read: for the handled position, which trails it. Oldest first;
    /// pruned as the handled position passes them, so a connection whose
    /// handlers have caught up keeps none (and no room for them).
    marks: Vec<Mark>,
}

/// The read position when the reader had read `at` event frames (and a
/// position frame or an answer set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    at: u64,
    position: Position,
}

/// Marks kept at most while the handled position stands still (a stuck
/// handler): older ones are thinned out. A thinned mark only makes a
/// position without a key older (more is replayed); with the key of the
/// event it stops at, a position is exact from any earlier mark.
const MAX_MARKS: usize = 64;

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

impl State {
    /// The read position moved to `position` after `at` event frames.
    /// `handled`: up to which read index the handled position is, if
    /// known; the mark before is kept only if it may still need it.
    fn push_mark(&mut self, at: u64, position: Position, handled: Option<u64>) {
        if let Some(previous) = self.position
            && self.position_at < at
            && handled.is_none_or(|upto| upto < at)
        {
            self.marks.push(Mark {
                at: self.position_at,
                position: previous,
            });
        }
        self.position = Some(position);
        self.position_at = at;
    }

    /// The newest mark at or before read index `upto`.
    fn mark_at(&self, upto: u64) -> Option<Mark> {
        match self.position {
            Some(position) if self.position_at <= upto => Some(Mark {
                at: self.position_at,
                position,
            }),
            _ => self.marks.iter().rev().find(|m| m.at <= upto).copied(),
        }
    }

    /// The position that covers the first `upto` event frames read and
    /// nothing after them. `key`: the key of frame `upto`, if known; without
    /// it the position is the last mark at or before `upto` (which covers
    /// less, never more).
    fn position_at(&self, upto: u64, key: Option<u64>) -> Option<Position> {
        let mark = self.mark_at(upto)?;
        Some(match key {
            Some(key) if mark.at < upto => mark.position.after(Some(key)),
            _ => mark.position,
        })
    }

    /// Forgets the marks the handled position (at `upto`) has passed,
    /// keeping the last one at or before it; thins out older ones if too
    /// many are left.
    fn prune(&mut self, upto: u64) {
        if self.position_at <= upto {
            // Caught up: the newest mark is all the handled position needs.
            self.marks = Vec::new();
            return;
        }
        let keep_from = self.marks.iter().rposition(|m| m.at <= upto).unwrap_or(0);
        self.marks.drain(..keep_from);
        if self.marks.len() > MAX_MARKS {
            // Drop every second mark but the first and the newest
            // quarter, never one that starts a new epoch: a mark of another
            // history would make an older position of the wrong epoch.
            let keep_newest = MAX_MARKS / 4;
            let end = self.marks.len() - keep_newest;
            let mut previous_epoch = None;
            let mut index = 0;
            self.marks.retain(|mark| {
                let epoch = mark.position.epoch();
                let boundary = previous_epoch != Some(epoch);
                previous_epoch = Some(epoch);
                let keep = index >= end || boundary || index % 2 == 0;
                index += 1;
                keep
            });
        }
    }
}

impl Resume {
    /// `from`: a position given at build (it may carry the key of its
    /// last event, kept until the first position frame).
    pub(crate) fn new(enabled: bool, from: Option<Position>) -> Resume {
        let state = State {
            position: from,
            ..State::default()
        };
        Resume {
            enabled,
            deferred: from.is_some(),
            state: Mutex::new(state),
            read: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            first_subscription: Notify::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// A subscription was added.
    pub(crate) fn subscribed(&self) {
        if !self.subscribed.swap(true, Relaxed) {
            self.first_subscription.notify_waiters();
        }
    }

    /// Whether the first connect waits for the first subscription (a
    /// position given at build) and no subscription has come yet.
    pub(crate) fn waiting_for_subscription(&self) -> bool {
        self.deferred && !self.subscribed.load(Relaxed)
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

    /// The read position now: the last position frame read, and the key of
    /// the last event read past it. What a reconnect presents.
    pub(crate) fn read_position(&self) -> Option<Position> {
        let state = self.lock();
        let position = state.position?;
        Some(match state.last.bytes() {
            Some(frame) => position.after(Some(frame_key(frame))),
            None => position,
        })
    }

    /// The read index of the last event frame handed to the subscriptions.
    pub(crate) fn read_index(&self) -> u64 {
        self.read.load(Acquire)
    }

    /// The handled position: `handled(read)` says up to which read index
    /// (at most `read`) every subscription has finished, and the key of
    /// that event frame if a subscription still holds it. Prunes the marks
    /// it has passed.
    pub(crate) fn handled_position(
        &self,
        handled: impl FnOnce(u64) -> (u64, Option<u64>),
    ) -> Option<Position> {
        if !self.enabled {
            return None;
        }
        let mut state = self.lock();
        // Loaded under the lock: the reader cannot copy a newer frame into
        // `last` meanwhile, so `last_index == read` means `last` is frame
        // `read`.
        let read = self.read.load(Acquire);
        let (upto, key) = handled(read);
        let key = key.or_else(|| {
            (upto == read && state.last_index == read)
                .then(|| state.last.bytes().map(frame_key))
                .flatten()
        });
        let position = state.position_at(upto, key);
        state.prune(upto);
        position
    }

    pub(crate) fn outcome(&self) -> Option<ResumeOutcome> {
        self.lock().outcome
    }

    /// The request header to send: the read position, or `new`.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        if !self.enabled {
            return None;
        }
        let text = self
            .read_position()
            .map_or_else(|| RESUME_NEW.to_string(), |p| p.to_string());
        HeaderValue::from_str(&text).ok()
    }

    /// The read index the next event frame gets.
    pub(crate) fn next_index(&self) -> u64 {
        // Only the reader stores `read`.
        self.read.load(Relaxed) + 1
    }

    /// Event frame `index` was read (it is about to be handed to the
    /// subscriptions).
    pub(crate) fn read(&self, frame: &Utf8Bytes, index: u64) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        if state.position.is_some() {
            state.last.set(frame);
            state.last_index = index;
        }
    }

    /// Event frame `index` is in every mailbox it goes to (or settled
    /// without one): the handled position may count it from now on.
    pub(crate) fn handed_off(&self, index: u64) {
        self.read.store(index, Release);
    }

    /// A position frame: everything up to `seq` was read. `handled` says
    /// up to which read index every subscription has finished (see
    /// [`handled_position`](Self::handled_position)), to forget the marks
    /// behind it.
    pub(crate) fn mark(&self, seq: u64, handled: impl FnOnce(u64) -> (u64, Option<u64>)) {
        let mut state = self.lock();
        if let Some(p) = state.position {
            let read = self.read.load(Relaxed);
            let (upto, _) = handled(read);
            state.push_mark(read, Position::new(p.epoch(), seq), Some(upto));
            state.last.clear();
            if !state.marks.is_empty() {
                state.prune(upto);
            }
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
        let read = self.read.load(Relaxed);
        let outcome = match (now, answer) {
            (None, _) => ResumeOutcome::NotSupported,
            (Some(now), None) => {
                state.push_mark(read, now, None);
                state.last.clear();
                ResumeOutcome::Started
            }
            (Some(_), Some(Ok(replayed))) => ResumeOutcome::Recovered { replayed },
            (Some(now), Some(Err(reason))) => {
                state.push_mark(read, now, None);
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
        assert_eq!(resume.read_position(), None);

        resume.answered(&headers("00000000000000aa:5", None), &counters, "u");
        assert_eq!(resume.outcome(), Some(ResumeOutcome::Started));
        assert_eq!(resume.read_position(), Some(Position::new(0xaa, 5)));
        let frame = Utf8Bytes::from_static(r#"{"id":"x","event_type":"t"}"#);
        resume.read(&frame, 1);
        let key = frame_key(frame.as_bytes());
        assert_eq!(
            resume.read_position(),
            Some(Position::new(0xaa, 5).after(Some(key)))
        );
        assert_eq!(
            resume.header().unwrap().to_str().unwrap(),
            Position::new(0xaa, 5).after(Some(key)).to_string()
        );
        resume.mark(9, |read| (read, None));
        assert_eq!(resume.read_position(), Some(Position::new(0xaa, 9)));

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
        assert_eq!(resume.read_position(), Some(Position::new(0xaa, 9)));

        resume.answered(
            &headers("00000000000000bb:2", Some("false; reason=epoch")),
            &counters,
            "u",
        );
        assert_eq!(resume.read_position(), Some(Position::new(0xbb, 2)));
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

        resume.read(&small, 1);
        // Nothing of the read buffer is held: its count is left to the
        // reader and the subscriptions.
        let small = bytes::Bytes::from(small);
        assert!(small.is_unique());
        let key = |b: &[u8]| Some(Position::new(7, 1).after(Some(frame_key(b))));
        assert_eq!(resume.read_position(), key(&small));

        resume.read(&large, 2);
        assert_eq!(resume.read_position(), key(large.as_bytes()));
        // A large frame is shared, not copied.
        let large = bytes::Bytes::from(large);
        assert!(!large.is_unique());

        // Read after a large one, a small one is copied again.
        let again = Utf8Bytes::try_from(small.clone()).unwrap();
        resume.read(&again, 3);
        assert_eq!(resume.read_position(), key(&small));

        resume.mark(4, |read| (read, None));
        assert_eq!(resume.read_position(), Some(Position::new(7, 4)));
    }

    #[test]
    fn off_sends_nothing() {
        let resume = Resume::new(false, Some(Position::new(1, 1)));
        assert!(resume.header().is_none());
    }

    /// Reads event frame `index` and hands it off, as the reader does.
    fn read(resume: &Resume, index: u64) -> Utf8Bytes {
        let frame = Utf8Bytes::from(format!(r#"{{"id":"e{index}","event_type":"t"}}"#));
        assert_eq!(resume.next_index(), index);
        resume.read(&frame, index);
        resume.handed_off(index);
        frame
    }

    fn key(frame: &Utf8Bytes) -> Option<u64> {
        Some(frame_key(frame.as_bytes()))
    }

    /// The handled position trails the read one: it stops at the lowest
    /// index every subscription has finished, with the key of that frame
    /// when one is known, and at the mark before it otherwise.
    #[test]
    fn the_handled_position_stops_at_what_was_handled() {
        let counters = Counters::default();
        let resume = Resume::new(true, None);
        resume.answered(&headers("00000000000000aa:5", None), &counters, "u");
        let at = |seq| Position::new(0xaa, seq);
        let f1 = read(&resume, 1);
        let f2 = read(&resume, 2);
        // Everything handled: the read position.
        assert_eq!(
            resume.handled_position(|read| (read, None)),
            Some(at(5).after(key(&f2)))
        );
        assert_eq!(
            resume.handled_position(|read| (read, None)),
            resume.read_position()
        );
        // Only the first handled, its frame known: exactly past it.
        assert_eq!(
            resume.handled_position(|_| (1, key(&f1))),
            Some(at(5).after(key(&f1)))
        );
        // Its frame not known: the mark before it, which covers less.
        assert_eq!(resume.handled_position(|_| (1, None)), Some(at(5)));
        // Nothing handled: the answer's position.
        assert_eq!(resume.handled_position(|_| (0, None)), Some(at(5)));

        // A position frame after frame 2, then frame 3.
        resume.mark(9, |_| (0, None));
        let f3 = read(&resume, 3);
        // (The handled position only moves on: asking for less is for
        // this test, before it passes a mark.)
        assert_eq!(
            resume.handled_position(|_| (1, key(&f1))),
            Some(at(5).after(key(&f1)))
        );
        assert_eq!(resume.handled_position(|_| (2, None)), Some(at(9)));
        assert_eq!(
            resume.handled_position(|read| (read, None)),
            Some(at(9).after(key(&f3)))
        );
        // Past mark 9 now, the newest: the older marks are forgotten.
        assert_eq!(resume.handled_position(|_| (2, None)), Some(at(9)));
        assert!(resume.lock().marks.is_empty());

        // A hub restart: the new epoch's position applies only from where
        // it was answered.
        resume.answered(
            &headers("00000000000000bb:1", Some("false; reason=epoch")),
            &counters,
            "u",
        );
        let f4 = read(&resume, 4);
        // Frame 3 not handled yet: still the old history's position.
        assert_eq!(resume.handled_position(|_| (2, key(&f2))), Some(at(9)));
        // Everything before the answer handled: the new history's.
        assert_eq!(
            resume.handled_position(|_| (3, key(&f3))),
            Some(Position::new(0xbb, 1))
        );
        assert_eq!(
            resume.handled_position(|read| (read, None)),
            Some(Position::new(0xbb, 1).after(key(&f4)))
        );
    }

    /// A position given at build is where the handled position starts,
    /// key included, until something past it is handled.
    #[test]
    fn the_handled_position_starts_at_the_one_given() {
        let from = Position::new(0xcc, 3).after(Some(77));
        let resume = Resume::new(true, Some(from));
        assert!(resume.waiting_for_subscription());
        assert_eq!(resume.handled_position(|read| (read, None)), Some(from));
        let f1 = read(&resume, 1);
        assert_eq!(resume.handled_position(|_| (0, None)), Some(from));
        assert_eq!(
            resume.handled_position(|read| (read, None)),
            Some(Position::new(0xcc, 3).after(key(&f1)))
        );
        resume.subscribed();
        assert!(!resume.waiting_for_subscription());
    }

    /// While the handled position stands still the marks are thinned out,
    /// never across an epoch, and the newest ones are kept.
    #[test]
    fn marks_are_bounded_while_nothing_is_handled() {
        let counters = Counters::default();
        let resume = Resume::new(true, None);
        resume.answered(&headers("00000000000000aa:0", None), &counters, "u");
        for n in 1..=1000 {
            read(&resume, n);
            resume.mark(n, |_| (0, None));
        }
        let marks = resume.lock().marks.clone();
        assert!(marks.len() <= MAX_MARKS + 1, "{} marks", marks.len());
        assert_eq!(marks[0].at, 0, "the one the handled position needs");
        assert_eq!(marks.last().unwrap().at, 999);
        assert_eq!(resume.lock().position_at, 1000);
        assert_eq!(
            resume.handled_position(|_| (0, None)),
            Some(Position::new(0xaa, 0))
        );
        // Once everything is handled, only the newest is left.
        assert_eq!(
            resume.handled_position(|read| (read, None)),
            Some(Position::new(0xaa, 1000))
        );
        let state = resume.lock();
        assert!(state.marks.is_empty() && state.marks.capacity() == 0);
    }
}
