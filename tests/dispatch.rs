//! Subscriptions receive what they asked for, once each, in order.

use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::prelude::*;

use crate::support::{Collector, LIMIT, event, fast, fast_blocking};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_each_get_every_match_once_in_order() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let ab = Collector::default();
    let bc = Collector::default();
    let h1 = transport
        .subscribe(vec!["a".into(), "b".into()], ab.handler())
        .await
        .unwrap();
    let h2 = transport
        .subscribe(vec!["b".into(), "c".into()], bc.handler())
        .await
        .unwrap();
    assert_ne!(h1, h2);
    wait_until("connected", LIMIT, || server.connections() == 1).await;

    let types = ["a", "b", "c", "d"];
    for n in 0..400u64 {
        server.send_event(&event(types[(n % 4) as usize], n));
    }
    // The last event is a `d`, which no handler sees: wait for the reader
    // to have counted it too (as unmatched, its last step), not only for
    // the handlers.
    wait_until("all events read and dispatched", LIMIT, || {
        let stats = transport.connection_stats();
        ab.len() == 200 && bc.len() == 200 && stats.events_received + stats.events_unmatched == 500
    })
    .await;

    let expect = |keep: &[&str]| -> Vec<u64> {
        (0..400u64)
            .filter(|n| keep.contains(&types[(*n % 4) as usize]))
            .collect()
    };
    assert_eq!(ab.ns(), expect(&["a", "b"]));
    assert_eq!(bc.ns(), expect(&["b", "c"]));
    let stats = transport.connection_stats();
    assert_eq!(stats.events_received, 400);
    assert_eq!(stats.events_unmatched, 100, "the `d` events reach nobody");
    assert_eq!(stats.events_dispatched, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_type_list_receives_everything() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let all = Collector::default();
    transport.subscribe(vec![], all.handler()).await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    for n in 0..10 {
        server.send_event(&event(&format!("type.{n}"), n));
    }
    wait_until("everything", LIMIT, || all.len() == 10).await;
    assert_eq!(all.ns(), (0..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_frames_both_dispatch() {
    use tokio_tungstenite::tungstenite::Message;
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let got = Collector::default();
    transport
        .subscribe(vec!["t".into()], got.handler())
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    server.send_text(event("t", 1).to_json().unwrap());
    server.send(Message::Binary(
        event("t", 2).to_json().unwrap().into_bytes().into(),
    ));
    wait_until("both frames", LIMIT, || got.len() == 2).await;
    assert_eq!(got.ns(), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_the_server_in_order() {
    let server = RawServer::start().await;
    let transport = fast_blocking(&server.url(), 3).connect().await.unwrap();
    for n in 0..5_000 {
        transport.publish(event("p", n)).await.unwrap();
    }
    transport.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while server.received_count() != 5_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 5,000 received; the server accepted {} connections; {:?}",
            server.received_count(),
            server.accepted(),
            transport.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let ns: Vec<u64> = server
        .received_events()
        .iter()
        .map(crate::support::n_of)
        .collect();
    assert_eq!(ns, (0..5_000).collect::<Vec<_>>());
    assert_eq!(transport.connection_stats().frames_out, 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery_and_unknown_handles_are_errors() {
    let server = RawServer::start().await;
    let mut transport = fast(&server.url(), 3).connect().await.unwrap();
    let got = Collector::default();
    let handle = transport
        .subscribe(vec!["t".into()], got.handler())
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    server.send_event(&event("t", 1));
    wait_until("first event", LIMIT, || got.len() == 1).await;

    // Through the spec's trait, as `&mut self`.
    Subscriber::unsubscribe(&mut transport, &handle)
        .await
        .unwrap();
    assert_eq!(transport.subscription_count(), 0);
    let again = transport.unsubscribe(&handle).await.unwrap_err();
    assert!(matches!(again, WatchtowerError::Subscription(_)), "{again}");

    server.send_event(&event("t", 2));
    // A fresh subscription proves event 2 was read and dispatched; the old
    // handler must not have seen it.
    let later = Collector::default();
    transport
        .subscribe(vec!["t".into()], later.handler())
        .await
        .unwrap();
    server.send_event(&event("t", 3));
    wait_until("event 3 on the new subscription", LIMIT, || {
        later.ns().contains(&3)
    })
    .await;
    assert_eq!(got.ns(), vec![1]);

    let other = fast(&server.url(), 3).connect().await.unwrap();
    let foreign = other
        .subscribe(vec![], Collector::default().handler())
        .await
        .unwrap();
    let e = transport.unsubscribe(&foreign).await.unwrap_err();
    assert!(e.to_string().contains("another transport"), "{e}");
    let e = transport
        .subscribe(vec!["".into()], got.handler())
        .await
        .unwrap_err();
    assert!(matches!(e, WatchtowerError::Subscription(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_typed_subscription_filters_and_counts_like_many() {
    // One subscription takes frames unread (it decodes them anyway); it
    // must filter, count and classify exactly as routing by header does.
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let got = Collector::default();
    transport
        .subscribe(vec!["t".into()], got.handler())
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    server.send_event(&event("u", 0));
    server.send_text(r#"{"id":"x","event_type":"t","metadata":{"timestamp":false}}"#);
    server.send_text(r#"{ "type": "subscribe", "event_types": [] }"#);
    server.send_event(&event("t", 1));
    wait_until("the matching event", LIMIT, || got.len() == 1).await;
    let stats = transport.connection_stats();
    assert_eq!(got.ns(), vec![1]);
    assert_eq!(stats.events_unmatched, 1, "{stats:?}");
    assert_eq!(stats.malformed.wrong_type, 1, "{stats:?}");
    assert_eq!(stats.control_frames_in, 1, "{stats:?}");
    // Routed by header like many subscriptions: the frame with the bad
    // timestamp has a good header, so it is received and dispatched, and
    // its subscription finds it malformed.
    assert_eq!(stats.events_received, 3, "{stats:?}");
    assert_eq!(stats.events_dispatched, 2, "{stats:?}");
}
