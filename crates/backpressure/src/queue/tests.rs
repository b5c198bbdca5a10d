//! Unit tests. Waiting is tested by polling futures by hand with a waker
//! that records whether it was woken: deterministic, no runtime, no sleeps.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use super::*;

/// A waker that remembers being woken, to poll futures by hand.
struct Probe {
    woken: Arc<WakeFlag>,
    waker: Waker,
}

#[derive(Default)]
struct WakeFlag(AtomicBool);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Probe {
    fn new() -> Self {
        let woken = Arc::new(WakeFlag::default());
        let waker = Waker::from(Arc::clone(&woken));
        Self { woken, waker }
    }

    /// Polls once, forgetting earlier wake-ups.
    fn poll<F: Future>(&self, future: Pin<&mut F>) -> Poll<F::Output> {
        self.woken.0.store(false, Ordering::SeqCst);
        future.poll(&mut Context::from_waker(&self.waker))
    }

    fn woken(&self) -> bool {
        self.woken.0.load(Ordering::SeqCst)
    }
}

fn queue(max_queue_size: usize, strategy: BackpressureStrategy) -> BackpressureQueue<u32> {
    BackpressureQueue::new(BackpressureConfig {
        max_queue_size,
        strategy,
        warning_threshold: 0.8,
    })
    .unwrap()
}

fn waiting(queue: &BackpressureQueue<u32>) -> (usize, usize) {
    let state = queue.lock();
    (state.waiting_consumers, state.waiting_producers)
}

const STRATEGIES: [BackpressureStrategy; 3] = [
    BackpressureStrategy::DropOldest,
    BackpressureStrategy::DropNewest,
    BackpressureStrategy::Block,
];

#[test]
fn new_rejects_an_invalid_config() {
    let zero = BackpressureConfig {
        max_queue_size: 0,
        ..BackpressureConfig::default()
    };
    assert_eq!(
        BackpressureQueue::<u32>::new(zero).unwrap_err(),
        ConfigError::ZeroQueueSize
    );
    let nan = BackpressureConfig {
        warning_threshold: f64::NAN,
        ..BackpressureConfig::default()
    };
    assert!(matches!(
        BackpressureQueue::<u32>::new(nan),
        Err(ConfigError::InvalidWarningThreshold(_))
    ));
}

#[test]
fn accessors_describe_the_queue() {
    let q = queue(3, BackpressureStrategy::DropNewest);
    assert_eq!(q.capacity(), 3);
    assert_eq!(q.config().strategy, BackpressureStrategy::DropNewest);
    assert!(q.is_empty() && !q.is_closed());
    q.try_push(1).unwrap();
    assert_eq!((q.len(), q.is_empty()), (1, false));
    let debug = format!("{q:?}");
    assert!(
        debug.contains("len: 1") && debug.contains("closed: false"),
        "{debug}"
    );
}

#[test]
fn items_come_out_in_fifo_order() {
    for strategy in STRATEGIES {
        let q = queue(10, strategy);
        for i in 0..5 {
            assert_eq!(q.try_push(i), Ok(Pushed::Enqueued));
        }
        assert_eq!(q.try_pop(), Some(0));
        let mut out = vec![99];
        assert_eq!(q.try_pop_batch(2, &mut out), 2);
        assert_eq!(out, [99, 1, 2], "appends to `out`");
        assert_eq!(q.drain(), [3, 4]);
        assert_eq!(q.try_pop(), None);
        assert_eq!(q.try_pop_batch(5, &mut out), 0);
    }
}

#[test]
fn drop_oldest_evicts_and_returns_the_oldest() {
    let q = queue(2, BackpressureStrategy::DropOldest);
    assert_eq!(q.try_push(1), Ok(Pushed::Enqueued));
    assert_eq!(q.try_push(2), Ok(Pushed::Enqueued));
    assert_eq!(q.try_push(3), Ok(Pushed::Evicted(1)));
    assert_eq!(q.try_push(4).map(Pushed::into_evicted), Ok(Some(2)));
    assert_eq!(q.drain(), [3, 4]);
    let stats = q.stats();
    assert_eq!(stats.evicted_events, 2);
    assert_eq!(stats.dropped_events, 2);
    assert_eq!(stats.rejected_events, 0);
    assert_eq!(stats.total_enqueued, 4);
    assert_eq!(stats.total_dequeued, 2);
    assert_eq!(stats.peak_queue_size, 2);
}

#[test]
fn drop_oldest_push_never_waits() {
    let q = queue(1, BackpressureStrategy::DropOldest);
    let probe = Probe::new();
    assert_eq!(
        probe.poll(pin!(q.push(1))),
        Poll::Ready(Ok(Pushed::Enqueued))
    );
    assert_eq!(
        probe.poll(pin!(q.push(2))),
        Poll::Ready(Ok(Pushed::Evicted(1)))
    );
}

#[test]
fn drop_newest_rejects_the_new_item() {
    let q = queue(2, BackpressureStrategy::DropNewest);
    q.try_push(1).unwrap();
    q.try_push(2).unwrap();
    assert_eq!(q.try_push(3), Err(PushError::Full(3)));
    let probe = Probe::new();
    assert_eq!(
        probe.poll(pin!(q.push(4))),
        Poll::Ready(Err(PushError::Full(4)))
    );
    assert_eq!(q.drain(), [1, 2]);
    let stats = q.stats();
    assert_eq!((stats.rejected_events, stats.dropped_events), (2, 2));
    assert_eq!((stats.evicted_events, stats.blocked_pushes), (0, 0));
}

#[test]
fn block_try_push_behaves_like_drop_newest() {
    let q = queue(1, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    assert_eq!(q.try_push(2), Err(PushError::Full(2)));
    assert_eq!(q.stats().rejected_events, 1);
    assert_eq!(q.stats().blocked_pushes, 0);
}

#[test]
fn block_push_waits_until_room_appears() {
    // Whatever frees room wakes the blocked producer: a pop, a batch pop, a drain.
    let freeing: [fn(&BackpressureQueue<u32>); 3] = [
        |q| assert_eq!(q.try_pop(), Some(1)),
        |q| assert_eq!(q.try_pop_batch(8, &mut Vec::new()), 1),
        |q| assert_eq!(q.drain(), [1]),
    ];
    for free in freeing {
        let q = queue(1, BackpressureStrategy::Block);
        q.try_push(1).unwrap();
        let probe = Probe::new();
        let mut push = pin!(q.push(2));
        assert!(probe.poll(push.as_mut()).is_pending());
        assert!(
            probe.poll(push.as_mut()).is_pending(),
            "a spurious poll keeps waiting"
        );
        assert_eq!(waiting(&q), (0, 1));
        free(&q);
        assert!(probe.woken());
        assert_eq!(probe.poll(push.as_mut()), Poll::Ready(Ok(Pushed::Enqueued)));
        assert_eq!(waiting(&q), (0, 0));
        assert_eq!(q.drain(), [2]);
        let stats = q.stats();
        assert_eq!((stats.blocked_pushes, stats.dropped_events), (1, 0));
    }
}

#[test]
fn blocked_producer_whose_slot_was_taken_waits_again() {
    let q = queue(1, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    let probe = Probe::new();
    let mut push = pin!(q.push(2));
    assert!(probe.poll(push.as_mut()).is_pending());
    assert_eq!(q.try_pop(), Some(1));
    assert!(probe.woken());
    q.try_push(3).unwrap(); // takes the freed slot first
    assert!(probe.poll(push.as_mut()).is_pending());
    assert_eq!(q.try_pop(), Some(3));
    assert!(probe.woken());
    assert_eq!(probe.poll(push.as_mut()), Poll::Ready(Ok(Pushed::Enqueued)));
    assert_eq!(
        q.stats().blocked_pushes,
        1,
        "counted once however often it waited"
    );
}

#[test]
fn one_freed_slot_wakes_one_blocked_producer() {
    let q = queue(2, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    q.try_push(2).unwrap();
    let (first, second) = (Probe::new(), Probe::new());
    let mut push_a = pin!(q.push(10));
    let mut push_b = pin!(q.push(20));
    assert!(first.poll(push_a.as_mut()).is_pending());
    assert!(second.poll(push_b.as_mut()).is_pending());
    assert_eq!(q.try_pop(), Some(1));
    assert!(
        first.woken() && !second.woken(),
        "woken in the order they waited"
    );
    assert_eq!(
        first.poll(push_a.as_mut()),
        Poll::Ready(Ok(Pushed::Enqueued))
    );
    assert_eq!(q.try_pop_batch(2, &mut Vec::new()), 2);
    assert!(second.woken());
    assert_eq!(
        second.poll(push_b.as_mut()),
        Poll::Ready(Ok(Pushed::Enqueued))
    );
    assert_eq!(q.drain(), [20]);
    assert_eq!(q.stats().blocked_pushes, 2);
}

#[test]
fn drain_wakes_every_producer_it_makes_room_for() {
    let q = queue(2, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    q.try_push(2).unwrap();
    let (first, second) = (Probe::new(), Probe::new());
    let mut push_a = pin!(q.push(10));
    let mut push_b = pin!(q.push(20));
    assert!(first.poll(push_a.as_mut()).is_pending());
    assert!(second.poll(push_b.as_mut()).is_pending());
    assert_eq!(q.drain(), [1, 2]);
    assert!(first.woken() && second.woken());
    assert!(first.poll(push_a.as_mut()).is_ready());
    assert!(second.poll(push_b.as_mut()).is_ready());
    assert_eq!(q.drain(), [10, 20]);
}

#[test]
fn cancelled_blocked_producer_passes_its_wake_up_on() {
    let q = queue(1, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    let (first, second) = (Probe::new(), Probe::new());
    let mut push_b = pin!(q.push(20));
    {
        let mut push_a = Box::pin(q.push(10));
        assert!(first.poll(push_a.as_mut()).is_pending());
        assert!(second.poll(push_b.as_mut()).is_pending());
        assert_eq!(waiting(&q), (0, 2));
        assert_eq!(q.try_pop(), Some(1));
        assert!(
            first.woken() && !second.woken(),
            "the wake-up went to the first waiter"
        );
        // The first producer is cancelled before it could use its wake-up.
    }
    assert!(second.woken(), "the wake-up was handed to the other waiter");
    assert_eq!(
        waiting(&q),
        (0, 1),
        "the cancelled waiter is no longer counted"
    );
    assert_eq!(
        second.poll(push_b.as_mut()),
        Poll::Ready(Ok(Pushed::Enqueued))
    );
    assert_eq!(
        q.drain(),
        [20],
        "the cancelled push's item was never queued"
    );
    assert_eq!(waiting(&q), (0, 0));
}

#[test]
fn cancelled_idle_producer_is_uncounted() {
    let q = queue(1, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    let probe = Probe::new();
    {
        let mut push = Box::pin(q.push(2));
        assert!(probe.poll(push.as_mut()).is_pending());
        assert_eq!(waiting(&q), (0, 1));
    }
    assert_eq!(waiting(&q), (0, 0));
    assert_eq!(q.try_pop(), Some(1));
    assert!(q.is_empty());
}

#[test]
fn pushes_fail_once_closed() {
    for strategy in STRATEGIES {
        let q = queue(2, strategy);
        q.try_push(1).unwrap();
        q.close();
        q.close(); // idempotent
        assert!(q.is_closed());
        assert_eq!(q.try_push(2), Err(PushError::Closed(2)));
        let probe = Probe::new();
        assert_eq!(
            probe.poll(pin!(q.push(3))),
            Poll::Ready(Err(PushError::Closed(3)))
        );
        let stats = q.stats();
        assert_eq!((stats.dropped_events, stats.total_enqueued), (0, 1));
        // What remains can still be popped.
        assert_eq!(q.try_pop(), Some(1));
        assert_eq!(probe.poll(pin!(q.pop())), Poll::Ready(None));
    }
}

#[test]
fn close_wakes_a_blocked_producer() {
    let q = queue(1, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    let probe = Probe::new();
    let mut push = pin!(q.push(2));
    assert!(probe.poll(push.as_mut()).is_pending());
    q.close();
    assert!(probe.woken());
    assert_eq!(
        probe.poll(push.as_mut()),
        Poll::Ready(Err(PushError::Closed(2)))
    );
    assert_eq!(waiting(&q), (0, 0));
    assert_eq!(q.drain(), [1]);
}

#[test]
fn close_wakes_waiting_consumers() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    let (pop_probe, batch_probe) = (Probe::new(), Probe::new());
    let mut pop = pin!(q.pop());
    let mut out = Vec::new();
    let mut batch = pin!(q.pop_batch(8, &mut out));
    assert!(pop_probe.poll(pop.as_mut()).is_pending());
    assert!(batch_probe.poll(batch.as_mut()).is_pending());
    assert_eq!(waiting(&q), (2, 0));
    q.close();
    assert!(pop_probe.woken() && batch_probe.woken());
    assert_eq!(pop_probe.poll(pop.as_mut()), Poll::Ready(None));
    assert_eq!(batch_probe.poll(batch.as_mut()), Poll::Ready(0));
    assert_eq!(waiting(&q), (0, 0));
}

#[test]
fn pop_waits_for_a_push() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    let probe = Probe::new();
    let mut pop = pin!(q.pop());
    assert!(probe.poll(pop.as_mut()).is_pending());
    assert!(
        probe.poll(pop.as_mut()).is_pending(),
        "a spurious poll keeps waiting"
    );
    q.try_push(7).unwrap();
    assert!(probe.woken());
    assert_eq!(probe.poll(pop.as_mut()), Poll::Ready(Some(7)));
    assert_eq!(waiting(&q), (0, 0));
}

#[test]
fn push_front_wakes_a_waiting_consumer() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    let probe = Probe::new();
    let mut pop = pin!(q.pop());
    assert!(probe.poll(pop.as_mut()).is_pending());
    assert!(q.push_front(vec![5, 6]).is_empty());
    assert!(probe.woken());
    assert_eq!(probe.poll(pop.as_mut()), Poll::Ready(Some(5)));
}

#[test]
fn pushes_do_not_touch_notify_while_no_consumer_waits() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    q.try_push(1).unwrap();
    q.try_push(2).unwrap();
    // No permit was stored: the next waiter would not be woken spuriously.
    let mut notified = pin!(q.items_available.notified());
    assert!(!notified.as_mut().enable());
}

#[test]
fn pop_batch_takes_up_to_max_in_order() {
    let q = queue(10, BackpressureStrategy::DropOldest);
    let probe = Probe::new();
    let mut out = Vec::new();
    {
        let mut batch = pin!(q.pop_batch(3, &mut out));
        assert!(probe.poll(batch.as_mut()).is_pending());
        for i in 1..=5 {
            q.try_push(i).unwrap();
        }
        assert!(probe.woken());
        assert_eq!(probe.poll(batch.as_mut()), Poll::Ready(3));
    }
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(probe.poll(pin!(q.pop_batch(10, &mut out))), Poll::Ready(2));
    assert_eq!(out, [1, 2, 3, 4, 5]);
    assert_eq!(q.stats().total_dequeued, 5);
}

#[test]
fn pop_batch_of_zero_returns_at_once() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    let probe = Probe::new();
    let mut out = Vec::new();
    assert_eq!(probe.poll(pin!(q.pop_batch(0, &mut out))), Poll::Ready(0));
    q.try_push(1).unwrap();
    assert_eq!(probe.poll(pin!(q.pop_batch(0, &mut out))), Poll::Ready(0));
    assert_eq!(q.try_pop_batch(0, &mut out), 0);
    assert!(out.is_empty());
    assert_eq!(q.len(), 1);
}

#[test]
fn a_woken_consumer_passes_the_baton_to_another() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    let (first, second) = (Probe::new(), Probe::new());
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    let mut batch_a = pin!(q.pop_batch(1, &mut out_a));
    let mut batch_b = pin!(q.pop_batch(1, &mut out_b));
    assert!(first.poll(batch_a.as_mut()).is_pending());
    assert!(second.poll(batch_b.as_mut()).is_pending());
    q.try_push(1).unwrap();
    q.try_push(2).unwrap();
    assert!(
        first.woken() && !second.woken(),
        "one wake-up per empty-to-non-empty"
    );
    assert_eq!(first.poll(batch_a.as_mut()), Poll::Ready(1));
    assert!(
        second.woken(),
        "items were left, so the other consumer is woken"
    );
    assert_eq!(second.poll(batch_b.as_mut()), Poll::Ready(1));
    assert_eq!(waiting(&q), (0, 0));
}

#[test]
fn cancelled_pop_takes_nothing() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    let probe = Probe::new();
    {
        let mut out = Vec::new();
        let mut batch = Box::pin(q.pop_batch(4, &mut out));
        assert!(probe.poll(batch.as_mut()).is_pending());
        q.try_push(1).unwrap();
        assert!(probe.woken());
    }
    assert_eq!(waiting(&q), (0, 0));
    assert_eq!(q.try_pop(), Some(1));
}

#[test]
fn push_front_puts_items_back_ahead_in_order() {
    let q = queue(5, BackpressureStrategy::DropOldest);
    for i in 1..=4 {
        q.try_push(i).unwrap();
    }
    let mut batch = Vec::new();
    assert_eq!(q.try_pop_batch(3, &mut batch), 3);
    q.try_push(5).unwrap();
    // 1 was delivered; 2 and 3 were not.
    assert!(q.push_front(batch.split_off(1)).is_empty());
    assert_eq!(q.drain(), [2, 3, 4, 5]);
    let stats = q.stats();
    assert_eq!(stats.total_enqueued, 7, "re-queued items count again");
    assert_eq!(stats.total_dequeued, 7);
    assert_eq!(stats.dropped_events, 0);
}

#[test]
fn push_front_returns_the_oldest_items_that_do_not_fit() {
    for strategy in STRATEGIES {
        let q = queue(3, strategy);
        q.try_push(10).unwrap();
        q.try_push(11).unwrap();
        assert_eq!(q.push_front(vec![1, 2, 3]), [1, 2]);
        assert_eq!(q.len(), 3);
        assert_eq!(q.push_front(vec![4]), [4], "nothing fits in a full queue");
        assert_eq!(q.push_front(Vec::new()), Vec::<u32>::new());
        assert_eq!(q.drain(), [3, 10, 11]);
        let stats = q.stats();
        assert_eq!(stats.dropped_events, 3);
        assert_eq!((stats.evicted_events, stats.rejected_events), (0, 0));
    }
}

#[test]
fn push_front_works_when_closed() {
    let q = queue(3, BackpressureStrategy::Block);
    q.try_push(1).unwrap();
    let popped = q.try_pop().into_iter().collect();
    q.close();
    assert!(q.push_front(popped).is_empty());
    assert_eq!(q.try_pop(), Some(1));
}

#[test]
fn stats_track_peak_and_conserve_items() {
    let q = queue(3, BackpressureStrategy::DropOldest);
    for i in 0..5 {
        q.try_push(i).unwrap();
    }
    assert_eq!(q.try_pop(), Some(2));
    let stats = q.stats();
    assert_eq!(stats.current_queue_size, 2);
    assert_eq!(stats.max_queue_size, 3);
    assert_eq!(stats.peak_queue_size, 3);
    assert_eq!(
        stats.total_enqueued,
        stats.total_dequeued + stats.evicted_events + stats.current_queue_size as u64
    );
    assert!((stats.fill_ratio() - 2.0 / 3.0).abs() < f64::EPSILON);
}

#[test]
fn warn_len_is_the_first_length_at_the_threshold() {
    assert_eq!(warn_len(0.8, 1000), 800);
    assert_eq!(warn_len(0.7, 10), 7);
    assert_eq!(warn_len(0.75, 10), 8);
    assert_eq!(warn_len(1.0, 10), 10);
    assert_eq!(warn_len(f64::MIN_POSITIVE, 10), 1);
    assert_eq!(warn_len(0.5, 1), 1);
    let capacities = (1..50).chain([1 << 53, (1 << 53) + 1, usize::MAX - 1, usize::MAX]);
    for capacity in capacities {
        for percent in 1..=100 {
            let threshold = f64::from(percent) / 100.0;
            let len = warn_len(threshold, capacity);
            assert!((1..=capacity).contains(&len));
            assert!(len as f64 / capacity as f64 >= threshold);
            assert!(len == 1 || ((len - 1) as f64 / capacity as f64) < threshold);
        }
    }
}

/// Counts `tracing` warnings and records their field names.
#[derive(Clone, Default)]
struct WarnCounter {
    warnings: Arc<AtomicUsize>,
    fields: Arc<std::sync::Mutex<Vec<String>>>,
}

impl tracing::Subscriber for WarnCounter {
    // Ask on every event: a callsite's cached interest is shared by every
    // thread, and one first hit while another test's thread had no
    // subscriber could be cached as "never" — seen once as one warning of
    // two.
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.warnings.fetch_add(1, Ordering::SeqCst);
            let names = event.fields().map(|field| field.name().to_owned());
            self.fields.lock().unwrap().extend(names);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn warns_once_per_crossing_of_the_threshold() {
    let counter = WarnCounter::default();
    tracing::subscriber::with_default(counter.clone(), || {
        let warnings = || counter.warnings.load(Ordering::SeqCst);
        // Capacity 20, threshold 0.5: warns at 10 items, re-arms below 10 - 2 = 8.
        let q = BackpressureQueue::new(BackpressureConfig {
            max_queue_size: 20,
            strategy: BackpressureStrategy::DropOldest,
            warning_threshold: 0.5,
        })
        .unwrap();
        for i in 0..9 {
            q.try_push(i).unwrap();
        }
        assert_eq!(warnings(), 0);
        q.try_push(9).unwrap();
        assert_eq!(warnings(), 1);
        for i in 10..30 {
            q.try_push(i).unwrap(); // fills up and evicts: still one crossing
        }
        assert_eq!(warnings(), 1);
        // Falling to 9, within the hysteresis band, does not re-arm.
        q.try_pop_batch(11, &mut Vec::new());
        q.try_push(30).unwrap();
        assert_eq!(warnings(), 1);
        // Falling below 8 re-arms; the next crossing warns again.
        q.try_pop_batch(3, &mut Vec::new());
        assert_eq!(q.len(), 7);
        for i in 31..34 {
            q.try_push(i).unwrap();
        }
        assert_eq!(warnings(), 2);
        // push_front crosses too.
        q.drain();
        assert!(q.push_front((0..10).collect()).is_empty());
        assert_eq!(warnings(), 3);
    });
    let fields = counter.fields.lock().unwrap();
    for name in ["len", "capacity", "ratio"] {
        assert!(
            fields.iter().any(|field| field == name),
            "no `{name}` in {fields:?}"
        );
    }
}

#[test]
fn a_poisoned_lock_is_recovered() {
    let q = queue(4, BackpressureStrategy::DropOldest);
    q.try_push(1).unwrap();
    std::thread::scope(|scope| {
        let poisoner = scope.spawn(|| {
            let _state = q.state.lock();
            panic!("poisoning the lock on purpose");
        });
        assert!(poisoner.join().is_err());
    });
    assert!(q.state.is_poisoned());
    q.try_push(2).unwrap();
    assert_eq!(q.drain(), [1, 2]);
}

#[test]
fn queue_and_futures_are_send_and_sync() {
    fn assert_send_sync<S: Send + Sync>(_: &S) {}
    fn assert_send<S: Send>(_: &S) {}
    // `Cell` is `Send` but not `Sync`: the queue is still `Sync`.
    let q = BackpressureQueue::<std::cell::Cell<u8>>::new(BackpressureConfig::default()).unwrap();
    assert_send_sync(&q);
    assert_send(&q.push(std::cell::Cell::new(1)));
    assert_send(&q.pop());
    let mut out = Vec::new();
    assert_send(&q.pop_batch(1, &mut out));
}

#[test]
fn debug_does_not_need_debug_items() {
    struct Opaque;
    let q = BackpressureQueue::new(BackpressureConfig::default()).unwrap();
    q.try_push(Opaque).ok();
    assert!(format!("{q:?}").starts_with("BackpressureQueue"));
}

/// Real threads: blocked producers and a batching consumer lose nothing and
/// keep each producer's order. Asserts outcomes only, never timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_and_consumer_lose_nothing() {
    const PRODUCERS: u32 = 4;
    const PER_PRODUCER: u32 = 5_000;
    let q = Arc::new(queue(8, BackpressureStrategy::Block));
    let consumer = tokio::spawn({
        let q = Arc::clone(&q);
        async move {
            let (mut batch, mut seen) = (Vec::new(), Vec::new());
            while q.pop_batch(3, &mut batch).await > 0 {
                seen.append(&mut batch);
            }
            seen
        }
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                for i in 0..PER_PRODUCER {
                    assert_eq!(q.push(p * PER_PRODUCER + i).await, Ok(Pushed::Enqueued));
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    q.close();
    let seen = consumer.await.unwrap();
    assert_eq!(seen.len(), (PRODUCERS * PER_PRODUCER) as usize);
    for p in 0..PRODUCERS {
        let own: Vec<u32> = seen
            .iter()
            .copied()
            .filter(|i| i / PER_PRODUCER == p)
            .collect();
        let expected: Vec<u32> = (p * PER_PRODUCER..(p + 1) * PER_PRODUCER).collect();
        assert_eq!(
            own, expected,
            "producer {p}'s items lost, duplicated or reordered"
        );
    }
    let stats = q.stats();
    assert_eq!(stats.dropped_events, 0);
    assert_eq!(stats.total_dequeued, u64::from(PRODUCERS * PER_PRODUCER));
    assert_eq!(waiting(&q), (0, 0));
}
