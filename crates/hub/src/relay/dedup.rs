//! The hub-wide de-duplication window: keys of events recently received
//! from ack-mode clients, so that an event resent after a lost ack (on the
//! same connection or a new one) is relayed only once.
//!
//! Two rules keep one client from harming another through it:
//!
//! - **A key is the whole frame**, id included, not the id alone: a resend
//!   is byte-for-byte the frame first sent (the transport keeps the
//!   serialised frame), so it is recognised, while another client's event
//!   that merely reuses the id (`order-1001`) is a different key and is
//!   relayed. A client can only suppress an event by sending that exact
//!   event first, which delivers it.
//! - **Each client holds at most a share of the window**: past it, the
//!   client's own oldest keys go, not everyone's, so one client sending
//!   junk ids flushes nobody else's. A client is its identity (see
//!   `Outbox::origin`), so its keys stay its own across its connections,
//!   and clients behind one address do not share a pool.
//! - **A full window takes from the client holding the most**: other
//!   clients, or many connections, can push out a client's keys only by
//!   each holding no more than it does, so flushing a client that holds
//!   `k` keys takes `max_ids / k` identities.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::relay::fanout::ClientId;
use crate::relay::outbox::FrameSet;

/// An event frame as the window stores it: a 128-bit keyed hash, 16 bytes
/// whatever the frame's length.
///
/// Why a hash is safe here: two different frames share a key only by
/// accident, and the window then drops the second one as a duplicate. Keys
/// are SipHash outputs under a secret key drawn at random when the hub
/// starts, so clients cannot aim for a collision, and by the birthday
/// bound the chance that any of `n` keys in the window collide is about
/// `n² / 2¹²⁹`: 1.5 × 10⁻²⁹ for a full default window of 100,000, and
/// about 10⁻¹⁹ for a hub checking a million events a second against a full
/// window for ten years. (With 64 bits the second figure would be above 1,
/// which is why the key is 128 bits.)
pub(crate) type Key = u128;

/// Remembers the keys of recently seen event frames, at most `max_ids` of
/// them, at most `share` per connection, and none older than `max_age`.
///
/// One `std` mutex, taken once per read burst that holds ack-mode events
/// and never across an `.await`. Memory grows only while ack-mode clients
/// publish: about 100 bytes per key (a 40-byte queue entry, a 25-byte map
/// bucket, a 24-byte entry in its connection's share, plus growth slack),
/// about 11 MB for a full default window of 100,000 keys. The capacity
/// stays after the window empties.
pub(crate) struct DedupWindow {
    /// One random key for the process; the two halves of a [`Key`] hash
    /// the frame under it with different one-byte prefixes. (Two
    /// `RandomState`s made on one thread get keys that differ by one, not
    /// independent ones; domain separation under one random key is the
    /// standard way to get two independent outputs from a PRF.)
    hasher: RandomState,
    max_ids: usize,
    share: usize,
    max_age: Duration,
    /// Set by a backplane that acknowledges only what it stored (see
    /// [`DedupWindow::confirm_when_stored`]).
    confirming: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    /// Held from a burst's check to the end of its relay (see
    /// [`DedupWindow::check_then`]); never under `state`'s lock.
    relaying: Mutex<()>,
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;
type KeySet = HashSet<Key, BuildHasherDefault<KeyHasher>>;

/// The keys one client holds in the window.
#[derive(Debug, Default)]
struct Owner {
    /// Its keys, oldest first, with their sequence numbers. Entries whose
    /// key is no longer live under that number are leftovers, skipped
    /// when reached (and swept when they outnumber the live ones).
    keys: VecDeque<(Key, u64)>,
    /// Its live keys.
    live: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Keys in the order first seen, with their sequence number and when:
    /// expiry takes the front. Entries whose key is no longer live with
    /// the same sequence number are leftovers, skipped when reached.
    order: VecDeque<(Key, u64, Instant)>,
    /// The live keys, with the sequence number they were recorded under
    /// and their owner.
    seen: KeyMap<(u64, ClientId)>,
    /// Each client's keys, by its identity (see `Outbox::origin`): they
    /// stay its own across its connections, and no other client, from
    /// whatever address, shares its pool.
    owners: HashMap<ClientId, Owner>,
    /// `(live keys, owner)` of every owner: when the window is full, the
    /// owner holding the most gives up its oldest key.
    sizes: BTreeSet<(usize, ClientId)>,
    /// Live keys whose event a backplane has not yet said it stored (see
    /// [`DedupWindow::confirm_when_stored`]): a resend of one is passed on,
    /// not dropped. Always a subset of `seen`.
    unconfirmed: KeySet,
    next_seq: u64,
}

impl State {
    /// Forgets a live key, wherever it was recorded.
    fn remove(&mut self, key: Key) {
        let Some((_, owner)) = self.seen.remove(&key) else {
            return;
        };
        self.unconfirmed.remove(&key);
        let Some(held) = self.owners.get_mut(&owner) else {
            return;
        };
        self.sizes.remove(&(held.live, owner));
        held.live -= 1;
        if held.live == 0 {
            self.owners.remove(&owner);
        } else {
            self.sizes.insert((held.live, owner));
            // Leftovers at the front go now; in the middle (a key
            // forgotten out of order), once they outnumber the live keys.
            let seen = &self.seen;
            while let Some(&(k, seq)) = held.keys.front() {
                if seen.get(&k) == Some(&(seq, owner)) {
                    break;
                }
                held.keys.pop_front();
            }
            if held.keys.len() > 2 * held.live + 64 {
                held.keys
                    .retain(|&(k, seq)| seen.get(&k) == Some(&(seq, owner)));
            }
        }
    }

    /// Forgets `owner`'s oldest live key.
    fn evict_from(&mut self, owner: ClientId) {
        let Some(held) = self.owners.get_mut(&owner) else {
            return;
        };
        while let Some((key, seq)) = held.keys.pop_front() {
            if self.seen.get(&key) == Some(&(seq, owner)) {
                self.remove(key);
                return;
            }
        }
    }

    /// Forgets keys first seen `max_age` or longer before `now`.
    fn expire(&mut self, now: Instant, max_age: Duration) {
        while let Some(&(key, seq, at)) = self.order.front() {
            if now.saturating_duration_since(at) < max_age {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key).is_some_and(|&(s, _)| s == seq) {
                self.remove(key);
            }
        }
    }

    /// Checks `owner`'s keys in order, records those not yet live, and
    /// enforces the owner's share and the window's size; returns the
    /// indices whose key was live already.
    fn check(
        &mut self,
        owner: ClientId,
        keyed: &[(usize, Key)],
        now: Instant,
        share: usize,
        max_ids: usize,
        confirming: bool,
    ) -> FrameSet {
        let mut duplicates = FrameSet::default();
        for &(index, key) in keyed {
            if self.seen.contains_key(&key) {
                // A first copy not known stored yet: this one goes on too
                // (the backplane drops whichever comes second), so its ack
                // waits for a store, never for a publish in flight.
                if !self.unconfirmed.contains(&key) {
                    duplicates.insert(index);
                }
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.seen.insert(key, (seq, owner));
            if confirming {
                self.unconfirmed.insert(key);
            }
            self.order.push_back((key, seq, now));
            let held = self.owners.entry(owner).or_default();
            self.sizes.remove(&(held.live, owner));
            held.keys.push_back((key, seq));
            held.live += 1;
            let live = held.live;
            self.sizes.insert((live, owner));
            if live > share {
                // Past its share, a client pushes out its own oldest.
                self.evict_from(owner);
            }
            while self.seen.len() > max_ids {
                // Full: the client holding the most gives one up, so no
                // number of other clients (or connections) can push out
                // the keys of one that holds fewer than they do.
                let Some(&(_, largest)) = self.sizes.last() else {
                    break;
                };
                self.evict_from(largest);
            }
        }
        // Leftovers of evictions wait in `order` until reached; sweep
        // them before they outnumber the live keys.
        if self.order.len() > 2 * max_ids.max(64) {
            let seen = &self.seen;
            self.order
                .retain(|&(key, seq, _)| seen.get(&key).is_some_and(|&(s, _)| s == seq));
        }
        duplicates
    }
}

impl DedupWindow {
    /// An empty window; it allocates only once keys arrive. `share` is
    /// capped at `max_ids`.
    pub(crate) fn new(max_ids: usize, share: usize, max_age: Duration) -> DedupWindow {
        DedupWindow {
            hasher: RandomState::new(),
            max_ids,
            share: share.clamp(1, max_ids.max(1)),
            max_age,
            confirming: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State::default()),
            relaying: Mutex::new(()),
        }
    }

    /// From now on a key is a duplicate's only once [`DedupWindow::confirm`]
    /// said its event was stored: until then a resend is passed on as new
    /// (a backplane whose store drops repeats, as JetStream's does by
    /// message id, stores it once). Otherwise a resend arriving while the
    /// first copy's store is still in flight would be acknowledged as a
    /// duplicate, and never stored if that store then failed.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn confirm_when_stored(&self) {
        self.confirming
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// `frame`'s event is stored: a resend of it is a duplicate now.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn confirm(&self, frame: &[u8]) {
        let key = self.key(frame);
        self.lock().unconfirmed.remove(&key);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something ever did,
        // the window is still sound (at worst one key is in only some of
        // the collections, which costs one missed duplicate).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key of an event frame (its bytes as received, id included).
    /// Needs no lock.
    ///
    /// One keyed pass over the whole frame (the high half), and a second,
    /// independently seeded one over its head and length only (the low
    /// half; the id is in the head of every frame this project writes),
    /// rather than two passes over the whole frame per event. Frames
    /// with different ids must collide in both halves, ~2⁻¹²⁸; a frame
    /// reusing an id with other content must collide in the keyed 64-bit
    /// half, ~2⁻⁶⁴ per pair, which no client can aim at.
    pub(crate) fn key(&self, frame: &[u8]) -> Key {
        const HEAD: usize = 96;
        let high = self.hasher.hash_one((0u8, frame));
        let head = &frame[..frame.len().min(HEAD)];
        let low = self.hasher.hash_one((1u8, head, frame.len()));
        (u128::from(high) << 64) | u128::from(low)
    }

    /// Checks one burst's keys from `owner`, in order, `(frame index,
    /// key)`, and records those not in the window; returns the frame
    /// indices whose key was already there (including earlier in the same
    /// burst): the duplicates. A duplicate does not refresh its key's age:
    /// the window covers the time after a frame was first seen.
    pub(crate) fn duplicates(&self, owner: ClientId, keyed: &[(usize, Key)]) -> FrameSet {
        let now = Instant::now();
        let mut state = self.lock();
        state.expire(now, self.max_age);
        let confirming = self.confirming.load(std::sync::atomic::Ordering::Relaxed);
        state.check(owner, keyed, now, self.share, self.max_ids, confirming)
    }

    /// Checks one burst's keys as [`DedupWindow::duplicates`] does, then
    /// runs `relay` with the duplicates before any other burst is checked:
    /// the check and the relay are one step, so a resend on another
    /// connection can neither be dropped (and acknowledged) before its
    /// original is relayed, nor be relayed ahead of it. Only ack-mode
    /// bursts take this lock, and `relay` may take the fan-out's (and
    /// [`DedupWindow::forget`]), never this one.
    pub(crate) fn check_then<R>(
        &self,
        owner: ClientId,
        keyed: &[(usize, Key)],
        relay: impl FnOnce(FrameSet) -> R,
    ) -> R {
        let _step = self.relaying.lock().unwrap_or_else(PoisonError::into_inner);
        relay(self.duplicates(owner, keyed))
    }

    /// Forgets `frame`: it was acknowledged as relayed only once stored,
    /// and the backplane did not store it, so its resend (on any
    /// connection) must be relayed, not dropped as already seen.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn forget(&self, frame: &[u8]) {
        let key = self.key(frame);
        self.lock().remove(key);
    }

    /// Forgets every key: the backplane's store that held their events is
    /// gone (made anew), so a resend of any of them must be relayed to the
    /// new one, not dropped as already seen.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn forget_all(&self) {
        *self.lock() = State::default();
    }

    /// How many keys the window remembers now (expired ones are forgotten
    /// first).
    pub(crate) fn len(&self) -> usize {
        let now = Instant::now();
        let mut state = self.lock();
        state.expire(now, self.max_age);
        state.seen.len()
    }
}

impl fmt::Debug for DedupWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupWindow")
            .field("max_ids", &self.max_ids)
            .field("share", &self.share)
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
        // The high half: the keyed hash of the whole frame. The low half
        // covers only the head and length, so a client sending frames
        // that differ only past the head would put them all in one bucket
        // chain and make every lookup walk it.
        self.0 = (n >> 64) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(window: &DedupWindow, frames: &[&str]) -> Vec<(usize, Key)> {
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| (i, window.key(f.as_bytes())))
            .collect()
    }

    #[test]
    fn frames_alike_in_head_and_length_spread_over_buckets() {
        // Frames that differ only past the head the key's low half covers:
        // a client could send any number of them.
        let window = DedupWindow::new(100, 100, Duration::from_secs(60));
        let head = format!(
            r#"{{"id":"{}","event_type":"t","payload":"#,
            "x".repeat(100)
        );
        let buckets = BuildHasherDefault::<KeyHasher>::default();
        let hashes: std::collections::HashSet<u64> = (0..64)
            .map(|i| {
                let frame = format!("{head}{i:04}}}");
                buckets.hash_one(window.key(frame.as_bytes()))
            })
            .collect();
        assert_eq!(hashes.len(), 64, "one bucket hash per distinct frame");
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

    fn window(max_ids: usize, share: usize, age: Duration) -> DedupWindow {
        DedupWindow::new(max_ids, share, age)
    }

    #[test]
    fn forgetting_all_relays_every_resend_again() {
        let w = window(10, 10, Duration::from_secs(60));
        assert!(w.duplicates(1, &keyed(&w, &["a", "b"])).is_empty());
        assert_eq!(w.duplicates(2, &keyed(&w, &["a"])).len(), 1);
        w.forget_all();
        assert_eq!(w.len(), 0);
        assert!(w.duplicates(2, &keyed(&w, &["a", "b"])).is_empty());
        assert_eq!(w.duplicates(1, &keyed(&w, &["b"])).len(), 1, "known again");
    }

    #[test]
    fn keys_are_stable_per_window_and_distinct_per_frame() {
        let w = window(10, 10, Duration::from_secs(60));
        assert_eq!(w.key(b"a"), w.key(b"a"));
        assert_ne!(w.key(b"a"), w.key(b"b"));
        // The two halves are hashed apart.
        let k = w.key(b"a");
        assert_ne!(k >> 64, k & u128::from(u64::MAX));
        // Another window (another hub) has another secret key.
        let other = window(10, 10, Duration::from_secs(60));
        assert_ne!(w.key(b"a"), other.key(b"a"));
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_are_reported_within_and_across_bursts() {
        let w = window(10, 10, Duration::from_secs(60));
        let first = w.duplicates(1, &keyed(&w, &["a", "b", "a"]));
        assert_eq!(indices(first), [2]);
        // Another connection resending: still a duplicate.
        let second = w.duplicates(2, &keyed(&w, &["c", "b", "a"]));
        assert_eq!(indices(second), [1, 2]);
        assert_eq!(w.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_id_goes_when_the_window_is_full() {
        let w = window(2, 2, Duration::from_secs(60));
        assert!(w.duplicates(1, &keyed(&w, &["a", "b", "c"])).is_empty());
        assert_eq!(w.len(), 2);
        // "a" was evicted: new again, and now "b" goes.
        assert!(w.duplicates(1, &keyed(&w, &["a"])).is_empty());
        assert_eq!(
            indices(w.duplicates(1, &keyed(&w, &["c", "a", "b"]))),
            [0, 1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_connection_only_pushes_out_its_own_keys() {
        let w = window(100, 3, Duration::from_secs(60));
        assert!(w.duplicates(1, &keyed(&w, &["victim"])).is_empty());
        let junk: Vec<String> = (0..1000).map(|i| format!("junk-{i}")).collect();
        let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
        for chunk in junk.chunks(200) {
            w.duplicates(2, &keyed(&w, chunk));
        }
        assert_eq!(w.len(), 1 + 3, "the victim's key and the attacker's share");
        assert_eq!(indices(w.duplicates(3, &keyed(&w, &["victim"]))), [0]);
        // Leftovers of share evictions are swept: memory stays bounded.
        assert!(w.lock().order.len() <= 2 * 100 + 1);
        assert!(w.lock().owners[&2].keys.len() <= 2 * 3 + 64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_window_takes_from_the_client_holding_the_most() {
        let w = window(100, 10, Duration::from_secs(60));
        let victim: Vec<String> = (0..5).map(|i| format!("victim-{i}")).collect();
        let victim: Vec<&str> = victim.iter().map(String::as_str).collect();
        assert!(w.duplicates(1, &keyed(&w, &victim)).is_empty());
        // Eleven others (connections or identities, from anywhere), each
        // filling its share: 110 keys and the victim's 5 for 100 places.
        for owner in 10..21 {
            let junk: Vec<String> = (0..10).map(|i| format!("junk-{owner}-{i}")).collect();
            let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
            w.duplicates(owner, &keyed(&w, &junk));
        }
        assert_eq!(w.len(), 100);
        assert_eq!(
            indices(w.duplicates(1, &keyed(&w, &victim))),
            [0, 1, 2, 3, 4],
            "every key of the one holding fewest is still there"
        );
        // Others are flushed down to the victim's size, never below it
        // before it.
        let state = w.lock();
        assert!(state.sizes.iter().all(|&(live, _)| live >= 5));
        assert_eq!(
            state.sizes.iter().map(|&(live, _)| live).sum::<usize>(),
            100
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_resend_is_a_duplicate_only_once_its_first_copy_is_stored() {
        let w = window(10, 10, Duration::from_secs(60));
        w.confirm_when_stored();
        assert!(w.duplicates(1, &keyed(&w, &["a"])).is_empty());
        // Its store is in flight: the resend goes on, on any connection.
        assert!(w.duplicates(2, &keyed(&w, &["a", "a"])).is_empty());
        w.confirm(b"a");
        assert_eq!(indices(w.duplicates(2, &keyed(&w, &["a"]))), [0]);
        assert_eq!(w.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ids_expire_after_max_age_from_first_sight() {
        let age = Duration::from_secs(10);
        let w = window(100, 100, age);
        w.duplicates(1, &keyed(&w, &["a"]));
        tokio::time::advance(Duration::from_secs(6)).await;
        w.duplicates(1, &keyed(&w, &["b"]));
        // A duplicate does not make "a" younger.
        assert_eq!(indices(w.duplicates(1, &keyed(&w, &["a"]))), [0]);
        tokio::time::advance(Duration::from_secs(4) - Duration::from_millis(1)).await;
        assert_eq!(w.len(), 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(w.len(), 1, "\"a\" is exactly max_age old");
        assert!(w.duplicates(1, &keyed(&w, &["a"])).is_empty());
        assert_eq!(indices(w.duplicates(1, &keyed(&w, &["b"]))), [0]);
        tokio::time::advance(age).await;
        assert_eq!(w.len(), 0);
    }
}
