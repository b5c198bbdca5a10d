use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::{ConfigError, DeadLetter, DeadLetterReason, DlqConfig, DlqStats, ReasonCounts};

/// A bounded in-memory store of items that failed, with why; consumers
/// started with [`consume`](Self::consume) retry them.
///
/// Cloning is cheap (an `Arc` inside) and every clone shares one store.
/// Dropping the last clone [closes](Self::close) it, which stops its
/// consumers.
///
/// # Where an entry can be
///
/// - **pending**: waiting for a consumer, or for [`drain`](Self::drain);
///   counted by [`len`](Self::len);
/// - **in flight**: taken by a consumer, which is calling its handler or
///   waiting to retry;
/// - **parked**: a consumer gave up on it after `max_attempts` handler calls;
///   see [`parked`](Self::parked) and [`drain_parked`](Self::drain_parked).
///
/// All three count against `capacity`, so the store is bounded. A push into
/// a full store evicts the oldest stored entry, pending or parked (the one
/// pushed first), and hands it back. Only if every slot is in flight is the
/// pushed entry itself the one dropped. Entries are taken oldest first.
///
/// Locking: one `std` mutex, never held across an `.await` or while calling
/// a handler.
pub struct DeadLetterQueue<T> {
    owner: Arc<Owner<T>>,
}

/// Shared by the clones of one `DeadLetterQueue`, and only by them: its drop
/// means no clone is left, so nobody can read the store any more.
struct Owner<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Drop for Owner<T> {
    fn drop(&mut self) {
        self.inner.close();
    }
}

/// The store, shared by the queue's clones and its consumer tasks.
pub(crate) struct Inner<T> {
    pub(crate) config: DlqConfig,
    state: Mutex<State<T>>,
    /// Wakes one idle consumer per entry made pending.
    pub(crate) arrived: Notify,
    /// Wakes every consumer to check whether it must stop, on
    /// [`ConsumerHandle::stop`](crate::ConsumerHandle::stop) or `close`.
    /// Only ever used with `notify_waiters`.
    pub(crate) control: Arc<Notify>,
    /// Wakes [`DeadLetterQueue::settled`] callers when an entry leaves the
    /// pending or in-flight state. Only ever used with `notify_waiters`.
    settled: Notify,
}

struct State<T> {
    /// Sorted by `seq`.
    pending: VecDeque<Entry<T>>,
    /// Sorted by `seq`.
    parked: VecDeque<Entry<T>>,
    in_flight: usize,
    closed: bool,
    next_seq: u64,
    total_pushed: u64,
    dropped: u64,
    consumed: u64,
    retries: u64,
    by_reason: ReasonCounts,
    /// Set at the first eviction of a full spell, so a flood logs one
    /// warning, not one per event; cleared once there is room again.
    full_warned: bool,
}

/// A stored letter and its book-keeping.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// Push order: lower is older. Decides eviction and the order of taking.
    seq: u64,
    /// Handler calls made for this entry so far, by any consumer.
    pub(crate) calls: u32,
    pub(crate) letter: DeadLetter<T>,
}

/// What a consumer gets from [`Inner::take_next`].
pub(crate) enum Take<T> {
    /// Stop: the consumer was stopped or the queue closed.
    Stop,
    /// Nothing pending; wait.
    Empty,
    /// An entry, now in flight.
    Entry(Entry<T>),
}

impl<T> State<T> {
    fn occupied(&self) -> usize {
        self.pending.len() + self.parked.len() + self.in_flight
    }

    /// Removes the stored entry pushed first, pending or parked.
    fn take_oldest(&mut self) -> Option<Entry<T>> {
        match (self.pending.front(), self.parked.front()) {
            (Some(pending), Some(parked)) if parked.seq < pending.seq => self.parked.pop_front(),
            (Some(_), _) => self.pending.pop_front(),
            (None, _) => self.parked.pop_front(),
        }
    }
}

/// Inserts `entry` where its `seq` belongs; entries coming back from
/// consumers may be older than those already there.
fn insert_by_seq<T>(entries: &mut VecDeque<Entry<T>>, entry: Entry<T>) {
    let at = entries.partition_point(|other| other.seq < entry.seq);
    entries.insert(at, entry);
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section leaves the state consistent before it can
        // panic, so a poisoned lock is taken over rather than propagated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.control.notify_waiters();
        self.settled.notify_waiters();
    }

    /// Whether no consumer has work left: nothing in flight, and nothing
    /// pending that a consumer may still take (a closed queue's pending
    /// entries stay there).
    fn is_settled(&self) -> bool {
        let state = self.lock();
        state.in_flight == 0 && (state.pending.is_empty() || state.closed)
    }

    /// Whether the consumer owning `stop` must stop.
    pub(crate) fn must_stop(&self, stop: &AtomicBool) -> bool {
        stop.load(Ordering::Acquire) || self.lock().closed
    }

    /// Takes the oldest pending entry for a consumer, unless it must stop.
    pub(crate) fn take_next(&self, stop: &AtomicBool) -> Take<T> {
        let mut state = self.lock();
        if state.closed || stop.load(Ordering::Acquire) {
            return Take::Stop;
        }
        match state.pending.pop_front() {
            Some(entry) => {
                state.in_flight += 1;
                Take::Entry(entry)
            }
            None => Take::Empty,
        }
    }

    /// Counts one handler call that failed, of an entry still in flight.
    pub(crate) fn failed_call(&self) {
        self.lock().retries += 1;
    }

    /// An in-flight entry whose handler call succeeded.
    pub(crate) fn consumed(&self, entry: Entry<T>) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.retries += 1;
        state.consumed += 1;
        drop(state);
        // The item's own `Drop` runs after unlocking.
        drop(entry);
        self.settled.notify_waiters();
    }

    /// An in-flight entry whose last allowed handler call failed.
    pub(crate) fn park(&self, entry: Entry<T>) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.retries += 1;
        insert_by_seq(&mut state.parked, entry);
        drop(state);
        self.settled.notify_waiters();
    }

    /// An in-flight entry given back by a stopping consumer; another
    /// consumer may take it.
    pub(crate) fn put_back(&self, entry: Entry<T>) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        insert_by_seq(&mut state.pending, entry);
        drop(state);
        self.arrived.notify_one();
        self.settled.notify_waiters();
    }
}

impl<T> DeadLetterQueue<T> {
    /// Creates an empty queue.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`DlqConfig::validate`] when the config is
    /// invalid.
    pub fn new(config: DlqConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let inner = Inner {
            config,
            state: Mutex::new(State {
                // Allocate lazily: a large bound is a limit, not an expectation.
                pending: VecDeque::new(),
                parked: VecDeque::new(),
                in_flight: 0,
                closed: false,
                next_seq: 0,
                total_pushed: 0,
                dropped: 0,
                consumed: 0,
                retries: 0,
                by_reason: ReasonCounts::default(),
                full_warned: false,
            }),
            arrived: Notify::new(),
            control: Arc::new(Notify::new()),
            settled: Notify::new(),
        };
        Ok(Self {
            owner: Arc::new(Owner {
                inner: Arc::new(inner),
            }),
        })
    }

    /// Creates an empty queue holding at most `capacity` entries, with the
    /// other settings at their defaults.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCapacity`] when `capacity` is 0.
    pub fn with_capacity(capacity: usize) -> Result<Self, ConfigError> {
        Self::new(DlqConfig {
            capacity,
            ..DlqConfig::default()
        })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner<T>> {
        &self.owner.inner
    }

    /// The config the queue was created with.
    pub fn config(&self) -> &DlqConfig {
        &self.inner().config
    }

    /// Stores `item`, which failed once for `reason` with `error`: a
    /// [`DeadLetter`] with `attempts` 1 and both timestamps now.
    ///
    /// When the queue is full, the oldest entry is evicted, counted in
    /// [`DlqStats::dropped`], and returned. Wakes an idle consumer.
    pub fn push(
        &self,
        item: T,
        reason: DeadLetterReason,
        error: impl fmt::Display,
    ) -> Option<DeadLetter<T>> {
        self.push_letter(DeadLetter::new(item, reason, error))
    }

    /// Stores a letter as it is, for example one drained from another queue.
    ///
    /// Like [`push`](Self::push): when the queue is full, the oldest entry is
    /// evicted, counted in [`DlqStats::dropped`], and returned. If every slot
    /// is held by a consumer mid-retry, nothing stored can make room and
    /// `letter` itself is returned. Wakes an idle consumer.
    pub fn push_letter(&self, letter: DeadLetter<T>) -> Option<DeadLetter<T>> {
        let inner = self.inner();
        let capacity = inner.config.capacity;
        let mut state = inner.lock();
        state.total_pushed += 1;
        state.by_reason.count(letter.reason);
        let entry = Entry {
            seq: state.next_seq,
            calls: 0,
            letter,
        };
        state.next_seq += 1;
        let (evicted, stored) = if state.occupied() < capacity {
            state.pending.push_back(entry);
            state.full_warned = false;
            (None, true)
        } else {
            state.dropped += 1;
            match state.take_oldest() {
                Some(oldest) => {
                    state.pending.push_back(entry);
                    (Some(oldest.letter), true)
                }
                // Every slot is in flight: nothing stored can make room.
                None => (Some(entry.letter), false),
            }
        };
        let warn = evicted.is_some() && !std::mem::replace(&mut state.full_warned, true);
        drop(state);

        if warn && let Some(evicted) = &evicted {
            tracing::warn!(
                capacity,
                reason = %evicted.reason,
                attempts = evicted.attempts,
                "dead-letter queue is full: dropping its oldest entries (warned once until there is room again; see stats.dropped)"
            );
        }
        if stored {
            inner.arrived.notify_one();
        }
        evicted
    }

    /// How many entries are pending: waiting for a consumer. Parked and
    /// in-flight entries are not counted.
    pub fn len(&self) -> usize {
        self.inner().lock().pending.len()
    }

    /// Whether no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.inner().lock().pending.is_empty()
    }

    /// Takes every pending entry, oldest first. Parked and in-flight entries
    /// stay.
    pub fn drain(&self) -> Vec<DeadLetter<T>> {
        let mut state = self.inner().lock();
        let drained = state.pending.drain(..).map(|entry| entry.letter).collect();
        drop(state);
        self.inner().settled.notify_waiters();
        drained
    }

    /// Waits until the consumers have nothing left to do: no entry is
    /// pending or in flight, so every entry pushed so far has been consumed,
    /// parked, evicted or drained. The graceful end of a pipeline: stop
    /// feeding the queue, await `settled`, then stop the consumers and read
    /// [`stats`](Self::stats) and [`parked`](Self::parked).
    ///
    /// It waits for consumers, it does not run them: with pending entries
    /// and no consumer it waits until one starts, or until
    /// [`drain`](Self::drain) takes them. On a closed queue consumers take no
    /// more entries, so it returns once nothing is in flight.
    ///
    /// Cancel-safe: dropping the future changes nothing.
    pub async fn settled(&self) {
        let inner = self.inner();
        loop {
            // Register before looking, so that a change in between wakes us.
            let mut settled = pin!(inner.settled.notified());
            settled.as_mut().enable();
            if inner.is_settled() {
                return;
            }
            settled.await;
        }
    }

    /// Copies of the parked entries, oldest first: those a consumer gave up
    /// on. They stay parked.
    pub fn parked(&self) -> Vec<DeadLetter<T>>
    where
        T: Clone,
    {
        let state = self.inner().lock();
        state
            .parked
            .iter()
            .map(|entry| entry.letter.clone())
            .collect()
    }

    /// Takes every parked entry, oldest first.
    pub fn drain_parked(&self) -> Vec<DeadLetter<T>> {
        let mut state = self.inner().lock();
        state.parked.drain(..).map(|entry| entry.letter).collect()
    }

    /// A snapshot of the queue's contents and counters.
    pub fn stats(&self) -> DlqStats {
        let state = self.inner().lock();
        DlqStats {
            len: state.pending.len(),
            capacity: self.inner().config.capacity,
            parked: state.parked.len(),
            in_flight: state.in_flight,
            total_pushed: state.total_pushed,
            dropped: state.dropped,
            consumed: state.consumed,
            retries: state.retries,
            by_reason: state.by_reason,
        }
    }

    /// Stops every consumer of this queue, present and future: each finishes
    /// its current handler call, then exits, and an entry it was going to
    /// retry goes back to the front of the queue. Pushes are still accepted,
    /// and [`drain`](Self::drain) still works. Closing twice does nothing
    /// more.
    pub fn close(&self) {
        self.inner().close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner().lock().closed
    }
}

impl<T> Clone for DeadLetterQueue<T> {
    fn clone(&self) -> Self {
        Self {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<T> fmt::Debug for DeadLetterQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = self.stats();
        f.debug_struct("DeadLetterQueue")
            .field("config", self.config())
            .field("len", &stats.len)
            .field("parked", &stats.parked)
            .field("in_flight", &stats.in_flight)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
