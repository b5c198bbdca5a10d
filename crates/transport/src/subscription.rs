//! Subscriptions: each has its own bounded mailbox and task, so handlers run
//! in order per subscription and a slow one stalls nothing else.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use futures_util::FutureExt;
use futures_util::future::{AbortHandle, Abortable};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use watchtower_core::{ControlFrame, Event, EventHandler, frame_key};
use watchtower_dlq::DeadLetterReason;

use crate::shared::Shared;
use crate::stats::{add, bump};

/// What a subscription does with an event when its mailbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MailboxOverflow {
    /// Dead-letter the event (reason `Overflow`) and count it in
    /// `mailbox_overflow`; nothing else slows down. The default.
    #[default]
    DeadLetter,
    /// Stop reading from the socket until the mailbox has room: nothing is
    /// dropped here, TCP pushes back to the server, and the server's
    /// slow-client policy decides. Every subscription of the transport
    /// waits while one is full.
    Block,
}

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
    /// Its read index (see [`Resume`](crate::resume::Resume)): once
    /// handled, the subscription has finished everything up to it.
    index: u64,
}

/// How far one subscription has got, for the handled position: the
/// events it holds, and the read index of the last one it finished.
///
/// Shared by the registry's entry, the subscription's task and — once
/// `shutdown` stopped it — the registry's list of stopped subscriptions,
/// whose progress still bounds the position.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Events this subscription holds: queued in the mailbox, taken by its
    /// task, or being handled. The mailbox bound is on this count, so it
    /// is exact even though the task takes its mailbox in batches.
    held: AtomicUsize,
    finished: Mutex<Finished>,
}

#[derive(Debug, Default)]
struct Finished {
    /// Every delivery with a read index up to this one is handled or
    /// dead-lettered.
    upto: u64,
    /// The frame of delivery `upto`, kept (only while more are held) for
    /// the key of a position that stops at it.
    frame: Option<Utf8Bytes>,
    /// Stopped with deliveries unhandled: it never gets past `upto`.
    abandoned: bool,
}

impl Progress {
    fn new(read: u64) -> Progress {
        Progress {
            held: AtomicUsize::new(0),
            finished: Mutex::new(Finished {
                upto: read,
                ..Finished::default()
            }),
        }
    }

    /// Events held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    fn finished(&self) -> MutexGuard<'_, Finished> {
        self.finished.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to which read index (at most `read`) this subscription has
    /// finished, and the key of that event's frame if it still has it.
    fn covered(&self, read: u64) -> (u64, Option<u64>) {
        // `held` is read under the lock: a task that abandons deliveries
        // says so under it before it lets go of them.
        let finished = self.finished();
        let held = self.held.load(Relaxed);
        if (held == 0 && !finished.abandoned) || finished.upto >= read {
            return (read, None);
        }
        let key = finished.frame.as_ref().map(|f| frame_key(f.as_bytes()));
        (finished.upto, key)
    }
}

enum Filter {
    All,
    Types(HashSet<String>),
}

impl Filter {
    fn is_all(&self) -> bool {
        matches!(self, Filter::All)
    }

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
    progress: Arc<Progress>,
    capacity: usize,
    /// Woken when a handled event makes room (only in `Block` mode).
    room: Arc<Notify>,
    task: Mutex<Option<Stopper>>,
}

/// How to stop a subscription's task: let it finish its current event and
/// dead-letter the rest, or interrupt even that. Either way what it held is
/// dead-lettered and counted, never dropped.
#[derive(Debug)]
pub(crate) struct Stopper {
    pub(crate) task: JoinHandle<()>,
    /// Set: stop after the event being handled.
    after_current: Arc<AtomicBool>,
    /// Interrupts the handler now.
    interrupt: AbortHandle,
}

impl Stopper {
    /// Whether the caller is this subscription's own task (a handler that
    /// unsubscribes itself, or shuts the transport down).
    pub(crate) fn is_current_task(&self) -> bool {
        tokio::task::try_id() == Some(self.task.id())
    }

    /// Let the handler finish its event; dead-letter what is still queued.
    /// For the task's own handler: nothing is interrupted, and a task
    /// waiting on its mailbox wakes when the mailbox closes.
    pub(crate) fn stop_after_current(&self) {
        self.after_current.store(true, Relaxed);
    }

    /// Interrupt the handler; dead-letter its event and what is queued.
    pub(crate) fn interrupt(&self) {
        self.interrupt.abort();
    }
}

/// The event types `entries` and `extra` want together: `None` for every
/// type, else the sorted union.
fn union(entries: &[Arc<Entry>], extra: &[String]) -> Option<Vec<String>> {
    let mut union: Vec<String> = extra.to_vec();
    for entry in entries {
        match &*entry.filter {
            Filter::All => return None,
            Filter::Types(types) => union.extend(types.iter().cloned()),
        }
    }
    union.sort_unstable();
    union.dedup();
    Some(union)
}

/// Checks a filter frame before it may be made (see [`Registry::add`]);
/// the error says why not.
pub(crate) type FilterCheck<'a> = dyn Fn(&ControlFrame) -> Result<(), String> + 'a;

pub(crate) struct Registry {
    entries: RwLock<Vec<Arc<Entry>>>,
    /// Subscriptions `shutdown` stopped: what they did not handle still
    /// bounds the handled position.
    stopped: Mutex<Vec<Arc<Progress>>>,
    next_id: AtomicU64,
    mailbox_size: usize,
    overflow: MailboxOverflow,
}

impl Registry {
    pub(crate) fn new(mailbox_size: usize, overflow: MailboxOverflow) -> Registry {
        Registry {
            entries: RwLock::new(Vec::new()),
            stopped: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            mailbox_size,
            overflow,
        }
    }

    /// Adds a subscription and starts its task, if `check` accepts the
    /// filter frame the subscriptions would then need (`None`: no filter
    /// is sent, nothing to check). The check and the insert are one step
    /// under the registry's lock, so two `subscribe`s that each fit cannot
    /// together make a filter that does not.
    pub(crate) fn add(
        &self,
        shared: &Arc<Shared>,
        event_types: Vec<String>,
        handler: EventHandler,
        check: Option<&FilterCheck<'_>>,
    ) -> Result<u64, String> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(check) = check {
            let frame = ControlFrame::Subscribe {
                event_types: if event_types.is_empty() {
                    Vec::new()
                } else {
                    union(&entries, &event_types).unwrap_or_default()
                },
                replace: true,
            };
            check(&frame)?;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let filter = if event_types.is_empty() {
            Filter::All
        } else {
            Filter::Types(event_types.into_iter().collect())
        };
        let filter = Arc::new(filter);
        let (tx, rx) = mpsc::unbounded_channel();
        // It has finished everything read before it existed.
        let progress = Arc::new(Progress::new(shared.resume.read_index()));
        let room = Arc::new(Notify::new());
        let after_current = Arc::new(AtomicBool::new(false));
        let (interrupt, registration) = AbortHandle::new_pair();
        let mailbox = Mailbox {
            id,
            filter: Arc::clone(&filter),
            deliveries: rx,
            progress: Arc::clone(&progress),
            track: shared.resume.enabled(),
            room: (self.overflow == MailboxOverflow::Block).then(|| Arc::clone(&room)),
            after_current: Arc::clone(&after_current),
        };
        let task = tokio::spawn(run(Arc::clone(shared), mailbox, handler, registration));
        entries.push(Arc::new(Entry {
            id,
            filter,
            mailbox: tx,
            progress,
            capacity: self.mailbox_size,
            room,
            task: Mutex::new(Some(Stopper {
                task,
                after_current,
                interrupt,
            })),
        }));
        Ok(id)
    }

    /// Removes a subscription; its mailbox closes, so its task finishes what
    /// was already delivered and ends. Returns how to wait for or stop it.
    pub(crate) fn remove(&self, id: u64) -> Option<Stopper> {
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

    /// Removes every subscription (shutdown); returns their tasks. Unlike
    /// an unsubscribed one, what they hold and do not handle still bounds
    /// the handled position: the events are not handled, and a process
    /// that continues from the position gets them again.
    pub(crate) fn remove_all(&self) -> Vec<Stopper> {
        let entries =
            std::mem::take(&mut *self.entries.write().unwrap_or_else(PoisonError::into_inner));
        self.stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(entries.iter().map(|e| Arc::clone(&e.progress)));
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

    /// Whether the transport waits for room instead of dead-lettering.
    pub(crate) fn blocks(&self) -> bool {
        self.overflow == MailboxOverflow::Block
    }

    /// In `Block` mode: the first subscription with a full mailbox, and the
    /// notification that it has room again.
    pub(crate) fn first_full(&self) -> Option<(u64, Arc<Notify>, Arc<Progress>, usize)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .find(|e| e.progress.held.load(Relaxed) >= e.capacity)
            .map(|e| {
                (
                    e.id,
                    Arc::clone(&e.room),
                    Arc::clone(&e.progress),
                    e.capacity,
                )
            })
    }

    /// Whether the caller is subscription `id`'s own task (its handler).
    pub(crate) fn is_task_of(&self, id: u64) -> bool {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.iter().find(|e| e.id == id).is_some_and(|e| {
            e.task
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(Stopper::is_current_task)
        })
    }

    /// Up to which read index (at most `read`) every subscription —
    /// and every one `shutdown` stopped — has finished, and the key of
    /// that event's frame if one of them still holds it.
    pub(crate) fn handled_upto(&self, read: u64) -> (u64, Option<u64>) {
        let mut lowest = (read, None);
        let mut take = |(upto, key): (u64, Option<u64>)| {
            if upto < lowest.0 {
                lowest = (upto, key);
            } else if upto == lowest.0 && lowest.1.is_none() {
                lowest.1 = key;
            }
        };
        for entry in self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            take(entry.progress.covered(read));
        }
        for progress in self
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            take(progress.covered(read));
        }
        lowest
    }

    /// The filter frame that asks the server for exactly what the
    /// subscriptions want: every type, the union of their types, or — with
    /// no subscription at all — nothing.
    pub(crate) fn server_filter(&self) -> ControlFrame {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        if entries.is_empty() {
            return ControlFrame::Unsubscribe {
                event_types: Vec::new(),
            };
        }
        ControlFrame::Subscribe {
            event_types: union(&entries, &[]).unwrap_or_default(),
            replace: true,
        }
    }

    /// Hands the frame of an event of `event_type` to every matching
    /// subscription without waiting: a full mailbox dead-letters the event
    /// for that subscription and counts it. False if nothing matched.
    pub(crate) fn dispatch(
        &self,
        shared: &Shared,
        event_type: &str,
        frame: Utf8Bytes,
        index: u64,
    ) -> bool {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut matching = entries.iter().filter(|e| e.filter.matches(event_type));
        let Some(mut current) = matching.next() else {
            return false;
        };
        // A reference-counted copy for all but the last match.
        let mut counts_errors = true;
        for next in matching {
            deliver(shared, current, frame.clone(), counts_errors, true, index);
            counts_errors = false;
            current = next;
        }
        deliver(shared, current, frame, counts_errors, true, index);
        true
    }

    /// With exactly one subscription, and one that wants every type, hands
    /// it the frame unread: it decodes every frame it gets anyway, so
    /// reading the header here first would parse each frame twice. A
    /// filtered subscription is not given frames unread: the mailbox bound
    /// must count only what it asked for. Gives the frame back otherwise.
    pub(crate) fn deliver_unread(
        &self,
        shared: &Shared,
        frame: Utf8Bytes,
        index: u64,
    ) -> Result<(), Utf8Bytes> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match entries.as_slice() {
            [only] if only.filter.is_all() => {
                deliver(shared, only, frame, true, false, index);
                Ok(())
            }
            _ => Err(frame),
        }
    }
}

fn deliver(
    shared: &Shared,
    entry: &Entry,
    frame: Utf8Bytes,
    counts_errors: bool,
    routed: bool,
    index: u64,
) {
    let held = &entry.progress.held;
    if held.fetch_add(1, Relaxed) >= entry.capacity {
        held.fetch_sub(1, Relaxed);
        bump(&shared.counters.mailbox_overflow);
        shared.dead_letter_received(
            frame,
            DeadLetterReason::Overflow,
            format!(
                "subscription {} mailbox is full ({} events): its handler is slower than the \
                 event rate",
                entry.id, entry.capacity
            ),
        );
        return;
    }
    let delivery = Delivery {
        frame,
        counts_errors,
        routed,
        index,
    };
    match entry.mailbox.send(delivery) {
        Ok(()) if routed => bump(&shared.counters.events_dispatched),
        Ok(()) => {}
        // The subscription's task has ended (it was stopped, or it died):
        // the event cannot be handled; say so rather than drop it.
        Err(mpsc::error::SendError(delivery)) => {
            held.fetch_sub(1, Relaxed);
            bump(&shared.counters.mailbox_abandoned);
            shared.dead_letter_received(
                delivery.frame,
                DeadLetterReason::Shutdown,
                format!(
                    "subscription {} has stopped; the event was not handled",
                    entry.id
                ),
            );
        }
    }
}

/// A subscription task's end of its mailbox.
struct Mailbox {
    id: u64,
    filter: Arc<Filter>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    progress: Arc<Progress>,
    /// Whether the handled position is kept (resume on).
    track: bool,
    /// `Block` mode: told when a handled event makes room.
    room: Option<Arc<Notify>>,
    /// Stop after the current event (see [`Stopper`]).
    after_current: Arc<AtomicBool>,
}

impl Mailbox {
    /// One event fewer held: room for one more.
    fn release(&self, n: usize) {
        self.progress.held.fetch_sub(n, Relaxed);
        if let Some(room) = &self.room {
            room.notify_one();
        }
    }

    /// `delivery` is handled (or dead-lettered): one fewer held, and
    /// everything up to its read index is finished. Its frame is kept for
    /// a position's key while more are held; an idle subscription keeps
    /// none (the handled position then counts it as caught up).
    fn finished(&self, delivery: &mut Delivery) {
        let left = self.progress.held.fetch_sub(1, Relaxed) - 1;
        if self.track {
            let frame = std::mem::replace(&mut delivery.frame, Utf8Bytes::from_static(""));
            let mut finished = self.progress.finished();
            finished.upto = delivery.index;
            finished.frame = (left > 0).then_some(frame);
        }
        if let Some(room) = &self.room {
            room.notify_one();
        }
    }

    /// Stopped with `n` deliveries unhandled: the handled position never
    /// passes them. Said before they are let go of, under the lock that
    /// [`Progress::covered`] reads `held` under.
    fn abandon(&self, n: usize) {
        self.progress.finished().abandoned = true;
        self.release(n);
    }
}

/// Deliveries a subscription task takes from its mailbox at once: fewer
/// wake-ups and channel operations than one at a time (about a fifth of
/// the subscriber's cost in the fan-out benchmark).
const TAKE: usize = 64;

/// The deliveries a task has taken from its mailbox, and how far it got.
/// Lives outside the handling future, so that when that future is
/// interrupted what it had not handled is still here to dead-letter.
#[derive(Default)]
struct Taken {
    deliveries: Vec<Delivery>,
    /// Index of the delivery being handled; those before it are done.
    next: usize,
}

/// One subscription's task: handlers run one at a time, in arrival order,
/// until the mailbox closes (unsubscribed, every delivery handled) or the
/// task is stopped, when whatever it still held is dead-lettered.
async fn run(
    shared: Arc<Shared>,
    mut mailbox: Mailbox,
    handler: EventHandler,
    interrupt: futures_util::future::AbortRegistration,
) {
    let mut taken = Taken::default();
    let finished = Abortable::new(
        handle_all(&shared, &mut mailbox, &handler, &mut taken),
        interrupt,
    )
    .await;
    if finished == Ok(true) {
        return;
    }
    // Stopped: the delivery being handled (if interrupted) and everything
    // after it, then whatever is still in the mailbox.
    mailbox.deliveries.close();
    let mut frames: Vec<Utf8Bytes> = taken
        .deliveries
        .drain(taken.next.min(taken.deliveries.len())..)
        .map(|d| d.frame)
        .collect();
    while let Ok(delivery) = mailbox.deliveries.try_recv() {
        frames.push(delivery.frame);
    }
    if frames.is_empty() {
        return;
    }
    let n = frames.len();
    mailbox.abandon(n);
    add(&shared.counters.mailbox_abandoned, n as u64);
    tracing::warn!(
        subscription = mailbox.id,
        events = n,
        "subscription stopped with events unhandled; they are in the dead-letter queue"
    );
    let why = format!(
        "subscription {} was stopped (unsubscribe or shutdown at its timeout) before its handler \
         finished this event",
        mailbox.id
    );
    for frame in frames {
        shared.dead_letter_received(frame, DeadLetterReason::Shutdown, why.clone());
    }
}

/// Handles deliveries until the mailbox closes (true) or a stop after the
/// current event is asked for (false).
async fn handle_all(
    shared: &Shared,
    mailbox: &mut Mailbox,
    handler: &EventHandler,
    taken: &mut Taken,
) -> bool {
    loop {
        taken.deliveries.clear();
        taken.next = 0;
        if mailbox
            .deliveries
            .recv_many(&mut taken.deliveries, TAKE)
            .await
            == 0
        {
            return true;
        }
        while taken.next < taken.deliveries.len() {
            let delivery = &taken.deliveries[taken.next];
            handle(shared, mailbox.id, &mailbox.filter, handler, delivery).await;
            mailbox.finished(&mut taken.deliveries[taken.next]);
            taken.next += 1;
            if mailbox.after_current.load(Relaxed) {
                return false;
            }
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
    delivery: &Delivery,
) {
    let Delivery {
        frame: raw,
        counts_errors,
        routed,
        index: _,
    } = delivery;
    let (counts_errors, routed) = (*counts_errors, *routed);
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
    // The handler consumed the event; its frame is what is kept.
    shared.dead_letter_received(raw.clone(), DeadLetterReason::HandlerFailed, error);
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::WebSocketConfig;
    use crate::transport::WebSocketTransport;

    /// Two `add`s whose checks overlap in time: each filter alone fits a
    /// limit of 3 types, both together do not, so exactly one is added.
    /// The check is slow on purpose, so that a check made apart from the
    /// insert (as it was) lets both through.
    #[test]
    fn concurrent_adds_are_checked_against_each_other() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let settings = WebSocketTransport::builder(WebSocketConfig::new("ws://127.0.0.1:9/x"))
            .into_settings()
            .unwrap();
        let shared = Arc::new(Shared::new(settings).unwrap());
        let check = |frame: &ControlFrame| {
            std::thread::sleep(Duration::from_millis(20));
            match frame {
                ControlFrame::Subscribe { event_types, .. } if event_types.len() > 3 => {
                    Err(format!("{} types", event_types.len()))
                }
                _ => Ok(()),
            }
        };
        let added: Vec<bool> = std::thread::scope(|scope| {
            let adds: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|name| {
                    let (shared, runtime) = (&shared, &runtime);
                    scope.spawn(move || {
                        let _entered = runtime.enter();
                        let handler: EventHandler = Arc::new(|_e| Box::pin(async { Ok(()) }));
                        let types = vec![format!("{name}.1"), format!("{name}.2")];
                        shared
                            .subs
                            .add(shared, types, handler, Some(&check))
                            .is_ok()
                    })
                })
                .collect();
            adds.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(added.iter().filter(|a| **a).count(), 1, "{added:?}");
        assert_eq!(shared.subs.len(), 1);
    }
}
