use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::FutureExt;
use futures_util::future::{Either, select};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::DeadLetterQueue;
use crate::queue::{Entry, Inner, Take};

impl<T> DeadLetterQueue<T> {
    /// Starts a consumer: a tokio task that retries entries with `handler`,
    /// oldest first, as they arrive.
    ///
    /// For each entry the consumer calls `handler(item.clone())`:
    ///
    /// - `Ok(())`: the entry is done ([`DlqStats::consumed`]).
    /// - `Err(e)`, or a panic: a failed attempt. The entry's `attempts` is
    ///   bumped and its `error` and `last_failed_at` are updated. If the
    ///   handler has now been called `max_attempts` times for the entry, it
    ///   is parked ([`DlqStats::parked`]); otherwise it is retried after
    ///   `retry_delay` (a tokio timer, so paused-clock tests need no real
    ///   waiting) while the entries behind it wait.
    ///
    /// An idle consumer sleeps until a push wakes it; it never polls. It
    /// takes one entry at a time, so several consumers can share a queue.
    ///
    /// The consumer runs until [`ConsumerHandle::stop`] or
    /// [`close`](Self::close); dropping the handle does not stop it. When
    /// stopped, it finishes its current handler call, and an entry it was
    /// going to retry goes back to the front of the queue, so nothing is
    /// lost.
    ///
    /// # Panics
    ///
    /// Must be called within a tokio runtime: like `tokio::spawn`, it panics
    /// otherwise.
    ///
    /// [`DlqStats::consumed`]: crate::DlqStats::consumed
    /// [`DlqStats::parked`]: crate::DlqStats::parked
    pub fn consume<H, Fut, E>(&self, handler: H) -> ConsumerHandle
    where
        T: Clone + Send + 'static,
        H: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::clone(self.inner());
        let control = Arc::clone(&inner.control);
        let task = tokio::spawn(run(inner, Arc::clone(&stop), handler));
        ConsumerHandle {
            stop,
            control,
            task,
        }
    }
}

/// Controls a consumer started with
/// [`DeadLetterQueue::consume`](crate::DeadLetterQueue::consume).
///
/// Dropping the handle does not stop the consumer: it runs until
/// [`stop`](Self::stop) or [`DeadLetterQueue::close`], or until the last
/// clone of its queue is dropped.
#[derive(Debug)]
pub struct ConsumerHandle {
    stop: Arc<AtomicBool>,
    /// The queue's control `Notify`, to wake the consumer wherever it waits.
    control: Arc<Notify>,
    task: JoinHandle<()>,
}

impl ConsumerHandle {
    /// Asks the consumer to stop; returns at once. It finishes its current
    /// handler call, then exits; an entry it was going to retry goes back to
    /// the front of the queue. Wait for the exit with
    /// [`stopped`](Self::stopped).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.control.notify_waiters();
    }

    /// Whether the consumer has exited.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the consumer has exited. It does not ask it to: call
    /// [`stop`](Self::stop) or [`DeadLetterQueue::close`] first, or this
    /// waits as long as the consumer runs.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            // Handler panics are caught; only the item's `Clone` or the
            // error's `Display` panicking, or the runtime shutting down, get
            // here. Any entry in flight was put back.
            if error.is_panic() {
                tracing::warn!("dead-letter consumer task panicked");
            }
        }
    }
}

/// An entry a consumer holds. If the consumer goes away while holding it
/// (stopped mid-retry, or its task dropped when the runtime shuts down), the
/// entry goes back to the queue instead of being lost.
struct InFlight<'a, T> {
    inner: &'a Inner<T>,
    entry: Option<Entry<T>>,
}

impl<T> Drop for InFlight<'_, T> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.inner.put_back(entry);
        }
    }
}

/// The consumer task.
async fn run<T, H, Fut, E>(inner: Arc<Inner<T>>, stop: Arc<AtomicBool>, handler: H)
where
    T: Clone,
    H: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let max_attempts = inner.config.max_attempts;
    while let Some(entry) = next_entry(&inner, &stop).await {
        let mut held = InFlight {
            inner: &inner,
            entry: Some(entry),
        };
        // Call the handler until the entry is consumed or parked.
        while let Some(entry) = held.entry.as_mut() {
            // Cloned here rather than inside `call`'s `catch_unwind` block:
            // capturing `&T` there would make the task need `T: Sync`.
            let item = entry.letter.item.clone();
            let outcome = call(&handler, item).await;
            entry.calls = entry.calls.saturating_add(1);
            match outcome {
                Ok(()) => {
                    if let Some(entry) = held.entry.take() {
                        inner.consumed(entry);
                    }
                }
                Err(error) => {
                    tracing::debug!(
                        reason = %entry.letter.reason,
                        call = entry.calls,
                        error = %error,
                        "dead-letter handler failed"
                    );
                    entry.letter.failed_again(error);
                    if entry.calls >= max_attempts {
                        tracing::warn!(
                            reason = %entry.letter.reason,
                            attempts = entry.letter.attempts,
                            "dead-letter consumer gave up on an entry and parked it"
                        );
                        if let Some(entry) = held.entry.take() {
                            inner.park(entry);
                        }
                    } else {
                        inner.failed_call();
                        if !wait_to_retry(&inner, &stop).await {
                            // Dropping `held` puts the entry back.
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Waits for the next pending entry; `None` when the consumer must stop.
async fn next_entry<T>(inner: &Inner<T>, stop: &AtomicBool) -> Option<Entry<T>> {
    loop {
        // Register for both wake-ups before looking, so that a push or stop
        // between the look and the wait still wakes us.
        let mut arrived = pin!(inner.arrived.notified());
        let mut control = pin!(inner.control.notified());
        arrived.as_mut().enable();
        control.as_mut().enable();
        match inner.take_next(stop) {
            Take::Stop => return None,
            Take::Entry(entry) => return Some(entry),
            Take::Empty => {}
        }
        // If `control` wins while `arrived` was notified too, dropping
        // `arrived` passes its `notify_one` wake-up on to another consumer.
        select(arrived, control).await;
    }
}

/// Sleeps `retry_delay`; `false` if the consumer must stop meanwhile.
async fn wait_to_retry<T>(inner: &Inner<T>, stop: &AtomicBool) -> bool {
    let mut sleep = pin!(tokio::time::sleep(inner.config.retry_delay));
    loop {
        let mut control = pin!(inner.control.notified());
        control.as_mut().enable();
        if inner.must_stop(stop) {
            return false;
        }
        if let Either::Left(_) = select(sleep.as_mut(), control).await {
            return true;
        }
        // Woken by `control`: check again, and keep the same deadline.
    }
}

/// Calls the handler once; a panic is a failure like an error.
async fn call<T, H, Fut, E>(handler: &H, item: T) -> Result<(), String>
where
    H: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    // The `async` block makes a panic in `handler` itself, not only in its
    // future, happen inside `catch_unwind`. Unwind safety: after a panic the
    // handler's future is dropped and only the (cloned) item was moved into
    // it; the shared `handler` is the caller's to keep consistent, as with
    // any `Fn` that may panic.
    match AssertUnwindSafe(async { handler(item).await })
        .catch_unwind()
        .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => Err(panic_message(panic.as_ref())),
    }
}

/// The error text for a handler that panicked.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    match detail {
        Some(detail) => format!("handler panicked: {detail}"),
        None => "handler panicked".to_owned(),
    }
}
