//! A hub's filter limits, learned from its upgrade answer: `subscribe`
//! refuses a filter the connected hub would refuse, and a filter a newly
//! reached hub would refuse is not sent to it in a loop that opens the
//! breaker.

use std::sync::Arc;
use std::time::Duration;

use watchtower_hub::{Hub, HubConfig};
use watchtower_test_support::wait_until;
use watchtower_websocket::prelude::*;
use watchtower_websocket::{AtLeastOnce, MaxAttempts, ReconnectPolicy};

use crate::support::{Collector, LIMIT, event, fast, init_logs};

/// A hub whose filters hold at most `types` event types.
async fn hub_with_filter_types(types: usize) -> Hub {
    let mut config = HubConfig::default();
    config.max_filter_types = types;
    Hub::builder()
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn types(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A hub that takes 3 types per filter: subscriptions of 2 types each fit
/// one at a time, the second together would not, and `subscribe` says so
/// instead of returning `Ok` and sending a filter the hub answers with
/// 1008. Nothing is refused, no connection is lost, and the first
/// subscription still gets its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_fails_before_sending_a_filter_the_connected_hub_would_refuse() {
    let hub = hub_with_filter_types(3).await;
    let subscriber = fast(&hub.url(), 3)
        .server_filters(true)
        .connect()
        .await
        .unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(types(&["a", "b"]), got.handler())
        .await
        .unwrap();
    let error = subscriber
        .subscribe(types(&["c", "d"]), |_e| Box::pin(async { Ok(()) }))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, WatchtowerError::Subscription(why) if why.contains("at most 3")),
        "{error:?}"
    );
    assert_eq!(subscriber.subscription_count(), 1);

    let publisher = fast(&hub.url(), 3).connect().await.unwrap();
    publisher.publish(event("a", 1)).await.unwrap();
    publisher.flush().await.unwrap();
    wait_until("the first subscription has its event", LIMIT, || {
        got.len() == 1
    })
    .await;
    assert_eq!(hub.stats().control_rejected, 0, "the hub refused a filter");
    let stats = subscriber.connection_stats();
    assert_eq!((stats.connects, stats.disconnects), (1, 0));
    publisher.shutdown().await.unwrap();
    subscriber.shutdown().await.unwrap();
}

/// Concurrent `subscribe`s, each within the hub's limit alone but not all
/// together: the check and the insert are one step, so the subscriptions
/// that succeed make a filter the hub takes, and the rest fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscribes_never_exceed_the_hubs_filter_limit_together() {
    let hub = hub_with_filter_types(4).await;
    let subscriber = Arc::new(
        fast(&hub.url(), 3)
            .server_filters(true)
            .connect()
            .await
            .unwrap(),
    );
    for round in 0..20 {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let subscriber = Arc::clone(&subscriber);
                let names = vec![format!("r{round}.{i}.x"), format!("r{round}.{i}.y")];
                tokio::spawn(async move {
                    subscriber
                        .subscribe(names, |_e| Box::pin(async { Ok(()) }))
                        .await
                })
            })
            .collect();
        let mut handles = Vec::new();
        for task in tasks {
            if let Ok(handle) = task.await.unwrap() {
                handles.push(handle);
            }
        }
        // 2 types each, 4 at most: exactly two fit.
        assert_eq!(handles.len(), 2, "round {round}");
        for handle in &handles {
            subscriber.unsubscribe(handle).await.unwrap();
        }
    }
    assert_eq!(hub.stats().control_rejected, 0, "the hub refused a filter");
    assert_eq!(subscriber.connection_stats().disconnects, 0);
    subscriber.shutdown().await.unwrap();
}

/// Failover to a hub with tighter limits than the subscriptions' filter:
/// the filter is not sent to it (it would close the connection with 1008
/// on every reconnect, blame the oldest unacknowledged event, and the
/// breaker would open). The transport asks that hub for every type, says
/// so once in its stats, stays connected, and the subscriptions still get
/// exactly their types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_the_next_hub_refuses_is_widened_once_not_resent_until_the_breaker_opens() {
    init_logs();
    let roomy = Hub::bind("127.0.0.1:0").await.unwrap();
    let tight = hub_with_filter_types(2).await;
    let subscriber = WebSocketTransport::builder(WebSocketConfig::new(roomy.url()))
        .fallback_urls([tight.url()])
        .server_filters(true)
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Limited(5),
        ))
        .delivery(AtLeastOnce {
            ack_timeout: Duration::from_secs(10),
            max_in_flight: 64,
        })
        .connect()
        .await
        .unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(types(&["a", "b", "c"]), got.handler())
        .await
        .unwrap();
    drop(roomy);
    wait_until("on the second hub", LIMIT, || {
        subscriber.connection_stats().url_index == 1 && subscriber.state().is_connected()
    })
    .await;

    let publisher = fast(&tight.url(), 3).connect().await.unwrap();
    for (n, t) in ["a", "z", "c"].iter().enumerate() {
        publisher.publish(event(t, n as u64)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    wait_until("the subscribed types arrive", LIMIT, || got.len() == 2).await;
    // The subscriber's own publish, at least once: acknowledged, not
    // dead-lettered as "refused".
    subscriber.publish(event("own", 9)).await.unwrap();
    subscriber.flush().await.unwrap();

    assert_eq!(got.ns(), vec![0, 2]);
    assert_eq!(
        tight.stats().control_rejected,
        0,
        "the hub refused a filter"
    );
    let stats = subscriber.connection_stats();
    assert_eq!(stats.filters_widened, 1, "{stats:?}");
    assert_eq!((stats.reconnects, stats.gave_up), (1, 0), "{stats:?}");
    assert_eq!(subscriber.dlq_stats().total_pushed, 0);
    assert!(subscriber.health_check().await.is_ok());
    // A subscription over the new hub's limits is refused at once.
    let error = subscriber
        .subscribe(types(&["d"]), |_e| Box::pin(async { Ok(()) }))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, WatchtowerError::Subscription(why) if why.contains("at most 2")),
        "{error:?}"
    );
    publisher.shutdown().await.unwrap();
    subscriber.shutdown().await.unwrap();
}
