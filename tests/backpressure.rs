//! The three strategies, with the server unreachable so the queue fills.

use std::sync::Arc;
use std::time::Duration;

use watchtower_test_support::{RawServer, unused_addr, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{DeadLetterReason, MaxAttempts, ReconnectPolicy, TransportBuilder};

use crate::support::{LIMIT, event, n_of};

/// A transport whose server is down: it keeps retrying (no breaker) and
/// queues everything.
fn queueing(url: &str, size: usize, strategy: BackpressureStrategy) -> TransportBuilder {
    let mut config = WebSocketConfig::new(url);
    config.backpressure = BackpressureConfig {
        max_queue_size: size,
        strategy,
        warning_threshold: 0.8,
    };
    WebSocketTransport::builder(config)
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Unlimited,
        ))
        .connect_lazily(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_waits_while_full_and_resumes_when_the_server_returns() {
    let addr = unused_addr();
    let transport = Arc::new(
        queueing(
            &format!("ws://{addr}/events"),
            10,
            BackpressureStrategy::Block,
        )
        .connect()
        .await
        .unwrap(),
    );
    for n in 0..10 {
        transport.publish(event("b", n)).await.unwrap();
    }
    let blocked = {
        let transport = Arc::clone(&transport);
        tokio::spawn(async move { transport.publish(event("b", 10)).await })
    };
    wait_until("the 11th publish is blocked", LIMIT, || {
        transport.stats().backpressure.blocked_pushes == 1
    })
    .await;
    assert!(!blocked.is_finished());

    let server = RawServer::start_on(addr).await;
    blocked.await.unwrap().unwrap();
    wait_until("all 11 delivered", LIMIT, || server.received_count() == 11).await;
    let ns: Vec<u64> = server.received_events().iter().map(n_of).collect();
    assert_eq!(ns, (0..11).collect::<Vec<_>>());
    assert_eq!(transport.stats().backpressure.dropped_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_is_released_with_the_breaker_error() {
    let addr = unused_addr();
    let mut config = WebSocketConfig::new(format!("ws://{addr}/events"));
    config.backpressure.max_queue_size = 2;
    config.backpressure.strategy = BackpressureStrategy::Block;
    let transport = Arc::new(
        WebSocketTransport::builder(config)
            .reconnect_policy(ReconnectPolicy::fixed(
                Duration::from_millis(200),
                MaxAttempts::Limited(3),
            ))
            .breaker_timeout(Duration::from_secs(3600))
            .connect_lazily(true)
            .connect()
            .await
            .unwrap(),
    );
    transport.publish(event("b", 0)).await.unwrap();
    transport.publish(event("b", 1)).await.unwrap();
    let e = transport.publish(event("b", 2)).await.unwrap_err();
    assert!(e.to_string().contains("Circuit breaker is open"), "{e}");
    assert_eq!(transport.state(), ConnectionState::CircuitOpen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_rejects_when_full() {
    let addr = unused_addr();
    let transport = queueing(
        &format!("ws://{addr}/events"),
        5,
        BackpressureStrategy::DropNewest,
    )
    .connect()
    .await
    .unwrap();
    for n in 0..5 {
        transport.publish(event("n", n)).await.unwrap();
    }
    let e = transport.publish(event("n", 5)).await.unwrap_err();
    assert!(
        matches!(e, WatchtowerError::QueueFull { capacity: 5 }),
        "{e:?}"
    );
    let stats = transport.backpressure_stats().await;
    assert_eq!(
        (
            stats.current_queue_size,
            stats.dropped_events,
            stats.rejected_events
        ),
        (5, 1, 1)
    );

    let server = RawServer::start_on(addr).await;
    wait_until("the five queued ones arrive", LIMIT, || {
        server.received_count() == 5
    })
    .await;
    let ns: Vec<u64> = server.received_events().iter().map(n_of).collect();
    assert_eq!(ns, vec![0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_evicts_to_the_dead_letter_queue() {
    let addr = unused_addr();
    let transport = queueing(
        &format!("ws://{addr}/events"),
        5,
        BackpressureStrategy::DropOldest,
    )
    .connect()
    .await
    .unwrap();
    for n in 0..8 {
        transport.publish(event("o", n)).await.unwrap();
    }
    let stats = transport.backpressure_stats().await;
    assert_eq!((stats.current_queue_size, stats.evicted_events), (5, 3));
    let letters = transport.dead_letters().drain();
    let evicted: Vec<u64> = letters
        .iter()
        .map(|l| n_of(&l.item.event().unwrap()))
        .collect();
    assert_eq!(evicted, vec![0, 1, 2], "the oldest, in order");
    assert!(
        letters
            .iter()
            .all(|l| l.reason == DeadLetterReason::Overflow)
    );

    let server = RawServer::start_on(addr).await;
    wait_until("the newest five arrive", LIMIT, || {
        server.received_count() == 5
    })
    .await;
    let ns: Vec<u64> = server.received_events().iter().map(n_of).collect();
    assert_eq!(ns, vec![3, 4, 5, 6, 7]);
    // published = delivered + dead-lettered
    assert_eq!(8, server.received_count() + evicted.len());
}
