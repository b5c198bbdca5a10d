//! State shared by the transport handle, its connection task and its
//! subscription tasks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::dead_event::DeadEvent;
use watchtower_backpressure::BackpressureQueue;
use watchtower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
use watchtower_core::WatchtowerError;
use watchtower_dlq::{DeadLetterQueue, DeadLetterReason};

use crate::checkpoint::Checkpointer;
use crate::client_id::ClientId;
use crate::connection::{Carry, DedupWindow};
use crate::filter_limits::HubLimits;
use crate::resume::Resume;
use crate::settings::Settings;
use crate::stats::{ConnectionState, Counters, add};
use crate::subscription::Registry;

/// Where the transport is in its own life (not the connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Running,
    /// `shutdown` was called: write what is queued, close, stop by `deadline`.
    Draining {
        deadline: Instant,
    },
    /// Dropped or shut down: stop now.
    Stopped,
}

/// The transport's [`Lifecycle`], and a way to wait for it to leave
/// `Running`.
///
/// Not a `watch` channel: it changes at most three times in a transport's
/// life and every wait is the same one, while a `watch` costs 350 bytes of
/// heap per transport (its receivers' notifiers), which idle connections
/// pay too. A lock for the value, a `Notify` for the waits.
pub(crate) struct LifecycleCell {
    now: Mutex<Lifecycle>,
    changed: Notify,
}

impl LifecycleCell {
    fn new() -> LifecycleCell {
        LifecycleCell {
            now: Mutex::new(Lifecycle::Running),
            changed: Notify::new(),
        }
    }

    pub(crate) fn get(&self) -> Lifecycle {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `to` and wakes every waiter.
    pub(crate) fn set(&self, to: Lifecycle) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
        self.changed.notify_waiters();
    }

    /// Waits until the transport is no longer `Running`; returns where it
    /// is then.
    pub(crate) async fn stopping(&self) -> Lifecycle {
        loop {
            // Registered before the look, so a `set` in between wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = self.get();
            if now != Lifecycle::Running {
                return now;
            }
            changed.await;
        }
    }
}

pub(crate) struct Shared {
    /// Distinguishes this transport's subscription handles from others'.
    pub(crate) instance: u64,
    pub(crate) settings: Settings,
    /// Serialised event frames waiting for the writer.
    pub(crate) queue: BackpressureQueue<Utf8Bytes>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) dlq: DeadLetterQueue<DeadEvent>,
    pub(crate) subs: Registry,
    pub(crate) counters: Counters,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) lifecycle: LifecycleCell,
    /// Wakes publishers blocked on a full queue when the breaker opens.
    pub(crate) gave_up: Notify,
    /// Wakes `flush` callers when frames are written or settled otherwise.
    pub(crate) progress: Notify,
    /// Wakes the writer to send the server a new subscription filter.
    pub(crate) filter_changed: Notify,
    /// Set with `filter_changed`; the writer checks it between batches too,
    /// so a busy writer does not miss a change.
    pub(crate) filter_dirty: AtomicBool,
    /// Bumped by every subscription change.
    pub(crate) filter_epoch: AtomicU64,
    /// The newest epoch whose filter was written to the server.
    pub(crate) filter_epoch_sent: AtomicU64,
    /// The newest epoch the server confirmed (a pong after its filter).
    pub(crate) filter_epoch_confirmed: AtomicU64,
    /// Wakes `subscribe` calls waiting for their filter.
    pub(crate) filter_progress: Notify,
    /// The filter limits of the hub connected last, learned on every
    /// connect: `subscribe` checks against them, the writer too.
    pub(crate) hub_limits: HubLimits,
    /// Whether the last close handshake (at shutdown) completed.
    pub(crate) clean_close: AtomicBool,
    /// Which URL of `url` and the fallbacks connect attempts go to (see
    /// [`Settings::url_at`]); a failed attempt moves it on.
    pub(crate) url_index: AtomicUsize,
    /// At least once: recently delivered event ids, to drop resends. Only
    /// the reader touches it.
    /// `None` unless at least once: boxed, so others do not carry its room.
    dedup: Option<Box<Mutex<DedupWindow>>>,
    /// Frames to send first on the next connection (see [`Carry`]).
    carry: Mutex<Carry>,
    /// Why the connection task died, if it panicked: `publish` and `flush`
    /// then fail with it. Reading it is one atomic load.
    crash: OnceLock<String>,
    /// Whether the state is `CircuitOpen`: publishers check this on every
    /// call, and a `watch` borrow takes a lock.
    circuit_open: AtomicBool,
    /// The position in the hub's history and the last resume answer.
    pub(crate) resume: Resume,
    /// This transport's identity, sent on every upgrade as
    /// [`CLIENT_ID_HEADER`](crate::CLIENT_ID_HEADER): a UUID v7 made when
    /// the transport is built, the same across its connections.
    pub(crate) client_id: ClientId,
    /// Where the handled position is stored (`None` unless a checkpoint is
    /// set): boxed, so others do not carry its room.
    pub(crate) checkpoint: Option<Box<Checkpointer>>,
    /// `Block` mode: the subscription whose full mailbox the reader waits
    /// for (0: none), and since when (see [`clock`]). Set and cleared by
    /// the reader as it pauses.
    paused_for: AtomicU64,
    paused_since: AtomicU64,
}

/// Nanoseconds since the first call in this process: a clock in an
/// atomic.
fn clock() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The filter epoch of the filter a transport starts with.
pub(crate) const INITIAL_FILTER_EPOCH: u64 = 1;

impl Shared {
    /// The URL connect attempts go to now.
    pub(crate) fn current_url(&self) -> &crate::url::WsUrl {
        self.settings.url_at(self.url_index.load(Relaxed))
    }

    /// A connect attempt failed, or a connection ended soon after it was
    /// made or at the server's request (1001, 1013): the next attempt goes
    /// to the next URL, if there are fallbacks.
    pub(crate) fn next_url(&self) {
        if !self.settings.fallbacks.is_empty() {
            let count = 1 + self.settings.fallbacks.len();
            let next = (self.url_index.load(Relaxed) + 1) % count;
            self.url_index.store(next, Relaxed);
        }
    }

    pub(crate) fn new(settings: Settings) -> Result<Shared, WatchtowerError> {
        let queue = BackpressureQueue::new(settings.config.backpressure.clone())
            .map_err(|e| WatchtowerError::Config(format!("backpressure: {e}")))?;
        // The breaker opens when the reconnect policy runs out of attempts
        // (the connection task trips it), not by counting: the policy owns
        // the count. One successful trial connect closes it again.
        let breaker = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: u32::MAX,
            timeout: settings.breaker_timeout,
            success_threshold: 1,
        })
        .map_err(|e| WatchtowerError::Config(format!("circuit breaker: {e}")))?;
        let dlq = DeadLetterQueue::new(settings.dlq.clone())
            .map_err(|e| WatchtowerError::Config(format!("dead-letter queue: {e}")))?;
        let dedup = settings
            .acks
            .map(|_| Box::new(Mutex::new(DedupWindow::new(settings.dedup_window))));
        let (settings_resume, settings_resume_from) = (settings.resume, settings.resume_from);
        let checkpoint = settings
            .checkpoint
            .clone()
            .map(|c| Box::new(Checkpointer::new(c)));
        Ok(Shared {
            instance: NEXT_INSTANCE.fetch_add(1, Relaxed),
            subs: Registry::new(settings.mailbox_size, settings.mailbox_overflow),
            settings,
            queue,
            breaker,
            dlq,
            counters: Counters::default(),
            state: watch::Sender::new(ConnectionState::Connecting),
            lifecycle: LifecycleCell::new(),
            url_index: AtomicUsize::new(0),
            gave_up: Notify::new(),
            progress: Notify::new(),
            filter_changed: Notify::new(),
            filter_dirty: AtomicBool::new(false),
            // Epoch 1 is the filter every connection starts with (none
            // subscribed yet: nothing), so `connect` can wait for it.
            filter_epoch: AtomicU64::new(INITIAL_FILTER_EPOCH),
            filter_epoch_sent: AtomicU64::new(0),
            filter_epoch_confirmed: AtomicU64::new(0),
            filter_progress: Notify::new(),
            hub_limits: HubLimits::new(),
            clean_close: AtomicBool::new(false),
            dedup,
            carry: Mutex::new(Carry::new()),
            crash: OnceLock::new(),
            circuit_open: AtomicBool::new(false),
            resume: Resume::new(settings_resume, settings_resume_from),
            client_id: ClientId::new(),
            checkpoint,
            paused_for: AtomicU64::new(0),
            paused_since: AtomicU64::new(0),
        })
    }

    /// The handled position: every event up to it was handled (or
    /// dead-lettered) by every subscription. See [`Resume`].
    pub(crate) fn handled_position(&self) -> Option<watchtower_core::Position> {
        self.resume
            .handled_position(|read| self.subs.handled_upto(read))
    }

    /// The reader began waiting for subscription `id`'s full mailbox
    /// (`Some`), or reads again (`None`). A pause wakes `flush` callers:
    /// one of them may be the very handler the reader waits for.
    pub(crate) fn reading_paused_for(&self, id: Option<u64>) {
        match id {
            Some(id) => {
                self.paused_since.store(clock(), Relaxed);
                self.paused_for.store(id, Relaxed);
                self.progress.notify_waiters();
            }
            None => self.paused_for.store(0, Relaxed),
        }
    }

    /// How long the reader has been waiting for a full mailbox, and for
    /// which subscription's.
    pub(crate) fn reading_paused(&self) -> Option<(std::time::Duration, u64)> {
        match self.paused_for.load(Relaxed) {
            0 => None,
            id => {
                let since = self.paused_since.load(Relaxed);
                Some((
                    std::time::Duration::from_nanos(clock().saturating_sub(since)),
                    id,
                ))
            }
        }
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        self.state.send_if_modified(|current| {
            if *current == state || *current == ConnectionState::Closed {
                false
            } else {
                *current = state;
                self.circuit_open
                    .store(state == ConnectionState::CircuitOpen, Relaxed);
                true
            }
        });
    }

    /// Whether the breaker is open as far as publishers are concerned: from
    /// when the connection task opens it until a trial connect succeeds.
    pub(crate) fn circuit_open(&self) -> bool {
        self.circuit_open.load(Relaxed)
    }

    /// Asks the writer to send the server the subscriptions' new filter;
    /// returns the change's epoch.
    pub(crate) fn filter_changed(&self) -> u64 {
        let epoch = self.filter_epoch.fetch_add(1, Relaxed) + 1;
        if self.settings.server_filters {
            self.filter_dirty.store(true, Relaxed);
            self.filter_changed.notify_one();
        }
        epoch
    }

    pub(crate) fn filter_confirmed(&self, epoch: u64) {
        if self.filter_epoch_confirmed.fetch_max(epoch, Relaxed) < epoch {
            self.filter_progress.notify_waiters();
        }
    }

    /// With server filters, waits until the server has applied the filter
    /// of `epoch` — or the connection is not up (the filter then goes out
    /// first thing on the next connection), or the connect timeout passes.
    pub(crate) async fn await_filter(&self, epoch: u64) {
        if !self.settings.server_filters {
            return;
        }
        let deadline = Instant::now() + self.settings.connect_timeout;
        let mut state = self.state.subscribe();
        loop {
            let progress = self.filter_progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.filter_epoch_confirmed.load(Relaxed) >= epoch
                || !state.borrow_and_update().is_connected()
            {
                return;
            }
            tokio::select! {
                _ = progress => {}
                changed = state.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.get()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.lifecycle() == Lifecycle::Running
    }

    /// Records that the connection task panicked with `message`.
    pub(crate) fn set_crashed(&self, message: String) {
        let _ = self.crash.set(message);
    }

    /// The error `publish` and `flush` return once the connection task has
    /// panicked; `None` while it runs.
    pub(crate) fn crashed(&self) -> Option<WatchtowerError> {
        self.crash.get().map(|message| {
            WatchtowerError::connection(format!(
                "the connection task panicked ({message}); the transport is stopped and what \
                 was queued is in the dead-letter queue"
            ))
        })
    }

    /// Dead-letters frames that will never be written, and counts them.
    /// The frames are kept as they are, not decoded (see [`DeadEvent`]).
    pub(crate) fn dead_letter_frames(
        &self,
        frames: Vec<Utf8Bytes>,
        reason: DeadLetterReason,
        error: &str,
    ) {
        if frames.is_empty() {
            return;
        }
        let counter = match reason {
            DeadLetterReason::Overflow => &self.counters.events_evicted,
            DeadLetterReason::AckTimeout => &self.counters.ack_timeouts,
            _ => &self.counters.events_abandoned,
        };
        add(counter, frames.len() as u64);
        for frame in frames {
            self.dlq.push(DeadEvent::frame(frame), reason, error);
        }
        self.progress.notify_waiters();
    }

    /// Dead-letters one received event frame (a subscription could not
    /// take it); the caller has counted it.
    pub(crate) fn dead_letter_received(
        &self,
        frame: Utf8Bytes,
        reason: DeadLetterReason,
        error: String,
    ) {
        self.dlq.push(DeadEvent::frame(frame), reason, error);
    }

    /// The frames carried over to the next connection. Held only briefly,
    /// never across an `.await`.
    pub(crate) fn carry(&self) -> MutexGuard<'_, Carry> {
        self.carry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// At least once: whether `frame` is a resend of an event delivered
    /// recently (see [`DedupWindow`]); it is remembered if not.
    pub(crate) fn is_duplicate(&self, frame: &[u8]) -> bool {
        self.dedup.as_ref().is_some_and(|window| {
            window
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_duplicate(frame)
        })
    }

    /// Moves everything still queued to the dead-letter queue.
    pub(crate) fn abandon_queue(&self, reason: DeadLetterReason, error: &str) -> u64 {
        let frames = self.queue.drain();
        let n = frames.len() as u64;
        self.dead_letter_frames(frames, reason, error);
        n
    }
}
