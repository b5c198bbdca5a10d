//! Issue 27 #4: bounded input. An event type longer than
//! `MAX_EVENT_TYPE_LEN` is refused when the frame is read, on every hub
//! (with a backplane or without), with its own reason; it never reaches
//! NATS, so it cannot make a subject the server refuses and knock the hub
//! off NATS.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use watchtower_core::MAX_EVENT_TYPE_LEN;
use watchtower_hub::HubConfig;
use watchtower_test_support::NatsServer;

use crate::group::{AckPublisher, Outcome, frame, hub_on, join, read_events, stream_name};
use crate::support::{hub, stats_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_event_type_is_refused_and_cannot_knock_a_hub_off_nats() {
    let Some(nats) = NatsServer::start_or_skip("an_over_long_event_type_is_refused").await else {
        return;
    };
    let stream = stream_name();
    let a = hub_on(&nats, &stream, HubConfig::default()).await;
    let b = hub_on(&nats, &stream, HubConfig::default()).await;
    let mut sub = join(&b, "").await;
    // At f945df2 a 4 KB type made the subject longer than the server's
    // control line: the server dropped A's connection, and the honest
    // publisher's events in flight failed with it.
    let mut attacker = join(&a, "").await;
    let long = "x".repeat(4_000);
    let honest_frames: Vec<String> = (0..300).map(|n| frame("t", 1, n)).collect();
    let mut honest = AckPublisher::new(honest_frames);
    let attack = async {
        for n in 0..20 {
            attacker
                .send(Message::text(frame(&long, 9, n)))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let url = a.url();
    let (outcome, ()) = tokio::join!(honest.run(&url), attack);
    assert_eq!(
        outcome,
        Outcome::AllAcked,
        "the honest publisher was cut off"
    );
    // One more at the limit: accepted and delivered.
    let at_limit = "y".repeat(MAX_EVENT_TYPE_LEN);
    let mut last = AckPublisher::new(vec![frame(&at_limit, 2, 0)]);
    assert_eq!(last.run(&a.url()).await, Outcome::AllAcked);
    let mut want: Vec<(u64, u64)> = (0..300).map(|n| (1, n)).collect();
    want.push((2, 0));
    assert_eq!(read_events(&mut sub, 301).await, want);
    let stats = stats_until(&a, "the long types counted", |s| s.malformed.too_long == 20).await;
    assert_eq!(stats.backplane_failures, 0, "{stats:?}");
    assert_eq!(stats.malformed.total(), 20, "{stats:?}");

    // A hub without a backplane refuses it the same way.
    let plain = hub().await;
    let mut client = join(&plain, "").await;
    client
        .send(Message::text(frame(
            &"z".repeat(MAX_EVENT_TYPE_LEN + 1),
            3,
            0,
        )))
        .await
        .unwrap();
    stats_until(&plain, "refused without NATS too", |s| {
        s.malformed.too_long == 1 && s.events_in == 0
    })
    .await;
}
