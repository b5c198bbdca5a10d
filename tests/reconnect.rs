//! Reconnecting: nothing queued is lost, order holds, subscriptions resume,
//! and the breaker opens and closes by itself.

use std::time::Duration;

use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{MaxAttempts, ReconnectPolicy};

use crate::support::{Collector, LIMIT, event, fast, n_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_server_is_down_arrive_in_order_after_restart() {
    let server = RawServer::start().await;
    let addr = server.addr();
    let transport = fast(&server.url(), 1_000).connect().await.unwrap();
    let got = Collector::default();
    transport
        .subscribe(vec!["down".into()], got.handler())
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;

    server.stop().await;
    wait_until("the client notices", LIMIT, || {
        !transport.state().is_connected()
    })
    .await;
    for n in 0..1_000 {
        transport.publish(event("up", n)).await.unwrap();
    }
    assert_eq!(
        transport.backpressure_stats().await.current_queue_size,
        1_000
    );

    let server = RawServer::start_on(addr).await;
    wait_until("all 1000 after the restart", LIMIT, || {
        server.received_count() == 1_000
    })
    .await;
    let ns: Vec<u64> = server.received_events().iter().map(n_of).collect();
    assert_eq!(ns, (0..1_000).collect::<Vec<_>>(), "in order, once each");
    transport.flush().await.unwrap();

    // The subscription works again without the user doing anything.
    server.send_event(&event("down", 7));
    wait_until("subscription resumed", LIMIT, || got.len() == 1).await;
    let stats = transport.connection_stats();
    assert_eq!(stats.reconnects, 1);
    assert!(stats.disconnects >= 1);
    assert_eq!(
        transport.dlq_stats().total_pushed,
        0,
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_attempts_open_the_breaker_then_it_recovers_by_itself() {
    let server = RawServer::start().await;
    let addr = server.addr();
    let transport = WebSocketTransport::builder(WebSocketConfig::new(server.url()))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(10),
            MaxAttempts::Limited(3),
        ))
        .breaker_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    server.stop().await;

    wait_until("breaker open", LIMIT, || {
        transport.state() == ConnectionState::CircuitOpen
    })
    .await;
    let stats = transport.circuit_breaker_stats().await;
    assert_eq!(stats.state, CircuitState::Open);
    let e = transport.publish(event("x", 1)).await.unwrap_err();
    assert!(e.to_string().contains("Circuit breaker is open"), "{e}");
    assert!(matches!(
        transport.health_check().await,
        Err(WatchtowerError::CircuitOpen { .. })
    ));
    // Publishers read the breaker; they never drive it (a publish must not
    // start a half-open trial), so their rejections are the transport's.
    assert_eq!(transport.connection_stats().publishes_rejected, 1);
    assert_eq!(transport.connection_stats().failed_connects, 3);

    let server = RawServer::start_on(addr).await;
    wait_until("trial connect closes the breaker", LIMIT, || {
        transport.state().is_connected()
    })
    .await;
    assert_eq!(
        transport.circuit_breaker_stats().await.state,
        CircuitState::Closed
    );
    transport.publish(event("x", 2)).await.unwrap();
    wait_until("delivered after recovery", LIMIT, || {
        server.received_count() == 1
    })
    .await;
    transport.health_check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_events_are_dead_lettered_when_the_breaker_opens() {
    let server = RawServer::start().await;
    let transport = WebSocketTransport::builder(WebSocketConfig::new(server.url()))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(50),
            MaxAttempts::Limited(2),
        ))
        .breaker_timeout(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    server.stop().await;
    wait_until("disconnected", LIMIT, || !transport.state().is_connected()).await;
    for n in 0..10 {
        transport.publish(event("x", n)).await.unwrap();
    }
    wait_until("breaker open", LIMIT, || {
        transport.state() == ConnectionState::CircuitOpen
    })
    .await;
    let letters = transport.dead_letters().drain();
    let ns: Vec<u64> = letters
        .iter()
        .map(|l| n_of(&l.item.event().unwrap()))
        .collect();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    assert!(
        letters
            .iter()
            .all(|l| l.reason == watchtower_websocket::DeadLetterReason::SendFailed)
    );
    assert!(
        letters[0].error.contains("circuit breaker"),
        "{}",
        letters[0].error
    );
    assert_eq!(transport.connection_stats().events_abandoned, 10);
    assert!(
        transport.flush().await.is_ok(),
        "nothing published after the last flush is pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_connect_fails_after_its_attempts_with_a_connection_error() {
    let addr = watchtower_test_support::unused_addr();
    let url = format!("ws://{addr}/events");
    let e = fast(&url, 2).connect().await.unwrap_err();
    assert!(matches!(e, WatchtowerError::Connection { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_config_errors_before_any_io() {
    for url in ["http://localhost:8080/events", "localhost:8080", ""] {
        let e = WebSocketTransport::new(WebSocketConfig::new(url))
            .await
            .unwrap_err();
        assert!(matches!(e, WatchtowerError::Config(_)), "{url}: {e:?}");
        assert!(e.to_string().contains("ws://localhost:8080/events"), "{e}");
    }
}

/// A server that paces this address (the hub's handshake budget answers
/// 429 with `Retry-After`) is up and asked to be tried later: the next
/// attempt waits at least that long, although the reconnect policy says
/// 20 ms, and then connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_out_before_the_next_attempt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut refused, _) = listener.accept().await.unwrap();
        // Read the request head, then refuse it the way the hub does.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            refused.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        refused
            .write_all(
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let refused_at = tokio::time::Instant::now();
        drop(refused);
        let (next, _) = listener.accept().await.unwrap();
        let waited = refused_at.elapsed();
        let ws = tokio_tungstenite::accept_async(next).await.unwrap();
        (waited, ws)
    });
    let transport = fast(&url, 5).connect().await.unwrap();
    let (waited, ws) = server.await.unwrap();
    drop(ws);
    assert!(
        waited >= Duration::from_secs(2),
        "came back after {waited:?}, asked for 2 s"
    );
    let stats = transport.connection_stats();
    assert_eq!(stats.failed_connects, 1, "{stats:?}");
    transport.shutdown().await.unwrap();
}
