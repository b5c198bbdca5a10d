//! At-least-once bookkeeping: events awaiting acknowledgement, and the
//! window of recently seen ids that drops duplicates.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An event frame on its way out, with how often it already timed out
/// waiting for an acknowledgement.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) frame: Utf8Bytes,
    pub(crate) timeouts: u32,
}

impl Outgoing {
    pub(crate) fn new(frame: Utf8Bytes) -> Outgoing {
        Outgoing { frame, timeouts: 0 }
    }
}

/// A sent event awaiting acknowledgement.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Its place among the data frames of this connection (1-based), which
    /// is what a cumulative ack counts.
    seq: u64,
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

    /// Takes the events sent at or before `before`: they timed out.
    pub(crate) fn take_expired(&mut self, before: Instant) -> Vec<Outgoing> {
        let mut expired = Vec::new();
        while self.pending.front().is_some_and(|p| p.sent_at <= before) {
            if let Some(p) = self.pending.pop_front() {
                expired.push(p.outgoing);
            }
        }
        expired
    }

    /// Takes everything still pending, oldest first (the connection is gone).
    pub(crate) fn take_all(&mut self) -> Vec<Outgoing> {
        self.pending.drain(..).map(|p| p.outgoing).collect()
    }
}

/// The ids of the most recent events delivered, so a resent one is dropped.
///
/// Ids are kept as 128-bit keyed hashes (two independently keyed hashers):
/// 24 bytes each instead of the id, and with 10,000 ids the odds of two
/// different ids colliding are about 10⁻³⁰, far below anything else that
/// can go wrong.
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

    /// True if `id` was seen recently (a duplicate); remembers it otherwise.
    /// Always false when the window is off (capacity 0).
    pub(crate) fn is_duplicate(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let key =
            (u128::from(self.keys.0.hash_one(id)) << 64) | u128::from(self.keys.1.hash_one(id));
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
    async fn cumulative_acks_and_timeouts() {
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
        let expired = w.take_expired(t0 + Duration::from_millis(3));
        assert_eq!(
            expired.iter().map(|o| o.frame.as_str()).collect::<Vec<_>>(),
            ["2", "3"]
        );
        // Resent frames get new places in the connection's order.
        w.sent(expired[0].clone(), t0 + Duration::from_millis(10));
        assert_eq!(w.ack(5), 1);
        assert_eq!(w.take_all().len(), 1);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn dedup_window_forgets_the_oldest() {
        let mut d = DedupWindow::new(2);
        assert!(!d.is_duplicate("a"));
        assert!(d.is_duplicate("a"));
        assert!(!d.is_duplicate("b"));
        assert!(!d.is_duplicate("c")); // evicts a
        assert!(!d.is_duplicate("a"));
        assert!(d.is_duplicate("c"));
        let mut off = DedupWindow::new(0);
        assert!(!off.is_duplicate("a") && !off.is_duplicate("a"));
    }
}
