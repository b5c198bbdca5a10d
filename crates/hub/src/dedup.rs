//! The hub-wide de-duplication window: ids of events recently received
//! from ack-mode clients, so that an event resent after a lost ack (on the
//! same connection or a new one) is relayed only once.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::outbox::FrameSet;

/// An event id as the window stores it: a 128-bit keyed hash, 16 bytes
/// whatever the id's length.
///
/// Why a hash is safe here: two different ids share a key only by
/// accident, and the window then drops the second one as a duplicate. Keys
/// are SipHash outputs under a secret key drawn at random when the hub
/// starts, so clients cannot aim for a collision, and by the birthday
/// bound the chance that any of `n` ids in the window collide is about
/// `n² / 2¹²⁹`: 1.5 × 10⁻²⁹ for a full default window of 100,000, and
/// about 10⁻¹⁹ for a hub checking a million events a second against a full
/// window for ten years. (With 64 bits the second figure would be above 1,
/// which is why the key is 128 bits.)
pub(crate) type Key = u128;

/// Remembers the keys of recently seen event ids, at most `max_ids` of
/// them and none older than `max_age`.
///
/// One `std` mutex, taken once per read burst that holds ack-mode events
/// and never across an `.await`. Memory grows only while ack-mode clients
/// publish: a 32-byte queue entry and a 17-byte set bucket per id, plus
/// growth slack, about 6.5 MB for a full default window of 100,000 ids.
/// The capacity stays after the window empties.
pub(crate) struct DedupWindow {
    /// One random key for the process; the two halves of a [`Key`] hash
    /// the id under it with different one-byte prefixes. (Two
    /// `RandomState`s made on one thread get keys that differ by one, not
    /// independent ones; domain separation under one random key is the
    /// standard way to get two independent outputs from a PRF.)
    hasher: RandomState,
    max_ids: usize,
    max_age: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Keys in the order first seen, with when: eviction takes the front.
    order: VecDeque<(Key, Instant)>,
    /// The same keys, for lookup.
    seen: HashSet<Key, BuildHasherDefault<KeyHasher>>,
}

impl State {
    /// Forgets keys first seen `max_age` or longer before `now`.
    fn expire(&mut self, now: Instant, max_age: Duration) {
        while let Some(&(key, at)) = self.order.front() {
            if now.saturating_duration_since(at) < max_age {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
    }
}

impl DedupWindow {
    /// An empty window; it allocates only once keys arrive.
    pub(crate) fn new(max_ids: usize, max_age: Duration) -> DedupWindow {
        DedupWindow {
            hasher: RandomState::new(),
            max_ids,
            max_age,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something ever did,
        // the window is still sound (at worst one key is in only one of
        // the two collections, which costs one missed duplicate).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key of `id`. Needs no lock.
    pub(crate) fn key(&self, id: &str) -> Key {
        let high = self.hasher.hash_one((0u8, id));
        let low = self.hasher.hash_one((1u8, id));
        (u128::from(high) << 64) | u128::from(low)
    }

    /// Checks one burst's keys in order, `(frame index, key)`, and records
    /// those not in the window; returns the frame indices whose key was
    /// already there (including earlier in the same burst): the
    /// duplicates. A duplicate does not refresh its key's age: the window
    /// covers the time after an id was first seen.
    pub(crate) fn duplicates(&self, keyed: &[(usize, Key)]) -> FrameSet {
        let now = Instant::now();
        let mut duplicates = FrameSet::default();
        let mut state = self.lock();
        state.expire(now, self.max_age);
        for &(index, key) in keyed {
            if !state.seen.insert(key) {
                duplicates.insert(index);
                continue;
            }
            state.order.push_back((key, now));
            if state.order.len() > self.max_ids
                && let Some((oldest, _)) = state.order.pop_front()
            {
                state.seen.remove(&oldest);
            }
        }
        duplicates
    }

    /// How many ids the window remembers now (expired ones are forgotten
    /// first).
    pub(crate) fn len(&self) -> usize {
        let now = Instant::now();
        let mut state = self.lock();
        state.expire(now, self.max_age);
        state.order.len()
    }
}

impl fmt::Debug for DedupWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupWindow")
            .field("max_ids", &self.max_ids)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// Keys are already uniformly distributed (keyed SipHash outputs), so the
/// set uses their low 64 bits as the hash instead of hashing them again.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; this keeps the hasher correct for
        // anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation on purpose: the low half is as random as the whole.
        self.0 = n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(window: &DedupWindow, ids: &[&str]) -> Vec<(usize, Key)> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| (i, window.key(id)))
            .collect()
    }

    fn indices(set: FrameSet) -> Vec<usize> {
        let mut set = set;
        let mut out = Vec::new();
        while let Some(i) = set.first_index() {
            out.push(i);
            set.remove(i);
        }
        out
    }

    #[test]
    fn keys_are_stable_per_window_and_distinct_per_id() {
        let w = DedupWindow::new(10, Duration::from_secs(60));
        assert_eq!(w.key("a"), w.key("a"));
        assert_ne!(w.key("a"), w.key("b"));
        // The two halves are hashed apart.
        let k = w.key("a");
        assert_ne!(k >> 64, k & u128::from(u64::MAX));
        // Another window (another hub) has another secret key.
        let other = DedupWindow::new(10, Duration::from_secs(60));
        assert_ne!(w.key("a"), other.key("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_are_reported_within_and_across_bursts() {
        let w = DedupWindow::new(10, Duration::from_secs(60));
        let first = w.duplicates(&keyed(&w, &["a", "b", "a"]));
        assert_eq!(indices(first), [2]);
        let second = w.duplicates(&keyed(&w, &["c", "b", "a"]));
        assert_eq!(indices(second), [1, 2]);
        assert_eq!(w.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_id_goes_when_the_window_is_full() {
        let w = DedupWindow::new(2, Duration::from_secs(60));
        assert!(w.duplicates(&keyed(&w, &["a", "b", "c"])).is_empty());
        assert_eq!(w.len(), 2);
        // "a" was evicted: new again, and now "b" goes.
        assert!(w.duplicates(&keyed(&w, &["a"])).is_empty());
        assert_eq!(indices(w.duplicates(&keyed(&w, &["c", "a", "b"]))), [0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn ids_expire_after_max_age_from_first_sight() {
        let age = Duration::from_secs(10);
        let w = DedupWindow::new(100, age);
        w.duplicates(&keyed(&w, &["a"]));
        tokio::time::advance(Duration::from_secs(6)).await;
        w.duplicates(&keyed(&w, &["b"]));
        // A duplicate does not make "a" younger.
        assert_eq!(indices(w.duplicates(&keyed(&w, &["a"]))), [0]);
        tokio::time::advance(Duration::from_secs(4) - Duration::from_millis(1)).await;
        assert_eq!(w.len(), 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(w.len(), 1, "\"a\" is exactly max_age old");
        assert!(w.duplicates(&keyed(&w, &["a"])).is_empty());
        assert_eq!(indices(w.duplicates(&keyed(&w, &["b"]))), [0]);
        tokio::time::advance(age).await;
        assert_eq!(w.len(), 0);
    }
}
