//! Tests that measure the process itself (resident memory, live tasks), so
//! they run one at a time, in a test binary of their own: nothing else
//! allocates while they measure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use watchtower_test_support::{RawServer, unused_addr, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{MaxAttempts, ReconnectPolicy};

const LIMIT: Duration = Duration::from_secs(60);
const FLOOD: u64 = 1_000_000;
const QUEUE: usize = 1_000;
/// A flood of FLOOD events kept in memory would take well over 200 MiB
/// (each frame is ~100 bytes of JSON plus its allocation); bounded by the
/// queue and the dead-letter queue it stays a few MiB. The bound sits far
/// from both.
const FLOOD_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

static SERIAL: Mutex<()> = Mutex::new(());

/// One measuring test at a time, on a runtime of its own.
fn isolated<F: std::future::Future<Output = ()>>(test: F) {
    let _one_at_a_time: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn event(n: u64) -> Event {
    Event::new(
        "flood",
        serde_json::json!({ "n": n }),
        EventMetadata::default(),
    )
}

/// The `n` of a test event, read without decoding the whole frame.
fn sequence_of(frame: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(frame).ok()?;
    let start = text.find(r#""n":"#)? + 4;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A transport whose server is not there: it queues and keeps retrying.
async fn flooded(addr: std::net::SocketAddr, strategy: BackpressureStrategy) -> WebSocketTransport {
    let mut config = WebSocketConfig::new(format!("ws://{addr}/events"));
    config.backpressure.max_queue_size = QUEUE;
    config.backpressure.strategy = strategy;
    WebSocketTransport::builder(config)
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(50),
            MaxAttempts::Unlimited,
        ))
        .connect_lazily(true)
        .connect()
        .await
        .unwrap()
}

/// DropOldest: a million publishes with the server down. Memory stays
/// bounded by the queue and the DLQ, and the counts add up exactly:
/// published = delivered + evicted (dead-lettered or counted as dropped
/// from the full DLQ).
#[test]
fn flood_drop_oldest_is_bounded_and_adds_up() {
    isolated(async {
        let addr = unused_addr();
        let transport = flooded(addr, BackpressureStrategy::DropOldest).await;
        let before = rss_kib();
        for n in 0..FLOOD {
            transport.publish(event(n)).await.unwrap();
        }
        let growth = rss_kib().saturating_sub(before);
        eprintln!("drop oldest: RSS grew {growth} KiB over {FLOOD} publishes");
        assert!(
            growth < FLOOD_GROWTH_LIMIT_KIB,
            "RSS grew {growth} KiB for {FLOOD} events"
        );
        let stats = transport.stats();
        assert_eq!(stats.backpressure.current_queue_size, QUEUE);
        assert_eq!(stats.backpressure.evicted_events, FLOOD - QUEUE as u64);
        assert_eq!(stats.connection.events_evicted, FLOOD - QUEUE as u64);
        // Every eviction went to the DLQ, which keeps its newest 10,000.
        assert_eq!(stats.dlq.total_pushed, FLOOD - QUEUE as u64);
        assert_eq!(
            stats.dlq.len as u64 + stats.dlq.dropped,
            FLOOD - QUEUE as u64
        );

        let server = RawServer::start_counting(addr, sequence_of).await;
        wait_until("the queued events arrive", LIMIT, || {
            server.received_count() == QUEUE
        })
        .await;
        transport.flush().await.ok();
        assert_eq!(server.out_of_order(), 0);
        let delivered = server.received_count() as u64;
        assert_eq!(
            FLOOD,
            delivered + stats.backpressure.evicted_events,
            "published = delivered + dropped"
        );
    });
}

/// DropNewest: the same flood; every publish past the queue is refused
/// with an error the caller sees, and the counts add up.
#[test]
fn flood_drop_newest_is_bounded_and_adds_up() {
    isolated(async {
        let addr = unused_addr();
        let transport = flooded(addr, BackpressureStrategy::DropNewest).await;
        let before = rss_kib();
        let mut rejected = 0u64;
        for n in 0..FLOOD {
            match transport.publish(event(n)).await {
                Ok(()) => {}
                Err(WatchtowerError::QueueFull { .. }) => rejected += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        let growth = rss_kib().saturating_sub(before);
        eprintln!("drop newest: RSS grew {growth} KiB over {FLOOD} publishes");
        assert!(
            growth < FLOOD_GROWTH_LIMIT_KIB,
            "RSS grew {growth} KiB for {FLOOD} events"
        );
        let stats = transport.stats();
        assert_eq!(rejected, FLOOD - QUEUE as u64);
        assert_eq!(stats.backpressure.rejected_events, rejected);
        assert_eq!(
            stats.dlq.total_pushed, 0,
            "refused events are the caller's, not dead letters"
        );

        let server = RawServer::start_counting(addr, sequence_of).await;
        wait_until("the queued events arrive", LIMIT, || {
            server.received_count() == QUEUE
        })
        .await;
        assert_eq!(server.out_of_order(), 0);
        assert_eq!(
            FLOOD,
            server.received_count() as u64 + rejected,
            "published = delivered + rejected"
        );
    });
}

/// Block: publishers wait while the queue is full (memory bounded), and
/// are released when the server comes back: every event is delivered, in
/// order.
#[test]
fn flood_block_waits_then_delivers_everything() {
    isolated(async {
        let addr = unused_addr();
        let transport = Arc::new(flooded(addr, BackpressureStrategy::Block).await);
        let before = rss_kib();
        let publisher = {
            let transport = Arc::clone(&transport);
            tokio::spawn(async move {
                for n in 0..FLOOD {
                    transport.publish(event(n)).await.unwrap();
                }
            })
        };
        wait_until("the publisher is blocked on a full queue", LIMIT, || {
            transport.stats().backpressure.blocked_pushes >= 1
        })
        .await;
        let stats = transport.stats();
        assert_eq!(stats.backpressure.current_queue_size, QUEUE);
        assert!(!publisher.is_finished());
        let growth = rss_kib().saturating_sub(before);
        eprintln!("block: RSS grew {growth} KiB while {FLOOD} publishes wait");
        assert!(
            growth < FLOOD_GROWTH_LIMIT_KIB,
            "RSS grew {growth} KiB while blocked"
        );

        let server = RawServer::start_counting(addr, sequence_of).await;
        publisher.await.unwrap();
        transport.flush().await.unwrap();
        wait_until("every event delivered", LIMIT, || {
            server.received_count() as u64 == FLOOD
        })
        .await;
        assert_eq!(server.out_of_order(), 0);
        assert_eq!(transport.stats().backpressure.dropped_events, 0);
        assert_eq!(transport.dlq_stats().total_pushed, 0);
    });
}

/// A thousand transports connected, used and dropped (every other one shut
/// down first): afterwards no task of theirs is alive, the server sees no
/// connection, and memory is back near where it started.
#[test]
fn connect_and_disconnect_a_thousand_times_leaks_nothing() {
    isolated(async {
        let server = RawServer::start_counting(unused_addr(), sequence_of).await;
        let url = server.url();
        let metrics = tokio::runtime::Handle::current().metrics();
        let cycle = |i: u64| {
            let url = url.clone();
            async move {
                let transport = WebSocketTransport::new(WebSocketConfig::new(url))
                    .await
                    .unwrap();
                transport
                    .subscribe(vec![], |_event| Box::pin(async { Ok(()) }))
                    .await
                    .unwrap();
                transport.publish(event(i)).await.unwrap();
                transport.flush().await.unwrap();
                if i.is_multiple_of(2) {
                    transport.shutdown().await.unwrap();
                }
            }
        };
        // Warm up allocator and runtime before the baseline.
        for i in 0..50 {
            cycle(i).await;
        }
        wait_until("warm-up connections closed", LIMIT, || {
            server.connections() == 0
        })
        .await;
        let tasks_before = metrics.num_alive_tasks();
        let rss_before = rss_kib();
        for i in 0..1_000 {
            cycle(i).await;
        }
        wait_until("every connection closed at the server", LIMIT, || {
            server.connections() == 0
        })
        .await;
        wait_until("every transport task ended", LIMIT, || {
            metrics.num_alive_tasks() <= tasks_before
        })
        .await;
        let growth = rss_kib().saturating_sub(rss_before);
        eprintln!(
            "1,000 connections: RSS grew {growth} KiB, tasks {} -> {}",
            tasks_before,
            metrics.num_alive_tasks()
        );
        // One leaked connection costs ~12 KiB (see the benchmark), so a
        // thousand would be ~12 MiB; allow a fraction of that for the
        // allocator's caches.
        assert!(
            growth < 4 * 1024,
            "RSS grew {growth} KiB over 1,000 connections"
        );
        assert_eq!(server.received_count(), 1_050);
    });
}
