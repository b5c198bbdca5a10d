//! One client's outbound queue: shared bursts in, whole bursts out, a
//! bound in frames, oldest-first dropping, and slow-client detection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::HubConfig;
use crate::relay::fanout::{Burst, ClientId, MAX_BURST};
use crate::relay::filter::{Change, Coverage, Filter, FilterLimits, FilterSummary, OverLimit};
use crate::relay::history::History;
use crate::relay::sample::{Due, Sampler};

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

    /// Removes the indices below `index`.
    pub(crate) fn drop_below(&mut self, index: usize) {
        for (word, bits) in self.bits.iter_mut().enumerate() {
            let start = word * 64;
            *bits &= match index.saturating_sub(start) {
                0 => u64::MAX,
                k if k >= 64 => 0,
                k => !((1u64 << k) - 1),
            };
        }
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
    /// The bytes this entry keeps alive: the whole burst's, since the
    /// burst lives as long as any of its entries (a sparse match gets a
    /// burst of its own: see [`sparse_copy`]).
    pub(crate) bytes: usize,
    /// History on: the seq of the burst's last frame (0 with history off).
    pub(crate) seq: u64,
}

/// When a client's filter matched under half of a burst's bytes, an entry
/// holding copies of just those frames: the client then keeps alive (and
/// is charged for) only what it matched, not the whole burst. Bounded by
/// the matched bytes, which the client would be sent anyway.
fn sparse_copy(burst: &Burst, frames: &FrameSet) -> Option<Entry> {
    if frames.len() == burst.frames.len() {
        return None;
    }
    let matched = burst.bytes_of(frames);
    if matched.saturating_mul(2) >= burst.bytes {
        return None;
    }
    let only = burst.only(frames);
    Some(Entry {
        frames: FrameSet::first(only.frames.len()),
        bytes: only.bytes,
        burst: Arc::new(only),
        seq: 0,
    })
}

/// What one offer did, for the hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Offered {
    pub(crate) queued: u64,
    pub(crate) dropped: u64,
    /// Bytes this client holds afterwards, queued and taken by its writer.
    pub(crate) held: usize,
}

#[derive(Debug)]
struct State {
    filter: Filter,
    queue: VecDeque<Entry>,
    /// Frames in `queue`.
    frames: usize,
    /// Bytes `queue`'s entries keep alive.
    bytes: usize,
    /// When the queue last went from "keeping up" to "dropping"; reset each
    /// time the writer takes what is queued. Only `offer` sets it and only
    /// `take` clears it; [`Outbox::became_slow`] watches it.
    dropping_since: Option<Instant>,
    /// No longer accepting frames: the client is slow or leaving.
    closed: bool,
    /// History on: the seq of the newest burst offered (queued, filtered
    /// out or sent by this client), so everything up to it that this
    /// client is to get is queued.
    seen: u64,
    /// A resuming client's position fell off the history's tail (the
    /// history forgot an event it had not been sent): it was closed, and
    /// resumes from its position (answered `expired`).
    overflowed: bool,
    /// A resuming client reading the history itself from `seen` (a resume
    /// that missed events, or a queue that filled): live bursts are not
    /// queued for it; its writer takes them from the history, a step at a
    /// time, until it reaches the head and is live again.
    catching_up: bool,
}

/// One client's queue and filter as `/api/clients` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxView {
    pub(crate) filter: FilterSummary,
    pub(crate) queued_frames: usize,
    pub(crate) held_bytes: usize,
    pub(crate) frames_out: u64,
    pub(crate) dropped: u64,
    pub(crate) acks: bool,
    /// A sampled client: events a second, and events skipped.
    pub(crate) sample: Option<(u32, u64)>,
}

/// One client's outbound queue, shared by every reader that fans out to it
/// (producers) and the client's own writer (the consumer).
///
/// The lock is a `std` mutex held only for queue bookkeeping, never across
/// an `.await`; the writer takes everything queued in one swap.
///
/// The filter publishers match against lives under that lock, so it is
/// never changed there: a change is applied in place to a spare copy that
/// only the client's own reader touches, the two copies are swapped under
/// the lock (a pointer swap), and the change is applied again to the
/// now-spare old copy. A control frame costs publishers one swap, however
/// big the filter or the change.
#[derive(Debug)]
pub(crate) struct Outbox {
    id: ClientId,
    /// Who this client is across its connections: what the bursts it
    /// sends carry as their sender, and what is never sent back to it.
    /// The connection's id until the client presents an identity (see
    /// [`Outbox::set_origin`]).
    origin: AtomicU64,
    capacity: usize,
    /// Bytes this client may hold, queued plus taken by its writer.
    budget: usize,
    slow_after: Duration,
    limits: FilterLimits,
    /// Bytes the writer has taken and not yet written. Outside the lock:
    /// the writer gives them back entry by entry; publishers read it.
    writer_bytes: AtomicUsize,
    state: Mutex<State>,
    /// The reader's copy of the filter, equal to the live one between
    /// changes. Only the client's own reader locks it.
    spare: Mutex<Filter>,
    /// The `upto` of an ack the writer has yet to send to this client; 0:
    /// none (an ack always counts at least one frame). Outside the lock:
    /// the writer checks it before every frame it writes, so an ack
    /// overtakes whatever is queued.
    ack: AtomicU64,
    /// Wakes the writer: something was queued, or an ack is due.
    ready: Notify,
    /// Relayed frames written to this client, for `/api/clients`.
    sent: AtomicU64,
    /// Frames this client's full queue dropped, for `/api/clients`.
    dropped: AtomicU64,
    /// The client said `{"type":"hello","acks":true}`, for `/api/clients`.
    acks: AtomicBool,
    /// Wakes [`Outbox::became_slow`]: the queue started dropping.
    dropping: Notify,
    /// The client presented a position: it gets position frames, and is
    /// closed (1013) rather than losing a frame, since it can resume. Set
    /// before it joins the fan-out.
    resumable: AtomicBool,
    /// `seen` when the writer last took the queue: once what it took is
    /// written, every event up to it has been.
    taken_seen: AtomicU64,
    /// The seq of the last position frame sent (or the position the client
    /// already has). Only the writer moves it.
    marked: AtomicU64,
    /// Set when a position frame went out: the next burst this resuming
    /// client is not sent wakes its writer (see [`Outbox::skipped`]).
    skip_wake: AtomicBool,
    /// The backplane could not store an event this ack-mode client sent:
    /// no later ack may cover it, so the client is closed and resends.
    backplane_lost: AtomicBool,
    /// Wakes [`Outbox::backplane_lost`].
    lost: Notify,
    /// A sampled client (the dashboard's tail): set before it joins, then
    /// never changed. Boxed: most clients are not sampled.
    sample: OnceLock<Box<Sampler>>,
    /// Bytes of this client's events waiting for the backplane's
    /// publisher; at most `client_queue_bytes` (see
    /// [`Outbox::reserve_backplane`]).
    backplane_bytes: AtomicUsize,
    /// The history a resuming client catches up from; set when it joins.
    history: OnceLock<Arc<Mutex<History>>>,
    /// Most events one catch-up step takes from the history.
    step: usize,
}

/// Most events one catch-up step takes from the history, under the lock
/// relays take: a step is bookkeeping only, and this keeps it short.
const MAX_STEP: usize = 256;

impl Outbox {
    pub(crate) fn new(id: ClientId, config: &HubConfig) -> Outbox {
        Outbox {
            id,
            origin: AtomicU64::new(id),
            capacity: config.client_queue_frames,
            budget: config.client_queue_bytes,
            writer_bytes: AtomicUsize::new(0),
            slow_after: config.slow_client_timeout,
            limits: FilterLimits::from_config(config),
            spare: Mutex::new(Filter::default()),
            state: Mutex::new(State {
                filter: Filter::default(),
                queue: VecDeque::new(),
                frames: 0,
                bytes: 0,
                dropping_since: None,
                closed: false,
                seen: 0,
                overflowed: false,
                catching_up: false,
            }),
            ack: AtomicU64::new(0),
            ready: Notify::new(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            acks: AtomicBool::new(false),
            dropping: Notify::new(),
            resumable: AtomicBool::new(false),
            taken_seen: AtomicU64::new(0),
            marked: AtomicU64::new(0),
            skip_wake: AtomicBool::new(false),
            backplane_lost: AtomicBool::new(false),
            lost: Notify::new(),
            backplane_bytes: AtomicUsize::new(0),
            sample: OnceLock::new(),
            history: OnceLock::new(),
            step: config.max_replay.clamp(1, MAX_STEP),
        }
    }

    pub(crate) fn id(&self) -> ClientId {
        self.id
    }

    /// Makes `origin` this client's identity (see [`Outbox::origin`]),
    /// before it joins the fan-out: a client presenting the same identity
    /// on every connection is never sent its own events, neither in a
    /// replay nor from a frame its previous connection sent late.
    pub(crate) fn set_origin(&self, origin: ClientId) {
        self.origin.store(origin, Relaxed);
    }

    /// The sender its bursts carry (see [`Outbox::set_origin`]).
    pub(crate) fn origin(&self) -> ClientId {
        self.origin.load(Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something ever did, the
        // queue is still structurally sound, so carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the frames of `burst` that this client's filter lets through,
    /// unless this client sent them. When that overfills the queue (in
    /// frames, or in bytes counting what the writer holds) the oldest
    /// frames are dropped; a client that keeps dropping for `slow_after`
    /// is closed (see [`Outbox::became_slow`]).
    ///
    /// `seq` is the history position of the burst's last frame (0 with
    /// history off), `oldest` the oldest the history still holds. A
    /// resuming client is never dropped from: when the burst does not fit
    /// it catches up from the history instead, and is closed (1013, and
    /// resumes) only once the history forgot an event it was not sent.
    pub(crate) fn offer(&self, burst: &Arc<Burst>, seq: u64, oldest: u64) -> Offered {
        let resumable = self.resumable.load(Relaxed);
        let origin = self.origin.load(Relaxed);
        if !resumable && (burst.sender == origin || burst.frames.is_empty()) {
            return Offered::default();
        }
        let mut state = self.lock();
        if state.closed {
            return Offered::default();
        }
        if state.catching_up {
            // Its writer reads the history itself; it has lost continuity
            // only once the history forgot what it has not read yet.
            if state.seen + 1 < oldest {
                state.closed = true;
                state.overflowed = true;
                drop(state);
                self.dropping.notify_one();
            }
            return Offered::default();
        }
        let before = state.seen;
        if resumable {
            state.seen = seq;
            if burst.sender == origin || burst.frames.is_empty() {
                drop(state);
                self.skipped();
                return Offered::default();
            }
        }
        let frames = match state.filter.coverage() {
            Coverage::Nothing => {
                drop(state);
                self.skipped();
                return Offered::default();
            }
            Coverage::Everything => FrameSet::first(burst.frames.len()),
            Coverage::Some => {
                let mut set = FrameSet::default();
                for (i, t) in burst.types.iter().enumerate() {
                    if state.filter.matches(t) {
                        set.insert(i);
                    }
                }
                if set.is_empty() {
                    drop(state);
                    self.skipped();
                    return Offered::default();
                }
                set
            }
        };
        // A sampled client: what the window does not allow is counted,
        // not queued, and wakes nobody (but the first since a report).
        let frames = match self.sample.get() {
            None => frames,
            Some(sampler) => {
                let (kept, wake) = sampler.keep(frames, Instant::now());
                if kept.is_empty() {
                    drop(state);
                    if wake {
                        self.ready.notify_one();
                    }
                    return Offered::default();
                }
                kept
            }
        };
        let queued = frames.len();
        let entry = sparse_copy(burst, &frames).unwrap_or_else(|| Entry {
            burst: Arc::clone(burst),
            frames,
            bytes: burst.bytes,
            seq,
        });
        state.frames += queued;
        state.bytes += entry.bytes;
        state.queue.push_back(Entry { seq, ..entry });
        let writer = self.writer_bytes.load(Relaxed);
        if resumable && overfull(&state, self.capacity, self.budget.saturating_sub(writer)) {
            // Neither drop nor close: the client lags inside the history,
            // and its writer reads this burst (and the rest) from there
            // once what is queued is written.
            if let Some(entry) = state.queue.pop_back() {
                state.frames -= entry.frames.len();
                state.bytes -= entry.bytes;
            }
            state.seen = before;
            state.catching_up = true;
            drop(state);
            self.ready.notify_one();
            return Offered::default();
        }
        let dropped = trim(
            &mut state,
            self.capacity,
            self.budget.saturating_sub(writer),
        );
        let started_dropping = dropped > 0 && state.dropping_since.is_none();
        if started_dropping {
            state.dropping_since = Some(Instant::now());
        }
        let held = state.bytes + writer;
        drop(state);
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Relaxed);
        }
        self.ready.notify_one();
        if started_dropping {
            self.dropping.notify_one();
        }
        Offered {
            queued: queued as u64,
            dropped: dropped as u64,
            held,
        }
    }

    /// Moves everything queued to the back of `into`; returns the number
    /// of frames moved. The client is keeping up again.
    pub(crate) fn take(&self, into: &mut VecDeque<Entry>) -> usize {
        let mut state = self.lock();
        if state.catching_up && state.queue.is_empty() && into.is_empty() {
            drop(state);
            return self.catch_up(into);
        }
        if into.is_empty() {
            // The writer's usual case: the two deques trade allocations.
            std::mem::swap(&mut state.queue, into);
        } else {
            into.extend(state.queue.drain(..));
        }
        state.dropping_since = None;
        self.taken_seen.store(state.seen, Relaxed);
        let bytes = std::mem::take(&mut state.bytes);
        self.writer_bytes.fetch_add(bytes, Relaxed);
        std::mem::take(&mut state.frames)
    }

    /// One catch-up step: up to `step` events after `seen` from the
    /// history (fewer if their bytes reach half the budget), those this
    /// client's filter wants and it did not send itself, into `into`;
    /// returns the number of frames. Reaching the history's head makes the
    /// client live again, under the lock live bursts are offered under, so
    /// nothing is missed or repeated at the seam. A position the history no
    /// longer holds closes the client (it resumes, and is told `expired`).
    fn catch_up(&self, into: &mut VecDeque<Entry>) -> usize {
        let Some(history) = self.history.get() else {
            return 0;
        };
        // The order every offer takes them in: the history, then the queue.
        let history = history.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = self.lock();
        if !state.catching_up || !state.queue.is_empty() || state.closed {
            return 0;
        }
        let mut cursor = state.seen;
        if cursor + 1 < history.oldest() {
            state.closed = true;
            state.overflowed = true;
            drop(state);
            drop(history);
            self.dropping.notify_one();
            return 0;
        }
        let origin = self.origin.load(Relaxed);
        let (mut events, mut bytes, mut frames) = (0, 0, 0);
        // Read to the head unless a step's bound stops it first: then
        // seqs past the last stored event that hold none are covered too.
        let mut to_head = true;
        for (burst, first, last) in history.after(cursor) {
            if events >= self.step || bytes >= self.budget / 2 {
                to_head = false;
                break;
            }
            events += burst.frames.len() - first;
            cursor = last;
            if burst.sender == origin {
                continue;
            }
            let mut set = match state.filter.coverage() {
                Coverage::Nothing => continue,
                Coverage::Everything => FrameSet::first(burst.frames.len()),
                Coverage::Some => {
                    let mut set = FrameSet::default();
                    for (i, t) in burst.types.iter().enumerate().skip(first) {
                        if state.filter.matches(t) {
                            set.insert(i);
                        }
                    }
                    set
                }
            };
            set.drop_below(first);
            if set.is_empty() {
                continue;
            }
            frames += set.len();
            bytes += burst.bytes;
            into.push_back(Entry {
                burst: Arc::clone(burst),
                frames: set,
                bytes: burst.bytes,
                seq: last,
            });
        }
        if to_head {
            cursor = cursor.max(history.head());
        }
        state.seen = cursor;
        state.catching_up = cursor < history.head();
        let more = state.catching_up;
        state.dropping_since = None;
        self.taken_seen.store(cursor, Relaxed);
        drop(state);
        drop(history);
        self.writer_bytes.fetch_add(bytes, Relaxed);
        if more {
            // The writer comes back for the next step once this one is
            // written, even if the filter skipped all of it.
            self.ready.notify_one();
        }
        frames
    }

    /// The writer is done with `entry` (written, or dropped with the
    /// connection): its bytes no longer count against the budget.
    pub(crate) fn release(&self, entry: &Entry) {
        self.writer_bytes.fetch_sub(entry.bytes, Relaxed);
    }

    /// Applies a filter change, if the filter then still fits the limits;
    /// otherwise the filter is unchanged. Frames already queued are
    /// delivered as they were matched. The queue's lock is held only to
    /// swap two pointers (see [`Outbox`]).
    pub(crate) fn apply(&self, change: &Change) -> Result<(), OverLimit> {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        spare.apply(change, &self.limits)?;
        std::mem::swap(&mut self.lock().filter, &mut *spare);
        // `spare` is now the filter as it was before the change, which no
        // publisher can see any more. The same change on the same filter
        // succeeds again, and the copies are equal again.
        let again = spare.apply(change, &self.limits);
        debug_assert_eq!(again, Ok(()));
        Ok(())
    }

    /// Asks the writer to acknowledge the first `upto` frames this client
    /// sent, ahead of anything queued. Replaces an ack not yet sent: acks
    /// are cumulative, so only the latest matters. Only the client's own
    /// reader calls this, with growing values.
    pub(crate) fn ack(&self, upto: u64) {
        if self.backplane_lost.load(Relaxed) {
            // An event before `upto` was not stored: acknowledging would
            // make the client forget it.
            return;
        }
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

    /// The writer wrote `n` more relayed frames to this client.
    pub(crate) fn sent(&self, n: u64) {
        if n > 0 {
            self.sent.fetch_add(n, Relaxed);
        }
    }

    /// The client turned ack mode on or off.
    pub(crate) fn set_acks(&self, on: bool) {
        self.acks.store(on, Relaxed);
    }

    /// What `/api/clients` shows of this queue now. Reads the filter from
    /// the reader's copy, never under the lock publishers take; the queue
    /// lock is held only to read two numbers.
    pub(crate) fn view(&self, max_types: usize) -> OutboxView {
        let filter = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .summary(max_types);
        let (queued_frames, queued_bytes) = {
            let state = self.lock();
            (state.frames, state.bytes)
        };
        OutboxView {
            filter,
            queued_frames,
            held_bytes: queued_bytes + self.writer_bytes.load(Relaxed),
            frames_out: self.sent.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            acks: self.acks.load(Relaxed),
            sample: self.sample.get().map(|s| (s.per_second(), s.skipped())),
        }
    }

    /// Makes this a sampled client (see [`crate::relay::sample`]), before it
    /// joins the fan-out. Never a resuming one: the upgrade refuses both.
    pub(crate) fn sample(&self, sampler: Sampler) {
        let _ = self.sample.set(Box::new(sampler));
    }

    /// The skipped count this sampled client is owed, if any. For any
    /// other client, one load: the writer asks on every wake-up.
    pub(crate) fn skips_due(&self) -> Due {
        self.sample
            .get()
            .map_or(Due::Nothing, |s| s.due(Instant::now()))
    }

    /// The skipped count `total` was handed to the socket.
    pub(crate) fn skips_reported(&self, total: u64) {
        if let Some(sampler) = self.sample.get() {
            sampler.reported(total, Instant::now());
        }
    }

    /// Makes this a resuming client, about to join a history whose head
    /// is `head`: every event after `seen` is to be sent to it (read from
    /// `history` at its own pace if `seen` is behind the head); `marked`
    /// is the position the client has already (position frames go out
    /// past it). Called before the client joins the fan-out, under the
    /// history's lock.
    pub(crate) fn resume(&self, seen: u64, marked: u64, head: u64, history: Arc<Mutex<History>>) {
        let _ = self.history.set(history);
        let mut state = self.lock();
        state.seen = seen;
        state.catching_up = seen < head;
        self.marked.store(marked, Relaxed);
        self.taken_seen.store(marked, Relaxed);
        self.skip_wake.store(true, Relaxed);
        self.resumable.store(true, Relaxed);
        drop(state);
        self.ready.notify_one();
    }

    /// A burst a resuming client is not sent (its filter skips it, or it
    /// sent it itself): the first since the last position frame wakes the
    /// writer, which then sends a position frame covering it within
    /// 10 ms (the writer's pace for them) of the last one; the next ones
    /// wake nobody until that frame is out.
    fn skipped(&self) {
        if self.skip_wake.swap(false, Relaxed) {
            self.ready.notify_one();
        }
    }

    /// The position frame due once what the writer took is written: the
    /// seq the client has got to, if past the last one sent.
    pub(crate) fn mark_due(&self) -> Option<u64> {
        if !self.resumable.load(Relaxed) {
            return None;
        }
        let seen = self.taken_seen.load(Relaxed);
        (seen > self.marked.load(Relaxed)).then_some(seen)
    }

    /// The position frame due once `entry` is written, if it is past the
    /// last one sent: every burst up to its seq that this client is to get
    /// was queued before it.
    pub(crate) fn mark_after(&self, entry: &Entry) -> Option<u64> {
        (self.resumable.load(Relaxed) && entry.seq > self.marked.load(Relaxed)).then_some(entry.seq)
    }

    /// The position frame for `seq` was handed to the socket.
    pub(crate) fn mark_sent(&self, seq: u64) {
        self.marked.store(seq, Relaxed);
        // Armed before the writer next takes the queue: a skip from then
        // on is not covered by this frame, and wakes it.
        self.skip_wake.store(true, Relaxed);
    }

    /// Whether this client was closed for overflowing while resumable.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Stops accepting frames; what is queued can still be taken.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Events this resuming client was to get are lost (a gap in the
    /// backplane's stream): closed with 1013 like an overflow, so it
    /// resumes and is told its position was not recovered. A plain client
    /// carries on.
    pub(crate) fn interrupt(&self) {
        if !self.resumable.load(Relaxed) {
            return;
        }
        let mut state = self.lock();
        state.closed = true;
        state.overflowed = true;
        drop(state);
        self.dropping.notify_one();
    }

    /// The backplane failed to store an event this client sent and expects
    /// an ack for: no further ack is sent, and [`Outbox::backplane_lost`]
    /// resolves so the connection is closed and the client resends.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn lose_backplane(&self) {
        if !self.backplane_lost.swap(true, Relaxed) {
            self.ack.store(0, Relaxed);
            self.lost.notify_one();
        }
    }

    /// Counts `bytes` more of this client's events waiting for the
    /// backplane, if that stays within `budget` (one burst alone always
    /// fits); `false`, counting nothing, otherwise.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn reserve_backplane(&self, bytes: usize, budget: usize) -> bool {
        let before = self.backplane_bytes.fetch_add(bytes, Relaxed);
        if before > 0 && before + bytes > budget {
            self.backplane_bytes.fetch_sub(bytes, Relaxed);
            return false;
        }
        true
    }

    /// The backplane took `bytes` of this client's events off its queue.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn release_backplane(&self, bytes: usize) {
        self.backplane_bytes.fetch_sub(bytes, Relaxed);
    }

    /// Resolves once [`Outbox::lose_backplane`] was called.
    pub(crate) async fn backplane_lost(&self) {
        // `notify_one` keeps a permit when nobody waits.
        while !self.backplane_lost.load(Relaxed) {
            self.lost.notified().await;
        }
    }

    /// Resolves when something was queued since the last wake-up.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Resolves once this client has kept dropping frames for
    /// `slow_after` without its writer taking anything, and closes the
    /// queue. A timer, not the next offer, decides: a client whose queue is
    /// full is closed even if nothing more is published.
    pub(crate) async fn became_slow(&self) {
        loop {
            let (since, overflowed) = {
                let state = self.lock();
                (state.dropping_since, state.overflowed)
            };
            if overflowed {
                return;
            }
            let Some(since) = since else {
                // `notify_one` keeps a permit when nobody waits, so a start
                // between the check and this wait is not missed.
                self.dropping.notified().await;
                continue;
            };
            tokio::time::sleep_until(since + self.slow_after).await;
            let mut state = self.lock();
            if state.dropping_since == Some(since) {
                state.closed = true;
                return;
            }
        }
    }
}

/// Whether the queue is over `capacity` frames or `budget` bytes, except
/// that one entry alone always fits (as [`trim`] keeps it).
fn overfull(state: &State, capacity: usize, budget: usize) -> bool {
    state.frames > capacity || (state.bytes > budget && state.queue.len() > 1)
}

/// Drops the oldest queued frames until at most `capacity` frames and
/// `budget` bytes remain, except that the newest entry is kept whatever its
/// size; returns how many frames were dropped. Bytes are freed by whole
/// entries: an entry keeps its burst alive until its last frame goes.
fn trim(state: &mut State, capacity: usize, budget: usize) -> usize {
    let mut dropped = 0;
    while state.bytes > budget && state.queue.len() > 1 {
        let Some(oldest) = state.queue.pop_front() else {
            break;
        };
        let n = oldest.frames.len();
        state.frames -= n;
        state.bytes -= oldest.bytes;
        dropped += n;
    }
    while state.frames > capacity {
        let Some(oldest) = state.queue.front_mut() else {
            break;
        };
        let removed = oldest.frames.drop_first(state.frames - capacity);
        state.frames -= removed;
        dropped += removed;
        if oldest.frames.is_empty() {
            let bytes = oldest.bytes;
            state.queue.pop_front();
            state.bytes -= bytes;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    fn outbox(id: ClientId, capacity: usize, slow_after: Duration) -> Outbox {
        let config = HubConfig {
            client_queue_frames: capacity,
            slow_client_timeout: slow_after,
            ..HubConfig::default()
        };
        Outbox::new(id, &config)
    }

    fn burst(sender: ClientId, types: &[&str]) -> Arc<Burst> {
        Arc::new(Burst::new(
            sender,
            types
                .iter()
                .enumerate()
                .map(|(i, t)| Utf8Bytes::from(format!(r#"{{"id":"{i}","event_type":"{t}"}}"#)))
                .collect(),
            types.iter().map(|t| std::sync::Arc::from(*t)).collect(),
        ))
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
        let outbox = outbox(1, 100, Duration::from_secs(5));
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
        let outbox = outbox(1, 100, Duration::from_secs(5));
        assert_eq!(outbox.offer(&burst(1, &["a"]), 0, 0), Offered::default());
        assert_eq!(outbox.offer(&burst(2, &["a"]), 0, 0).queued, 1);
        assert_eq!(taken(&outbox).len(), 1);
    }

    #[test]
    fn filtered_frames_are_not_queued() {
        let outbox = outbox(1, 100, Duration::from_secs(5));
        outbox
            .apply(&Change::Subscribe {
                types: vec!["b".into()],
                replace: true,
            })
            .unwrap();
        assert_eq!(
            outbox.offer(&burst(2, &["a", "b", "a", "b"]), 0, 0).queued,
            2
        );
        assert_eq!(outbox.offer(&burst(2, &["a"]), 0, 0).queued, 0);
        let got = taken(&outbox);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|f| f.contains(r#""event_type":"b""#)));
    }

    #[test]
    fn full_queue_drops_the_oldest_frames() {
        let outbox = outbox(1, 3, Duration::from_secs(60));
        assert_eq!(outbox.offer(&burst(2, &["a", "a"]), 0, 0).dropped, 0);
        let o = outbox.offer(&burst(3, &["b", "b"]), 0, 0);
        assert_eq!((o.queued, o.dropped), (2, 1));
        let got = taken(&outbox);
        assert_eq!(got.len(), 3);
        assert!(got[0].contains(r#""id":"1","event_type":"a""#));
        assert!(got[1].contains(r#""event_type":"b""#));
    }

    #[test]
    fn a_burst_larger_than_the_queue_keeps_its_newest_frames() {
        let outbox = outbox(1, 2, Duration::from_secs(60));
        let o = outbox.offer(&burst(2, &["a", "a", "a", "a", "a"]), 0, 0);
        assert_eq!((o.queued, o.dropped), (5, 3));
        let got = taken(&outbox);
        assert!(got[0].contains(r#""id":"3""#) && got[1].contains(r#""id":"4""#));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_dropping_for_the_timeout_is_closed_by_a_timer() {
        let outbox = Arc::new(outbox(1, 1, Duration::from_secs(2)));
        let watcher = Arc::clone(&outbox);
        let slow = tokio::spawn(async move { watcher.became_slow().await });
        let settle = || async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };
        outbox.offer(&burst(2, &["a"]), 0, 0);
        outbox.offer(&burst(2, &["a"]), 0, 0); // starts dropping
        tokio::time::advance(Duration::from_secs(1)).await;
        // Taking resets the clock: the client kept up for a moment.
        taken(&outbox);
        outbox.offer(&burst(2, &["a"]), 0, 0);
        outbox.offer(&burst(2, &["a"]), 0, 0); // drops again, clock restarts
        tokio::time::advance(Duration::from_millis(1500)).await;
        settle().await;
        assert!(
            !slow.is_finished(),
            "2 s since the first drop, 1.5 s since the last start"
        );
        assert!(!outbox.lock().closed);
        // Nothing more is offered: the timer alone closes it.
        tokio::time::advance(Duration::from_millis(500)).await;
        tokio::time::timeout(Duration::from_secs(1), slow)
            .await
            .expect("closed by the timer")
            .unwrap();
        // A slow client takes nothing more.
        assert_eq!(outbox.offer(&burst(2, &["a"]), 0, 0), Offered::default());
    }

    #[test]
    fn the_byte_budget_counts_what_the_writer_holds() {
        let one = burst(2, &["a"]);
        let b = one.bytes;
        let config = HubConfig {
            client_queue_bytes: 3 * b,
            ..HubConfig::default()
        };
        let outbox = Outbox::new(1, &config);
        for _ in 0..3 {
            assert_eq!(outbox.offer(&burst(2, &["a"]), 0, 0).dropped, 0);
        }
        let mut pending = VecDeque::new();
        outbox.take(&mut pending);
        // The writer holds the budget: the newest entry is kept...
        let o = outbox.offer(&burst(2, &["a"]), 0, 0);
        assert_eq!((o.dropped, o.held), (0, 4 * b));
        // ...and the next one pushes it out.
        let o = outbox.offer(&burst(2, &["a"]), 0, 0);
        assert_eq!((o.dropped, o.held), (1, 4 * b));
        // Written: the budget is free again.
        for entry in pending.drain(..) {
            outbox.release(&entry);
        }
        let o = outbox.offer(&burst(2, &["a"]), 0, 0);
        assert_eq!((o.dropped, o.held), (0, 2 * b));
        // A sparse match (under half the burst's bytes) is copied, and
        // charged for its own frames only...
        let roomy = HubConfig {
            client_queue_bytes: 1 << 20,
            ..HubConfig::default()
        };
        let outbox = Outbox::new(3, &roomy);
        outbox
            .apply(&Change::Subscribe {
                types: vec!["b".into()],
                replace: true,
            })
            .unwrap();
        let sparse = burst(2, &["a", "b", "a"]);
        let one = sparse.frames[1].len();
        assert_eq!(outbox.offer(&sparse, 0, 0).held, one);
        // ...a denser one keeps the whole burst alive, and is charged for it.
        let dense = burst(2, &["b", "b", "a"]);
        assert_eq!(outbox.offer(&dense, 0, 0).held, one + dense.bytes);
        assert_eq!(
            taken(&outbox),
            [
                r#"{"id":"1","event_type":"b"}"#,
                r#"{"id":"0","event_type":"b"}"#,
                r#"{"id":"1","event_type":"b"}"#
            ]
        );
    }

    /// A history, and a way to append to it and offer to `outbox` as
    /// the fan-out does.
    fn history(config: &HubConfig) -> Arc<Mutex<History>> {
        Arc::new(Mutex::new(History::new(config).unwrap()))
    }

    fn publish(history: &Mutex<History>, outbox: &Outbox, burst: &Arc<Burst>) -> Offered {
        let mut h = history.lock().unwrap();
        let seq = h.append(burst, Instant::now());
        outbox.offer(burst, seq, h.oldest())
    }

    #[tokio::test]
    async fn a_resuming_client_lags_inside_the_history_neither_dropped_from_nor_closed() {
        let config = HubConfig {
            client_queue_frames: 2,
            ..HubConfig::default()
        };
        let history = history(&config);
        let outbox = Outbox::new(1, &config);
        outbox.resume(0, 0, 0, Arc::clone(&history));
        assert_eq!(outbox.mark_due(), None);
        let frames: Vec<Arc<Burst>> = (0..4).map(|_| burst(2, &["a"])).collect();
        assert_eq!(publish(&history, &outbox, &frames[0]).queued, 1);
        assert_eq!(publish(&history, &outbox, &frames[1]).queued, 1);
        // A third frame does not fit: nothing is dropped, nobody closed;
        // it and the next wait in the history.
        assert_eq!(publish(&history, &outbox, &frames[2]), Offered::default());
        assert_eq!(publish(&history, &outbox, &frames[3]), Offered::default());
        assert!(!outbox.overflowed() && !outbox.lock().closed);
        assert_eq!(taken(&outbox).len(), 2);
        assert_eq!(outbox.mark_due(), Some(2));
        // Once the queue is written, the writer reads the rest from the
        // history, and is live again at its head.
        let mut entries = VecDeque::new();
        assert_eq!(outbox.take(&mut entries), 2);
        assert!(
            entries
                .iter()
                .all(|e| Arc::ptr_eq(&e.burst, &frames[2]) || Arc::ptr_eq(&e.burst, &frames[3]))
        );
        assert_eq!(outbox.mark_due(), Some(4));
        assert_eq!(publish(&history, &outbox, &burst(2, &["a"])).queued, 1);
    }

    #[tokio::test]
    async fn a_resuming_client_whose_position_the_history_forgot_is_closed_at_once() {
        let config = HubConfig {
            client_queue_frames: 1,
            history_size: 3,
            ..HubConfig::default()
        };
        let history = history(&config);
        let outbox = Outbox::new(1, &config);
        outbox.resume(0, 0, 0, Arc::clone(&history));
        assert_eq!(publish(&history, &outbox, &burst(2, &["a"])).queued, 1);
        // Catching up from seq 1 on; the history holds 3 events.
        for _ in 0..3 {
            publish(&history, &outbox, &burst(2, &["a"]));
        }
        assert!(!outbox.lock().closed);
        // Seq 2, not sent yet, is forgotten: closed, to resume (expired).
        publish(&history, &outbox, &burst(2, &["a"]));
        tokio::time::timeout(Duration::from_secs(1), outbox.became_slow())
            .await
            .expect("closed at once, no timer");
        assert!(outbox.overflowed());
    }

    #[tokio::test]
    async fn a_resuming_client_catches_up_past_seqs_that_hold_no_event() {
        let config = HubConfig {
            client_queue_frames: 1,
            ..HubConfig::default()
        };
        let history = history(&config);
        let outbox = Outbox::new(1, &config);
        outbox.resume(0, 0, 0, Arc::clone(&history));
        assert_eq!(publish(&history, &outbox, &burst(2, &["a"])).queued, 1);
        // The queue is full: seq 2 waits in the history; seq 3 holds no
        // event (a backplane skipped it).
        assert_eq!(
            publish(&history, &outbox, &burst(2, &["a"])),
            Offered::default()
        );
        history.lock().unwrap().skip_at(3);
        assert_eq!(taken(&outbox).len(), 1);
        let mut entries = VecDeque::new();
        assert_eq!(outbox.take(&mut entries), 1);
        // Caught up to the head, though no event is at it: live again.
        assert!(!outbox.lock().catching_up);
        assert_eq!(outbox.mark_due(), Some(3));
        assert_eq!(publish(&history, &outbox, &burst(2, &["a"])).queued, 1);
    }

    #[test]
    fn a_resuming_clients_position_passes_what_its_filter_skips() {
        let outbox = outbox(1, 100, Duration::from_secs(60));
        outbox.resume(0, 0, 0, history(&HubConfig::default()));
        outbox
            .apply(&Change::Subscribe {
                types: vec!["b".into()],
                replace: true,
            })
            .unwrap();
        assert_eq!(outbox.offer(&burst(2, &["a"]), 1, 0).queued, 0);
        // Its own events, too, are passed, not waited for.
        assert_eq!(outbox.offer(&burst(1, &["b"]), 2, 0).queued, 0);
        assert!(taken(&outbox).is_empty());
        assert_eq!(outbox.mark_due(), Some(2));
    }
}
