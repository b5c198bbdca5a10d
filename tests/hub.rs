//! The transport against the hub: server-side filters, relay, restarts.

use std::time::Duration;

use watchtower_hub::Hub;
use watchtower_test_support::wait_until;
use watchtower_websocket::prelude::*;
use watchtower_websocket::{MaxAttempts, ReconnectPolicy};

use crate::support::{Collector, LIMIT, event, init_logs};

fn filtered(url: &str) -> watchtower_websocket::TransportBuilder {
    init_logs();
    WebSocketTransport::builder(WebSocketConfig::new(url))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Unlimited,
        ))
        .server_filters(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_filters_narrow_at_the_hub_and_survive_a_reconnect() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let addr = hub.local_addr();
    let subscriber = filtered(&hub.url()).connect().await.unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(vec!["a".into()], got.handler())
        .await
        .unwrap();
    let publisher = filtered(&hub.url()).connect().await.unwrap();

    for n in 0..10 {
        publisher
            .publish(event(if n % 2 == 0 { "a" } else { "b" }, n))
            .await
            .unwrap();
    }
    wait_until("the five `a` events", LIMIT, || got.len() == 5).await;
    // The hub queued only what the filter lets through.
    wait_until("hub relayed", LIMIT, || hub.stats().events_in == 10).await;
    assert_eq!(hub.stats().frames_queued, 5);
    assert_eq!(
        subscriber.connection_stats().events_unmatched,
        0,
        "nothing unwanted was sent"
    );

    // Restart: the filter goes out again on the new connection.
    hub.shutdown().await;
    let hub = Hub::bind(addr).await.unwrap();
    // Both on the new hub (a state read right after the shutdown could
    // still be the old connection's).
    wait_until("both reconnected", LIMIT, || {
        hub.stats().clients == 2
            && subscriber.connection_stats().reconnects == 1
            && publisher.connection_stats().reconnects == 1
    })
    .await;
    // Both clients send their filter on every connection (the publisher
    // its empty one), so one control frame may be the publisher's: wait
    // for both, or events published before the subscriber's filter lands
    // are queued to it unfiltered (seen once under stress: 10 queued).
    wait_until("both filters re-sent", LIMIT, || {
        hub.stats().control_frames >= 2
    })
    .await;
    for n in 10..20 {
        publisher
            .publish(event(if n % 2 == 0 { "a" } else { "b" }, n))
            .await
            .unwrap();
    }
    wait_until("five more `a` events", LIMIT, || got.len() == 10).await;
    wait_until("hub relayed", LIMIT, || hub.stats().events_in == 10).await;
    assert_eq!(hub.stats().frames_queued, 5);
    assert_eq!(got.ns(), (0..20).step_by(2).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_returns_once_the_hub_delivers_the_new_type() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let subscriber = filtered(&hub.url()).connect().await.unwrap();
    let publisher = filtered(&hub.url()).connect().await.unwrap();
    let a = Collector::default();
    subscriber
        .subscribe(vec!["a".into()], a.handler())
        .await
        .unwrap();
    for round in 0..20 {
        // Each new type is relayed from the moment `subscribe` returns.
        let t = format!("t{round}");
        let got = Collector::default();
        subscriber
            .subscribe(vec![t.clone()], got.handler())
            .await
            .unwrap();
        publisher.publish(event(&t, round)).await.unwrap();
        wait_until("the new type arrives", LIMIT, || got.len() == 1).await;
    }
    assert_eq!(hub.stats().dropped_frames, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscription_per_handler_after_many_restarts() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let addr = hub.local_addr();
    let subscriber = filtered(&hub.url()).connect().await.unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(vec!["x".into()], got.handler())
        .await
        .unwrap();
    let publisher = filtered(&hub.url()).connect().await.unwrap();
    let mut hub = hub;
    for round in 0..5u64 {
        publisher.publish(event("x", round)).await.unwrap();
        wait_until("delivered once", LIMIT, || got.len() as u64 == round + 1).await;
        hub.shutdown().await;
        hub = Hub::bind(addr).await.unwrap();
        wait_until("both back", LIMIT, || {
            hub.stats().clients == 2 && hub.stats().control_frames >= 2
        })
        .await;
    }
    publisher.publish(event("x", 5)).await.unwrap();
    wait_until("the last one", LIMIT, || got.len() == 6).await;
    // Each event exactly once: no subscription was duplicated by a reconnect.
    assert_eq!(got.ns(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(subscriber.subscription_count(), 1);
    assert_eq!(subscriber.connection_stats().reconnects, 5);
}
