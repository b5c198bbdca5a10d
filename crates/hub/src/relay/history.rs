//! The history: the most recent relayed events, at positions
//! `(epoch, seq)`, so that a client that reconnects with its position gets
//! what it missed.
//!
//! It holds the same shared bursts the fan-out queues (no copy), bounded
//! in events (`history_size`), bytes (`history_bytes`) and age
//! (`history_ttl`). `seq` counts events hub-wide from 1; `epoch` is random
//! at start, so a position from before a restart is told apart
//! (`NotRecoveredReason::Epoch`) instead of looking complete.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use watchtower_core::{NotRecoveredReason, Position, frame_key};

use crate::config::HubConfig;
use crate::relay::fanout::Burst;
use crate::relay::keyhash::KeyState;

/// Bytes of bookkeeping each held event costs besides its frame, charged
/// to `history_bytes`: its slots in its burst (the frame's handle, 32
/// bytes; its type's, 16; its key, 8) and its key in the index (a 49-byte
/// entry, in a table at most 7/8 full that doubles as it grows: up to 112
/// bytes). So a flood of tiny events cannot keep more alive than the
/// budget says.
pub(crate) const EVENT_OVERHEAD: usize = 160;

/// Bytes of bookkeeping each held burst costs besides its events': the
/// shared `Burst` and its `Arc` (104 bytes, 112 allocated), its three
/// vectors' allocations rounded up to the allocator's size classes, its
/// slot in the ring (56 bytes, in a ring up to twice its length) and the
/// read buffer's shared header. With [`EVENT_OVERHEAD`], 440 bytes for a
/// one-event burst: what the README measured (160 to 440 bytes an event).
pub(crate) const BURST_OVERHEAD: usize = 280;

/// What a burst of `events` frames of `bytes` bytes is charged in the
/// history: its frames and its bookkeeping.
pub(crate) fn charge(events: usize, bytes: usize) -> usize {
    bytes + BURST_OVERHEAD + events * EVENT_OVERHEAD
}

/// One relayed burst as stored.
#[derive(Debug)]
struct Stored {
    burst: Arc<Burst>,
    /// The seq of `burst.frames[0]`.
    first: u64,
    /// Frames at the front already forgotten (over `history_size`).
    skip: usize,
    /// When it was relayed (with a backplane: stored there).
    at: Instant,
    /// The frames' keys, when the burst came without them (see
    /// [`Burst::keyed`]).
    keys: Option<Box<[u64]>>,
}

impl Stored {
    /// The key of frame `i` (see [`watchtower_core::frame_key`]).
    fn key(&self, i: usize) -> u64 {
        let keys = self.keys.as_deref().unwrap_or(&self.burst.keys);
        keys.get(i).copied().unwrap_or_default()
    }

    /// The seq of its last frame.
    fn last(&self) -> u64 {
        self.first + self.burst.frames.len() as u64 - 1
    }

    fn events(&self) -> usize {
        self.burst.frames.len() - self.skip
    }
}

/// The ring of recent bursts. Lives under the fan-out's lock, the one live
/// events are appended and offered under, so a replay and the live events
/// after it meet with nothing missing or repeated.
#[derive(Debug)]
pub(crate) struct History {
    epoch: u64,
    size: usize,
    ttl: Duration,
    budget: usize,
    ring: VecDeque<Stored>,
    /// Events held (frames in `ring`, less skipped ones).
    events: usize,
    /// Bytes `ring`'s bursts keep alive, their bookkeeping included (see
    /// [`charge`]).
    bytes: usize,
    /// The seq of the newest event; 0 before the first.
    head: u64,
    /// Every held event's key, to the seqs holding a frame with that key:
    /// a position's key is found by one lookup, never by hashing stored
    /// frames under the lock relays take. Keys are made once, before a
    /// burst is appended (or as it is, for a burst without them).
    index: HashMap<u64, Seqs, KeyState>,
    /// Work done by key lookups, for the tests: one per lookup, plus the
    /// steps of a binary search among equal keys.
    #[cfg(test)]
    probes: std::cell::Cell<u64>,
}

/// The seqs holding frames with one key, oldest first. Almost always one.
#[derive(Debug)]
enum Seqs {
    One(u64),
    Many(VecDeque<u64>),
}

/// Records that `seq` holds a frame with `key`.
fn index(index: &mut HashMap<u64, Seqs, KeyState>, key: u64, seq: u64) {
    match index.entry(key) {
        Entry::Vacant(slot) => {
            slot.insert(Seqs::One(seq));
        }
        Entry::Occupied(mut slot) => match slot.get_mut() {
            Seqs::One(first) => {
                let first = *first;
                slot.insert(Seqs::Many(VecDeque::from([first, seq])));
            }
            Seqs::Many(seqs) => seqs.push_back(seq),
        },
    }
}

/// Forgets that `seq`, the oldest held with `key`, holds it.
fn unindex(index: &mut HashMap<u64, Seqs, KeyState>, key: u64, seq: u64) {
    if let Entry::Occupied(mut slot) = index.entry(key) {
        let gone = match slot.get_mut() {
            Seqs::One(held) => *held == seq,
            Seqs::Many(seqs) => {
                if seqs.front() == Some(&seq) {
                    seqs.pop_front();
                }
                seqs.is_empty()
            }
        };
        if gone {
            slot.remove();
        }
    }
}

/// Forgets the keys of frames `from..to` of `stored`.
fn unindex_frames(
    index: &mut HashMap<u64, Seqs, KeyState>,
    stored: &Stored,
    from: usize,
    to: usize,
) {
    for i in from..to {
        unindex(index, stored.key(i), stored.first + i as u64);
    }
}

impl History {
    /// `None` when `history_size` is 0 (history off).
    pub(crate) fn new(config: &HubConfig) -> Option<History> {
        (config.history_size > 0).then(|| History {
            epoch: new_epoch(),
            size: config.history_size,
            ttl: config.history_ttl,
            budget: config.history_bytes,
            ring: VecDeque::new(),
            events: 0,
            bytes: 0,
            head: 0,
            index: HashMap::with_hasher(KeyState::new()),
            #[cfg(test)]
            probes: std::cell::Cell::new(0),
        })
    }

    /// A history of events numbered by someone else (a backplane's stream,
    /// whose identity is `epoch`), starting after `head`; `None` when
    /// `history_size` is 0.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn numbered(config: &HubConfig, epoch: u64, head: u64) -> Option<History> {
        History::new(config).map(|h| History { epoch, head, ..h })
    }

    /// Stores a burst whose first frame has seq `first` (given by the
    /// backplane) and which the backplane stored `at` (its age counts from
    /// then, the same on every node, not from when this one read it);
    /// returns the seq of its last frame, or `None` if it was already
    /// stored (a repeat is never relayed twice). The flag is set when a gap
    /// came first.
    ///
    /// A `first` past the next seq is a gap: events were not received (the
    /// stream evicted them before this node read them, or they were
    /// deleted), so everything before the gap is forgotten and a position
    /// before it is not recovered. The gap is never mistaken for
    /// continuity.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn append_at(
        &mut self,
        burst: &Arc<Burst>,
        first: u64,
        at: Instant,
        now: Instant,
    ) -> Option<(u64, bool)> {
        if first <= self.head {
            return None;
        }
        let gap = self.open_at(first);
        Some((self.append_stamped(burst, at, now), gap))
    }

    /// Moves the head past `seq`, a stream sequence that holds no event (a
    /// message on the stream that is not one): no gap, as nothing was
    /// missed, so positions before it are still recovered. `None` if the
    /// head is past it already; the flag is set when a gap came first (see
    /// [`History::append_at`]).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn skip_at(&mut self, seq: u64) -> Option<bool> {
        if seq <= self.head {
            return None;
        }
        let gap = self.open_at(seq);
        self.head = seq;
        Some(gap)
    }

    /// Starts another history in place: the backplane's stream was made
    /// anew (a new `epoch`, numbered after `head`). Everything held is
    /// forgotten, as it is of the old epoch; a position of the old epoch
    /// is answered [`NotRecoveredReason::Epoch`] from now on.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn renumber(&mut self, epoch: u64, head: u64) {
        self.clear();
        self.epoch = epoch;
        self.head = head;
    }

    /// Forgets every event held.
    fn clear(&mut self) {
        self.ring.clear();
        self.index.clear();
        self.events = 0;
        self.bytes = 0;
    }

    /// Makes `first` the next seq; a gap if it is not the one after the
    /// head, and then everything before it is forgotten.
    fn open_at(&mut self, first: u64) -> bool {
        let gap = first > self.head + 1;
        if gap {
            self.clear();
            self.head = first - 1;
        }
        gap
    }

    /// Forgets the events before `first`: the stream no longer holds them
    /// (its own limits evicted them), so they are no longer recoverable
    /// here either, as on a node that never saw them.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn retain_from(&mut self, first: u64) {
        while let Some(oldest) = self.ring.front_mut() {
            if oldest.last() < first {
                self.pop_oldest();
            } else {
                let over =
                    (first.saturating_sub(oldest.first) as usize).saturating_sub(oldest.skip);
                self.trim_oldest(over);
                break;
            }
        }
    }

    /// Where the history stands: the newest event's position.
    pub(crate) fn position(&self) -> Position {
        Position::new(self.epoch, self.head)
    }

    /// Events held now.
    pub(crate) fn len(&self) -> usize {
        self.events
    }

    /// Stores a burst about to be relayed; returns the seq of its last
    /// frame.
    pub(crate) fn append(&mut self, burst: &Arc<Burst>, now: Instant) -> u64 {
        self.append_stamped(burst, now, now)
    }

    /// Stores a burst whose age counts from `at`; returns the seq of its
    /// last frame.
    fn append_stamped(&mut self, burst: &Arc<Burst>, at: Instant, now: Instant) -> u64 {
        let n = burst.frames.len();
        if n == 0 {
            return self.head;
        }
        let first = self.head + 1;
        self.head += n as u64;
        // Made before the lock, in the reader; here only for a burst
        // that came without them (from a backplane).
        let keys = (burst.keys.len() != n).then(|| {
            burst
                .frames
                .iter()
                .map(|f| frame_key(f.as_bytes()))
                .collect::<Box<[u64]>>()
        });
        let stored = Stored {
            burst: Arc::clone(burst),
            first,
            skip: 0,
            at,
            keys,
        };
        for i in 0..n {
            index(&mut self.index, stored.key(i), first + i as u64);
        }
        self.ring.push_back(stored);
        self.events += n;
        self.bytes += charge(n, burst.bytes);
        self.forget(now);
        self.head
    }

    /// Forgets the oldest stored burst, whatever of it is still held.
    fn pop_oldest(&mut self) {
        if let Some(oldest) = self.ring.pop_front() {
            unindex_frames(
                &mut self.index,
                &oldest,
                oldest.skip,
                oldest.burst.frames.len(),
            );
            self.events -= oldest.events();
            // What was charged at `append`: frames trimmed before stay
            // alive in the burst until it goes, so they stay charged.
            self.bytes -= charge(oldest.burst.frames.len(), oldest.burst.bytes);
        }
    }

    /// Forgets the oldest `over` events still held of the oldest burst.
    fn trim_oldest(&mut self, over: usize) {
        if let Some(oldest) = self.ring.front_mut() {
            unindex_frames(&mut self.index, oldest, oldest.skip, oldest.skip + over);
            oldest.skip += over;
            self.events -= over;
        }
    }

    /// Forgets events past the size, byte or age bound, oldest first.
    fn forget(&mut self, now: Instant) {
        while let Some(oldest) = self.ring.front_mut() {
            let too_old = now.saturating_duration_since(oldest.at) >= self.ttl;
            if too_old || self.bytes > self.budget || self.events - oldest.events() >= self.size {
                // The whole burst goes.
                self.pop_oldest();
            } else if self.events > self.size {
                // Part of it: its oldest frames.
                self.trim_oldest(self.events - self.size);
            } else {
                break;
            }
        }
    }

    /// Where a client at `from` starts: the seq after which every event
    /// is to be sent to it, or why it cannot be. However many events that
    /// is, the client reads them from here at its own pace (see
    /// [`History::after`]); it is never refused for their number.
    ///
    /// `from.last()`, when set, is the key of the last event the client
    /// received past `from.seq()`: it starts after that event.
    pub(crate) fn start(
        &mut self,
        from: &Position,
        now: Instant,
    ) -> Result<u64, NotRecoveredReason> {
        self.forget(now);
        if from.epoch() != self.epoch || from.seq() > self.head {
            return Err(NotRecoveredReason::Epoch);
        }
        if from.seq() + 1 < self.oldest() {
            return Err(NotRecoveredReason::Expired);
        }
        match from.last() {
            None => Ok(from.seq()),
            Some(key) => self.find(from.seq(), key).ok_or(NotRecoveredReason::Epoch),
        }
    }

    /// Where a client is started whose position [`History::start`]
    /// refused: at the head (it is sent what comes next) — except a
    /// client from another epoch while this history still holds its own
    /// epoch's first event: it is sent the whole epoch. Every event of
    /// this epoch was relayed after the epoch began, and the client's
    /// position is from before that (the hub restarted, the stream was
    /// recreated), so none of them can have reached it: they are what it
    /// missed across the break. It is still answered `epoch`, because
    /// what the old epoch had not sent it yet is gone. A made-up epoch
    /// costs no more than this epoch's seq 0, which any client may
    /// present; a client of this epoch that is not placed (a position
    /// past the head, an unknown key) is started at the head.
    pub(crate) fn start_refused(&self, from: &Position) -> u64 {
        if from.epoch() != self.epoch && self.oldest() <= 1 {
            0
        } else {
            self.head
        }
    }

    /// The seq of the oldest event held; `head + 1` when none is.
    pub(crate) fn oldest(&self) -> u64 {
        self.ring
            .front()
            .map_or(self.head + 1, |s| s.first + s.skip as u64)
    }

    /// The seq of the newest event; 0 before the first.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The stored bursts holding events after `after`, oldest first, each
    /// with the index of its first such frame and the seq of its last
    /// frame. Found by a binary search, not a scan.
    pub(crate) fn after(&self, after: u64) -> impl Iterator<Item = (&Arc<Burst>, usize, u64)> {
        let at = self.ring.partition_point(|s| s.last() <= after);
        self.ring.range(at..).map(move |s| {
            let from = ((after + 1).saturating_sub(s.first) as usize).max(s.skip);
            (&s.burst, from, s.last())
        })
    }

    /// Whether a client at `from` (of this epoch) has had events this
    /// history does not hold yet: its seq is past the head, or the event it
    /// names after its seq is not here although its seq is still held. A
    /// history fed by a backplane can be behind the node the client came
    /// from; [`History::start`] would take such a position for another
    /// history's.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn behind(&self, from: &Position) -> bool {
        if from.epoch() != self.epoch {
            return false;
        }
        if from.seq() > self.head {
            return true;
        }
        from.last().is_some_and(|key| {
            from.seq() + 1 >= self.oldest() && self.find(from.seq(), key).is_none()
        })
    }

    /// The seq of the first event after `after` whose frame has `key`:
    /// one lookup, and a binary search among the (rare) events that share
    /// the key; no stored frame is read.
    fn find(&self, after: u64, key: u64) -> Option<u64> {
        #[cfg(test)]
        self.probes.set(self.probes.get() + 1);
        match self.index.get(&key)? {
            Seqs::One(seq) => (*seq > after).then_some(*seq),
            Seqs::Many(seqs) => {
                #[cfg(test)]
                self.probes
                    .set(self.probes.get() + u64::from(usize::BITS - seqs.len().leading_zeros()));
                seqs.get(seqs.partition_point(|seq| *seq <= after)).copied()
            }
        }
    }
}

/// A new random epoch: the process's randomly keyed hasher over the time.
fn new_epoch() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    fn config(size: usize) -> HubConfig {
        HubConfig {
            history_size: size,
            ..HubConfig::default()
        }
    }

    fn burst(ids: &[u32]) -> Arc<Burst> {
        Arc::new(Burst::new(
            1,
            ids.iter()
                .map(|i| Utf8Bytes::from(format!(r#"{{"id":"{i}","event_type":"t"}}"#)))
                .collect(),
            ids.iter().map(|_| std::sync::Arc::from("t")).collect(),
        ))
    }

    /// The ids of the events a client at `from` is sent, or why none.
    fn replay(
        h: &mut History,
        from: &Position,
        now: Instant,
    ) -> Result<Vec<String>, NotRecoveredReason> {
        let start = h.start(from, now)?;
        Ok(h.after(start)
            .flat_map(|(burst, first, _)| burst.frames[first..].iter())
            .map(|frame| frame.split('"').nth(3).unwrap_or_default().to_string())
            .collect())
    }

    #[test]
    fn off_at_zero() {
        assert!(History::new(&config(0)).is_none());
    }

    #[test]
    fn replays_everything_after_the_position_or_says_why_not() {
        let now = Instant::now();
        let mut h = History::new(&config(4)).unwrap();
        let start = h.position();
        assert_eq!(start.seq(), 0);
        assert_eq!(h.append(&burst(&[1, 2, 3]), now), 3);
        let at3 = h.position();
        assert_eq!(replay(&mut h, &start, now).unwrap(), ["1", "2", "3"]);
        assert_eq!(h.append(&burst(&[4, 5]), now), 5);
        // 5 events, room for 4: event 1 is forgotten, the first burst kept
        // in part.
        assert_eq!(h.len(), 4);
        assert_eq!(
            replay(&mut h, &start, now).unwrap_err(),
            NotRecoveredReason::Expired
        );
        let at1 = Position::new(start.epoch(), 1);
        assert_eq!(replay(&mut h, &at1, now).unwrap(), ["2", "3", "4", "5"]);
        assert_eq!(replay(&mut h, &at3, now).unwrap(), ["4", "5"]);
        // Nothing missed: an empty, complete replay.
        assert_eq!(
            {
                let at = h.position();
                replay(&mut h, &at, now).unwrap().len()
            },
            0
        );
        // Another history, or a position from its future.
        let other = Position::new(start.epoch().wrapping_add(1), 3);
        assert_eq!(
            replay(&mut h, &other, now).unwrap_err(),
            NotRecoveredReason::Epoch
        );
        let ahead = Position::new(start.epoch(), 9);
        assert_eq!(
            replay(&mut h, &ahead, now).unwrap_err(),
            NotRecoveredReason::Epoch
        );
    }

    #[test]
    fn the_key_of_the_last_event_received_skips_what_arrived() {
        let now = Instant::now();
        let mut h = History::new(&config(100)).unwrap();
        let start = h.position();
        h.append(&burst(&[1, 2, 3]), now);
        h.append(&burst(&[4]), now);
        let got = burst(&[2]);
        let key = frame_key(got.frames[0].as_bytes());
        assert_eq!(
            replay(&mut h, &start.after(Some(key)), now).unwrap(),
            ["3", "4"]
        );
        assert_eq!(
            replay(&mut h, &start.after(Some(12345)), now).unwrap_err(),
            NotRecoveredReason::Epoch
        );
    }

    #[test]
    fn a_client_of_a_lost_epoch_is_sent_this_one_while_it_is_held_whole() {
        let now = Instant::now();
        let mut h = History::new(&config(4)).unwrap();
        let lost = Position::new(h.position().epoch().wrapping_add(1), 7);
        h.append(&burst(&[1, 2, 3]), now);
        assert_eq!(h.start(&lost, now), Err(NotRecoveredReason::Epoch));
        assert_eq!(h.start_refused(&lost), 0, "all of this epoch follows");
        // Of this epoch but past its head: what comes next, nothing old.
        let ahead = Position::new(h.position().epoch(), 9);
        assert_eq!(h.start(&ahead, now), Err(NotRecoveredReason::Epoch));
        assert_eq!(h.start_refused(&ahead), 3);
        // Once this epoch's first event is forgotten, what the client
        // missed of it cannot all be sent: it starts at the head.
        h.append(&burst(&[4, 5]), now);
        assert_eq!(h.oldest(), 2);
        assert_eq!(h.start_refused(&lost), 5);
    }

    #[test]
    fn a_client_far_behind_is_never_refused_for_the_number_of_events() {
        let now = Instant::now();
        let mut h = History::new(&config(100)).unwrap();
        let start = h.position();
        for i in 0..40 {
            h.append(&burst(&[i, i + 1000]), now);
        }
        // 80 events missed: all of them follow, however many.
        assert_eq!(replay(&mut h, &start, now).unwrap().len(), 80);
    }

    #[test]
    fn events_expire_with_age_and_bytes() {
        let now = Instant::now();
        let mut h = History::new(&config(100)).unwrap();
        let start = h.position();
        h.append(&burst(&[1]), now);
        let later = now + DEFAULT_TTL_FOR_TEST;
        assert_eq!(
            replay(&mut h, &start, later).unwrap_err(),
            NotRecoveredReason::Expired
        );
        assert_eq!(h.len(), 0);
        // The position after the last event is still complete.
        assert_eq!(
            {
                let at = h.position();
                replay(&mut h, &at, later).unwrap().len()
            },
            0
        );

        let mut h = History::new(&HubConfig {
            history_bytes: 1024,
            ..config(100)
        })
        .unwrap();
        for i in 0..100 {
            h.append(&burst(&[i]), now);
        }
        assert!(h.bytes <= 1024, "{}", h.bytes);
        assert!(h.len() < 100);
    }

    #[test]
    fn the_bookkeeping_of_every_event_and_burst_is_charged_to_the_budget() {
        let now = Instant::now();
        let mut h = History::new(&config(1_000_000)).unwrap();
        let one = burst(&[1]);
        let frame = one.frames[0].len();
        h.append(&one, now);
        assert_eq!(h.bytes, frame + BURST_OVERHEAD + EVENT_OVERHEAD);
        let three = burst(&[2, 3, 4]);
        h.append(&three, now);
        assert_eq!(
            h.bytes,
            frame + three.bytes + 2 * BURST_OVERHEAD + 4 * EVENT_OVERHEAD
        );
        // Trimming events of a burst keeps them charged (its frames stay
        // alive); forgetting the burst gives back all it was charged.
        h.retain_from(3);
        assert_eq!(h.len(), 2);
        assert_eq!(h.bytes, three.bytes + BURST_OVERHEAD + 3 * EVENT_OVERHEAD);
        h.retain_from(5);
        assert_eq!((h.len(), h.bytes), (0, 0));

        // A flood of tiny one-event bursts: the budget binds on what they
        // keep alive, bookkeeping included, not on their frames alone.
        let budget = 64 * 1024;
        let mut h = History::new(&HubConfig {
            history_bytes: budget,
            ..config(1_000_000)
        })
        .unwrap();
        for i in 0..10_000 {
            h.append(&burst(&[i]), now);
        }
        assert!(h.bytes <= budget, "{}", h.bytes);
        // Every frame is at least as long as the first.
        let least = frame + BURST_OVERHEAD + EVENT_OVERHEAD;
        assert!(h.len() <= budget / least, "{} events held", h.len());
    }

    #[test]
    fn a_seq_holding_no_event_is_skipped_not_taken_for_a_gap() {
        let now = Instant::now();
        let mut h = History::numbered(&config(100), 7, 10).unwrap();
        let at10 = h.position();
        h.append_at(&burst(&[11]), 11, now, now);
        assert_eq!(h.skip_at(12), Some(false));
        assert_eq!(h.skip_at(12), None, "once");
        assert_eq!(h.append_at(&burst(&[13]), 13, now, now), Some((13, false)));
        assert_eq!(replay(&mut h, &at10, now).unwrap(), ["11", "13"]);
        assert_eq!(replay(&mut h, &Position::new(7, 12), now).unwrap(), ["13"]);
        // A skip after a gap is still a gap.
        assert_eq!(h.skip_at(15), Some(true));
        assert_eq!(
            replay(&mut h, &at10, now).unwrap_err(),
            NotRecoveredReason::Expired
        );
    }

    #[test]
    fn numbered_histories_treat_gaps_and_eviction_as_loss() {
        let now = Instant::now();
        let mut h = History::numbered(&config(100), 7, 10).unwrap();
        let at10 = h.position();
        assert_eq!(at10, Position::new(7, 10));
        assert_eq!(
            h.append_at(&burst(&[11, 12]), 11, now, now),
            Some((12, false))
        );
        // A repeat is not stored (or relayed) again.
        assert_eq!(h.append_at(&burst(&[12]), 12, now, now), None);
        assert_eq!(replay(&mut h, &at10, now).unwrap(), ["11", "12"]);
        let at12 = h.position();
        // Seq 13 and 14 never arrived: a position before the gap is lost.
        assert_eq!(h.append_at(&burst(&[15]), 15, now, now), Some((15, true)));
        assert_eq!(
            replay(&mut h, &at12, now).unwrap_err(),
            NotRecoveredReason::Expired
        );
        let at15 = h.position();
        h.append_at(&burst(&[16, 17, 18]), 16, now, now);
        assert_eq!(replay(&mut h, &at15, now).unwrap(), ["16", "17", "18"]);
        // The stream evicted up to 16: a position at 15 is expired, at 16
        // is not.
        h.retain_from(17);
        assert_eq!(
            replay(&mut h, &at15, now).unwrap_err(),
            NotRecoveredReason::Expired
        );
        let at16 = Position::new(7, 16);
        assert_eq!(replay(&mut h, &at16, now).unwrap(), ["17", "18"]);
        assert_eq!(h.len(), 2);
        h.retain_from(30);
        assert_eq!((h.len(), h.position().seq()), (0, 18));
    }

    #[test]
    fn a_renumbered_history_answers_old_positions_epoch_and_starts_empty() {
        let now = Instant::now();
        let mut h = History::numbered(&config(100), 7, 10).unwrap();
        h.append_at(&burst(&[11, 12]), 11, now, now);
        let old = h.position();
        h.renumber(8, 0);
        assert_eq!((h.len(), h.position()), (0, Position::new(8, 0)));
        // A position of the old epoch, even one the new seqs reach, is
        // never taken for the new one's.
        h.append_at(&burst(&[1, 2, 3]), 1, now, now);
        assert_eq!(
            replay(&mut h, &old, now).unwrap_err(),
            NotRecoveredReason::Epoch
        );
        assert!(!h.behind(&old));
        assert_eq!(
            replay(&mut h, &Position::new(8, 1), now).unwrap(),
            ["2", "3"]
        );
    }

    #[test]
    fn a_position_past_what_a_numbered_history_read_is_behind_not_lost() {
        let now = Instant::now();
        let mut h = History::numbered(&config(100), 7, 10).unwrap();
        h.append_at(&burst(&[11, 12]), 11, now, now);
        let key = |id: u32| frame_key(format!(r#"{{"id":"{id}","event_type":"t"}}"#).as_bytes());
        // Up to the head, or an event named after its seq that is here.
        assert!(!h.behind(&Position::new(7, 12)));
        assert!(!h.behind(&Position::new(7, 11).after(Some(key(12)))));
        // Past the head, or an event after its seq not read yet: another
        // node was ahead, and `start` would call it another history.
        let ahead = Position::new(7, 14);
        assert!(h.behind(&ahead));
        assert_eq!(
            replay(&mut h, &ahead, now).unwrap_err(),
            NotRecoveredReason::Epoch
        );
        assert!(h.behind(&Position::new(7, 12).after(Some(key(13)))));
        // Another epoch, or a position too old to hold: nothing to wait for.
        assert!(!h.behind(&Position::new(8, 14)));
        h.retain_from(13);
        assert!(!h.behind(&Position::new(7, 10).after(Some(key(11)))));
    }

    #[test]
    fn a_forged_key_costs_one_lookup_not_a_scan_of_stored_frames() {
        let now = Instant::now();
        let mut h = History::new(&config(10_000)).unwrap();
        let start = h.position();
        for i in 0..1_000 {
            h.append(&burst(&(i * 10..i * 10 + 10).collect::<Vec<_>>()), now);
        }
        assert_eq!(h.len(), 10_000);
        let before = h.probes.get();
        for forged in 0..100u64 {
            assert_eq!(
                h.start(&start.after(Some(forged)), now).unwrap_err(),
                NotRecoveredReason::Epoch
            );
        }
        assert_eq!(h.probes.get() - before, 100, "one lookup per forged key");
        // A real key is found the same way, also among repeats of a frame.
        let key = |id: u32| frame_key(format!(r#"{{"id":"{id}","event_type":"t"}}"#).as_bytes());
        let before = h.probes.get();
        assert_eq!(h.start(&start.after(Some(key(4_321))), now), Ok(4_322));
        assert_eq!(h.probes.get() - before, 1);
        for _ in 0..1_000 {
            h.append(&burst(&[7]), now);
        }
        let at = Position::new(start.epoch(), 10_500);
        let before = h.probes.get();
        assert_eq!(h.start(&at.after(Some(key(7))), now), Ok(10_501));
        assert!(h.probes.get() - before <= 1 + 11, "a binary search");
        // Forgotten events leave the index with them.
        assert!(h.index.len() <= h.len());
        h.retain_from(h.position().seq() + 1);
        assert!(h.index.is_empty());
    }

    const DEFAULT_TTL_FOR_TEST: Duration = crate::config::DEFAULT_HISTORY_TTL;
}
