//! Dead connections are noticed by keepalive, not waited on forever.

use std::time::Duration;

use watchtower_test_support::{FaultProxy, Mode, RawServer, wait_until};

use crate::support::{LIMIT, event, fast, n_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_detected_and_replaced() {
    let server = RawServer::start().await;
    let proxy = FaultProxy::start(server.addr()).await;
    let transport = fast(&proxy.url("/events"), 1_000)
        .keepalive(Duration::from_millis(200), Duration::from_millis(200))
        // Handshakes attempted while the proxy swallows bytes must give up soon.
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    transport.publish(event("k", 0)).await.unwrap();
    wait_until("first event through", LIMIT, || {
        server.received_count() == 1
    })
    .await;

    // The proxy now swallows everything in both directions, sockets open.
    proxy.set_mode(Mode::Blackhole);
    wait_until("dead connection noticed", LIMIT, || {
        !transport.state().is_connected()
    })
    .await;
    assert_eq!(
        transport.connection_stats().keepalive_timeouts,
        1,
        "noticed by keepalive"
    );
    for n in 1..=50 {
        transport.publish(event("k", n)).await.unwrap();
    }
    proxy.set_mode(Mode::Pass);
    wait_until(
        "queued events delivered on the new connection",
        LIMIT,
        || server.received_events().iter().any(|e| n_of(e) == 50),
    )
    .await;
    let ns: Vec<u64> = server.received_events().iter().map(n_of).collect();
    assert_eq!(&ns[ns.len() - 50..], &(1..=50).collect::<Vec<_>>()[..]);
    assert!(server.accepted() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_healthy_connection_stays_up_on_pings() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3)
        .keepalive(Duration::from_millis(50), Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    wait_until("several pings answered", LIMIT, || server.pings() >= 5).await;
    assert!(transport.state().is_connected());
    assert_eq!(transport.connection_stats().keepalive_timeouts, 0);
    assert!(transport.connection_stats().pongs_received >= 4);
    transport.health_check().await.unwrap();
}

/// A connection task that could not run for a while (a starved runtime, a
/// blocking call on its thread) reads what arrived meanwhile before it
/// judges the link: frames waiting in its socket prove the link is alive.
/// Here the transport's runtime has one thread, blocked for 4 s — past
/// keepalive's 3 s — while the server keeps talking; when the task runs
/// again both its keepalive timer and its socket are ready, and the link
/// must be kept.
#[test]
fn a_starved_connection_task_reads_before_it_calls_a_live_link_dead() {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = std::sync::Arc::new(servers.block_on(RawServer::start()));
    let url = server.url();
    servers.spawn(async move {
        for n in 0.. {
            server.send_event(&event("chatter", n));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stats = client.block_on(async {
        let transport = fast(&url, 1_000)
            .keepalive(Duration::from_secs(1), Duration::from_secs(2))
            .connect()
            .await
            .unwrap();
        wait_until("the server's chatter arrives", LIMIT, || {
            transport.connection_stats().events_received >= 3
        })
        .await;
        // Every task of this runtime is starved: its only thread sleeps.
        std::thread::sleep(Duration::from_secs(4));
        let before = transport.connection_stats().events_received;
        wait_until("the transport reads again", LIMIT, || {
            transport.connection_stats().events_received > before
        })
        .await;
        let stats = transport.connection_stats();
        transport.shutdown().await.unwrap();
        stats
    });
    assert_eq!(
        (stats.keepalive_timeouts, stats.disconnects),
        (0, 0),
        "{stats:?}"
    );
}
