//! Subscriptions: each has its own bounded mailbox and task, so handlers run
//! in order per subscription and a slow one stalls nothing else.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use watchtower_core::{ControlFrame, Event, EventHandler};
use watchtower_dlq::DeadLetterReason;

use crate::shared::Shared;
use crate::stats::bump;

/// One event on its way to a handler: its frame, still undecoded. The
/// reader only peeks at the header to route it; each subscription decodes
/// its own copy in its own task, so decoding runs beside other
/// subscriptions, and an event is allocated and freed on the same task
/// (cross-thread frees are what makes allocators contend).
pub(crate) struct Delivery {
    frame: Utf8Bytes,
    /// Whether this copy counts a decoding failure: only one copy of a
    /// frame does, so a bad frame is counted once however many
    /// subscriptions it reached.
    counts_errors: bool,
    /// Whether the reader routed it by its header. If not (the only
    /// subscription takes frames unread), the subscription classifies,
    /// filters and counts it itself.
    routed: bool,
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
    filter: Arc<Filter>,
    mailbox: mpsc::UnboundedSender<Delivery>,
    /// Events this subscription holds: queued in the mailbox, taken by its
    /// task, or being handled. The mailbox bound is on this count, so it
    /// is exact even though the task takes its mailbox in batches.
    held: Arc<AtomicUsize>,
    capacity: usize,
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
        let filter = Arc::new(filter);
        let (tx, rx) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(
            Arc::clone(shared),
            Mailbox {
                id,
                filter: Arc::clone(&filter),
                deliveries: rx,
                held: Arc::clone(&held),
            },
            handler,
        ));
        let entry = Arc::new(Entry {
            id,
            filter,
            mailbox: tx,
            held,
            capacity: self.mailbox_size,
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
            match &*entry.filter {
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

    /// Hands the frame of an event of `event_type` to every matching
    /// subscription without waiting: a full mailbox dead-letters the event
    /// for that subscription and counts it. False if nothing matched.
    pub(crate) fn dispatch(&self, shared: &Shared, event_type: &str, frame: Utf8Bytes) -> bool {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut matching = entries.iter().filter(|e| e.filter.matches(event_type));
        let Some(mut current) = matching.next() else {
            return false;
        };
        // A reference-counted copy for all but the last match.
        let mut counts_errors = true;
        for next in matching {
            deliver(shared, current, frame.clone(), counts_errors, true);
            counts_errors = false;
            current = next;
        }
        deliver(shared, current, frame, counts_errors, true);
        true
    }

    /// With exactly one subscription, hands it the frame unread: it decodes
    /// every frame it gets anyway, so reading the header here first would
    /// parse each frame twice. Gives the frame back otherwise.
    pub(crate) fn deliver_unread(
        &self,
        shared: &Shared,
        frame: Utf8Bytes,
    ) -> Result<(), Utf8Bytes> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match entries.as_slice() {
            [only] => {
                deliver(shared, only, frame, true, false);
                Ok(())
            }
            _ => Err(frame),
        }
    }
}

fn deliver(shared: &Shared, entry: &Entry, frame: Utf8Bytes, counts_errors: bool, routed: bool) {
    if entry.held.fetch_add(1, Relaxed) >= entry.capacity {
        entry.held.fetch_sub(1, Relaxed);
        bump(&shared.counters.mailbox_overflow);
        if let Ok(event) = Event::from_json(frame.as_bytes()) {
            shared.dlq.push(
                event,
                DeadLetterReason::Overflow,
                format!(
                    "subscription {} mailbox is full ({} events): its handler is slower than the \
                     event rate",
                    entry.id, entry.capacity
                ),
            );
        }
        return;
    }
    let delivery = Delivery {
        frame,
        counts_errors,
        routed,
    };
    match entry.mailbox.send(delivery) {
        Ok(()) if routed => bump(&shared.counters.events_dispatched),
        Ok(()) => {}
        // Unsubscribing: the subscription no longer wants events.
        Err(_) => {
            entry.held.fetch_sub(1, Relaxed);
        }
    }
}

/// A subscription task's end of its mailbox.
struct Mailbox {
    id: u64,
    filter: Arc<Filter>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    held: Arc<AtomicUsize>,
}

/// Deliveries a subscription task takes from its mailbox at once: fewer
/// wake-ups and channel operations than one at a time (about a fifth of
/// the subscriber's cost in the fan-out benchmark).
const TAKE: usize = 64;

/// One subscription's task: handlers run one at a time, in arrival order.
async fn run(shared: Arc<Shared>, mut mailbox: Mailbox, handler: EventHandler) {
    let mut taken = Vec::with_capacity(TAKE);
    while mailbox.deliveries.recv_many(&mut taken, TAKE).await > 0 {
        for delivery in taken.drain(..) {
            handle(&shared, mailbox.id, &mailbox.filter, &handler, delivery).await;
            // Handled: room for one more.
            mailbox.held.fetch_sub(1, Relaxed);
        }
    }
}

/// Decodes one event and runs the handler on it; a failure or panic
/// dead-letters the event.
async fn handle(
    shared: &Shared,
    id: u64,
    filter: &Filter,
    handler: &EventHandler,
    delivery: Delivery,
) {
    let Delivery {
        frame: raw,
        counts_errors,
        routed,
    } = delivery;
    let event = match Event::from_json(raw.as_bytes()) {
        Ok(event) => event,
        Err(error) => {
            if !routed && ControlFrame::from_json(raw.as_bytes()).is_some() {
                bump(&shared.counters.control_frames_in);
                return;
            }
            // A routed frame passed the reader's header check, but the rest
            // of it can still be bad.
            if counts_errors {
                shared.counters.malformed.record(error.kind());
            }
            tracing::warn!(subscription = id, reason = %error, "malformed frame dropped");
            return;
        }
    };
    if !routed {
        bump(&shared.counters.events_received);
        if !filter.matches(&event.event_type) {
            bump(&shared.counters.events_unmatched);
            return;
        }
        bump(&shared.counters.events_dispatched);
    }
    // A handler can panic while building its future or while running it.
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    let error = match outcome {
        Ok(Ok(())) => {
            bump(&shared.counters.handler_ok);
            return;
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
    if let Ok(event) = Event::from_json(raw.as_bytes()) {
        shared
            .dlq
            .push(event, DeadLetterReason::HandlerFailed, error);
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
