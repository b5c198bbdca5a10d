//! At-least-once bookkeeping: events awaiting acknowledgement, and the
//! window of recently seen ids that drops duplicates.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An event frame on its way out, with what its earlier connections did
/// to it.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) frame: Utf8Bytes,
    /// Connections that failed this frame: its ack timed out, or the server
    /// closed as a refusal while it was the oldest unacknowledged frame.
    /// `ack_attempts` of them dead-letter it.
    pub(crate) failures: u32,
    /// Whether it was written before: writing it again is a resend.
    pub(crate) sent: bool,
}

impl Outgoing {
    pub(crate) fn new(frame: Utf8Bytes) -> Outgoing {
        Outgoing {
            frame,
            failures: 0,
            sent: false,
        }
    }
}

/// A sent event awaiting acknowledgement.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Its place among the data frames of this connection (1-based), which
    /// is what a cumulative ack counts.
    seq: u64,
    /// When it was sent, on the session's reading clock
    /// (`SessionState::reading_clock`).
    sent_at: Instant,
    pub(crate) outgoing: Outgoing,
}

/// The events of one connection that await acknowledgement, oldest first.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Data frames sent on this connection.
    sent: u64,
    pending: VecDeque<Pending>,
}

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Gives back the room a burst grew (see [`room`](super::room)).
    pub(crate) fn give_back_room(&mut self) {
        super::room::give_back(&mut self.pending);
    }

    /// Records an event just handed to the socket.
    pub(crate) fn sent(&mut self, outgoing: Outgoing, now: Instant) {
        self.sent += 1;
        self.pending.push_back(Pending {
            seq: self.sent,
            sent_at: now,
            outgoing,
        });
    }

    /// The server has the first `upto` frames of the connection; returns
    /// how many pending events that acknowledged.
    pub(crate) fn ack(&mut self, upto: u64) -> u64 {
        let before = self.pending.len();
        while self.pending.front().is_some_and(|p| p.seq <= upto) {
            self.pending.pop_front();
        }
        (before - self.pending.len()) as u64
    }

    /// When the oldest pending event times out.
    pub(crate) fn next_timeout(&self, ack_timeout: std::time::Duration) -> Option<Instant> {
        self.pending.front().map(|p| p.sent_at + ack_timeout)
    }

    /// Takes everything still pending, oldest first (the connection is
    /// gone), counting a failure against each event that was sent at or
    /// before `timed_out_before` (its ack is overdue) and, if
    /// `refused_oldest`, against the oldest one (the server closed the
    /// connection as a refusal, and that is the frame it stopped at).
    pub(crate) fn take_all(
        &mut self,
        timed_out_before: Option<Instant>,
        refused_oldest: bool,
    ) -> Vec<Outgoing> {
        let mut taken: Vec<Outgoing> = Vec::with_capacity(self.pending.len());
        for (i, p) in self.pending.drain(..).enumerate() {
            let mut outgoing = p.outgoing;
            let timed_out = timed_out_before.is_some_and(|before| p.sent_at <= before);
            if timed_out || (refused_oldest && i == 0) {
                outgoing.failures += 1;
            }
            taken.push(outgoing);
        }
        taken
    }
}

/// The most recent event frames delivered, so a resent one is dropped.
///
/// Keyed on the whole frame, not the id: a resend is byte for byte the
/// frame first sent (the publisher keeps its serialised bytes and the hub
/// relays them unchanged), while another publisher's event that happens to
/// reuse an id is a different frame and is delivered. Frames are kept as
/// 128-bit keyed hashes (two independently keyed hashers): 24 bytes each,
/// and with 10,000 of them the odds of two different frames colliding are
/// about 10⁻³⁰, far below anything else that can go wrong.
#[derive(Debug)]
pub(crate) struct DedupWindow {
    capacity: usize,
    keys: (RandomState, RandomState),
    seen: HashSet<u128>,
    order: VecDeque<u128>,
}

impl DedupWindow {
    pub(crate) fn new(capacity: usize) -> DedupWindow {
        DedupWindow {
            capacity,
            keys: (RandomState::new(), RandomState::new()),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True if `frame` was seen recently (a duplicate); remembers it
    /// otherwise. Always false when the window is off (capacity 0).
    pub(crate) fn is_duplicate(&mut self, frame: &[u8]) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let key = (u128::from(self.keys.0.hash_one(frame)) << 64)
            | u128::from(self.keys.1.hash_one(frame));
        if !self.seen.insert(key) {
            return true;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn out(text: &str) -> Outgoing {
        Outgoing::new(Utf8Bytes::from(text.to_string()))
    }

    #[tokio::test(start_paused = true)]
    async fn cumulative_acks_and_failures_in_order() {
        let mut w = InFlight::default();
        let t0 = Instant::now();
        for i in 0..5 {
            w.sent(out(&i.to_string()), t0 + Duration::from_millis(i));
        }
        assert_eq!(w.ack(2), 2);
        assert_eq!(w.ack(2), 0, "acks are idempotent");
        assert_eq!(w.len(), 3);
        assert_eq!(
            w.next_timeout(Duration::from_secs(1)),
            Some(t0 + Duration::from_millis(1002))
        );
        // Timed out: 2 and 3, not 4; kept in their original order.
        let taken = w.take_all(Some(t0 + Duration::from_millis(3)), false);
        assert_eq!(
            taken
                .iter()
                .map(|o| (o.frame.as_str(), o.failures))
                .collect::<Vec<_>>(),
            [("2", 1), ("3", 1), ("4", 0)]
        );
        assert_eq!(w.len(), 0);
        // A refusal counts against the oldest only.
        for o in taken {
            w.sent(o, t0 + Duration::from_millis(10));
        }
        let taken = w.take_all(None, true);
        assert_eq!(
            taken.iter().map(|o| o.failures).collect::<Vec<_>>(),
            [2, 1, 0]
        );
    }

    #[test]
    fn dedup_window_forgets_the_oldest() {
        let mut d = DedupWindow::new(2);
        assert!(!d.is_duplicate(b"a"));
        assert!(d.is_duplicate(b"a"));
        assert!(!d.is_duplicate(b"b"));
        assert!(!d.is_duplicate(b"c")); // evicts a
        assert!(!d.is_duplicate(b"a"));
        assert!(d.is_duplicate(b"c"));
        let mut off = DedupWindow::new(0);
        assert!(!off.is_duplicate(b"a") && !off.is_duplicate(b"a"));
    }
}
