//! Engine behaviour that needed new API (issue 11): the write timeout, the
//! `Block` mailbox, and one `publish` through the traits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use watchtower_core::BoxFuture;
use watchtower_test_support::{FaultProxy, Mode, RawServer, wait_until};
use watchtower_websocket::MailboxOverflow;
use watchtower_websocket::prelude::*;

use crate::support::{Collector, LIMIT, event, fast, fast_blocking, init_logs};

/// A server that keeps talking but never reads: keepalive sees a live peer,
/// and only the write timeout notices that nothing we write is taken.
async fn deaf_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, _never_read) = ws.split();
                for n in 0..1_000u64 {
                    let chatter = serde_json::to_string(&event("chatter", n)).unwrap();
                    if sink.send(Message::text(chatter)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_is_replaced_after_the_write_timeout() {
    init_logs();
    let url = deaf_server().await;
    let transport = fast(&url, 1_000)
        .write_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let pad = "x".repeat(64 * 1024);
    // Far more than the socket buffers hold: the writer must stall.
    for n in 0..400u64 {
        let big = Event::new(
            "big",
            serde_json::json!({ "n": n, "pad": pad }),
            EventMetadata::default(),
        );
        transport.publish(big).await.unwrap();
    }
    wait_until("the stalled connection is replaced", LIMIT, || {
        let stats = transport.connection_stats();
        stats.write_timeouts >= 1 && stats.reconnects >= 1
    })
    .await;
    let stats = transport.connection_stats();
    assert!(
        stats.events_received > 0,
        "the server kept talking: {stats:?}"
    );
    assert_eq!(stats.keepalive_timeouts, 0, "{stats:?}");
}

/// An event of `kib` KiB.
fn padded(n: u64, kib: usize) -> Event {
    let pad = "x".repeat(kib * 1024);
    Event::new(
        "big",
        serde_json::json!({ "n": n, "pad": pad }),
        EventMetadata::default(),
    )
}

/// The write timeout is on progress, not on a batch's size: through a link
/// of 4 MiB/s, 16 MiB of batches take seconds past what the socket buffers
/// hold (4 MiB here) to go out — several times the 1 s write timeout —
/// bytes moving all along, and the connection is kept. (The kernel wakes a
/// blocked writer once a third of its send buffer has drained, so progress
/// is seen in steps of about 1.3 MiB, 0.33 s apart at this rate: the
/// timeout is three times that.) When the same link stops moving (1 byte
/// a second: the proxy holds what it read), it is still called stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_that_keeps_moving_is_not_called_stalled_and_a_stalled_one_is() {
    init_logs();
    let server = RawServer::start().await;
    let proxy = FaultProxy::start(server.addr()).await;
    let transport = fast_blocking(&proxy.url("/events"), 1_000)
        .write_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    proxy.set_mode(Mode::Bandwidth(4 << 20));
    let events = 512u64;
    for n in 0..events {
        transport.publish(padded(n, 32)).await.unwrap();
    }
    tokio::time::timeout(LIMIT, transport.flush())
        .await
        .expect("flushed in time")
        .unwrap();
    wait_until("the server has every event", LIMIT, || {
        server.received_count() as u64 == events
    })
    .await;
    let stats = transport.connection_stats();
    assert_eq!(
        (stats.write_timeouts, stats.disconnects),
        (0, 0),
        "{stats:?}"
    );

    proxy.set_mode(Mode::Bandwidth(1));
    for n in 0..events {
        transport.publish(padded(events + n, 32)).await.unwrap();
    }
    wait_until("the stalled link is called stalled", LIMIT, || {
        transport.connection_stats().write_timeouts >= 1
    })
    .await;
    assert_eq!(transport.connection_stats().keepalive_timeouts, 0);
    drop(transport);
}

/// `MailboxOverflow::Block`: a slow subscription loses nothing; the reader
/// stops while its mailbox is full, so TCP holds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_mailbox_stops_the_reader_instead_of_dropping() {
    init_logs();
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3)
        .mailbox_size(16)
        .mailbox_overflow(MailboxOverflow::Block)
        .connect()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let got = Collector::default();
    let (g, record) = (Arc::clone(&gate), got.clone());
    transport
        .subscribe(vec!["t".into()], move |event| {
            let (gate, record) = (Arc::clone(&g), record.clone());
            Box::pin(async move {
                gate.acquire()
                    .await
                    .map_err(|e| WatchtowerError::Subscription(e.to_string()))?
                    .forget();
                record.handler()(event).await
            })
        })
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    for n in 0..3_000 {
        server.send_event(&event("t", n));
    }
    wait_until("the mailbox is full", LIMIT, || {
        transport.connection_stats().frames_in >= 16
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The reader waits: it has read what fits and not a frame more.
    assert!(transport.connection_stats().frames_in <= 17);
    gate.add_permits(3_000);
    wait_until("every event handled", LIMIT, || got.len() == 3_000).await;
    assert_eq!(got.ns(), (0..3_000).collect::<Vec<_>>());
    let stats = transport.connection_stats();
    assert_eq!(stats.mailbox_overflow, 0, "{stats:?}");
    assert_eq!(transport.dlq_stats().total_pushed, 0);
}

/// `publish` is declared once, on `Transport`: generic code bound by
/// either trait, or both, calls it without naming the trait.
fn publish_generic<T: Transport + Subscriber>(
    t: &T,
    e: Event,
) -> BoxFuture<'_, Result<(), WatchtowerError>> {
    t.publish(e)
}

fn publish_through_subscriber<T: Subscriber>(
    t: &T,
    e: Event,
) -> BoxFuture<'_, Result<(), WatchtowerError>> {
    t.publish(e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_through_the_traits_is_not_ambiguous() {
    init_logs();
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    publish_generic(&transport, event("t", 1)).await.unwrap();
    publish_through_subscriber(&transport, event("t", 2))
        .await
        .unwrap();
    let dynamic: &dyn Subscriber = &transport;
    dynamic.publish(event("t", 3)).await.unwrap();
    transport.flush().await.unwrap();
    assert_eq!(server.received_count(), 3);
}
