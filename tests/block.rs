//! `MailboxOverflow::Block` cannot deadlock: a handler that publishes and
//! flushes on its own transport always completes or fails with a clear
//! error, `health_check` says when the reader has waited long for a full
//! mailbox, and at least once an ack the reader could not read yet never
//! times out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use watchtower_hub::Hub;
use watchtower_test_support::{wait_until, wait_until_async};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{AtLeastOnce, HandlerFuture, MailboxOverflow};

use crate::support::{LIMIT, event, fast, fast_blocking};

/// N1: a handler that publishes an event and flushes, on the transport
/// whose mailbox (4) a burst of 200 fills: every call completes — its
/// flush succeeds, or fails at once saying that it runs inside the handler
/// the reader waits for — and every event it published reaches the hub.
/// (At f945df2: 0 of 200 handled after 10 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_flushes_in_block_mode_always_completes() {
    const BURST: u64 = 200;
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let transport = Arc::new(
        fast(&hub.url(), 20)
            .mailbox_size(4)
            .mailbox_overflow(MailboxOverflow::Block)
            .connect()
            .await
            .unwrap(),
    );
    let this: Arc<OnceLock<Arc<WebSocketTransport>>> = Arc::new(OnceLock::new());
    let flushed = Arc::new(AtomicU64::new(0));
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let (this, flushed, refused) = (
            Arc::clone(&this),
            Arc::clone(&flushed),
            Arc::clone(&refused),
        );
        move |event: Event| {
            let (this, flushed, refused) = (
                Arc::clone(&this),
                Arc::clone(&flushed),
                Arc::clone(&refused),
            );
            Box::pin(async move {
                let transport = this.get().unwrap();
                let n = event.payload["n"].as_u64().unwrap();
                transport.publish(crate::support::event("out", n)).await?;
                match transport.flush().await {
                    Ok(()) => {
                        flushed.fetch_add(1, SeqCst);
                    }
                    Err(error) => refused.lock().unwrap().push(error.to_string()),
                }
                Ok(())
            }) as HandlerFuture
        }
    };
    this.set(Arc::clone(&transport)).ok().unwrap();
    transport
        .subscribe(vec!["in".into()], handler)
        .await
        .unwrap();
    let publisher = fast_blocking(&hub.url(), 20).connect().await.unwrap();
    for n in 0..BURST {
        publisher.publish(event("in", n)).await.unwrap();
    }
    publisher.flush().await.unwrap();

    wait_until("every handler call completed", LIMIT, || {
        flushed.load(SeqCst) + refused.lock().unwrap().len() as u64 == BURST
    })
    .await;
    for error in refused.lock().unwrap().iter() {
        assert!(error.contains("mailbox is full"), "{error}");
    }
    transport.flush().await.unwrap();
    wait_until("every published event at the hub", LIMIT, || {
        hub.stats().events_in == 2 * BURST
    })
    .await;
    assert_eq!(transport.dlq_stats().total_pushed, 0);
    transport.shutdown().await.unwrap();
}

/// N1: while the reader waits for a mailbox whose handler makes no room,
/// `health_check` fails once the wait outlasts the pong timeout, naming
/// the subscription; it is `Ok` again once there is room. (At f945df2 it
/// stayed `Ok`, connected, with nothing moving.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_says_when_the_reader_waits_for_a_full_mailbox() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let transport = fast(&hub.url(), 20)
        .mailbox_size(1)
        .mailbox_overflow(MailboxOverflow::Block)
        .keepalive(Duration::from_secs(5), Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let handler = {
        let (gate, handled) = (Arc::clone(&gate), Arc::clone(&handled));
        move |_: Event| {
            let (gate, handled) = (Arc::clone(&gate), Arc::clone(&handled));
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                handled.fetch_add(1, SeqCst);
                Ok(())
            }) as HandlerFuture
        }
    };
    transport.subscribe(vec![], handler).await.unwrap();
    let publisher = fast_blocking(&hub.url(), 20).connect().await.unwrap();
    for n in 0..3 {
        publisher.publish(event("t", n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    wait_until_async("health says why", LIMIT, || async {
        transport.health_check().await.is_err()
    })
    .await;
    let error = transport.health_check().await.unwrap_err().to_string();
    assert!(
        error.contains("not reading") && error.contains("mailbox is full"),
        "{error}"
    );
    assert!(transport.state().is_connected());
    gate.add_permits(3);
    wait_until("all handled", LIMIT, || handled.load(SeqCst) == 3).await;
    transport.health_check().await.unwrap();
    transport.shutdown().await.unwrap();
}

/// N4: at least once with `Block`: while the reader waits for a handler,
/// the hub's acks of this transport's own events wait unread behind
/// events; they are not timed meanwhile, so nothing the hub acknowledged
/// is dead-lettered, and `flush` succeeds once the handler makes room.
/// (At f945df2: ack timeouts forced reconnects, and 5 of 5 events were
/// dead-lettered as `AckTimeout`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_in_block_mode_never_dead_letters_what_the_hub_acknowledged() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let transport = fast(&hub.url(), 20)
        .delivery(AtLeastOnce {
            ack_timeout: Duration::from_millis(200),
            max_in_flight: 256,
        })
        .ack_attempts(2)
        .mailbox_size(1)
        .mailbox_overflow(MailboxOverflow::Block)
        .connect()
        .await
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let handler = {
        let (gate, handled) = (Arc::clone(&gate), Arc::clone(&handled));
        move |_: Event| {
            let (gate, handled) = (Arc::clone(&gate), Arc::clone(&handled));
            Box::pin(async move {
                handled.fetch_add(1, SeqCst);
                gate.acquire().await.unwrap().forget();
                Ok(())
            }) as HandlerFuture
        }
    };
    transport
        .subscribe(vec!["in".into()], handler)
        .await
        .unwrap();
    let publisher = fast_blocking(&hub.url(), 20).connect().await.unwrap();
    publisher.publish(event("in", 0)).await.unwrap();
    publisher.flush().await.unwrap();
    // The handler holds the only place in the mailbox: the reader waits.
    wait_until("the handler has the event", LIMIT, || {
        handled.load(SeqCst) == 1
    })
    .await;
    for n in 0..5 {
        transport.publish(event("out", n)).await.unwrap();
    }
    wait_until("the hub has them", LIMIT, || hub.stats().events_in == 6).await;
    // Well past ack_timeout × ack_attempts.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    gate.add_permits(10);
    transport.flush().await.unwrap();
    let stats = transport.connection_stats();
    assert_eq!((stats.ack_timeouts, stats.acked), (0, 5), "{stats:?}");
    assert_eq!(transport.dlq_stats().total_pushed, 0);
    assert_eq!(hub.stats().events_in, 6, "nothing resent");
    transport.shutdown().await.unwrap();
}
