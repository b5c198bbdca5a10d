//! `WebSocketTransport`: the handle users publish and subscribe through.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::Instrument;
use watchtower_backpressure::{BackpressureStats, BackpressureStrategy, PushError, Pushed};
use watchtower_circuit_breaker::CircuitBreakerStats;
use watchtower_core::{
    BoxFuture, ControlFrame, Event, EventHandler, HandlerFuture, Position, Result, Subscriber,
    SubscriptionHandle, Transport, WatchtowerError,
};
use watchtower_dlq::{ConsumerHandle, DeadLetterQueue, DeadLetterReason, DlqStats};

use crate::builder::TransportBuilder;
use crate::checkpoint;
use crate::config::WebSocketConfig;
use crate::connection::{self, Failed, First};
use crate::dead_event::DeadEvent;
use crate::filter_limits;
use crate::resume::ResumeOutcome;
use crate::settings::Settings;
use crate::shared::{INITIAL_FILTER_EPOCH, Lifecycle, Shared};
use crate::stats::{ConnectionState, ConnectionStats, TransportStats, bump};
use crate::subscription::{FilterCheck, Stopper};

/// Extra time past the shutdown deadline for the connection task to finish
/// its accounting before it is aborted.
const FINISH_GRACE: Duration = Duration::from_millis(250);

/// What `shutdown` could and could not do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events still queued at the deadline, moved to the dead-letter queue
    /// (reason `Shutdown`).
    pub dead_lettered: u64,
    /// Whether the WebSocket close handshake completed, which proves the
    /// server read every frame written.
    pub closed_cleanly: bool,
}

/// A resilient WebSocket connection that publishes and receives events.
///
/// One task owns the socket: it writes queued events in batches, reads and
/// dispatches incoming events to subscriptions, pings, and reconnects on
/// the policy's schedule. `publish` serialises in the caller's task and
/// enqueues, so it is cheap and can be called from many tasks at once
/// through an `Arc`.
///
/// Dropping the transport stops every task at once and discards what is
/// still queued; call [`shutdown`](Self::shutdown) first to flush.
pub struct WebSocketTransport {
    shared: Arc<Shared>,
    connection: Mutex<Option<JoinHandle<()>>>,
    /// The task that stores the checkpoint every interval, if one is set.
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    /// The report of the one shutdown: a second caller waits for the first.
    shutdown: OnceCell<ShutdownReport>,
}

impl fmt::Debug for WebSocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketTransport")
            .field("url", self.shared.current_url())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl WebSocketTransport {
    /// Connects with `config` and default settings; see
    /// [`builder`](Self::builder) for the rest.
    ///
    /// Fails with a `Config` error before any I/O if the URL or queue
    /// settings are invalid, and with the last connection error if the
    /// first connect and its `max_reconnect_attempts` retries all fail.
    pub async fn new(config: WebSocketConfig) -> Result<Self> {
        Self::builder(config).connect().await
    }

    /// A builder for every setting beyond [`WebSocketConfig`].
    pub fn builder(config: WebSocketConfig) -> TransportBuilder {
        TransportBuilder::new(config)
    }

    /// A handle over `shared` with no connection task (for tests of the
    /// supervision around that task).
    #[cfg(test)]
    pub(crate) fn from_parts(shared: Arc<Shared>) -> Self {
        WebSocketTransport {
            shared,
            connection: Mutex::new(None),
            checkpointer: Mutex::new(None),
            shutdown: OnceCell::new(),
        }
    }

    pub(crate) async fn start(settings: Settings) -> Result<Self> {
        let shared = Arc::new(Shared::new(settings)?);
        // Not the URL: with fallbacks the connection moves between URLs,
        // and each log line about a connection names the one in use.
        let span = tracing::info_span!("watchtower_ws", transport = shared.instance);
        // A position given at build is presented once a subscription can
        // take the replay: the first connect waits for `subscribe`.
        let first = if shared.settings.lazy || shared.settings.resume_from.is_some() {
            First::Connect
        } else {
            let mut schedule = shared.settings.policy.schedule();
            match connection::connect_with_retries(&shared, &mut schedule, true)
                .instrument(span.clone())
                .await
            {
                Ok(ws) => {
                    // Connected from here: `subscribe` right after `connect`
                    // waits for the server to apply its filter.
                    shared.set_state(ConnectionState::Connected);
                    First::Connected(ws)
                }
                Err(Failed::GaveUp(error)) => {
                    shared.breaker.trip();
                    shared.set_state(ConnectionState::CircuitOpen);
                    return Err(error);
                }
                Err(Failed::Stopped) => return Err(WatchtowerError::Closed),
            }
        };
        let connected = matches!(first, First::Connected(_));
        let task = tokio::spawn(
            connection::supervised(Arc::clone(&shared), first).instrument(span.clone()),
        );
        let checkpointer = shared
            .checkpoint
            .is_some()
            .then(|| tokio::spawn(checkpoint::run(Arc::clone(&shared)).instrument(span)));
        if connected {
            // With server filters, the hub applies the first filter before
            // `connect` returns: from then on it sends only what the
            // subscriptions want (a publish-only client: nothing).
            shared.await_filter(INITIAL_FILTER_EPOCH).await;
        }
        Ok(WebSocketTransport {
            shared,
            connection: Mutex::new(Some(task)),
            checkpointer: Mutex::new(checkpointer),
            shutdown: OnceCell::new(),
        })
    }

    /// Publishes one event: serialises it here, in the caller's task, and
    /// enqueues it for the writer.
    ///
    /// Returns once the event is queued, not when it is delivered (see
    /// [`flush`](Self::flush)). While the circuit breaker is open it fails
    /// fast with an error whose text contains `Circuit breaker is open`.
    /// When the queue is full the strategy decides: `DropOldest` evicts the
    /// oldest event to the dead-letter queue, `DropNewest` returns
    /// `QueueFull`, `Block` waits for room (and is released with the breaker
    /// error if the breaker opens meanwhile).
    pub async fn publish(&self, event: Event) -> Result<()> {
        let shared = &*self.shared;
        if let Some(crash) = shared.crashed() {
            return Err(crash);
        }
        // Only the connection task moves the breaker; publishers read the
        // state it leaves, so a half-open trial is never started here.
        if shared.circuit_open() {
            bump(&shared.counters.rejected);
            return Err(WatchtowerError::CircuitOpen {
                retry_after: shared.breaker.retry_after(),
            });
        }
        // The receiver's rules: an event it could not decode fails here.
        event.validate()?;
        let text = serde_json::to_string(&event).map_err(WatchtowerError::Serialization)?;
        if text.len() > shared.settings.max_message_size {
            return Err(WatchtowerError::MessageTooLarge {
                size: text.len(),
                max: shared.settings.max_message_size,
            });
        }
        let frame = Utf8Bytes::from(text);
        // Counted before the push, so that a `flush` by another task that
        // sees this event in the queue also waits for it.
        bump(&shared.counters.accepted);
        let pushed = if shared.queue.config().strategy == BackpressureStrategy::Block {
            self.push_blocking(frame).await
        } else {
            shared.queue.try_push(frame).map_err(|e| match e {
                PushError::Full(_) => WatchtowerError::QueueFull {
                    capacity: shared.queue.capacity(),
                },
                _ => WatchtowerError::Closed,
            })
        };
        let pushed = match pushed {
            Ok(pushed) => pushed,
            Err(error) => {
                bump(&shared.counters.refused);
                shared.progress.notify_waiters();
                return Err(error);
            }
        };
        if let Pushed::Evicted(oldest) = pushed {
            shared.dead_letter_frames(
                vec![oldest],
                DeadLetterReason::Overflow,
                &format!(
                    "evicted: the queue was full ({} events) and DropOldest made room for a newer event",
                    shared.queue.capacity()
                ),
            );
        }
        Ok(())
    }

    /// `Block`: wait for room, unless the breaker opens or the transport
    /// shuts down first. With room, this costs no more than `try_push`.
    async fn push_blocking(&self, frame: Utf8Bytes) -> Result<Pushed<Utf8Bytes>> {
        let shared = &*self.shared;
        let map = |e: PushError<Utf8Bytes>| match e {
            PushError::Full(_) => WatchtowerError::QueueFull {
                capacity: shared.queue.capacity(),
            },
            _ => WatchtowerError::Closed,
        };
        let push = shared.queue.push(frame);
        tokio::pin!(push);
        // Fast path: with room the push completes on its first poll.
        if let Some(pushed) = (&mut push).now_or_never() {
            return pushed.map_err(map);
        }
        // Full. Register for the breaker opening before checking it, so an
        // opening in between still wakes us; once woken, the opening wins
        // over the room that dead-lettering the queue makes.
        let gave_up = shared.gave_up.notified();
        tokio::pin!(gave_up);
        gave_up.as_mut().enable();
        let stopped = || {
            if let Some(crash) = shared.crashed() {
                crash
            } else if shared.is_running() {
                WatchtowerError::CircuitOpen {
                    retry_after: shared.breaker.retry_after(),
                }
            } else {
                WatchtowerError::Closed
            }
        };
        if shared.circuit_open() {
            return Err(stopped());
        }
        tokio::select! {
            biased;
            _ = &mut gave_up => Err(stopped()),
            pushed = &mut push => pushed.map_err(map),
        }
    }

    /// Waits until every event published before this call has been written
    /// to the socket (at least once: acknowledged by the server), or
    /// settled otherwise.
    ///
    /// Fails if any of them was dead-lettered instead (evicted, or
    /// abandoned because the breaker opened or the transport shut down).
    /// While disconnected it waits for the reconnect; wrap it in
    /// `tokio::time::timeout` to bound the wait. With a position to
    /// continue from ([`resume_from`](crate::TransportBuilder::resume_from)
    /// or a checkpoint) nothing is connected before the first `subscribe`:
    /// until then `flush` fails at once rather than wait.
    pub async fn flush(&self) -> Result<()> {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let confirmation = shared.settings.confirmation();
        let target = counters.accepted.load(Relaxed);
        let refused_before = counters.refused.load(Relaxed);
        let unwritten_before = counters.settled_unwritten(confirmation);
        loop {
            let progress = shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if counters.written(confirmation) + counters.settled_unwritten(confirmation) >= target {
                break;
            }
            if let Some(crash) = shared.crashed() {
                return Err(crash);
            }
            if self.state() == ConnectionState::Closed {
                return Err(WatchtowerError::Closed);
            }
            if let Some((_, id)) = shared.reading_paused()
                && shared.subs.is_task_of(id)
            {
                return Err(WatchtowerError::connection(format!(
                    "flush inside the handler of subscription {id}, whose mailbox is full \
                     (MailboxOverflow::Block): the reader waits for this handler to make room, so \
                     it cannot read the server's confirmation; the events stay queued and are \
                     sent — flush after the handler returns, or use a larger mailbox"
                )));
            }
            if shared.resume.waiting_for_subscription() {
                return Err(WatchtowerError::connection(
                    "nothing can be written before the first subscribe: with a position to \
                     continue from (resume_from or a checkpoint) the transport connects when the \
                     first subscription is made, so that the replay has somewhere to go; \
                     subscribe first (the events stay queued)",
                ));
            }
            progress.await;
        }
        if let Some(crash) = shared.crashed() {
            return Err(crash);
        }
        // Refused publishes failed in their caller; they are settled, not lost.
        let refused = counters.refused.load(Relaxed) - refused_before;
        match (counters.settled_unwritten(confirmation) - unwritten_before).saturating_sub(refused)
        {
            0 => Ok(()),
            n => Err(WatchtowerError::connection(format!(
                "{n} events published before this flush may not have reached the server: they \
                 are in the dead-letter queue, or were written to a connection that was lost \
                 before the server confirmed them"
            ))),
        }
    }

    /// Subscribes `handler` to `event_types` (empty: every type).
    ///
    /// Each subscription receives every matching event once, in order, on
    /// its own task with its own bounded mailbox, across reconnects. A
    /// handler that errors or panics sends that event to the dead-letter
    /// queue; the subscription keeps running.
    pub async fn subscribe<H>(
        &self,
        event_types: Vec<String>,
        handler: H,
    ) -> Result<SubscriptionHandle>
    where
        H: Fn(Event) -> HandlerFuture + Send + Sync + 'static,
    {
        self.subscribe_handler(event_types, Arc::new(handler)).await
    }

    /// [`subscribe`](Self::subscribe) with a shared handler.
    pub async fn subscribe_handler(
        &self,
        event_types: Vec<String>,
        handler: EventHandler,
    ) -> Result<SubscriptionHandle> {
        let shared = &self.shared;
        if !shared.is_running() {
            return Err(WatchtowerError::Closed);
        }
        if event_types.iter().any(|t| t.is_empty()) {
            return Err(WatchtowerError::Subscription(
                "an event type is an empty string; list non-empty types, or pass an empty list \
                 to receive every type"
                    .to_string(),
            ));
        }
        // Checked against the limits of the hub connected now (its own
        // from its upgrade answer), so a filter it would refuse — closing
        // the connection, on every reconnect — is never made.
        let check = |frame: &ControlFrame| {
            let limits = shared.hub_limits.get();
            filter_limits::check(frame, &limits, shared.settings.max_message_size)
        };
        let check = shared
            .settings
            .server_filters
            .then_some(&check as &FilterCheck<'_>);
        let id = shared
            .subs
            .add(shared, event_types, handler, check)
            .map_err(WatchtowerError::Subscription)?;
        shared.resume.subscribed();
        // With server filters, return once the server delivers the new types.
        let epoch = shared.filter_changed();
        shared.await_filter(epoch).await;
        Ok(SubscriptionHandle::new(shared.instance, id))
    }

    /// Stops delivery to `handle`. Events already in its mailbox are still
    /// handled (bounded by the shutdown timeout); after this returns the
    /// handler is not called again.
    pub async fn unsubscribe(&self, handle: &SubscriptionHandle) -> Result<()> {
        let shared = &self.shared;
        if handle.owner() != shared.instance {
            return Err(WatchtowerError::Subscription(format!(
                "{handle} belongs to another transport"
            )));
        }
        let Some(stopper) = shared.subs.remove(handle.id()) else {
            return Err(WatchtowerError::Subscription(format!(
                "unknown {handle}: it was never subscribed here or is already unsubscribed"
            )));
        };
        let _ = shared.filter_changed();
        stop_subscription(stopper, Instant::now() + shared.settings.shutdown_timeout).await;
        Ok(())
    }

    /// Removes a subscription without waiting for its task (used on drop).
    pub(crate) fn detach_subscription(&self, handle: &SubscriptionHandle) {
        if handle.owner() == self.shared.instance && self.shared.subs.remove(handle.id()).is_some()
        {
            let _ = self.shared.filter_changed();
        }
    }

    /// Puts `event` in the dead-letter queue with `error` as the reason text
    /// (reason kind `Manual`), e.g. after a failed publish.
    pub async fn publish_to_dlq<E>(&self, event: Event, error: &E) -> Result<()>
    where
        E: fmt::Display + ?Sized,
    {
        self.shared
            .dlq
            .push(DeadEvent::from(event), DeadLetterReason::Manual, error);
        Ok(())
    }

    /// Starts consuming the dead-letter queue: `handler` is called for each
    /// entry as it arrives, oldest first; a failing entry is retried up to
    /// the DLQ's `max_attempts`, then parked. Runs until the returned handle
    /// is stopped or the transport shuts down.
    pub async fn consume_dlq<H>(&self, handler: H) -> Result<ConsumerHandle>
    where
        H: Fn(Event) -> HandlerFuture + Send + Sync + 'static,
    {
        if !self.shared.is_running() {
            return Err(WatchtowerError::Closed);
        }
        // Entries are decoded here, one by one as the consumer takes them;
        // one that does not decode (a server's frame) fails each attempt
        // with the decode error and ends up parked, its JSON kept.
        Ok(self
            .shared
            .dlq
            .consume(move |dead: DeadEvent| match dead.into_event() {
                Ok(event) => handler(event),
                Err(error) => Box::pin(std::future::ready(Err(error.into()))) as HandlerFuture,
            }))
    }

    /// The dead-letter queue itself: drain it, inspect parked entries.
    /// Entries hold each event as its frame, decoded when asked
    /// ([`DeadEvent::event`]).
    pub fn dead_letters(&self) -> &DeadLetterQueue<DeadEvent> {
        &self.shared.dlq
    }

    /// The outgoing queue's statistics.
    pub async fn backpressure_stats(&self) -> BackpressureStats {
        self.shared.queue.stats()
    }

    /// The circuit breaker's statistics.
    pub async fn circuit_breaker_stats(&self) -> CircuitBreakerStats {
        self.shared.breaker.stats()
    }

    /// The dead-letter queue's statistics.
    pub fn dlq_stats(&self) -> DlqStats {
        self.shared.dlq.stats()
    }

    /// Connection and subscription counters.
    pub fn connection_stats(&self) -> ConnectionStats {
        let mut stats = self.shared.counters.snapshot();
        stats.url_index = self
            .shared
            .url_index
            .load(std::sync::atomic::Ordering::Relaxed) as u64;
        if let Some(checkpoint) = self.shared.checkpoint.as_deref() {
            stats.checkpoints_saved = checkpoint.saved.load(Relaxed);
            stats.checkpoint_failures = checkpoint.failures.load(Relaxed);
        }
        stats
    }

    /// This transport's position in the hub's history, counted in events
    /// *handled*: every event up to it has been handled (or
    /// dead-lettered) by every subscription, and none after it has been
    /// counted — not one still in a mailbox, nor one a stopped
    /// subscription left unhandled at `shutdown`. It is where a new
    /// transport (a restarted process) continues from with
    /// [`TransportBuilder::resume_from`](crate::TransportBuilder::resume_from),
    /// and what a [checkpoint](crate::TransportBuilder::checkpoint) stores.
    ///
    /// Reconnects of this transport do not use it: they continue from what
    /// was read (what was read is in the mailboxes, which survive
    /// reconnects), so within one process nothing is delivered twice.
    /// `None` until a hub with history has answered, or with resume off.
    pub fn position(&self) -> Option<Position> {
        self.shared.handled_position()
    }

    /// This transport's identity: a UUID v7 (hyphenated, lowercase) made
    /// when it was built, sent on every upgrade request of every
    /// connection as the [`CLIENT_ID_HEADER`](crate::CLIENT_ID_HEADER)
    /// header (`Watchtower-Client-Id`). A hub uses it to know its
    /// reconnects from other clients (it skips a client's own events when
    /// it replays history to it). A new transport — a restarted process —
    /// has a new one.
    pub fn client_id(&self) -> &str {
        self.shared.client_id.as_str()
    }

    /// What the hub answered to the position presented on the latest
    /// connect; `None` before the first connect or with resume off.
    pub fn last_resume(&self) -> Option<ResumeOutcome> {
        self.shared.resume.outcome()
    }

    /// Every statistic at once.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            state: self.state(),
            connection: self.connection_stats(),
            backpressure: self.shared.queue.stats(),
            circuit_breaker: self.shared.breaker.stats(),
            dlq: self.shared.dlq.stats(),
        }
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        *self.shared.state.borrow()
    }

    /// A receiver that sees every connection state change.
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// Number of active subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.shared.subs.len()
    }

    /// The server URL the transport is on (or trying), with query values
    /// and userinfo redacted: the config's `url`, or one of the
    /// [`fallback_urls`](crate::TransportBuilder::fallback_urls).
    pub fn url(&self) -> String {
        self.shared.current_url().to_string()
    }

    /// `Ok` only while connected with a live keepalive (a connection whose
    /// keepalive expires is dropped and reconnected at once) and reading.
    /// In [`MailboxOverflow::Block`](crate::MailboxOverflow::Block) mode
    /// the reader waits while a subscription's mailbox is full; once it has
    /// waited longer than the pong timeout (10 s without keepalive), this
    /// fails and names the subscription.
    pub async fn health_check(&self) -> Result<()> {
        match self.state() {
            ConnectionState::Connected => match self.shared.reading_paused() {
                Some((paused, id)) if paused > self.stalled_after() => {
                    Err(WatchtowerError::connection(format!(
                        "connected to {}, but not reading for {paused:?}: subscription {id}'s \
                         mailbox is full (MailboxOverflow::Block) and its handler has not made \
                         room",
                        self.shared.current_url(),
                    )))
                }
                _ => Ok(()),
            },
            ConnectionState::CircuitOpen => Err(WatchtowerError::CircuitOpen {
                retry_after: self.shared.breaker.retry_after(),
            }),
            ConnectionState::Closed => Err(WatchtowerError::Closed),
            ConnectionState::Reconnecting { attempt } => Err(WatchtowerError::connection(format!(
                "not connected to {}: reconnecting (attempt {attempt})",
                self.shared.current_url()
            ))),
            _ => Err(WatchtowerError::connection(format!(
                "not connected to {} yet",
                self.shared.current_url()
            ))),
        }
    }

    /// How long the reader may wait for a full mailbox before
    /// `health_check` says so.
    fn stalled_after(&self) -> Duration {
        self.shared
            .settings
            .keepalive
            .map_or(Duration::from_secs(10), |k| k.pong_timeout)
    }

    /// Flushes what is queued (within the builder's shutdown timeout),
    /// closes the WebSocket with a normal close, waits for the server's
    /// close, and stops every task. What could not be written is moved to
    /// the dead-letter queue and counted in the report. Calling it again,
    /// or concurrently, does nothing more: every caller gets the report of
    /// the one shutdown, once it is complete.
    pub async fn shutdown(&self) -> Result<ShutdownReport> {
        let report = self
            .shutdown
            .get_or_init(|| async {
                let shared = &self.shared;
                let deadline = Instant::now() + shared.settings.shutdown_timeout;
                let abandoned_before = shared.counters.events_abandoned.load(Relaxed);
                shared.lifecycle.set(Lifecycle::Draining { deadline });
                // New publishes now fail with `Closed`; blocked ones are released.
                shared.queue.close();
                let task = self
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let checkpointer = self
                    .checkpointer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(task) = task {
                    let abort = task.abort_handle();
                    if timeout_at(deadline + FINISH_GRACE, task).await.is_err() {
                        abort.abort();
                    }
                }
                // Whatever the task left (or was queued while it ended) is
                // settled here: the queue is closed, so nothing comes after.
                connection::finish(shared);
                for stopper in shared.subs.remove_all() {
                    stop_subscription(stopper, deadline).await;
                }
                // The subscriptions have stopped: the position is final.
                // A save of the periodic task still running cannot
                // overwrite this one (see `Checkpointer`).
                if let Some(task) = checkpointer {
                    task.abort();
                }
                if let Some(checkpoint) = shared.checkpoint.as_deref() {
                    checkpoint.save(shared, true).await;
                }
                shared.dlq.close();
                shared.lifecycle.set(Lifecycle::Stopped);
                shared.set_state(ConnectionState::Closed);
                let report = ShutdownReport {
                    dead_lettered: shared.counters.events_abandoned.load(Relaxed)
                        - abandoned_before,
                    closed_cleanly: shared.clean_close.load(Relaxed),
                };
                tracing::info!(url = %shared.current_url(), ?report, "shut down");
                report
            })
            .await;
        Ok(*report)
    }
}

/// Stops a removed subscription: waits until `deadline` for it to handle
/// what it holds, then interrupts it; what it could not handle is
/// dead-lettered and counted. Called from the subscription's own handler,
/// it cannot wait for itself: the handler finishes, the rest is
/// dead-lettered, and this returns at once.
async fn stop_subscription(mut stopper: Stopper, deadline: Instant) {
    if stopper.is_current_task() {
        stopper.stop_after_current();
        return;
    }
    if timeout_at(deadline, &mut stopper.task).await.is_ok() {
        return;
    }
    stopper.interrupt();
    // Interrupted, the task dead-letters what it held and ends at once,
    // unless a handler blocks its thread; then it is aborted.
    if timeout(FINISH_GRACE, &mut stopper.task).await.is_err() {
        stopper.task.abort();
    }
}

impl Drop for WebSocketTransport {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.lifecycle.set(Lifecycle::Stopped);
        shared.queue.close();
        if let Some(task) = self
            .connection
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        if let Some(task) = self
            .checkpointer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        for stopper in shared.subs.remove_all() {
            stopper.task.abort();
        }
        shared.dlq.close();
        shared.set_state(ConnectionState::Closed);
    }
}

impl Transport for WebSocketTransport {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<()>> {
        Box::pin(WebSocketTransport::publish(self, event))
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(WebSocketTransport::flush(self))
    }

    fn health_check(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(WebSocketTransport::health_check(self))
    }
}

impl Subscriber for WebSocketTransport {
    fn subscribe_handler(
        &mut self,
        event_types: Vec<String>,
        handler: EventHandler,
    ) -> BoxFuture<'_, Result<SubscriptionHandle>> {
        Box::pin(WebSocketTransport::subscribe_handler(
            self,
            event_types,
            handler,
        ))
    }

    fn unsubscribe<'a>(&'a mut self, handle: &'a SubscriptionHandle) -> BoxFuture<'a, Result<()>> {
        Box::pin(WebSocketTransport::unsubscribe(self, handle))
    }
}
