//! Client failover: with `fallback_urls`, a failed connect attempt moves
//! on to the next hub, and the transport says which one it is on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use watchtower_hub::Hub;
use watchtower_test_support::{unused_addr, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{MaxAttempts, ReconnectPolicy, ResumeOutcome};

use crate::support::{LIMIT, init_logs};

fn builder(url: &str, fallbacks: &[String]) -> watchtower_websocket::TransportBuilder {
    init_logs();
    WebSocketTransport::builder(WebSocketConfig::new(url))
        .fallback_urls(fallbacks.to_vec())
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Unlimited,
        ))
        .connect_timeout(Duration::from_millis(500))
}

/// The first URL is down: the first connect goes on to the fallback, and
/// stats and `url()` name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_url_fails_over_to_the_next() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("ws://{}/events", unused_addr());
    let transport = builder(&dead, &[hub.url()]).connect().await.unwrap();
    assert!(transport.state().is_connected());
    assert_eq!(transport.url(), hub.url());
    let stats = transport.connection_stats();
    assert_eq!((stats.url_index, stats.failed_connects), (1, 1));
    transport.shutdown().await.unwrap();
}

/// The hub it is on goes away: the reconnect moves through the list to
/// the next hub, presenting its position there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hub_is_replaced_by_the_next_one_in_the_list() {
    let first = Hub::bind("127.0.0.1:0").await.unwrap();
    let second = Hub::bind("127.0.0.1:0").await.unwrap();
    let transport = builder(&first.url(), &[second.url()])
        .connect()
        .await
        .unwrap();
    assert_eq!(transport.connection_stats().url_index, 0);
    drop(first);
    wait_until("moved to the second hub", LIMIT, || {
        transport.connection_stats().reconnects == 1 && transport.state().is_connected()
    })
    .await;
    assert_eq!(transport.url(), second.url());
    assert_eq!(transport.connection_stats().url_index, 1);
    // It presented its position: the second hub's history is another one.
    assert!(matches!(
        transport.last_resume(),
        Some(ResumeOutcome::NotRecovered { .. })
    ));
    wait_until("the second hub counts it", LIMIT, || {
        second.stats().clients == 1
    })
    .await;
    transport.shutdown().await.unwrap();
}

/// A malformed fallback URL is a configuration error at `connect`.
#[tokio::test]
async fn a_malformed_fallback_url_is_a_config_error() {
    let result = builder("ws://127.0.0.1:9/events", &["http://nope".to_string()])
        .connect()
        .await;
    assert!(
        matches!(result, Err(WatchtowerError::Config(_))),
        "{result:?}"
    );
}

/// A server that accepts every WebSocket connection and, after `after`,
/// closes it with `code`.
async fn closing_server(after: Duration, code: u16) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/events", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                counter.fetch_add(1, SeqCst);
                tokio::time::sleep(after).await;
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "".into(),
                };
                let _ = ws.close(Some(frame)).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url, accepted)
}

/// N6: a primary that accepts and at once closes is left for the healthy
/// fallback, which the transport then stays on. (At f945df2 it stayed on
/// the primary: url index 0 after 12 connects and 7 breaker openings.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_accepts_and_closes_is_left_for_the_fallback() {
    let (primary, accepted) = closing_server(Duration::ZERO, 1000).await;
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let transport = builder(&primary, &[hub.url()])
        .connect_lazily(true)
        .connect()
        .await
        .unwrap();
    wait_until("on the fallback", LIMIT, || {
        transport.state().is_connected() && transport.connection_stats().url_index == 1
    })
    .await;
    assert_eq!(transport.url(), hub.url());
    let tried = accepted.load(SeqCst);
    // It stays there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(transport.connection_stats().url_index, 1);
    assert_eq!(accepted.load(SeqCst), tried);
    assert_eq!(hub.stats().clients, 1);
    transport.health_check().await.unwrap();
    transport.shutdown().await.unwrap();
}

/// N6: a hub that closes with 1001 ("going away") after a long, stable
/// session is left for the next URL at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_away_moves_to_the_next_url() {
    let (primary, accepted) = closing_server(Duration::from_millis(2_200), 1001).await;
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let transport = builder(&primary, &[hub.url()]).connect().await.unwrap();
    assert_eq!(transport.connection_stats().url_index, 0);
    wait_until("on the fallback", LIMIT, || {
        transport.state().is_connected() && transport.connection_stats().url_index == 1
    })
    .await;
    assert_eq!(accepted.load(SeqCst), 1, "not back to the primary");
    // What it says about itself names the URL in use.
    assert!(
        format!("{transport:?}").contains(&hub.url()),
        "{transport:?}"
    );
    transport.shutdown().await.unwrap();
}
