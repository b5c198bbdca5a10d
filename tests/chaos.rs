//! Breaking the connection on purpose, many times, and checking the
//! delivery promises each time.

use std::sync::Arc;
use std::time::Duration;

use watchtower_test_support::{FaultProxy, RawServer, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{MaxAttempts, ReconnectPolicy};

use crate::support::{LIMIT, event, init_logs, n_of};

/// 20,000 events while the proxy resets the connection 50 times at seeded
/// random points. Promises checked:
/// - nothing arrives twice or out of order;
/// - nothing queued is lost: every missing event was written to a
///   connection that then died before the server confirmed it, and the
///   transport counts exactly that window in `frames_unconfirmed_lost`;
/// - nothing is dead-lettered (Block strategy: no drops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_lose_nothing_queued_and_never_reorder() {
    restarts_run(20_000, 50, 0x5eed).await;
}

/// The long variant, for `cargo xtask soak`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with `cargo xtask soak`"]
async fn soak_restarts_plain() {
    for seed in 1..=5 {
        restarts_run(200_000, 500, seed).await;
    }
}

async fn restarts_run(events: u64, resets: u32, seed: u64) {
    init_logs();
    let server = RawServer::start().await;
    let proxy = FaultProxy::start(server.addr()).await;
    let mut config = WebSocketConfig::new(proxy.url("/events"));
    config.backpressure.strategy = BackpressureStrategy::Block;
    let transport = Arc::new(
        WebSocketTransport::builder(config)
            .reconnect_policy(ReconnectPolicy::fixed(
                Duration::from_millis(2),
                MaxAttempts::Unlimited,
            ))
            .write_batch_size(64)
            .connect()
            .await
            .unwrap(),
    );

    let publisher = {
        let transport = Arc::clone(&transport);
        tokio::spawn(async move {
            for n in 0..events {
                transport.publish(event("chaos", n)).await.unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..resets {
        // Reset at a random point of progress, not of time, so the run is
        // the same on a fast or a slow machine.
        let written = transport.connection_stats().frames_out;
        let target = written + rng.u64(1..(events / u64::from(resets)));
        wait_until("progress before the next reset", LIMIT, || {
            transport.connection_stats().frames_out >= target || publisher.is_finished()
        })
        .await;
        let connections = proxy.accepted();
        proxy.reset_all();
        wait_until("reconnected", LIMIT, || {
            proxy.accepted() > connections && transport.state().is_connected()
        })
        .await;
    }
    publisher.await.unwrap();
    transport.flush().await.unwrap();
    let stats = transport.connection_stats();
    let in_doubt = stats.frames_unconfirmed_lost;
    wait_until("everything not in doubt arrived", LIMIT, || {
        server.received_count() as u64 + in_doubt >= events
    })
    .await;

    let received: Vec<u64> = server.received_events().iter().map(n_of).collect();
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "events arrived twice or out of order"
    );
    let missing = events - received.len() as u64;
    assert!(
        missing <= in_doubt,
        "{missing} events missing but only {in_doubt} were in the at-most-once window"
    );
    assert!(stats.disconnects >= u64::from(resets), "{stats:?}");
    assert_eq!(stats.reconnects, stats.disconnects);
    assert_eq!(
        transport.dlq_stats().total_pushed,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        stats.frames_out, events,
        "every event was written exactly once"
    );
    eprintln!(
        "chaos: {events} events, {} resets, {} missing, {in_doubt} in the at-most-once window, {} requeued",
        stats.disconnects, missing, stats.frames_requeued
    );
}
