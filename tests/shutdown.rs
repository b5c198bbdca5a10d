//! `shutdown` flushes, closes cleanly, and stops everything.

use std::time::Duration;

use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::prelude::*;

use crate::support::{LIMIT, event, fast, fast_blocking, n_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_queue_and_sends_a_close_the_server_sees() {
    let server = RawServer::start().await;
    let transport = fast_blocking(&server.url(), 3).connect().await.unwrap();
    for n in 0..2_000 {
        transport.publish(event("s", n)).await.unwrap();
    }
    let report = transport.shutdown().await.unwrap();
    assert_eq!(report.dead_lettered, 0);
    assert!(report.closed_cleanly);
    assert_eq!(
        server.received_count(),
        2_000,
        "everything written before the close"
    );
    let ns: Vec<u64> = server.received_events().iter().map(n_of).collect();
    assert_eq!(ns, (0..2_000).collect::<Vec<_>>());
    wait_until("close frame seen", LIMIT, || {
        server.close_codes() == vec![Some(1000)]
    })
    .await;
    assert_eq!(transport.state(), ConnectionState::Closed);

    // Misuse after shutdown is a typed error, not a panic.
    assert!(matches!(
        transport.publish(event("s", 1)).await,
        Err(WatchtowerError::Closed)
    ));
    assert!(matches!(
        transport
            .subscribe(vec![], |_e| Box::pin(async { Ok(()) }))
            .await,
        Err(WatchtowerError::Closed)
    ));
    assert!(matches!(
        transport.health_check().await,
        Err(WatchtowerError::Closed)
    ));
    assert_eq!(
        transport.shutdown().await.unwrap(),
        report,
        "a second shutdown does nothing more, and reports what the first did"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_disconnected_dead_letters_what_it_cannot_send() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 1_000)
        .shutdown_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    server.stop().await;
    wait_until("disconnected", LIMIT, || !transport.state().is_connected()).await;
    for n in 0..3 {
        transport.publish(event("s", n)).await.unwrap();
    }
    let report = transport.shutdown().await.unwrap();
    assert_eq!(report.dead_lettered, 3);
    assert!(!report.closed_cleanly);
    let letters = transport.dead_letters().drain();
    assert_eq!(letters.len(), 3);
    assert!(
        letters
            .iter()
            .all(|l| l.reason == watchtower_websocket::DeadLetterReason::Shutdown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_transport_closes_the_connection() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    drop(transport);
    wait_until("the server sees the connection go", LIMIT, || {
        server.connections() == 0
    })
    .await;
}
