//! The fan-out seam: how a burst read from one client reaches the others.
//!
//! Connection handling talks only to [`Fanout`]. Today [`LocalFanout`]
//! delivers in-process. A backplane (NATS, with JetStream for history)
//! would implement the same trait: deliver locally as now, publish the
//! burst to the backplane, and feed bursts arriving from other hubs into
//! the local delivery, without touching the connection code.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use watchtower_core::{NotRecoveredReason, Position};

use crate::relay::collect::Frames;
use crate::relay::history::History;
use crate::relay::outbox::{FrameSet, Offered, Outbox};

/// Identifies one client connection within a hub.
pub(crate) type ClientId = u64;

/// Most frames one read burst collects before it is fanned out. Large
/// enough to amortise the per-recipient cost; the per-client frame bitmap
/// is sized by it.
pub(crate) const MAX_BURST: usize = 256;

/// Frames one client sent, read in one go, shared by every recipient.
///
/// Frames are relayed byte-for-byte; `Utf8Bytes` is reference-counted, so
/// recipients share one copy.
#[derive(Debug)]
pub(crate) struct Burst {
    /// Who sent it: never delivered back there.
    pub(crate) sender: ClientId,
    /// The event frames as received.
    pub(crate) frames: Vec<Utf8Bytes>,
    /// `types[i]` is the `event_type` of `frames[i]`.
    pub(crate) types: Vec<Arc<str>>,
    /// The frames' bytes, summed: what a recipient keeps alive while any
    /// frame of the burst waits for it.
    pub(crate) bytes: usize,
    /// With history on, `keys[i]` is the key of `frames[i]` in a position
    /// ([`watchtower_core::frame_key`]), made once by the reader, outside
    /// any lock (see [`Burst::keyed`]); empty otherwise.
    pub(crate) keys: Vec<u64>,
}

impl Burst {
    pub(crate) fn new(
        sender: ClientId,
        mut frames: Vec<Utf8Bytes>,
        mut types: Vec<Arc<str>>,
    ) -> Burst {
        // A burst may live on in the history long after it was read. Under
        // light load most hold one or a few frames, in vectors grown to 4
        // or more slots: trimmed, a one-frame burst keeps ~140 bytes less.
        frames.shrink_to_fit();
        types.shrink_to_fit();
        let bytes = frames.iter().map(|f| f.len()).sum();
        Burst {
            sender,
            frames,
            types,
            bytes,
            keys: Vec::new(),
        }
    }

    /// This burst with its frames' keys, for the history's index.
    pub(crate) fn keyed(mut self) -> Burst {
        self.keys = self
            .frames
            .iter()
            .map(|f| watchtower_core::frame_key(f.as_bytes()))
            .collect();
        self
    }

    /// A burst of copies of the frames in `set` only: what a client whose
    /// filter matched few of them keeps alive instead of the whole burst.
    pub(crate) fn only(&self, set: &FrameSet) -> Burst {
        let mut frames = Frames::new(true);
        let mut types = Vec::with_capacity(set.len());
        for (i, (frame, event_type)) in self.frames.iter().zip(&self.types).enumerate() {
            if set.contains(i) {
                frames.push(frame.clone());
                types.push(Arc::clone(event_type));
            }
        }
        Burst::new(self.sender, frames.take(), types)
    }

    /// The bytes of the frames in `set`.
    pub(crate) fn bytes_of(&self, set: &FrameSet) -> usize {
        self.frames
            .iter()
            .enumerate()
            .filter(|(i, _)| set.contains(*i))
            .map(|(_, f)| f.len())
            .sum()
    }
}

/// Totals of one fan-out, for the hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Frames queued, summed over recipients.
    pub(crate) queued: u64,
    /// Frames dropped from full queues to make room.
    pub(crate) dropped: u64,
    /// The most bytes any recipient held afterwards (queued and taken by
    /// its writer), for the high-water mark in the stats.
    pub(crate) max_held: usize,
}

/// What a joining client presented for the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// No position yet; it wants one, and position frames.
    New,
    /// Replay what came after this position.
    From(Position),
}

/// The history's answer to a joining client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    /// Where the history stood when the client joined.
    pub(crate) position: Position,
    /// For a [`Cursor::From`]: events replayed, or why none were.
    pub(crate) outcome: Option<Result<u64, NotRecoveredReason>>,
}

/// Delivers bursts to the clients that joined.
pub(crate) trait Fanout: Send + Sync + fmt::Debug {
    /// `outbox` receives every later burst its filter matches. With history
    /// on, a client that presented `cursor` first gets what it missed
    /// (all or nothing), queued under the lock live bursts are offered
    /// under, then every later burst; the answer says where it stands.
    /// `None`: history is off.
    fn join(&self, outbox: Arc<Outbox>, cursor: Option<Cursor>) -> Option<Joined>;
    /// The client stops receiving.
    fn leave(&self, id: ClientId);
    /// Offers `burst` to every member but its sender. Never waits: a full
    /// member drops its oldest frames instead.
    fn publish(&self, burst: Arc<Burst>) -> Delivery;
    /// Events the history holds now (0 with history off).
    fn history_len(&self) -> usize;
    /// Relays `burst` (if any) from `from`, then, when `ack` is set,
    /// acknowledges the first `ack` frames `from` sent once everything it
    /// sent before is relayed. Locally that is at once; a backplane
    /// acknowledges once its store has the events.
    fn relay(&self, burst: Option<Arc<Burst>>, from: &Arc<Outbox>, ack: Option<u64>) -> Delivery {
        let delivery = burst.map(|b| self.publish(b)).unwrap_or_default();
        if let Some(upto) = ack {
            from.ack(upto);
        }
        delivery
    }
    /// Resolves once this node's history can answer a client presenting
    /// `from` as well as the group's could: with a backplane, the node's
    /// view of the shared stream may lag behind the node the client came
    /// from (in its seqs, or its epoch, when the stream was made anew), and
    /// a position past that view would be taken for another history.
    /// Locally, at once. The caller bounds the wait; past it, the node
    /// cannot tell what the client missed (with a backplane: it is cut off
    /// from the stream) and refuses it rather than answer.
    fn catch_up(&self, _from: Position) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    /// Resolves once everything handed to the backplane so far is settled
    /// (stored, or given up and counted); locally, at once. For a graceful
    /// stop, once no reader relays any more; the caller bounds the wait.
    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    /// Adds what the backplane did (if there is one) to `stats`.
    fn backplane_stats(&self, _stats: &mut crate::HubStats) {}
    /// The hub stopped: stop the backplane's tasks (handles may keep the
    /// fan-out itself alive).
    fn stop(&self) {}
}

/// In-process fan-out.
///
/// The member list is copy-on-write: `publish` clones one `Arc` under the
/// lock and offers to members with no hub-wide lock held, so readers on
/// different cores do not serialise on it. `join` and `leave` copy the
/// list, which is cheap next to a WebSocket handshake.
///
/// With history on, a burst is stored and offered to every member under the
/// history's lock, and a client joins under it: every member sees bursts
/// in history order, and a replay meets the live bursts after it with
/// nothing missing or repeated. Offering is bookkeeping only (no I/O), so
/// the lock is held briefly.
#[derive(Debug, Default)]
pub(crate) struct LocalFanout {
    members: Mutex<Arc<Vec<Arc<Outbox>>>>,
    /// Shared with the resuming clients, whose writers catch up from it.
    history: Option<Arc<Mutex<History>>>,
}

impl LocalFanout {
    /// A fan-out keeping `history` (`None`: off).
    pub(crate) fn new(history: Option<History>) -> LocalFanout {
        LocalFanout {
            members: Mutex::default(),
            history: history.map(|h| Arc::new(Mutex::new(h))),
        }
    }

    fn offer_all(&self, burst: &Arc<Burst>, seq: u64, oldest: u64) -> Delivery {
        let mut delivery = Delivery::default();
        for member in self.snapshot().iter() {
            let Offered {
                queued,
                dropped,
                held,
            } = member.offer(burst, seq, oldest);
            delivery.queued += queued;
            delivery.dropped += dropped;
            delivery.max_held = delivery.max_held.max(held);
        }
        delivery
    }

    /// Delivers a burst the backplane numbered (its first frame at seq
    /// `first`) and stored `at`: stored in the history, offered to every
    /// member, under the history's lock. `None` when it was delivered
    /// before.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn publish_at(
        &self,
        burst: &Arc<Burst>,
        first: u64,
        at: Instant,
    ) -> Option<Delivery> {
        let Some(history) = &self.history else {
            return Some(self.offer_all(burst, 0, 0));
        };
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        let (seq, gap) = history.append_at(burst, first, at, Instant::now())?;
        if gap {
            // Resuming members did not get what the gap held: closed, they
            // resume and learn that (expired) instead of missing it.
            for member in self.snapshot().iter() {
                member.interrupt();
            }
        }
        Some(self.offer_all(burst, seq, history.oldest()))
    }

    /// The stream sequence `seq` holds no event (see [`History::skip_at`]);
    /// resuming members are interrupted only if a gap came before it.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn skip_at(&self, seq: u64) {
        let Some(history) = &self.history else {
            return;
        };
        let gap = history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .skip_at(seq);
        if gap == Some(true) {
            for member in self.snapshot().iter() {
                member.interrupt();
            }
        }
    }

    /// The backplane's stream was made anew: the history starts again in
    /// `epoch` after `head` (see [`History::renumber`]), and every resuming
    /// member, whose position is of the old epoch (position frames carry
    /// only a seq), is closed under the same lock, before any event of the
    /// new epoch is offered: it resumes and is told `epoch`. Plain members
    /// carry on.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn renumber(&self, epoch: u64, head: u64) {
        let Some(history) = &self.history else {
            return;
        };
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        history.renumber(epoch, head);
        for member in self.snapshot().iter() {
            member.interrupt();
        }
    }

    /// Whether the history is behind a client at `from` (see
    /// [`History::behind`]); `false` with history off.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn behind(&self, from: &Position) -> bool {
        self.history.as_ref().is_some_and(|history| {
            history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .behind(from)
        })
    }

    /// The epoch of the history's positions; `None` with history off.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.history.as_ref().map(|history| {
            history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .position()
                .epoch()
        })
    }

    /// Forgets history before `first` (see [`History::retain_from`]).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn retain_from(&self, first: u64) {
        if let Some(history) = &self.history {
            let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
            history.retain_from(first);
        }
    }

    fn update(&self, change: impl FnOnce(&mut Vec<Arc<Outbox>>)) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Vec::clone(&members);
        change(&mut next);
        *members = Arc::new(next);
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Outbox>>> {
        Arc::clone(&self.members.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Fanout for LocalFanout {
    fn join(&self, outbox: Arc<Outbox>, cursor: Option<Cursor>) -> Option<Joined> {
        let Some(shared) = &self.history else {
            self.update(|members| members.push(outbox));
            return None;
        };
        let mut history = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let mut position = history.position();
        let head = position.seq();
        let outcome = match cursor {
            None => None,
            Some(Cursor::New) => {
                outbox.resume(head, head, head, Arc::clone(shared));
                None
            }
            Some(Cursor::From(from)) => match history.start(&from, Instant::now()) {
                // The client has everything before its start: position
                // frames go out past its own position. Its writer reads
                // what it missed from the history, however much.
                Ok(start) => {
                    outbox.resume(start, from.seq(), head, Arc::clone(shared));
                    Some(Ok(head - start))
                }
                // Not placed: it starts where the history says, and that
                // is the position it is told (not the head, so that a
                // client cut off during a replay of a new epoch resumes
                // inside it rather than past it).
                Err(reason) => {
                    let start = history.start_refused(&from);
                    outbox.resume(start, start, head, Arc::clone(shared));
                    position = Position::new(position.epoch(), start);
                    Some(Err(reason))
                }
            },
        };
        self.update(|members| members.push(outbox));
        Some(Joined { position, outcome })
    }

    fn leave(&self, id: ClientId) {
        self.update(|members| members.retain(|m| m.id() != id));
    }

    fn publish(&self, burst: Arc<Burst>) -> Delivery {
        let Some(history) = &self.history else {
            return self.offer_all(&burst, 0, 0);
        };
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = history.append(&burst, Instant::now());
        self.offer_all(&burst, seq, history.oldest())
    }

    fn history_len(&self) -> usize {
        self.history.as_ref().map_or(0, |h| {
            h.lock().unwrap_or_else(PoisonError::into_inner).len()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn outbox(id: ClientId) -> Arc<Outbox> {
        let config = crate::HubConfig {
            client_queue_frames: 16,
            ..crate::HubConfig::default()
        };
        Arc::new(Outbox::new(id, &config))
    }

    #[test]
    fn publishes_to_every_member_but_the_sender_sharing_frames() {
        let fanout = LocalFanout::default();
        let (a, b, c) = (outbox(1), outbox(2), outbox(3));
        for o in [&a, &b, &c] {
            fanout.join(Arc::clone(o), None);
        }
        let frame = Utf8Bytes::from(r#"{"id":"1","event_type":"t"}"#);
        let burst = Arc::new(Burst::new(1, vec![frame.clone()], vec!["t".into()]));
        let d = fanout.publish(Arc::clone(&burst));
        assert_eq!(
            d,
            Delivery {
                queued: 2,
                dropped: 0,
                max_held: frame.len(),
            }
        );
        // Two recipients hold the same burst: nothing was copied per client.
        assert_eq!(Arc::strong_count(&burst), 3);

        fanout.leave(2);
        assert_eq!(fanout.publish(burst).queued, 1);
        let mut got = VecDeque::new();
        assert_eq!(b.take(&mut got), 1);
        assert_eq!(got[0].burst.frames[0], frame);
    }

    #[test]
    fn a_replay_meets_the_live_bursts_with_nothing_missing_or_repeated() {
        let config = crate::HubConfig::default();
        let fanout = LocalFanout::new(History::new(&config));
        let frame = |n: u32| Utf8Bytes::from(format!(r#"{{"id":"{n}","event_type":"t"}}"#));
        let publish = |n: u32| {
            let burst = Burst::new(9, vec![frame(n)], vec!["t".into()]);
            fanout.publish(Arc::new(burst));
        };
        let first = outbox(1);
        let joined = fanout.join(Arc::clone(&first), Some(Cursor::New)).unwrap();
        assert_eq!((joined.position.seq(), joined.outcome), (0, None));
        publish(1);
        publish(2);
        let at = Position::new(joined.position.epoch(), 1);
        publish(3);
        let second = outbox(2);
        let joined = fanout
            .join(Arc::clone(&second), Some(Cursor::From(at)))
            .unwrap();
        assert_eq!((joined.position.seq(), joined.outcome), (3, Some(Ok(2))));
        publish(4);
        let taken = |outbox: &Outbox| {
            let mut got = VecDeque::new();
            outbox.take(&mut got);
            got.iter()
                .flat_map(|e| {
                    (0..e.burst.frames.len())
                        .filter(|i| e.frames.contains(*i))
                        .map(|i| e.burst.frames[i].to_string())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<String>>()
        };
        assert_eq!(
            taken(&second),
            [frame(2), frame(3), frame(4)].map(|f| f.to_string())
        );
        assert_eq!(second.mark_due(), Some(4));
        assert_eq!(fanout.history_len(), 4);
        // Another epoch, while this one is held from its first event: the
        // reason given, told position 0 of this epoch, sent all of it.
        let third = outbox(3);
        let other = Position::new(at.epoch().wrapping_add(1), 1);
        let joined = fanout
            .join(Arc::clone(&third), Some(Cursor::From(other)))
            .unwrap();
        assert_eq!(joined.outcome, Some(Err(NotRecoveredReason::Epoch)));
        assert_eq!(joined.position, Position::new(at.epoch(), 0));
        assert_eq!(taken(&third), [1, 2, 3, 4].map(|n| frame(n).to_string()));
        // This epoch, but past its head: told the head, sent nothing old.
        let fourth = outbox(4);
        let ahead = Position::new(at.epoch(), 9);
        let joined = fanout
            .join(Arc::clone(&fourth), Some(Cursor::From(ahead)))
            .unwrap();
        assert_eq!(joined.outcome, Some(Err(NotRecoveredReason::Epoch)));
        assert_eq!(joined.position, Position::new(at.epoch(), 4));
        assert!(taken(&fourth).is_empty());
        // History off: no answer at all.
        let plain = LocalFanout::default();
        assert!(plain.join(outbox(4), Some(Cursor::New)).is_none());
    }
}
