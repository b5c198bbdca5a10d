//! Two hubs deliver one stream: everything once, in the stream's order,
//! filters and no-echo kept; a resend on another hub is dropped.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::HubConfig;
use watchtower_test_support::NatsServer;

use crate::group::{
    AckPublisher, Outcome, frame, hub_on, join, next_event, read_events, stream_name,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{Client, close_code, send, stats_until};

/// Done-when 1: publisher on A, subscribers on B and A: 20,000 events
/// once, in order; a filtered subscriber gets only its type; the publisher
/// gets none of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_deliver_every_event_once_in_order_with_filters_and_no_echo() {
    let Some(nats) = NatsServer::start_or_skip("two_hubs_deliver_every_event_once").await else {
        return;
    };
    let stream = stream_name();
    let mut config = HubConfig::default();
    config.client_queue_frames = 32_768;
    let a = hub_on(&nats, &stream, config.clone()).await;
    let b = hub_on(&nats, &stream, config).await;
    let on_b = join(&b, "").await;
    let mut filtered = join(&b, "").await;
    send(
        &mut filtered,
        r#"{"type":"subscribe","event_types":["keep"],"replace":true}"#,
    )
    .await;
    stats_until(&b, "filter applied", |s| s.control_frames == 1).await;
    let on_a = join(&a, "").await;
    let mut publisher = join(&a, "").await;

    const N: u64 = 20_000;
    // Every subscriber reads as it goes (and so answers the hubs' pings):
    // one that does not read for `ping_interval + pong_timeout` is rightly
    // dropped as dead, and a loaded machine can take that long.
    let read = |mut client: Client, n: u64| {
        tokio::spawn(async move {
            let got = read_events(&mut client, n as usize).await;
            (got, client)
        })
    };
    let reader_b = read(on_b, N);
    let reader_a = read(on_a, N);
    let reader_filtered = read(filtered, N / 10);
    for n in 0..N {
        let t = if n % 10 == 0 { "keep" } else { "other" };
        publisher.feed(Message::text(frame(t, 1, n))).await.unwrap();
    }
    publisher.flush().await.unwrap();

    let want: Vec<(u64, u64)> = (0..N).map(|n| (1, n)).collect();
    let (got, _on_b) = reader_b.await.unwrap();
    assert_eq!(got, want, "B: every event once, in order");
    let (got, mut on_a) = reader_a.await.unwrap();
    assert_eq!(got, want, "A too");
    let (kept, mut filtered) = reader_filtered.await.unwrap();
    let want_kept: Vec<(u64, u64)> = (0..N).step_by(10).map(|n| (1, n)).collect();
    assert_eq!(kept, want_kept, "the filter holds on B");

    // No echo: the next event the publisher gets is another client's.
    send(&mut on_a, &frame("other", 2, 0)).await;
    let first = next_event(&mut publisher).await;
    assert_eq!(first["id"], "p2-0", "the publisher got its own event back");
    // And the filtered client got nothing past its type: the next event
    // it gets is the next of its type, sent after the other one.
    send(&mut on_a, &frame("keep", 3, 0)).await;
    let next = next_event(&mut filtered).await;
    assert_eq!(next["id"], "p3-0", "the filtered client got another type");
    // A counts an event stored when JetStream's ack reaches its publisher
    // task, which may be after the consumers delivered it.
    let stats = stats_until(&a, "A's publishes all stored", |s| {
        s.backplane_stored == N + 2
    })
    .await;
    assert_eq!(stats.backplane_failures, 0);
}

/// Done-when 2: an at-least-once publisher cut from A after sending,
/// reconnecting to B and resending: each id delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_on_another_hub_is_delivered_once() {
    let Some(nats) = NatsServer::start_or_skip("a_resend_on_another_hub_is_delivered_once").await
    else {
        return;
    };
    let stream = stream_name();
    let a = hub_on(&nats, &stream, HubConfig::default()).await;
    let b = hub_on(&nats, &stream, HubConfig::default()).await;
    let mut on_a = join(&a, "").await;
    let mut on_b = join(&b, "").await;

    let frames: Vec<String> = (0..200).map(|n| frame("t", 1, n)).collect();
    let mut publisher = AckPublisher::new(frames);
    assert_eq!(publisher.run(&a.url()).await, Outcome::AllAcked);
    // As if the acks were lost with the connection: all of it again, on B.
    publisher.acked = 0;
    assert_eq!(publisher.run(&b.url()).await, Outcome::AllAcked);
    // A marker after the resends: once it is here, any duplicate would be.
    let mut marker = AckPublisher::new(vec![frame("t", 2, 0)]);
    assert_eq!(marker.run(&b.url()).await, Outcome::AllAcked);

    let mut want: Vec<(u64, u64)> = (0..200).map(|n| (1, n)).collect();
    want.push((2, 0));
    assert_eq!(read_events(&mut on_a, 201).await, want);
    assert_eq!(read_events(&mut on_b, 201).await, want);
    let stats = a.stats() + b.stats();
    assert_eq!(stats.backplane_delivered, 2 * 201);
}

/// NATS's default `max_payload` (1 MiB) equals the hub's default message
/// limit: the hub lowers its limit so an event plus headers fits, and an
/// event over it is refused with 1009 rather than lost at the publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_big_for_the_nats_payload_limit_is_refused_as_oversize() {
    let Some(nats) = NatsServer::start_or_skip("an_event_too_big_for_the_nats_payload").await
    else {
        return;
    };
    let a = hub_on(&nats, &stream_name(), HubConfig::default()).await;
    let mut client = join(&a, "").await;
    let big = serde_json::json!({
        "id": "big",
        "event_type": "t",
        "timestamp": "2026-01-01T00:00:00Z",
        "payload": "x".repeat((1 << 20) - 200),
        "metadata": {}
    })
    .to_string();
    assert!(big.len() < 1 << 20);
    let _ = client.send(Message::text(big)).await;
    assert_eq!(close_code(&mut client).await, CloseCode::Size);
    assert_eq!(a.stats().backplane_failures, 0);
}
