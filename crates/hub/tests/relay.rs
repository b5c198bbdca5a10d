//! Relay: every other client, byte-for-byte, never back to the sender.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn relays_to_every_other_client_byte_for_byte_never_back() {
    let hub = hub().await;
    let mut c = clients(&hub, 3).await;
    let (mut b, mut a, mut publisher) = (c.pop().unwrap(), c.pop().unwrap(), c.pop().unwrap());

    let mut frames: Vec<String> = (0..10).map(|n| event("order.created", n)).collect();
    // Odd spacing and unknown fields survive: frames are relayed as
    // received, never re-serialised.
    frames.push(r#"{ "event_type" : "odd.spacing",  "id":"evt_x", "extra": [1, 2.50] }"#.into());
    for frame in &frames {
        send(&mut publisher, frame).await;
    }
    for client in [&mut a, &mut b] {
        for frame in &frames {
            assert_eq!(&next_text(client).await, frame);
        }
    }

    // Had anything been relayed back to the publisher, it would arrive
    // before this sentinel from `a`.
    let sentinel = event("sentinel", 0);
    send(&mut a, &sentinel).await;
    assert_eq!(next_text(&mut publisher).await, sentinel);
    assert_eq!(next_text(&mut b).await, sentinel);

    let stats = stats_until(&hub, "every frame written", |s| s.frames_out == 24).await;
    assert_eq!(stats.events_in, 12);
    assert_eq!(stats.frames_queued, 24);
    assert_eq!(stats.malformed.total(), 0);
}

#[tokio::test]
async fn binary_events_are_relayed_as_text() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut receiver, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let frame = event("binary.sent", 1);
    publisher
        .send(Message::binary(frame.clone().into_bytes()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut receiver).await, frame);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_publishers_each_stream_arrives_complete_and_in_order() {
    const EVENTS: u64 = 2_000;
    let hub = hub().await;
    let mut c = clients(&hub, 4).await;
    let mut receivers = vec![c.pop().unwrap(), c.pop().unwrap()];
    let publishers = [c.pop().unwrap(), c.pop().unwrap()];

    let sends: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(p, mut client)| {
            tokio::spawn(async move {
                for n in 0..EVENTS {
                    // Feed, flush now and then: the hub sees real bursts.
                    client
                        .feed(Message::text(event(&format!("from.{p}"), n)))
                        .await
                        .unwrap();
                    if n % 100 == 99 {
                        client.flush().await.unwrap();
                    }
                }
                client.flush().await.unwrap();
                client
            })
        })
        .collect();

    for receiver in &mut receivers {
        let mut next = [0u64; 2];
        for _ in 0..2 * EVENTS {
            let frame: serde_json::Value =
                serde_json::from_str(&next_text(receiver).await).unwrap();
            let p = usize::from(frame["event_type"] == "from.1");
            assert_eq!(frame["payload"]["n"], next[p], "publisher {p} out of order");
            next[p] += 1;
        }
    }
    for send in sends {
        send.await.unwrap();
    }
    let stats = hub.stats();
    assert_eq!(stats.events_in, 2 * EVENTS);
    assert_eq!(stats.dropped_frames, 0);
}
