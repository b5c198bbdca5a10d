//! One client's outbound queue: shared bursts in, whole bursts out, a
//! bound in frames, oldest-first dropping, and slow-client detection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use watchtower_core::ControlFrame;

use crate::fanout::{Burst, ClientId, MAX_BURST};
use crate::filter::{Coverage, Filter, TooManyTypes};

/// A set of frame indices within one burst: which of its frames this client
/// still has to receive. A burst holds at most [`MAX_BURST`] frames, so a
/// fixed bitmap does it without allocating per client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FrameSet {
    bits: [u64; MAX_BURST / 64],
}

impl FrameSet {
    /// Frames `0..n` (`n` is capped at [`MAX_BURST`]).
    pub(crate) fn first(n: usize) -> FrameSet {
        let mut set = FrameSet::default();
        let n = n.min(MAX_BURST);
        for (word, bits) in set.bits.iter_mut().enumerate() {
            let start = word * 64;
            *bits = match n.saturating_sub(start) {
                0 => 0,
                k if k >= 64 => u64::MAX,
                k => (1u64 << k) - 1,
            };
        }
        set
    }

    pub(crate) fn insert(&mut self, index: usize) {
        if let Some(word) = self.bits.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        self.bits
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    pub(crate) fn remove(&mut self, index: usize) {
        if let Some(word) = self.bits.get_mut(index / 64) {
            *word &= !(1 << (index % 64));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// The lowest index in the set.
    pub(crate) fn first_index(&self) -> Option<usize> {
        self.bits
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }

    /// Removes the `n` lowest indices (fewer if the set is smaller);
    /// returns how many were removed.
    pub(crate) fn drop_first(&mut self, n: usize) -> usize {
        let mut removed = 0;
        for word in &mut self.bits {
            while removed < n && *word != 0 {
                // Clears the lowest set bit.
                *word &= *word - 1;
                removed += 1;
            }
        }
        removed
    }
}

/// One burst as queued for one client: the shared frames and which of them
/// are for this client.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) burst: Arc<Burst>,
    pub(crate) frames: FrameSet,
}

/// What one offer did, for the hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Offered {
    pub(crate) queued: u64,
    pub(crate) dropped: u64,
}

#[derive(Debug)]
struct State {
    filter: Filter,
    queue: VecDeque<Entry>,
    /// Frames in `queue`.
    frames: usize,
    /// When the queue last went from "keeping up" to "dropping"; reset each
    /// time the writer takes what is queued.
    dropping_since: Option<Instant>,
    /// No longer accepting frames: the client is slow or leaving.
    closed: bool,
}

/// One client's outbound queue, shared by every reader that fans out to it
/// (producers) and the client's own writer (the consumer).
///
/// The lock is a `std` mutex held only for queue bookkeeping, never across
/// an `.await`; the writer takes everything queued in one swap.
#[derive(Debug)]
pub(crate) struct Outbox {
    id: ClientId,
    capacity: usize,
    slow_after: Duration,
    state: Mutex<State>,
    /// The `upto` of an ack the writer has yet to send to this client; 0:
    /// none (an ack always counts at least one frame). Outside the lock:
    /// the writer checks it before every frame it writes, so an ack
    /// overtakes whatever is queued.
    ack: AtomicU64,
    /// Wakes the writer: something was queued, or an ack is due.
    ready: Notify,
    /// Wakes the connection: this client stayed full too long.
    slow: Notify,
}

impl Outbox {
    pub(crate) fn new(id: ClientId, capacity: usize, slow_after: Duration) -> Outbox {
        Outbox {
            id,
            capacity,
            slow_after,
            state: Mutex::new(State {
                filter: Filter::default(),
                queue: VecDeque::new(),
                frames: 0,
                dropping_since: None,
                closed: false,
            }),
            ack: AtomicU64::new(0),
            ready: Notify::new(),
            slow: Notify::new(),
        }
    }

    pub(crate) fn id(&self) -> ClientId {
        self.id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something ever did, the
        // queue is still structurally sound, so carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the frames of `burst` that this client's filter lets through,
    /// unless this client sent them. When that overfills the queue the
    /// oldest frames are dropped; a client that keeps dropping for
    /// `slow_after` is marked slow (see [`Outbox::became_slow`]).
    pub(crate) fn offer(&self, burst: &Arc<Burst>) -> Offered {
        if burst.sender == self.id || burst.frames.is_empty() {
            return Offered::default();
        }
        let mut state = self.lock();
        if state.closed {
            return Offered::default();
        }
        let frames = match state.filter.coverage() {
            Coverage::Nothing => return Offered::default(),
            Coverage::Everything => FrameSet::first(burst.frames.len()),
            Coverage::Some => {
                let mut set = FrameSet::default();
                for (i, t) in burst.types.iter().enumerate() {
                    if state.filter.matches(t) {
                        set.insert(i);
                    }
                }
                if set.is_empty() {
                    return Offered::default();
                }
                set
            }
        };
        let queued = frames.len();
        state.queue.push_back(Entry {
            burst: Arc::clone(burst),
            frames,
        });
        state.frames += queued;
        let dropped = trim(&mut state, self.capacity);
        let mut became_slow = false;
        if dropped > 0 {
            let now = Instant::now();
            let since = *state.dropping_since.get_or_insert(now);
            if now.duration_since(since) >= self.slow_after {
                state.closed = true;
                became_slow = true;
            }
        }
        drop(state);
        self.ready.notify_one();
        if became_slow {
            self.slow.notify_one();
        }
        Offered {
            queued: queued as u64,
            dropped: dropped as u64,
        }
    }

    /// Moves everything queued to the back of `into`; returns the number
    /// of frames moved. The client is keeping up again.
    pub(crate) fn take(&self, into: &mut VecDeque<Entry>) -> usize {
        let mut state = self.lock();
        if into.is_empty() {
            // The writer's usual case: the two deques trade allocations.
            std::mem::swap(&mut state.queue, into);
        } else {
            into.extend(state.queue.drain(..));
        }
        state.dropping_since = None;
        std::mem::take(&mut state.frames)
    }

    /// Applies a control frame to this client's filter. Frames already
    /// queued are delivered as they were matched.
    pub(crate) fn apply(&self, frame: &ControlFrame) -> Result<(), TooManyTypes> {
        self.lock().filter.apply(frame)
    }

    /// Asks the writer to acknowledge the first `upto` frames this client
    /// sent, ahead of anything queued. Replaces an ack not yet sent: acks
    /// are cumulative, so only the latest matters. Only the client's own
    /// reader calls this, with growing values.
    pub(crate) fn ack(&self, upto: u64) {
        self.ack.store(upto, Relaxed);
        self.ready.notify_one();
    }

    /// The ack due, if any. One relaxed load: cheap enough for the writer
    /// to check before every frame.
    pub(crate) fn pending_ack(&self) -> Option<u64> {
        match self.ack.load(Relaxed) {
            0 => None,
            upto => Some(upto),
        }
    }

    /// The ack for `upto` was handed to the socket. A newer one that the
    /// reader set meanwhile stays due.
    pub(crate) fn ack_sent(&self, upto: u64) {
        let _ = self.ack.compare_exchange(upto, 0, Relaxed, Relaxed);
    }

    /// Stops accepting frames; what is queued can still be taken.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Resolves when something was queued since the last wake-up.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Resolves once this client has stayed full for `slow_after`.
    pub(crate) async fn became_slow(&self) {
        self.slow.notified().await;
    }
}

/// Drops the oldest queued frames until at most `capacity` remain; returns
/// how many were dropped.
fn trim(state: &mut State, capacity: usize) -> usize {
    let mut dropped = 0;
    while state.frames > capacity {
        let Some(oldest) = state.queue.front_mut() else {
            break;
        };
        let removed = oldest.frames.drop_first(state.frames - capacity);
        state.frames -= removed;
        dropped += removed;
        if oldest.frames.is_empty() {
            state.queue.pop_front();
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    fn burst(sender: ClientId, types: &[&str]) -> Arc<Burst> {
        Arc::new(Burst {
            sender,
            frames: types
                .iter()
                .enumerate()
                .map(|(i, t)| Utf8Bytes::from(format!(r#"{{"id":"{i}","event_type":"{t}"}}"#)))
                .collect(),
            types: types.iter().map(|t| Box::from(*t)).collect(),
        })
    }

    fn taken(outbox: &Outbox) -> Vec<String> {
        let mut entries = VecDeque::new();
        outbox.take(&mut entries);
        let mut out = Vec::new();
        for mut e in entries {
            while let Some(i) = e.frames.first_index() {
                out.push(e.burst.frames[i].to_string());
                e.frames.remove(i);
            }
        }
        out
    }

    #[test]
    fn frame_set_operations() {
        assert_eq!(FrameSet::first(0).len(), 0);
        assert_eq!(FrameSet::first(1).first_index(), Some(0));
        assert_eq!(FrameSet::first(64).len(), 64);
        assert_eq!(FrameSet::first(65).len(), 65);
        assert_eq!(FrameSet::first(MAX_BURST + 10).len(), MAX_BURST);

        let mut s = FrameSet::first(130);
        assert_eq!(s.drop_first(100), 100);
        assert_eq!(s.first_index(), Some(100));
        assert_eq!(s.drop_first(100), 30);
        assert!(s.is_empty());

        let mut s = FrameSet::default();
        s.insert(70);
        s.insert(3);
        s.insert(MAX_BURST); // out of range: ignored
        assert_eq!(s.len(), 2);
        assert_eq!(s.first_index(), Some(3));
        assert!(s.contains(3) && s.contains(70) && !s.contains(4));
        assert!(!s.contains(MAX_BURST));
        s.remove(3);
        assert_eq!(s.first_index(), Some(70));
    }

    #[tokio::test]
    async fn acks_coalesce_and_wake_the_writer() {
        let outbox = Outbox::new(1, 100, Duration::from_secs(5));
        assert_eq!(outbox.pending_ack(), None);
        outbox.ack(3);
        outbox.ack(5);
        assert_eq!(outbox.pending_ack(), Some(5));
        tokio::time::timeout(Duration::from_secs(1), outbox.ready())
            .await
            .expect("the writer is woken");
        // The reader moved on while 5 was being written: 7 stays due.
        outbox.ack(7);
        outbox.ack_sent(5);
        assert_eq!(outbox.pending_ack(), Some(7));
        outbox.ack_sent(7);
        assert_eq!(outbox.pending_ack(), None);
    }

    #[test]
    fn never_back_to_the_sender() {
        let outbox = Outbox::new(1, 100, Duration::from_secs(5));
        assert_eq!(outbox.offer(&burst(1, &["a"])), Offered::default());
        assert_eq!(outbox.offer(&burst(2, &["a"])).queued, 1);
        assert_eq!(taken(&outbox).len(), 1);
    }

    #[test]
    fn filtered_frames_are_not_queued() {
        let outbox = Outbox::new(1, 100, Duration::from_secs(5));
        outbox
            .apply(&ControlFrame::Subscribe {
                event_types: vec!["b".into()],
                replace: true,
            })
            .unwrap();
        assert_eq!(outbox.offer(&burst(2, &["a", "b", "a", "b"])).queued, 2);
        assert_eq!(outbox.offer(&burst(2, &["a"])).queued, 0);
        let got = taken(&outbox);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|f| f.contains(r#""event_type":"b""#)));
    }

    #[test]
    fn full_queue_drops_the_oldest_frames() {
        let outbox = Outbox::new(1, 3, Duration::from_secs(60));
        assert_eq!(outbox.offer(&burst(2, &["a", "a"])).dropped, 0);
        let o = outbox.offer(&burst(3, &["b", "b"]));
        assert_eq!((o.queued, o.dropped), (2, 1));
        let got = taken(&outbox);
        assert_eq!(got.len(), 3);
        assert!(got[0].contains(r#""id":"1","event_type":"a""#));
        assert!(got[1].contains(r#""event_type":"b""#));
    }

    #[test]
    fn a_burst_larger_than_the_queue_keeps_its_newest_frames() {
        let outbox = Outbox::new(1, 2, Duration::from_secs(60));
        let o = outbox.offer(&burst(2, &["a", "a", "a", "a", "a"]));
        assert_eq!((o.queued, o.dropped), (5, 3));
        let got = taken(&outbox);
        assert!(got[0].contains(r#""id":"3""#) && got[1].contains(r#""id":"4""#));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_for_longer_than_the_timeout_marks_the_client_slow() {
        let outbox = Outbox::new(1, 1, Duration::from_secs(2));
        outbox.offer(&burst(2, &["a"]));
        outbox.offer(&burst(2, &["a"])); // starts dropping
        tokio::time::advance(Duration::from_secs(1)).await;
        outbox.offer(&burst(2, &["a"]));
        assert!(!outbox.lock().closed);

        // Taking resets the clock: the client kept up for a moment.
        taken(&outbox);
        outbox.offer(&burst(2, &["a"]));
        tokio::time::advance(Duration::from_secs(1)).await;
        outbox.offer(&burst(2, &["a"])); // drops again, clock restarts
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            tokio::time::timeout(Duration::ZERO, outbox.became_slow())
                .await
                .is_err()
        );
        outbox.offer(&burst(2, &["a"]));
        tokio::time::timeout(Duration::from_secs(1), outbox.became_slow())
            .await
            .expect("marked slow");
        // A slow client takes nothing more.
        assert_eq!(outbox.offer(&burst(2, &["a"])), Offered::default());
    }
}
