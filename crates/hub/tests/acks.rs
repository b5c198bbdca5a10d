//! At-least-once publishing: acks for clients that say hello, and the
//! de-duplication window.

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use watchtower_core::{ControlFrame, Event, EventMetadata};
use watchtower_hub::HubConfig;

use crate::support::*;

const HELLO: &str = r#"{"type":"hello","acks":true}"#;

/// `Some(upto)` if `frame` is an ack.
fn ack_of(frame: &str) -> Option<u64> {
    match ControlFrame::from_json(frame.as_bytes()) {
        Some(ControlFrame::Ack { upto }) => Some(upto),
        _ => None,
    }
}

/// Reads until the ack for `upto`; returns every ack seen (each must be
/// larger than the last, none past `upto`) and the other frames on the way.
async fn acks_until(client: &mut Client, upto: u64) -> (Vec<u64>, Vec<String>) {
    let (mut acks, mut others) = (Vec::new(), Vec::new());
    loop {
        let frame = next_text(client).await;
        let Some(n) = ack_of(&frame) else {
            others.push(frame);
            continue;
        };
        assert!(
            acks.last().is_none_or(|&last| n > last),
            "{acks:?} then {n}"
        );
        assert!(n <= upto, "ack for {n}, but only {upto} frames were sent");
        acks.push(n);
        if n == upto {
            return (acks, others);
        }
    }
}

/// Reads `expected.len()` frames; they must be exactly `expected`.
async fn receive(client: &mut Client, expected: &[&String]) {
    for &frame in expected {
        assert_eq!(&next_text(client).await, frame);
    }
}

#[tokio::test]
async fn acks_count_every_frame_sent_malformed_included_control_frames_not() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());

    let events: Vec<String> = (0..7).map(|n| event("acked", n)).collect();
    send(&mut publisher, HELLO).await;
    for frame in &events[..3] {
        send(&mut publisher, frame).await;
    }
    send(&mut publisher, "not json").await; // malformed: counted
    send(&mut publisher, r#"{"type":"subscribe","event_types":[]}"#).await; // control: not
    publisher
        .send(Message::binary(events[3].clone().into_bytes()))
        .await
        .unwrap();
    send(&mut publisher, &events[4]).await;

    // Six data frames; the plain subscriber gets the five events and no ack.
    let (mut acks, relayed) = acks_until(&mut publisher, 6).await;
    assert!(relayed.is_empty(), "{relayed:?}");
    receive(&mut sub, &events[..5].iter().collect::<Vec<_>>()).await;

    // Acks are cumulative over the connection.
    send(&mut publisher, &events[5]).await;
    send(&mut publisher, &events[6]).await;
    let (more, _) = acks_until(&mut publisher, 8).await;
    acks.extend(more);
    receive(&mut sub, &[&events[5], &events[6]]).await;

    let stats = hub.stats();
    assert_eq!(stats.acks_sent, acks.len() as u64, "{acks:?}");
    assert_eq!(stats.control_frames, 2);
    assert_eq!(stats.malformed.total(), 1);
    assert_eq!((stats.events_in, stats.duplicates_dropped), (7, 0));
    assert_eq!(stats.dedup_window_ids, 7);
}

/// An event with a `pad` of `bytes` bytes.
fn padded_event(n: u64, bytes: usize) -> String {
    Event::new(
        "load",
        serde_json::json!({ "n": n, "pad": "x".repeat(bytes) }),
        EventMetadata::default(),
    )
    .to_json()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_overtakes_the_backlog_queued_for_a_slow_subscriber() {
    // 16 KiB frames, ~16 MB in all: far more than the socket buffers
    // between the hub and a client that does not read can hold (the
    // kernel lets the hub's send buffer grow to 4 MB here).
    const BACKLOG: u64 = 1000;
    const OWN: u64 = 3;
    let mut config = HubConfig::default();
    // Nothing is dropped: room for the whole backlog, in frames and bytes.
    config.client_queue_frames = 4 * BACKLOG as usize;
    config.client_queue_bytes = 64 << 20;
    config.max_message_size = 16 << 20;
    let hub = hub_with(config).await;

    // The ack-mode client does not read for a while, and a tiny receive
    // buffer makes the hub's writes to it back up at once.
    let mut slow = tiny_window_client(&hub).await;
    stats_until(&hub, "slow client connected", |s| s.clients == 1).await;
    let mut publisher = clients(&hub, 1).await.pop().unwrap();

    // An 8 MB event holds the hub's writer for `slow` in one flush while
    // the backlog queues behind it. Once `slow` has read it, the writer
    // takes the whole backlog as one batch; it is part-way through that
    // batch, stuck on the full socket, when the ack becomes due.
    send(&mut publisher, &padded_event(u64::MAX, 8 << 20)).await;
    for n in 0..BACKLOG {
        let frame = padded_event(n, 16 * 1024);
        publisher.feed(Message::text(frame)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    stats_until(&hub, "backlog queued", |s| s.frames_queued == 1 + BACKLOG).await;
    assert!(next_text(&mut slow).await.len() > 8 << 20);
    stats_until(&hub, "the writer took the backlog", |s| s.frames_out >= 1).await;

    send(&mut slow, HELLO).await;
    for n in 0..OWN {
        send(&mut slow, &event("from.slow", n)).await;
    }
    stats_until(&hub, "own events relayed", |s| {
        s.events_in == 1 + BACKLOG + OWN
    })
    .await;

    // Only what the socket had already taken comes before the ack.
    let (_, before) = acks_until(&mut slow, OWN).await;
    assert!(
        (before.len() as u64) < BACKLOG / 2,
        "the ack came after {} of {BACKLOG} backlog frames",
        before.len()
    );
    // The backlog follows, complete and in order, with no further ack.
    let mut next = 0;
    for frame in before {
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["payload"]["n"], next);
        next += 1;
    }
    while next < BACKLOG {
        let frame = next_text(&mut slow).await;
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["payload"]["n"], next, "{}", &frame[..60]);
        next += 1;
    }
    let stats = hub.stats();
    assert_eq!(stats.dropped_frames, 0);
    assert!((1..=OWN).contains(&stats.acks_sent), "{stats:?}");
}

#[tokio::test]
async fn a_client_that_says_no_hello_gets_no_acks_and_no_dedup() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut plain) = (c.pop().unwrap(), c.pop().unwrap());

    let frame = event("plain", 1);
    send(&mut plain, &frame).await;
    send(&mut plain, &frame).await;
    receive(&mut sub, &[&frame, &frame]).await;
    // No ack came back: the first frame the publisher sees is this one.
    let sentinel = event("sentinel", 2);
    send(&mut sub, &sentinel).await;
    assert_eq!(next_text(&mut plain).await, sentinel);

    let stats = hub.stats();
    assert_eq!((stats.acks_sent, stats.duplicates_dropped), (0, 0));
    assert_eq!(stats.dedup_window_ids, 0, "plain events are not recorded");

    // Not recorded, so the same id from an ack-mode client is new.
    let mut acked = clients(&hub, 1).await.pop().unwrap();
    send(&mut acked, HELLO).await;
    send(&mut acked, &frame).await;
    acks_until(&mut acked, 1).await;
    assert_eq!(next_text(&mut sub).await, frame);
    let stats = hub.stats();
    assert_eq!((stats.duplicates_dropped, stats.dedup_window_ids), (0, 1));
}

#[tokio::test]
async fn a_duplicate_is_relayed_once_and_acked_also_after_a_reconnect() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let e: Vec<String> = (0..4).map(|n| event("once", n)).collect();

    send(&mut publisher, HELLO).await;
    for frame in [&e[0], &e[1], &e[0], &e[2]] {
        send(&mut publisher, frame).await;
    }
    let (first, _) = acks_until(&mut publisher, 4).await;
    // A relayed copy of the resent e[0] would arrive before e[2].
    receive(&mut sub, &[&e[0], &e[1], &e[2]]).await;

    // The publisher reconnects and resends what it is unsure of.
    publisher.close(None).await.unwrap();
    stats_until(&hub, "publisher gone", |s| s.clients == 1).await;
    let mut publisher = clients(&hub, 1).await.pop().unwrap();
    send(&mut publisher, HELLO).await;
    for frame in [&e[1], &e[2], &e[3]] {
        send(&mut publisher, frame).await;
    }
    let (second, _) = acks_until(&mut publisher, 3).await;
    assert_eq!(next_text(&mut sub).await, e[3]);

    let stats = hub.stats();
    assert_eq!((stats.events_in, stats.duplicates_dropped), (4, 3));
    assert_eq!(stats.acks_sent, (first.len() + second.len()) as u64);
    assert_eq!(stats.dedup_window_ids, 4);
}

#[tokio::test]
async fn the_window_forgets_the_oldest_id_when_full() {
    let mut config = HubConfig::default();
    config.dedup_window_events = 2;
    let hub = hub_with(config).await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let e: Vec<String> = (0..4).map(|n| event("window", n)).collect();

    send(&mut publisher, HELLO).await;
    // e[0] is pushed out by e[2], so its resend is new; e[2]'s is not.
    for frame in [&e[0], &e[1], &e[2], &e[0], &e[2], &e[3]] {
        send(&mut publisher, frame).await;
    }
    acks_until(&mut publisher, 6).await;
    receive(&mut sub, &[&e[0], &e[1], &e[2], &e[0], &e[3]]).await;
    let stats = hub.stats();
    assert_eq!((stats.duplicates_dropped, stats.dedup_window_ids), (1, 2));
}

#[tokio::test]
async fn the_window_forgets_an_id_after_its_age() {
    let mut config = HubConfig::default();
    config.dedup_window_age = Duration::from_millis(200);
    let hub = hub_with(config).await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let frame = event("aged", 0);

    send(&mut publisher, HELLO).await;
    send(&mut publisher, &frame).await;
    acks_until(&mut publisher, 1).await;
    assert_eq!(next_text(&mut sub).await, frame);
    // Nothing else happens meanwhile: the id ages out by itself.
    stats_until(&hub, "the id aged out", |s| s.dedup_window_ids == 0).await;

    send(&mut publisher, &frame).await;
    acks_until(&mut publisher, 2).await;
    assert_eq!(next_text(&mut sub).await, frame);
    let stats = hub.stats();
    assert_eq!((stats.duplicates_dropped, stats.dedup_window_ids), (0, 1));
}

/// Connects (presenting the identity `id`, if any) in ack mode, sends
/// `frames` and waits for their ack; returns the connection.
async fn publish_acked(hub: &watchtower_hub::Hub, id: Option<&str>, frames: &[String]) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = hub.url().into_client_request().unwrap();
    if let Some(id) = id {
        request
            .headers_mut()
            .insert("Watchtower-Client-Id", HeaderValue::from_str(id).unwrap());
    }
    let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut client, HELLO).await;
    for frame in frames {
        client.feed(Message::text(frame.as_str())).await.unwrap();
    }
    client.flush().await.unwrap();
    acks_until(&mut client, frames.len() as u64).await;
    client
}

fn junk(owner: u64, n: u64) -> Vec<String> {
    (0..n).map(|i| event("junk", owner * 1_000 + i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_cannot_flush_a_clients_ids_out_of_the_window() {
    let mut config = HubConfig::default();
    config.dedup_window_events = 1_000;
    config.dedup_client_share = 100;
    let hub = hub_with(config).await;
    let original = event("order", 1);
    drop(publish_acked(&hub, Some("victim"), std::slice::from_ref(&original)).await);
    // Eleven connections at once, each filling its share: 1,100 ids for
    // a window of 1,000.
    let frames: Vec<Vec<String>> = (0..11).map(|owner| junk(owner, 100)).collect();
    let _flooders =
        futures_util::future::join_all(frames.iter().map(|f| publish_acked(&hub, None, f))).await;
    assert_eq!(hub.stats().dedup_window_ids, 1_000);
    // The victim's resend, on a new connection: still recognised.
    publish_acked(&hub, Some("victim"), &[original]).await;
    assert_eq!(hub.stats().duplicates_dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_one_address_do_not_share_a_pool_in_the_window() {
    let mut config = HubConfig::default();
    config.dedup_client_share = 100;
    let hub = hub_with(config).await;
    let original = event("order", 1);
    drop(publish_acked(&hub, Some("victim"), std::slice::from_ref(&original)).await);
    // Three other clients from the same address come and go, each with
    // a full share.
    for owner in 0..3 {
        let id = format!("neighbour-{owner}");
        drop(publish_acked(&hub, Some(&id), &junk(owner, 100)).await);
    }
    publish_acked(&hub, Some("victim"), &[original]).await;
    assert_eq!(hub.stats().duplicates_dropped, 1);
}
