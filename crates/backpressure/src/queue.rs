use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::{BackpressureConfig, BackpressureStats, BackpressureStrategy, ConfigError, PushError};

// How waiting works, and why no wake-up is ever lost
// ===================================================
//
// All state, counters included, lives behind one `std` mutex that is never
// held across an `.await`. Two `Notify`s wake waiters: `items_available` for
// consumers (pop, pop_batch) and `room_available` for producers (`push` under
// `Block`).
//
// A waiter always follows the same steps:
//
// 1. create a `Notified` future and `enable()` it, which registers it with
//    the `Notify` (or consumes a stored permit);
// 2. lock the state and check its condition; if it holds, act and return;
// 3. otherwise count itself in `waiting_consumers` / `waiting_producers`,
//    unlock, and await the future; then go back to step 1.
//
// Because the future is registered *before* the condition is checked, any
// `notify_one` or `notify_waiters` issued after the check reaches it.
//
// Consumers. A push only notifies when it takes the queue from empty to
// non-empty *and* a consumer is counted as waiting: one lock, one comparison,
// and no `Notify` traffic at all while the consumer keeps up or is busy. That
// transition wake-up is enough: a consumer waits only after observing the
// queue empty under the lock (step 2), so the first item added after that
// observation necessarily finds the queue empty, sees the consumer counted
// (step 3 ran in the same critical section as the observation), and notifies.
// Later pushes find the queue non-empty and need not notify again: the woken
// consumer will see their items. When several consumers wait, one woken
// consumer that leaves items behind passes the baton with one more
// `notify_one` (see `Effects::wake_consumer`), so no item waits while a
// consumer sleeps.
//
// Producers. Whatever removes `n` items (pops, drain) wakes
// `min(n, waiting_producers)` blocked producers with `notify_one`, one per
// freed slot. A woken producer that finds the queue full again (another push
// took the slot first) simply waits again: the slot was used, so nothing is
// lost. If a notified producer is cancelled before it runs, tokio's
// `Notified` hands its `notify_one` wake-up to the next waiter when dropped,
// and our guard un-counts it.
//
// `close` uses `notify_waiters`, which wakes every registered waiter; anyone
// not yet registered will see `closed` at step 2.
//
// Over-notifying is harmless: a `notify_one` with no registered waiter
// leaves a single permit, which costs its next waiter one extra check.

/// A bounded multi-producer queue drained by a consumer in batches, with a
/// [`BackpressureStrategy`] for when it is full.
///
/// Producers call [`push`](Self::push) or [`try_push`](Self::try_push); the
/// consumer calls [`pop_batch`](Self::pop_batch) (or [`pop`](Self::pop)), puts
/// back what it could not deliver with [`push_front`](Self::push_front), and
/// takes the rest with [`drain`](Self::drain) when it gives up.
/// [`close`](Self::close) stops producers and lets the consumer finish.
///
/// Every method takes `&self`: share the queue behind an `Arc`. It is `Send`
/// and `Sync` when `T` is `Send`. A push costs one uncontended lock, plus one
/// `Notify` wake-up when it makes the queue non-empty while the consumer
/// waits. No lock is held across an `.await`, and the queue never logs or
/// formats its items.
///
/// It is built for one consumer. Several concurrent consumers are correct
/// (no item is lost or duplicated, and no item waits while a consumer
/// sleeps), but each batch goes to one of them. Blocked producers are woken
/// in about the order they started waiting, but a push that arrives meanwhile
/// may take the freed slot first: the queue is not strictly fair.
///
/// # Fill-ratio warning
///
/// When a push takes the fill ratio to `warning_threshold` or above, one
/// `tracing` warning is logged with the fields `len`, `capacity` and `ratio`.
/// It is re-armed once the queue has fallen back below the threshold by a
/// tenth of its capacity (at least one item), so a queue hovering at the
/// threshold logs once rather than on every push.
pub struct BackpressureQueue<T> {
    config: BackpressureConfig,
    /// Length at which the fill-ratio warning fires; see [`warn_len`].
    warn_len: usize,
    /// Length below which the warning re-arms.
    rearm_len: usize,
    state: Mutex<State<T>>,
    /// Wakes consumers waiting for an item (or for `close`).
    items_available: Notify,
    /// Wakes producers waiting for room under `Block` (or for `close`).
    room_available: Notify,
}

/// Everything the mutex protects.
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// The fill-ratio warning was logged and is not re-armed yet.
    warned: bool,
    waiting_consumers: usize,
    waiting_producers: usize,
    evicted: u64,
    rejected: u64,
    /// Items `push_front` had no room for.
    overflowed: u64,
    total_enqueued: u64,
    total_dequeued: u64,
    peak: usize,
    blocked_pushes: u64,
}

/// What a successful push did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    /// The item was queued and nothing was dropped.
    Enqueued,
    /// The item was queued; the queue was full, so the oldest queued item was
    /// evicted to make room and is handed back here
    /// ([`DropOldest`](BackpressureStrategy::DropOldest)).
    Evicted(T),
}

impl<T> Pushed<T> {
    /// The evicted item, if the push evicted one.
    pub fn into_evicted(self) -> Option<T> {
        match self {
            Self::Enqueued => None,
            Self::Evicted(item) => Some(item),
        }
    }
}

/// Work to do once the lock is released: wake-ups and the warning log.
#[must_use]
struct Effects {
    wake_consumer: bool,
    wake_producers: usize,
    /// The length to report in the fill-ratio warning.
    warn_at: Option<usize>,
}

impl Effects {
    const NONE: Self = Self {
        wake_consumer: false,
        wake_producers: 0,
        warn_at: None,
    };
}

/// Which side of the queue a waiter is on.
#[derive(Clone, Copy)]
enum Side {
    Consumer,
    Producer,
}

/// Counts a waiter in `waiting_consumers` / `waiting_producers` for as long
/// as it waits, and un-counts it when dropped, so a cancelled waiter is never
/// counted (and then notified) in vain.
struct WaiterGuard<'a, T> {
    queue: &'a BackpressureQueue<T>,
    side: Side,
    registered: bool,
}

impl<T> WaiterGuard<'_, T> {
    fn counter<'s>(&self, state: &'s mut State<T>) -> &'s mut usize {
        match self.side {
            Side::Consumer => &mut state.waiting_consumers,
            Side::Producer => &mut state.waiting_producers,
        }
    }

    /// Counts the waiter; returns whether it was not counted yet.
    fn register(&mut self, state: &mut State<T>) -> bool {
        if self.registered {
            return false;
        }
        *self.counter(state) += 1;
        self.registered = true;
        true
    }

    fn unregister(&mut self, state: &mut State<T>) {
        if self.registered {
            let counter = self.counter(state);
            *counter = counter.saturating_sub(1);
            self.registered = false;
        }
    }
}

impl<T> Drop for WaiterGuard<'_, T> {
    fn drop(&mut self) {
        if self.registered {
            let mut state = self.queue.lock();
            self.unregister(&mut state);
        }
    }
}

impl<T> BackpressureQueue<T> {
    /// Creates an empty queue.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`BackpressureConfig::validate`] when the config
    /// is invalid.
    pub fn new(config: BackpressureConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let capacity = config.max_queue_size;
        let warn_len = warn_len(config.warning_threshold, capacity);
        let rearm_len = warn_len.saturating_sub(capacity / 10).max(1);
        Ok(Self {
            warn_len,
            rearm_len,
            state: Mutex::new(State {
                // Allocate lazily: a large bound is a limit, not an expectation.
                items: VecDeque::new(),
                closed: false,
                warned: false,
                waiting_consumers: 0,
                waiting_producers: 0,
                evicted: 0,
                rejected: 0,
                overflowed: 0,
                total_enqueued: 0,
                total_dequeued: 0,
                peak: 0,
                blocked_pushes: 0,
            }),
            items_available: Notify::new(),
            room_available: Notify::new(),
            config,
        })
    }

    /// The config the queue was created with.
    pub fn config(&self) -> &BackpressureConfig {
        &self.config
    }

    /// Queues `item` at the back, applying the strategy when the queue is
    /// full.
    ///
    /// - [`DropOldest`](BackpressureStrategy::DropOldest): evicts the oldest
    ///   item and returns it in `Ok(Pushed::Evicted(oldest))`.
    /// - [`DropNewest`](BackpressureStrategy::DropNewest): returns
    ///   `Err(PushError::Full(item))`.
    /// - [`Block`](BackpressureStrategy::Block): waits until there is room.
    ///
    /// Only `Block` ever waits; the other strategies complete at once.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped while waiting for room, the item is dropped
    /// with it and was never queued; no wake-up meant for another blocked
    /// producer is lost.
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`] once the queue is closed, including when it is
    /// closed while this push waits; [`PushError::Full`] as described above.
    /// Both hand the item back.
    pub async fn push(&self, item: T) -> Result<Pushed<T>, PushError<T>> {
        let item = {
            let mut state = self.lock();
            if self.config.strategy != BackpressureStrategy::Block
                || state.closed
                || state.items.len() < self.capacity()
            {
                let (result, effects) = self.push_locked(&mut state, item);
                drop(state);
                self.apply(effects);
                return result;
            }
            item
        };
        self.push_slow(item).await
    }

    /// The `Block` strategy's wait for room; see the comment at the top.
    async fn push_slow(&self, item: T) -> Result<Pushed<T>, PushError<T>> {
        let mut waiter = WaiterGuard {
            queue: self,
            side: Side::Producer,
            registered: false,
        };
        loop {
            let mut room = pin!(self.room_available.notified());
            room.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed || state.items.len() < self.capacity() {
                    waiter.unregister(&mut state);
                    let (result, effects) = self.push_locked(&mut state, item);
                    drop(state);
                    self.apply(effects);
                    return result;
                }
                if waiter.register(&mut state) {
                    state.blocked_pushes += 1;
                }
            }
            room.await;
        }
    }

    /// Queues `item` at the back without ever waiting.
    ///
    /// Like [`push`](Self::push), except that under
    /// [`Block`](BackpressureStrategy::Block) a full queue rejects the item
    /// as [`DropNewest`](BackpressureStrategy::DropNewest) does.
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`] once the queue is closed; [`PushError::Full`]
    /// when it is full and the strategy is `DropNewest` or `Block`. Both hand
    /// the item back.
    pub fn try_push(&self, item: T) -> Result<Pushed<T>, PushError<T>> {
        let mut state = self.lock();
        let (result, effects) = self.push_locked(&mut state, item);
        drop(state);
        self.apply(effects);
        result
    }

    /// One push attempt under the lock; never waits.
    fn push_locked(
        &self,
        state: &mut State<T>,
        item: T,
    ) -> (Result<Pushed<T>, PushError<T>>, Effects) {
        if state.closed {
            return (Err(PushError::Closed(item)), Effects::NONE);
        }
        if state.items.len() < self.capacity() {
            let was_empty = state.items.is_empty();
            state.items.push_back(item);
            state.total_enqueued += 1;
            let effects = self.grown(state, was_empty);
            return (Ok(Pushed::Enqueued), effects);
        }
        match self.config.strategy {
            BackpressureStrategy::DropOldest => match state.items.pop_front() {
                Some(oldest) => {
                    state.items.push_back(item);
                    state.total_enqueued += 1;
                    state.evicted += 1;
                    (Ok(Pushed::Evicted(oldest)), Effects::NONE)
                }
                // Unreachable: a full queue has at least one item since the
                // capacity is at least 1. Rejecting is the safe answer anyway.
                None => {
                    state.rejected += 1;
                    (Err(PushError::Full(item)), Effects::NONE)
                }
            },
            BackpressureStrategy::DropNewest | BackpressureStrategy::Block => {
                state.rejected += 1;
                (Err(PushError::Full(item)), Effects::NONE)
            }
        }
    }

    /// Puts back `items` that the consumer popped but could not deliver, in
    /// their order, ahead of everything queued.
    ///
    /// The queue never exceeds its capacity: if not all of `items` fit, the
    /// oldest of them (the first ones) are returned, in order, and counted in
    /// [`dropped_events`](BackpressureStats::dropped_events); the caller
    /// should dead-letter them. The returned `Vec` is empty when all fit.
    ///
    /// Works on a closed queue too, so a consumer can put frames back before
    /// a final [`drain`](Self::drain).
    pub fn push_front(&self, mut items: Vec<T>) -> Vec<T> {
        if items.is_empty() {
            return items;
        }
        let mut state = self.lock();
        let room = self.capacity().saturating_sub(state.items.len());
        let overflow = items.len().saturating_sub(room);
        let was_empty = state.items.is_empty();
        let kept = items.len() - overflow;
        // Push the kept tail front-first in reverse, so it ends up in order.
        for item in items.drain(overflow..).rev() {
            state.items.push_front(item);
        }
        state.total_enqueued += kept as u64;
        state.overflowed += overflow as u64;
        let effects = if kept > 0 {
            self.grown(&mut state, was_empty)
        } else {
            Effects::NONE
        };
        drop(state);
        self.apply(effects);
        items
    }

    /// Takes the oldest item, waiting for one if the queue is empty.
    ///
    /// Returns `None` once the queue is closed and empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped, no item was taken.
    pub async fn pop(&self) -> Option<T> {
        self.take_when_ready(|queue, state| queue.pop_locked(state))
            .await
    }

    /// Takes the oldest item, if any, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        let mut state = self.lock();
        let (item, effects) = self.pop_locked(&mut state)?;
        drop(state);
        self.apply(effects);
        Some(item)
    }

    /// Waits until at least one item is queued, then moves up to `max` of
    /// the oldest items, in order, to the end of `out` under one lock.
    ///
    /// Returns how many items were moved: at least 1, or 0 once the queue is
    /// closed and empty. As with tokio's `mpsc::Receiver::recv_many`, a `max`
    /// of 0 moves nothing and returns 0 at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: every item is either in `out` or still queued.
    pub async fn pop_batch(&self, max: usize, out: &mut Vec<T>) -> usize {
        if max == 0 {
            return 0;
        }
        self.take_when_ready(|queue, state| queue.pop_batch_locked(state, max, out))
            .await
            .unwrap_or(0)
    }

    /// Moves up to `max` of the oldest items, in order, to the end of `out`
    /// without waiting; returns how many (0 when the queue is empty).
    pub fn try_pop_batch(&self, max: usize, out: &mut Vec<T>) -> usize {
        let mut state = self.lock();
        match self.pop_batch_locked(&mut state, max, out) {
            Some((moved, effects)) => {
                drop(state);
                self.apply(effects);
                moved
            }
            None => 0,
        }
    }

    /// Takes every queued item now, oldest first, for example to dead-letter
    /// them when the consumer gives up. Wakes producers blocked for room.
    pub fn drain(&self) -> Vec<T> {
        let mut state = self.lock();
        let items: Vec<T> = state.items.drain(..).collect();
        let effects = self.shrunk(&mut state, items.len());
        drop(state);
        self.apply(effects);
        items
    }

    /// Closes the queue: from now on [`push`](Self::push) and
    /// [`try_push`](Self::try_push) fail with [`PushError::Closed`], while
    /// pops still return what remains. Wakes every waiting producer (its push
    /// fails with `Closed`) and consumer (its pop returns what remains, or
    /// `None` / 0 when nothing does). Closing twice does nothing more.
    pub fn close(&self) {
        self.lock().closed = true;
        self.room_available.notify_waiters();
        self.items_available.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// The most items the queue holds at once: `max_queue_size`.
    pub fn capacity(&self) -> usize {
        self.config.max_queue_size
    }

    /// A snapshot of the queue's size and counters.
    pub fn stats(&self) -> BackpressureStats {
        let state = self.lock();
        BackpressureStats {
            current_queue_size: state.items.len(),
            max_queue_size: self.capacity(),
            dropped_events: state.evicted + state.rejected + state.overflowed,
            evicted_events: state.evicted,
            rejected_events: state.rejected,
            total_enqueued: state.total_enqueued,
            total_dequeued: state.total_dequeued,
            peak_queue_size: state.peak,
            blocked_pushes: state.blocked_pushes,
        }
    }

    /// Locks the state. A panic while the lock was held cannot leave the
    /// state inconsistent (every critical section only moves items and bumps
    /// counters), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `take` takes something, or the queue is closed and empty
    /// (`None`). `take` returns `None` when the queue is empty.
    async fn take_when_ready<R>(
        &self,
        mut take: impl FnMut(&Self, &mut State<T>) -> Option<(R, Effects)>,
    ) -> Option<R> {
        // Fast path: no `Notify` involved while items are available.
        {
            let mut state = self.lock();
            if let Some((taken, effects)) = take(self, &mut state) {
                drop(state);
                self.apply(effects);
                return Some(taken);
            }
            if state.closed {
                return None;
            }
        }
        let mut waiter = WaiterGuard {
            queue: self,
            side: Side::Consumer,
            registered: false,
        };
        loop {
            let mut items = pin!(self.items_available.notified());
            items.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some((taken, effects)) = take(self, &mut state) {
                    waiter.unregister(&mut state);
                    drop(state);
                    self.apply(effects);
                    return Some(taken);
                }
                if state.closed {
                    waiter.unregister(&mut state);
                    return None;
                }
                waiter.register(&mut state);
            }
            items.await;
        }
    }

    fn pop_locked(&self, state: &mut State<T>) -> Option<(T, Effects)> {
        let item = state.items.pop_front()?;
        let effects = self.shrunk(state, 1);
        Some((item, effects))
    }

    fn pop_batch_locked(
        &self,
        state: &mut State<T>,
        max: usize,
        out: &mut Vec<T>,
    ) -> Option<(usize, Effects)> {
        let moved = max.min(state.items.len());
        if moved == 0 {
            return None;
        }
        out.extend(state.items.drain(..moved));
        let effects = self.shrunk(state, moved);
        Some((moved, effects))
    }

    /// Book-keeping after items were added; `was_empty` is the length before.
    fn grown(&self, state: &mut State<T>, was_empty: bool) -> Effects {
        let len = state.items.len();
        state.peak = state.peak.max(len);
        let warn = !state.warned && len >= self.warn_len;
        state.warned |= warn;
        Effects {
            wake_consumer: was_empty && state.waiting_consumers > 0,
            wake_producers: 0,
            warn_at: warn.then_some(len),
        }
    }

    /// Book-keeping after `removed` items were taken out by a consumer.
    fn shrunk(&self, state: &mut State<T>, removed: usize) -> Effects {
        state.total_dequeued += removed as u64;
        if state.warned && state.items.len() < self.rearm_len {
            state.warned = false;
        }
        Effects {
            // Pass the baton: items are left and another consumer is waiting.
            wake_consumer: !state.items.is_empty() && state.waiting_consumers > 0,
            wake_producers: removed.min(state.waiting_producers),
            warn_at: None,
        }
    }

    /// Runs `effects`; called with the lock released.
    fn apply(&self, effects: Effects) {
        if let Some(len) = effects.warn_at {
            let capacity = self.capacity();
            tracing::warn!(
                len,
                capacity,
                ratio = len as f64 / capacity as f64,
                "backpressure queue is filling up: its consumer is not keeping up"
            );
        }
        if effects.wake_consumer {
            self.items_available.notify_one();
        }
        for _ in 0..effects.wake_producers {
            self.room_available.notify_one();
        }
    }
}

/// The smallest length whose fill ratio `len / capacity` reaches
/// `threshold`, for a validated config (`capacity >= 1`, `threshold` in
/// `(0, 1]`): always in `1..=capacity`.
///
/// It compares ratios as [`BackpressureStats::fill_ratio`] computes them, so
/// that a threshold of 0.7 with a capacity of 10 gives 7 whatever the
/// rounding of `0.7 * 10.0`. The ratio never decreases as `len` grows, so a
/// binary search finds it in at most 64 steps.
fn warn_len(threshold: f64, capacity: usize) -> usize {
    let reaches = |len: usize| len as f64 / capacity as f64 >= threshold;
    // The answer is in `low..=high`: `capacity` reaches any threshold <= 1.0.
    let (mut low, mut high) = (1, capacity);
    while low < high {
        let mid = low + (high - low) / 2;
        if reaches(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

impl<T> fmt::Debug for BackpressureQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (len, closed) = {
            let state = self.lock();
            (state.items.len(), state.closed)
        };
        f.debug_struct("BackpressureQueue")
            .field("config", &self.config)
            .field("len", &len)
            .field("closed", &closed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
