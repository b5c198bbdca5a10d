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
//! - **Each connection holds at most a share of the window**: past it, the
//!   connection's own oldest keys go, not everyone's, so one client sending
//!   junk ids flushes nobody else's.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::fanout::ClientId;
use crate::outbox::FrameSet;

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
}

/// Marks a key in [`State::seen`] whose event is not yet known stored:
/// the top bit of its sequence number (which never gets near it).
const UNCONFIRMED: u64 = 1 << 63;

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Default)]
struct State {
    /// Keys in the order first seen, with their sequence number and when:
    /// eviction takes the front. An entry whose key is no longer in `seen`
    /// with the same sequence number is a leftover of a key its connection
    /// pushed out of its share, skipped when reached.
    order: VecDeque<(Key, u64, Instant)>,
    /// The live keys, with the sequence number they were recorded under.
    seen: KeyMap<u64>,
    /// Each connected client's keys, oldest first: at most `share`.
    owners: HashMap<ClientId, VecDeque<(Key, u64)>>,
    /// The keys of ended connections, per peer address, oldest first: at
    /// most `share` per address, so reconnecting does not buy a client a
    /// fresh share. Entries may be leftovers (keys gone since), swept like
    /// `order`'s.
    departed: HashMap<IpAddr, VecDeque<(Key, u64)>>,
    /// Entries in `departed`, summed.
    departed_len: usize,
    next_seq: u64,
}

/// Addresses whose ended connections' keys are tracked at once. Past it,
/// an ended connection's keys stay uncounted (as before this rule), so
/// flushing the window that way takes this many addresses.
const MAX_DEPARTED_PEERS: usize = 65_536;

impl State {
    fn is_live(seen: &KeyMap<u64>, key: Key, seq: u64) -> bool {
        seen.get(&key).map(|s| s & !UNCONFIRMED) == Some(seq)
    }

    /// Forgets keys first seen `max_age` or longer before `now`.
    fn expire(&mut self, now: Instant, max_age: Duration) {
        while let Some(&(key, seq, at)) = self.order.front() {
            if now.saturating_duration_since(at) < max_age {
                break;
            }
            self.order.pop_front();
            if Self::is_live(&self.seen, key, seq) {
                self.seen.remove(&key);
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
        use std::collections::hash_map::Entry;
        let mut duplicates = FrameSet::default();
        // The owner's keys are looked up once per burst, not per key.
        let mine = self.owners.entry(owner).or_default();
        for &(index, key) in keyed {
            let seq = self.next_seq;
            match self.seen.entry(key) {
                // Its first copy is not known stored yet: this one goes
                // on too (the backplane drops whichever comes second), so
                // its ack waits for a store, never for a publish in flight.
                Entry::Occupied(slot) if slot.get() & UNCONFIRMED != 0 => continue,
                Entry::Occupied(_) => {
                    duplicates.insert(index);
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(if confirming { seq | UNCONFIRMED } else { seq });
                }
            }
            self.next_seq += 1;
            self.order.push_back((key, seq, now));
            mine.push_back((key, seq));
            while mine.len() > share {
                if let Some((old, old_seq)) = mine.pop_front()
                    && Self::is_live(&self.seen, old, old_seq)
                {
                    self.seen.remove(&old);
                }
            }
            while self.seen.len() > max_ids {
                let Some((old, old_seq, _)) = self.order.pop_front() else {
                    break;
                };
                if Self::is_live(&self.seen, old, old_seq) {
                    self.seen.remove(&old);
                }
            }
        }
        // Leftovers of share evictions wait in `order` until reached;
        // sweep them before they outnumber the live keys.
        if self.order.len() > 2 * max_ids.max(64) {
            let seen = &self.seen;
            self.order
                .retain(|&(key, seq, _)| Self::is_live(seen, key, seq));
        }
        duplicates
    }

    /// Moves an ended connection's keys to its address's pool, and keeps
    /// that pool within `share` by forgetting the address's oldest keys.
    fn depart(&mut self, owner: ClientId, peer: IpAddr, share: usize, max_ids: usize) {
        let Some(mut mine) = self.owners.remove(&owner) else {
            return;
        };
        if !self.departed.contains_key(&peer) && self.departed.len() >= MAX_DEPARTED_PEERS {
            return;
        }
        let pool = self.departed.entry(peer).or_default();
        self.departed_len += mine.len();
        pool.append(&mut mine);
        while pool.len() > share {
            if let Some((old, old_seq)) = pool.pop_front() {
                self.departed_len -= 1;
                if Self::is_live(&self.seen, old, old_seq) {
                    self.seen.remove(&old);
                }
            }
        }
        if self.departed_len > 2 * max_ids.max(64) {
            let seen = &self.seen;
            let mut left = 0;
            self.departed.retain(|_, pool| {
                pool.retain(|&(key, seq)| Self::is_live(seen, key, seq));
                left += pool.len();
                !pool.is_empty()
            });
            self.departed_len = left;
        }
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
        if let Some(seq) = self.lock().seen.get_mut(&key) {
            *seq &= !UNCONFIRMED;
        }
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

    /// `owner`, connected from `peer`, disconnected: its keys stay in the
    /// window (a resend comes on a new connection) and count against the
    /// share of the connections that ended from `peer`.
    pub(crate) fn leave(&self, owner: ClientId, peer: IpAddr) {
        self.lock().depart(owner, peer, self.share, self.max_ids);
    }

    /// Forgets `frame`: it was acknowledged as relayed only once stored,
    /// and the backplane did not store it, so its resend (on any
    /// connection) must be relayed, not dropped as already seen.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn forget(&self, frame: &[u8]) {
        let key = self.key(frame);
        // Its entries in the queue and its owner's share are left over,
        // skipped once reached, as after a share eviction.
        self.lock().seen.remove(&key);
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
        // A connection that left keeps its keys, and its share is freed.
        w.leave(2, PEER);
        assert!(!w.lock().owners.contains_key(&2));
        assert_eq!(w.len(), 4);
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn reconnecting_does_not_buy_a_fresh_share() {
        let w = window(100, 3, Duration::from_secs(60));
        assert!(w.duplicates(1, &keyed(&w, &["victim"])).is_empty());
        w.leave(1, IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)));
        // Fifty connections in turn from one address, three junk keys each.
        for owner in 10..60 {
            let junk: Vec<String> = (0..3).map(|i| format!("junk-{owner}-{i}")).collect();
            let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
            w.duplicates(owner, &keyed(&w, &junk));
            w.leave(owner, PEER);
        }
        assert_eq!(
            w.len(),
            1 + 3,
            "the victim's key and one share of the address's"
        );
        assert_eq!(indices(w.duplicates(99, &keyed(&w, &["victim"]))), [0]);
        // Leftovers are swept: memory stays bounded.
        assert!(w.lock().departed_len <= 2 * 100 + 3);
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
