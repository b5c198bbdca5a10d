//! Subscriptions: each has its own bounded mailbox and task, so handlers run
//! in order per subscription and a slow one stalls nothing else.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use watchtower_core::{ControlFrame, Event, EventHandler};
use watchtower_dlq::DeadLetterReason;

use crate::shared::Shared;
use crate::stats::bump;

/// One event on its way to a handler, with the frame it came in, kept (a
/// cheap reference-counted clone) so a failed event can be dead-lettered
/// without cloning every event up front.
pub(crate) struct Delivery {
    event: Event,
    raw: Bytes,
}

enum Filter {
    All,
    Types(HashSet<String>),
}

impl Filter {
    fn matches(&self, event_type: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Types(types) => types.contains(event_type),
        }
    }
}

pub(crate) struct Entry {
    id: u64,
    filter: Filter,
    mailbox: mpsc::Sender<Delivery>,
    task: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Registry {
    entries: RwLock<Vec<Arc<Entry>>>,
    next_id: AtomicU64,
    mailbox_size: usize,
}

impl Registry {
    pub(crate) fn new(mailbox_size: usize) -> Registry {
        Registry {
            entries: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(1),
            mailbox_size,
        }
    }

    /// Adds a subscription and starts its task.
    pub(crate) fn add(
        &self,
        shared: &Arc<Shared>,
        event_types: Vec<String>,
        handler: EventHandler,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Relaxed);
        let filter = if event_types.is_empty() {
            Filter::All
        } else {
            Filter::Types(event_types.into_iter().collect())
        };
        let (tx, rx) = mpsc::channel(self.mailbox_size);
        let task = tokio::spawn(run(Arc::clone(shared), id, rx, handler));
        let entry = Arc::new(Entry {
            id,
            filter,
            mailbox: tx,
            task: Mutex::new(Some(task)),
        });
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
        id
    }

    /// Removes a subscription; its mailbox closes, so its task finishes what
    /// was already delivered and ends. Returns the task to wait on.
    pub(crate) fn remove(&self, id: u64) -> Option<JoinHandle<()>> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let index = entries.iter().position(|e| e.id == id)?;
        let entry = entries.remove(index);
        drop(entries);
        entry
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Removes every subscription; returns their tasks.
    pub(crate) fn remove_all(&self) -> Vec<JoinHandle<()>> {
        let entries =
            std::mem::take(&mut *self.entries.write().unwrap_or_else(PoisonError::into_inner));
        entries
            .iter()
            .filter_map(|e| e.task.lock().unwrap_or_else(PoisonError::into_inner).take())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The filter frame that asks the server for exactly what the
    /// subscriptions want.
    pub(crate) fn server_filter(&self) -> ControlFrame {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        if entries.is_empty() {
            return ControlFrame::Unsubscribe {
                event_types: Vec::new(),
            };
        }
        let mut union: Vec<String> = Vec::new();
        for entry in entries.iter() {
            match &entry.filter {
                Filter::All => {
                    return ControlFrame::Subscribe {
                        event_types: Vec::new(),
                        replace: true,
                    };
                }
                Filter::Types(types) => union.extend(types.iter().cloned()),
            }
        }
        union.sort_unstable();
        union.dedup();
        ControlFrame::Subscribe {
            event_types: union,
            replace: true,
        }
    }

    /// Hands `event` to every matching subscription without waiting: a full
    /// mailbox dead-letters the event for that subscription and counts it.
    pub(crate) fn dispatch(&self, shared: &Shared, event: Event, raw: Bytes) {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut matching = entries
            .iter()
            .filter(|e| e.filter.matches(&event.event_type));
        let Some(mut current) = matching.next() else {
            bump(&shared.counters.events_unmatched);
            return;
        };
        // Clone for all but the last match; the last one takes the event.
        for next in matching {
            deliver(shared, current, event.clone(), raw.clone());
            current = next;
        }
        deliver(shared, current, event, raw);
    }
}

fn deliver(shared: &Shared, entry: &Entry, event: Event, raw: Bytes) {
    match entry.mailbox.try_send(Delivery { event, raw }) {
        Ok(()) => bump(&shared.counters.events_dispatched),
        Err(mpsc::error::TrySendError::Full(delivery)) => {
            bump(&shared.counters.mailbox_overflow);
            shared.dlq.push(
                delivery.event,
                DeadLetterReason::Overflow,
                format!(
                    "subscription {} mailbox is full ({} events): its handler is slower than the \
                     event rate",
                    entry.id, shared.settings.mailbox_size
                ),
            );
        }
        // Unsubscribing: the subscription no longer wants events.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// One subscription's task: handlers run one at a time, in arrival order.
async fn run(
    shared: Arc<Shared>,
    id: u64,
    mut mailbox: mpsc::Receiver<Delivery>,
    handler: EventHandler,
) {
    while let Some(Delivery { event, raw }) = mailbox.recv().await {
        // A handler can panic while building its future or while running it.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        let error = match outcome {
            Ok(Ok(())) => {
                bump(&shared.counters.handler_ok);
                continue;
            }
            Ok(Err(error)) => {
                bump(&shared.counters.handler_errors);
                tracing::warn!(subscription = id, error = %error, "event handler failed; event dead-lettered");
                format!("handler failed: {error}")
            }
            Err(panic) => {
                bump(&shared.counters.handler_panics);
                let message = panic_message(panic.as_ref());
                tracing::warn!(subscription = id, panic = %message, "event handler panicked; event dead-lettered");
                format!("handler panicked: {message}")
            }
        };
        // The handler consumed the event; rebuild it from its frame.
        if let Ok(event) = Event::from_json(&raw) {
            shared
                .dlq
                .push(event, DeadLetterReason::HandlerFailed, error);
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
