//! Graceful shutdown and drop.

use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use watchtower_hub::Hub;

use crate::support::*;

#[tokio::test]
async fn shutdown_delivers_what_is_queued_closes_with_1001_and_frees_the_port() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let mut c = clients(&hub, 3).await;
    let publisher = c.pop().unwrap();

    let frames: Vec<String> = (0..5).map(|n| event("last.words", n)).collect();
    let mut publisher = publisher;
    for frame in &frames {
        send(&mut publisher, frame).await;
    }
    stats_until(&hub, "events queued", |s| s.frames_queued == 10).await;

    // Each receiver reads everything, then the close.
    let readers: Vec<_> = c
        .into_iter()
        .map(|mut client| {
            let frames = frames.clone();
            tokio::spawn(async move {
                for frame in &frames {
                    assert_eq!(&next_text(&mut client).await, frame);
                }
                close_code(&mut client).await
            })
        })
        .collect();
    let publisher_reader = tokio::spawn(async move { close_code(&mut publisher).await });

    let stats = hub.shutdown().await;
    assert_eq!(stats.clients, 0);
    assert_eq!(stats.connections_total, 3);
    for reader in readers {
        assert_eq!(reader.await.unwrap(), CloseCode::Away);
    }
    assert_eq!(publisher_reader.await.unwrap(), CloseCode::Away);

    // The port is free at once.
    let again = Hub::bind(addr).await.unwrap();
    assert_eq!(again.local_addr(), addr);
    clients(&again, 1).await;
}

#[tokio::test]
async fn a_handle_requests_shutdown() {
    let hub = hub().await;
    let handle = hub.handle();
    assert!(!handle.is_shutting_down());
    let mut client = clients(&hub, 1).await.pop().unwrap();
    let reader = tokio::spawn(async move { close_code(&mut client).await });

    handle.shutdown();
    timeout(LIMIT, hub.shutdown_requested()).await.unwrap();
    assert!(handle.is_shutting_down());
    let stats = hub.shutdown().await;
    assert_eq!(reader.await.unwrap(), CloseCode::Away);
    assert_eq!(stats, handle.stats());
}

#[tokio::test]
async fn dropping_the_hub_drops_every_connection() {
    let hub = hub().await;
    let mut client = clients(&hub, 1).await.pop().unwrap();
    drop(hub);
    let ended = timeout(LIMIT, async {
        // No close frame: the connection just ends.
        while let Some(Ok(_)) = client.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the connection outlived the hub");
}

/// A stop stops every reader (and so every ack) before any subscriber's
/// queue closes: each event a publisher was acknowledged for reaches the
/// subscriber that stayed connected and reading until the 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_reach_reading_subscribers_through_a_stop() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use watchtower_core::ControlFrame;

    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut subscriber, publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let received = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&received);
    let subscriber = tokio::spawn(async move {
        // Every event, until the close frame.
        while let Some(Ok(message)) = subscriber.next().await {
            match message {
                Message::Text(_) => {
                    count.fetch_add(1, SeqCst);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let (mut sink, mut stream) = publisher.split();
    sink.send(Message::text(r#"{"type":"hello","acks":true}"#))
        .await
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let upto = Arc::clone(&acked);
    let acks = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Text(text) = message
                && let Some(ControlFrame::Ack { upto: n }) =
                    ControlFrame::from_json(text.as_bytes())
            {
                upto.fetch_max(n, SeqCst);
            }
        }
    });
    let publishing = tokio::spawn(async move {
        let mut n = 0;
        // Flat out, until the hub stops reading and the socket fills or
        // closes.
        while sink.send(Message::text(event("t", n))).await.is_ok() {
            n += 1;
        }
    });
    until("events flow", || received.load(SeqCst) >= 2_000).await;
    let stats = hub.shutdown().await;
    subscriber.await.unwrap();
    publishing.abort();
    let _ = acks.await;
    assert_eq!(stats.dropped_frames, 0, "the subscriber kept up");
    let (acked, received) = (acked.load(SeqCst), received.load(SeqCst));
    assert!(
        acked <= received,
        "{acked} events acknowledged, {received} reached the subscriber"
    );
}
