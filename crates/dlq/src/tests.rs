//! Unit tests of the store and its consumers. Time-dependent tests run on a
//! paused tokio clock: they never wait for real, and the clock only moves
//! when every task is idle waiting for a timer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::queue::Take;
use crate::{ConfigError, DeadLetter, DeadLetterQueue, DeadLetterReason, DlqConfig, DlqStats};

fn dlq(capacity: usize, max_attempts: u32, retry_delay: Duration) -> DeadLetterQueue<u32> {
    DeadLetterQueue::new(DlqConfig {
        capacity,
        max_attempts,
        retry_delay,
    })
    .unwrap()
}

fn items(letters: &[DeadLetter<u32>]) -> Vec<u32> {
    letters.iter().map(|letter| letter.item).collect()
}

/// A handler that reports each call on a channel and fails every time.
fn failing(
    calls: mpsc::UnboundedSender<u32>,
) -> impl Fn(u32) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    move |item| {
        calls.send(item).unwrap();
        std::future::ready(Err(format!("item {item} still failing")))
    }
}

/// A handler that reports each call on a channel and succeeds.
fn succeeding(
    calls: mpsc::UnboundedSender<u32>,
) -> impl Fn(u32) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    move |item| {
        calls.send(item).unwrap();
        std::future::ready(Ok(()))
    }
}

#[test]
fn constructors_validate_the_config() {
    assert_eq!(
        DeadLetterQueue::<u32>::with_capacity(0).unwrap_err(),
        ConfigError::ZeroCapacity
    );
    let zero_attempts = DlqConfig {
        max_attempts: 0,
        ..DlqConfig::default()
    };
    assert_eq!(
        DeadLetterQueue::<u32>::new(zero_attempts).unwrap_err(),
        ConfigError::ZeroMaxAttempts
    );
    let queue = DeadLetterQueue::<u32>::with_capacity(5).unwrap();
    assert_eq!(queue.config().capacity, 5);
    assert_eq!(
        queue.config().max_attempts,
        DlqConfig::default().max_attempts
    );
}

#[test]
fn push_len_and_drain_oldest_first() {
    let queue = dlq(10, 3, Duration::ZERO);
    assert!(queue.is_empty());
    assert!(
        queue
            .push(1, DeadLetterReason::SendFailed, "reset")
            .is_none()
    );
    assert!(queue.push(2, DeadLetterReason::Overflow, "full").is_none());
    assert!(
        queue
            .push(3, DeadLetterReason::SendFailed, "reset")
            .is_none()
    );
    assert_eq!(queue.len(), 3);
    let drained = queue.drain();
    assert_eq!(items(&drained), [1, 2, 3]);
    assert_eq!(drained[1].reason, DeadLetterReason::Overflow);
    assert_eq!(drained[1].error, "full");
    assert_eq!(drained[1].attempts, 1);
    assert!(queue.is_empty());
    let stats = queue.stats();
    assert_eq!(stats.total_pushed, 3);
    assert_eq!(stats.by_reason.send_failed, 2);
    assert_eq!(stats.by_reason.overflow, 1);
    assert_eq!(stats.by_reason.total(), 3);
    assert_eq!((stats.len, stats.capacity, stats.dropped), (0, 10, 0));
}

#[test]
fn a_full_queue_evicts_and_returns_the_oldest() {
    let queue = dlq(2, 3, Duration::ZERO);
    queue.push(1, DeadLetterReason::Manual, "a");
    queue.push(2, DeadLetterReason::Manual, "b");
    let evicted = queue.push(3, DeadLetterReason::AckTimeout, "c").unwrap();
    assert_eq!((evicted.item, evicted.error.as_str()), (1, "a"));
    assert_eq!(
        queue.push(4, DeadLetterReason::Manual, "d").unwrap().item,
        2
    );
    assert_eq!(queue.len(), 2);
    let stats = queue.stats();
    assert_eq!((stats.total_pushed, stats.dropped), (4, 2));
    assert_eq!(stats.by_reason.manual, 3);
    assert_eq!(stats.by_reason.ack_timeout, 1);
    assert_eq!(items(&queue.drain()), [3, 4]);
}

#[test]
fn push_letter_keeps_the_letter_as_it_is() {
    let queue = dlq(4, 3, Duration::ZERO);
    let mut letter = DeadLetter::new(7, DeadLetterReason::HandlerFailed, "first");
    letter.failed_again("second".to_owned());
    let (first, last) = (letter.first_failed_at, letter.last_failed_at);
    assert!(queue.push_letter(letter).is_none());
    let stored = queue.drain().pop().unwrap();
    assert_eq!((stored.item, stored.attempts), (7, 2));
    assert_eq!(stored.error, "second");
    assert_eq!(
        (stored.first_failed_at, stored.last_failed_at),
        (first, last)
    );
    assert_eq!(queue.stats().by_reason.handler_failed, 1);
}

#[test]
fn parked_entries_count_against_capacity_and_the_oldest_goes_first() {
    let queue = dlq(3, 1, Duration::ZERO);
    let never = AtomicBool::new(false);
    queue.push(1, DeadLetterReason::SendFailed, "x");
    queue.push(2, DeadLetterReason::SendFailed, "x");
    // A consumer gives up on 1: it is parked, still taking a slot.
    let Take::Entry(one) = queue.inner().take_next(&never) else {
        panic!("expected an entry");
    };
    queue.inner().park(one);
    queue.push(3, DeadLetterReason::SendFailed, "x");
    assert_eq!((queue.len(), queue.stats().parked), (2, 1));
    // Full: the parked 1 is the oldest entry, so it goes first...
    assert_eq!(
        queue
            .push(4, DeadLetterReason::SendFailed, "x")
            .unwrap()
            .item,
        1
    );
    // ...then the pending ones, oldest first.
    assert_eq!(
        queue
            .push(5, DeadLetterReason::SendFailed, "x")
            .unwrap()
            .item,
        2
    );
    assert_eq!(items(&queue.drain()), [3, 4, 5]);
    assert!(queue.parked().is_empty());
    assert_eq!(queue.stats().dropped, 2);
}

#[test]
fn when_every_slot_is_in_flight_the_new_entry_is_dropped() {
    let queue = dlq(1, 3, Duration::ZERO);
    let never = AtomicBool::new(false);
    queue.push(1, DeadLetterReason::SendFailed, "x");
    let Take::Entry(one) = queue.inner().take_next(&never) else {
        panic!("expected an entry");
    };
    assert_eq!(queue.stats().in_flight, 1);
    let dropped = queue.push(2, DeadLetterReason::Manual, "y").unwrap();
    assert_eq!(dropped.item, 2);
    assert_eq!(queue.stats().dropped, 1);
    // The entry in flight comes back without exceeding the capacity.
    queue.inner().put_back(one);
    let stats = queue.stats();
    assert_eq!((stats.len, stats.in_flight), (1, 0));
}

#[test]
fn parked_entries_can_be_read_and_drained() {
    let queue = dlq(5, 1, Duration::ZERO);
    let never = AtomicBool::new(false);
    for item in [1, 2] {
        queue.push(item, DeadLetterReason::SendFailed, "x");
    }
    for _ in 0..2 {
        let Take::Entry(entry) = queue.inner().take_next(&never) else {
            panic!("expected an entry");
        };
        queue.inner().park(entry);
    }
    assert_eq!(items(&queue.parked()), [1, 2]);
    assert_eq!(items(&queue.parked()), [1, 2], "reading does not remove");
    assert!(
        queue.drain().is_empty(),
        "drain leaves parked entries alone"
    );
    assert_eq!(items(&queue.drain_parked()), [1, 2]);
    assert!(queue.parked().is_empty());
}

#[test]
fn clones_share_one_store() {
    let queue = dlq(5, 1, Duration::ZERO);
    let clone = queue.clone();
    clone.push(1, DeadLetterReason::Manual, "x");
    assert_eq!(queue.len(), 1);
    clone.close();
    assert!(queue.is_closed());
    let debug = format!("{queue:?}");
    assert!(
        debug.contains("len: 1") && debug.contains("closed: true"),
        "{debug}"
    );
}

#[test]
fn queue_and_handle_are_send_and_sync() {
    fn assert_send_sync<S: Send + Sync>() {}
    // `Cell` is `Send` but not `Sync`: the queue is still `Sync`.
    assert_send_sync::<DeadLetterQueue<std::cell::Cell<u8>>>();
    assert_send_sync::<crate::ConsumerHandle>();
    assert_send_sync::<DlqStats>();
}

#[tokio::test(start_paused = true)]
async fn consume_handles_entries_oldest_first() {
    let queue = dlq(10, 3, Duration::from_millis(100));
    for item in 1..=3 {
        queue.push(item, DeadLetterReason::SendFailed, "reset");
    }
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumer = queue.consume(succeeding(calls_tx));
    for expected in 1..=3 {
        assert_eq!(calls.recv().await, Some(expected));
    }
    consumer.stop();
    consumer.stopped().await;
    let stats = queue.stats();
    assert_eq!((stats.consumed, stats.retries), (3, 3));
    assert_eq!((stats.len, stats.parked, stats.in_flight), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn consume_retries_then_parks() {
    let queue = dlq(10, 3, Duration::from_millis(100));
    queue.push(1, DeadLetterReason::SendFailed, "reset");
    queue.push(2, DeadLetterReason::SendFailed, "reset");
    let start = Instant::now();
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumer = queue.consume(move |item: u32| {
        calls_tx.send((item, Instant::now())).unwrap();
        std::future::ready(if item == 1 {
            Err(format!("item {item} still failing"))
        } else {
            Ok(())
        })
    });
    // Three calls for 1, `retry_delay` apart, while 2 waits its turn.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(calls.recv().await.unwrap());
    }
    let ms = Duration::from_millis;
    assert_eq!(
        seen,
        [
            (1, start),
            (1, start + ms(100)),
            (1, start + ms(200)),
            (2, start + ms(200))
        ]
    );
    consumer.stop();
    consumer.stopped().await;

    let parked = queue.parked();
    assert_eq!(items(&parked), [1]);
    assert_eq!(
        parked[0].attempts, 4,
        "the original failure and three calls"
    );
    assert_eq!(parked[0].error, "item 1 still failing");
    assert_eq!(parked[0].reason, DeadLetterReason::SendFailed);
    assert!(parked[0].last_failed_at >= parked[0].first_failed_at);
    let stats = queue.stats();
    assert_eq!((stats.parked, stats.consumed, stats.retries), (1, 1, 4));
    assert_eq!((stats.len, stats.in_flight), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_a_failed_attempt() {
    let queue = dlq(10, 2, Duration::from_millis(100));
    for item in 1..=3 {
        queue.push(item, DeadLetterReason::HandlerFailed, "boom");
    }
    let panicked_once = Arc::new(AtomicBool::new(false));
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumer = queue.consume(move |item: u32| {
        calls_tx.send(item).unwrap();
        // 2 panics in the handler itself, 1 in its future, 3 only once.
        if item == 2 {
            panic!("handler for 2 panicked");
        }
        let panicked_once = Arc::clone(&panicked_once);
        async move {
            if item == 1 || (item == 3 && !panicked_once.swap(true, Ordering::SeqCst)) {
                panic!("future for {item} panicked");
            }
            Ok::<(), String>(())
        }
    });
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(calls.recv().await.unwrap());
    }
    assert_eq!(seen, [1, 1, 2, 2, 3, 3]);
    consumer.stop();
    consumer.stopped().await;

    let parked = queue.parked();
    assert_eq!(items(&parked), [1, 2]);
    assert_eq!(parked[0].error, "handler panicked: future for 1 panicked");
    assert_eq!(parked[0].attempts, 3);
    assert_eq!(parked[1].error, "handler panicked: handler for 2 panicked");
    let stats = queue.stats();
    assert_eq!((stats.consumed, stats.retries, stats.parked), (1, 6, 2));
}

#[tokio::test(start_paused = true)]
async fn stopping_mid_retry_loses_nothing() {
    let queue = dlq(10, 3, Duration::from_secs(3600));
    queue.push(1, DeadLetterReason::SendFailed, "reset");
    queue.push(2, DeadLetterReason::SendFailed, "reset");
    let start = Instant::now();
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumer = queue.consume(failing(calls_tx));
    assert_eq!(calls.recv().await, Some(1));
    // The consumer now waits an hour to retry 1; stopping it cuts that short.
    consumer.stop();
    consumer.stopped().await;
    assert_eq!(Instant::now(), start, "the retry delay was not waited out");
    let stats = queue.stats();
    assert_eq!((stats.len, stats.in_flight, stats.parked), (2, 0, 0));

    // Another consumer resumes where the first left off: 1 comes first and
    // has two calls left.
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumer = queue.consume(failing(calls_tx));
    assert_eq!(calls.recv().await, Some(1));
    assert_eq!(calls.recv().await, Some(1));
    assert_eq!(
        calls.recv().await,
        Some(2),
        "1 was parked after three calls"
    );
    consumer.stop();
    consumer.stopped().await;
    let parked = queue.drain_parked();
    assert_eq!(items(&parked), [1]);
    assert_eq!(parked[0].attempts, 4);
    let pending = queue.drain();
    assert_eq!(items(&pending), [2]);
    assert_eq!(pending[0].attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn stopping_waits_for_the_current_call() {
    let queue = dlq(10, 3, Duration::from_millis(100));
    queue.push(1, DeadLetterReason::SendFailed, "reset");
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let consumer = queue.consume({
        let release = Arc::clone(&release);
        move |item: u32| {
            calls_tx.send(item).unwrap();
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                Err::<(), _>("still failing")
            }
        }
    });
    assert_eq!(calls.recv().await, Some(1));
    consumer.stop();
    tokio::task::yield_now().await;
    assert!(
        !consumer.is_finished(),
        "the call in progress is not abandoned"
    );
    release.notify_one();
    consumer.stopped().await;
    // The failed call counted, and the entry went back instead of being retried.
    let pending = queue.drain();
    assert_eq!(items(&pending), [1]);
    assert_eq!(pending[0].attempts, 2);
    assert_eq!(pending[0].error, "still failing");
    assert_eq!(queue.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_consumer_is_woken_by_a_push_without_polling() {
    let queue = dlq(10, 3, Duration::from_millis(100));
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumer = queue.consume(succeeding(calls_tx));
    // An hour passes (on the paused clock) with nothing to do and no call.
    let idle = tokio::time::timeout(Duration::from_secs(3600), calls.recv()).await;
    assert!(idle.is_err());
    assert!(!consumer.is_finished());
    // A push wakes it at once: no timer fires, so the clock does not move.
    let before = Instant::now();
    queue.push(7, DeadLetterReason::Manual, "x");
    assert_eq!(calls.recv().await, Some(7));
    assert_eq!(Instant::now(), before);
    consumer.stop();
    consumer.stopped().await;
    assert_eq!(queue.stats().consumed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_consumers_share_a_queue() {
    let queue = dlq(100, 3, Duration::ZERO);
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumers: Vec<_> = (0..3)
        .map(|_| queue.consume(succeeding(calls_tx.clone())))
        .collect();
    for item in 0..50 {
        queue.push(item, DeadLetterReason::SendFailed, "x");
    }
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.push(calls.recv().await.unwrap());
    }
    for consumer in &consumers {
        consumer.stop();
    }
    for consumer in consumers {
        consumer.stopped().await;
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>(), "each entry handled once");
    assert_eq!(queue.stats().consumed, 50);
}

#[tokio::test(start_paused = true)]
async fn close_stops_every_consumer_and_still_accepts_pushes() {
    let queue = dlq(10, 3, Duration::from_secs(3600));
    queue.push(1, DeadLetterReason::SendFailed, "x");
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let retrying = queue.consume(failing(calls_tx.clone()));
    assert_eq!(calls.recv().await, Some(1));
    let idle = queue.consume(failing(calls_tx.clone()));
    tokio::task::yield_now().await;
    queue.close();
    retrying.stopped().await;
    idle.stopped().await;
    assert!(queue.push(2, DeadLetterReason::Shutdown, "x").is_none());
    assert_eq!(items(&queue.drain()), [1, 2]);
    // A consumer started after close exits at once.
    let late = queue.consume(failing(calls_tx));
    late.stopped().await;
    assert_eq!(queue.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_does_not_stop_the_consumer() {
    let queue = dlq(10, 3, Duration::ZERO);
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    drop(queue.consume(succeeding(calls_tx)));
    queue.push(1, DeadLetterReason::Manual, "x");
    assert_eq!(calls.recv().await, Some(1));
    queue.push(2, DeadLetterReason::Manual, "x");
    assert_eq!(calls.recv().await, Some(2));
    queue.close();
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_queue_clone_stops_its_consumers() {
    let queue = dlq(10, 3, Duration::ZERO);
    let clone = queue.clone();
    let (calls_tx, _calls) = mpsc::unbounded_channel();
    let consumer = queue.consume(succeeding(calls_tx));
    drop(queue);
    tokio::task::yield_now().await;
    assert!(!consumer.is_finished(), "a clone is left");
    drop(clone);
    consumer.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_zero_retry_delay_retries_at_once() {
    let queue = dlq(10, 5, Duration::ZERO);
    queue.push(1, DeadLetterReason::SendFailed, "x");
    let attempts = Arc::new(AtomicU32::new(0));
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let consumer = queue.consume({
        let attempts = Arc::clone(&attempts);
        move |item: u32| {
            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            calls_tx.send(item).unwrap();
            std::future::ready(if n < 3 { Err("not yet") } else { Ok(()) })
        }
    });
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(calls.recv().await, Some(1));
    }
    consumer.stop();
    consumer.stopped().await;
    assert_eq!(Instant::now(), start);
    let stats = queue.stats();
    assert_eq!((stats.consumed, stats.retries, stats.parked), (1, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn settled_waits_for_every_retry_to_end() {
    let dlq = dlq(100, 3, Duration::from_secs(1));
    // Settled at once when there is nothing to do.
    dlq.settled().await;

    for item in 1..=4 {
        dlq.push(item, DeadLetterReason::HandlerFailed, "downstream failed");
    }
    // Odd items keep failing (parked after 3 calls, 2 s of retry delays);
    // even items succeed on the first call.
    let consumer = dlq.consume(|item: u32| async move {
        if item % 2 == 1 {
            Err(format!("item {item} still failing"))
        } else {
            Ok(())
        }
    });
    let start = Instant::now();
    dlq.settled().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(4),
        "2 entries x 2 delays"
    );
    let stats = dlq.stats();
    assert_eq!((stats.len, stats.in_flight), (0, 0));
    assert_eq!((stats.consumed, stats.parked), (2, 2));
    assert_eq!(items(&dlq.parked()), [1, 3]);

    // A later push unsettles it again until it is handled.
    dlq.push(6, DeadLetterReason::Manual, "again");
    dlq.settled().await;
    assert_eq!(dlq.stats().consumed, 3);
    consumer.stop();
    consumer.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn settled_without_a_consumer_waits_for_a_drain_or_a_close() {
    let dlq = dlq(10, 1, Duration::ZERO);
    dlq.push(1, DeadLetterReason::Overflow, "full");

    let waiting = tokio::spawn({
        let dlq = dlq.clone();
        async move { dlq.settled().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "an entry is still pending");
    assert_eq!(items(&dlq.drain()), [1]);
    waiting.await.unwrap();

    dlq.push(2, DeadLetterReason::Overflow, "full");
    let waiting = tokio::spawn({
        let dlq = dlq.clone();
        async move { dlq.settled().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    dlq.close();
    waiting.await.unwrap();
    assert_eq!(dlq.len(), 1, "a close keeps the pending entry");
}
