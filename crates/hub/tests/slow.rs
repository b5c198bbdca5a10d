//! A slow client loses frames and is closed with 1013; nobody else notices.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use watchtower_core::{Event, EventMetadata};
use watchtower_hub::HubConfig;

use crate::support::*;

/// Events per wave; the publisher waits for the fast client after each, so
/// the fast client's queue never holds more than this.
const WAVE: u64 = 32;

fn big_event(n: u64) -> String {
    let pad = "x".repeat(16 * 1024);
    Event::new(
        "load",
        serde_json::json!({ "n": n, "pad": pad }),
        EventMetadata::default(),
    )
    .to_json()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_dropped_without_slowing_anyone_else() {
    let mut config = HubConfig::default();
    config.client_queue_frames = 4 * WAVE as usize;
    config.slow_client_timeout = Duration::from_millis(200);
    let hub = hub_with(config).await;

    // The slow client never reads, and a tiny receive buffer makes the
    // hub's writes to it back up quickly.
    let mut slow = tiny_window_client(&hub).await;
    stats_until(&hub, "slow client connected", |s| s.clients == 1).await;

    let mut c = clients(&hub, 2).await;
    let (mut fast, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        loop {
            let frame = next_text(&mut fast).await;
            assert!(frame.contains(r#""event_type":"load""#));
            counter.fetch_add(1, SeqCst);
        }
    });

    // Publish until the hub gives up on the slow client; the fast one must
    // get every event of every wave meanwhile.
    let mut published = 0;
    let deadline = Instant::now() + LIMIT;
    while hub.stats().disconnected_slow == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow client was never dropped"
        );
        for _ in 0..WAVE {
            send(&mut publisher, &big_event(published)).await;
            published += 1;
        }
        until("the fast client got the wave", || {
            received.load(SeqCst) == published
        })
        .await;
    }

    let stats = hub.stats();
    assert!(stats.dropped_frames > 0, "{stats:?}");
    assert_eq!(stats.disconnected_slow, 1);
    // Behind what was buffered for it, the slow client finds a 1013.
    assert_eq!(close_code(&mut slow).await, CloseCode::Again);

    // The others carry on.
    for _ in 0..WAVE {
        send(&mut publisher, &big_event(published)).await;
        published += 1;
    }
    until("the fast client got the last wave", || {
        received.load(SeqCst) == published
    })
    .await;
    let stats = stats_until(&hub, "slow client gone", |s| s.clients == 2).await;
    assert_eq!(stats.disconnected_slow, 1);
    reader.abort();
}
