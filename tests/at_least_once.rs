//! At-least-once delivery: acks, resends and de-duplication — nothing lost
//! across disconnects, nothing handled twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use watchtower_hub::Hub;
use watchtower_test_support::{FaultProxy, Mode, RawServer, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{
    AtLeastOnce, DeadLetterReason, MaxAttempts, ReconnectPolicy, TransportBuilder,
};

use crate::support::{Collector, LIMIT, event, init_logs, n_of};

/// At least once, with `Block` so that a fast publisher waits for the
/// window instead of evicting from a full queue.
fn acked(url: &str) -> TransportBuilder {
    init_logs();
    let mut config = WebSocketConfig::new(url);
    config.backpressure.strategy = BackpressureStrategy::Block;
    WebSocketTransport::builder(config)
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(2),
            MaxAttempts::Unlimited,
        ))
        .delivery(AtLeastOnce {
            ack_timeout: Duration::from_secs(10),
            max_in_flight: 256,
        })
}

/// Every id once, in publishing order, with no gap.
fn assert_exactly_once_in_order(ns: &[u64], expected: u64) {
    let unique: HashSet<u64> = ns.iter().copied().collect();
    assert_eq!(unique.len(), ns.len(), "a handler ran twice for one event");
    assert_eq!(ns.len() as u64, expected, "events missing");
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "out of order");
}

/// 20,000 events while the proxy between publisher and hub resets the
/// connection 50 times at seeded random points: the hub relays every id
/// once, the subscriber's handler runs once per id, in order, and nothing
/// is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_lose_nothing_and_run_no_handler_twice() {
    resets_run(20_000, 50, 0xa1_0ce).await;
}

/// The long variant, for `cargo xtask soak`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with `cargo xtask soak`"]
async fn soak_resets_at_least_once() {
    for seed in 1..=5 {
        resets_run(200_000, 500, seed).await;
    }
}

async fn resets_run(events: u64, resets: u32, seed: u64) {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    // A mailbox for the whole run: this test is about the protocol, not
    // about a handler that falls behind (that is dead-lettered, elsewhere).
    let subscriber = acked(&hub.url())
        .mailbox_size(events as usize)
        .connect()
        .await
        .unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(vec!["alo".into()], got.handler())
        .await
        .unwrap();
    let publisher = Arc::new(acked(&proxy.url("/events")).connect().await.unwrap());

    let task = {
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            for n in 0..events {
                publisher.publish(event("alo", n)).await.unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..resets {
        let target =
            publisher.connection_stats().frames_out + rng.u64(1..(events / u64::from(resets)));
        wait_until("progress before the next reset", LIMIT, || {
            publisher.connection_stats().frames_out >= target || task.is_finished()
        })
        .await;
        let connections = proxy.accepted();
        proxy.reset_all();
        wait_until("reconnected", LIMIT, || {
            proxy.accepted() > connections && publisher.state().is_connected()
        })
        .await;
    }
    task.await.unwrap();
    tokio::time::timeout(LIMIT, publisher.flush())
        .await
        .unwrap()
        .unwrap();
    if tokio::time::timeout(LIMIT, async {
        while (got.len() as u64) < events {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_err()
    {
        let ns = got.ns();
        let unique: HashSet<u64> = ns.iter().copied().collect();
        let missing: Vec<u64> = (0..events)
            .filter(|n| !unique.contains(n))
            .take(20)
            .collect();
        panic!(
            "delivered {} ({} unique); first missing {missing:?}\npublisher {:?}\nsubscriber {:?}\nhub {:?}",
            ns.len(),
            unique.len(),
            publisher.connection_stats(),
            subscriber.connection_stats(),
            hub.stats()
        );
    }

    let stats = publisher.connection_stats();
    assert_eq!(stats.acked, events, "{stats:?}");
    assert_eq!(stats.in_flight, 0);
    assert!(stats.disconnects >= u64::from(resets), "{stats:?}");
    assert_eq!(
        publisher.dlq_stats().total_pushed,
        0,
        "nothing dead-lettered"
    );
    assert_exactly_once_in_order(&got.ns(), events);
    let hub_stats = hub.stats();
    // The hub counts relayed events and dropped duplicates apart. (It also
    // relays to the publisher's stale connections until it notices them
    // gone, so its queued frames can exceed the events.)
    assert_eq!(
        hub_stats.events_in, events,
        "the hub relayed every id exactly once: {hub_stats:?}"
    );
    eprintln!(
        "at least once: {events} events, {} resets, {} resent, {} duplicates dropped by the hub, {} by the subscriber",
        stats.disconnects,
        stats.resent,
        hub_stats.duplicates_dropped,
        subscriber.connection_stats().duplicates_dropped
    );
}

/// The hub is killed (dropped: no close handshake) and restarted: events
/// it acknowledged and delivered before, and events sent after, each reach
/// the subscriber once. (The hub keeps nothing on disk: an event it had
/// acknowledged but not yet written to a subscriber when it died is lost
/// for that subscriber; this test kills it when that set is empty.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_hub_costs_nothing_acknowledged_or_sent_after() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let addr = hub.local_addr();
    let subscriber = acked(&hub.url()).connect().await.unwrap();
    let got = Collector::default();
    subscriber.subscribe(vec![], got.handler()).await.unwrap();
    // The publisher goes through a proxy, so the test can hold it back
    // after the restart until the subscriber is there: the hub relays, it
    // does not store.
    let proxy = FaultProxy::start(addr).await;
    let publisher = acked(&proxy.url("/events"))
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();

    for n in 0..500 {
        publisher.publish(event("k", n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    wait_until("the first 500 delivered", LIMIT, || got.len() == 500).await;

    proxy.set_mode(Mode::Blackhole);
    drop(hub);
    proxy.reset_all();
    wait_until("both notice", LIMIT, || {
        !publisher.state().is_connected() && !subscriber.state().is_connected()
    })
    .await;
    for n in 500..1_000 {
        publisher.publish(event("k", n)).await.unwrap();
    }
    let hub = Hub::bind(addr).await.unwrap();
    wait_until("the subscriber is back", LIMIT, || {
        subscriber.state().is_connected()
    })
    .await;
    assert!(!publisher.state().is_connected(), "held back by the proxy");
    proxy.set_mode(Mode::Pass);
    tokio::time::timeout(LIMIT, publisher.flush())
        .await
        .unwrap()
        .unwrap();
    wait_until("all 1,000 delivered", LIMIT, || got.len() >= 1_000).await;
    assert_exactly_once_in_order(&got.ns(), 1_000);
    assert_eq!(publisher.dlq_stats().total_pushed, 0);
    assert!(hub.stats().clients >= 2);
}

/// Against a plain server that never acknowledges, every event is sent on
/// `ack_attempts` connections (each ack timeout replaces the connection)
/// and then dead-lettered with reason "ack timeout": no hang, and never
/// more than `max_in_flight` held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_acks_sends_events_to_the_dlq_after_the_timeout() {
    init_logs();
    let server = RawServer::start().await;
    let transport = WebSocketTransport::builder(WebSocketConfig::new(server.url()))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Unlimited,
        ))
        .delivery(AtLeastOnce {
            ack_timeout: Duration::from_millis(100),
            max_in_flight: 8,
        })
        .ack_attempts(2)
        .connect()
        .await
        .unwrap();
    for n in 0..20 {
        transport.publish(event("x", n)).await.unwrap();
    }
    let flushed = tokio::time::timeout(LIMIT, transport.flush())
        .await
        .unwrap();
    assert!(
        flushed.is_err(),
        "flush reports that events were dead-lettered"
    );
    let stats = transport.connection_stats();
    assert_eq!(stats.ack_timeouts, 20, "{stats:?}");
    assert_eq!(stats.acked, 0);
    assert_eq!(stats.in_flight, 0);
    // Each event failed on exactly two connections where it waited a whole
    // ack timeout. It may also have been sent on a connection that another
    // event's timeout ended before its own ran out (under load, the frames
    // of one batch go out over a few milliseconds): sent at least twice.
    assert!(stats.resent >= 20, "{stats:?}");
    let letters = transport.dead_letters().drain();
    assert_eq!(letters.len(), 20);
    assert!(
        letters
            .iter()
            .all(|l| l.reason == DeadLetterReason::AckTimeout)
    );
    assert!(
        letters[0].error.contains("ack timeout"),
        "{}",
        letters[0].error
    );
    // The plain server saw every send: each event once, plus the resends.
    let sends = 20 + stats.resent as usize;
    wait_until("every send received", LIMIT, || {
        server.received_events().len() == sends
    })
    .await;
    assert!(server.received_events().iter().all(|e| n_of(e) < 20));
}

/// A resent event that reaches a subscriber twice runs its handler once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_dropped_before_the_handler() {
    let server = RawServer::start().await;
    let transport = acked(&server.url()).connect().await.unwrap();
    let got = Collector::default();
    transport.subscribe(vec![], got.handler()).await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    let once = event("d", 1);
    server.send_event(&once);
    server.send_event(&once);
    server.send_event(&event("d", 2));
    wait_until("both distinct events", LIMIT, || got.len() == 2).await;
    assert_eq!(got.ns(), vec![1, 2]);
    assert_eq!(transport.connection_stats().duplicates_dropped, 1);
}

/// A log layer of the user's that panics — here on the reader's warning
/// about a malformed frame, which the server sends at will. Only
/// `WARN`s of the reader: nothing else is touched.
struct PanicsOnReaderWarnings;

impl tracing::Subscriber for PanicsOnReaderWarnings {
    // Ask on every event: a callsite's cached interest is shared by every
    // thread, and one first hit while another test's thread had no
    // subscriber could be cached as "never".
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::WARN && meta.target().ends_with("connection::reader") {
            panic!("a log layer that panics");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A panic inside a session (the reader's, through a user's log layer)
/// stops the transport loudly, and the events the connection held — sent
/// and not acknowledged, here all 5, since the raw server never acks —
/// are in the dead-letter queue and counted, not lost with it.
#[test]
fn a_panic_in_a_session_dead_letters_its_in_flight_window() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One thread, with the panicking layer as its logger: every task of
    // the transport runs under it.
    let _logger = tracing::subscriber::set_default(PanicsOnReaderWarnings);
    runtime.block_on(async {
        let server = RawServer::start().await;
        let transport = acked(&server.url()).connect().await.unwrap();
        for n in 0..5 {
            transport.publish(event("t", n)).await.unwrap();
        }
        wait_until("the server has the events", LIMIT, || {
            server.received_count() == 6 // hello and the 5 events
        })
        .await;
        assert_eq!(transport.connection_stats().in_flight, 5);
        server.send_text("not json");
        wait_until("the transport has stopped", LIMIT, || {
            transport.state() == ConnectionState::Closed
        })
        .await;
        let error = transport.publish(event("t", 9)).await.unwrap_err();
        assert!(error.to_string().contains("panicked"), "{error}");
        assert_eq!(transport.dlq_stats().total_pushed, 5);
        let stats = transport.connection_stats();
        assert_eq!(stats.events_abandoned, 5, "{stats:?}");
        let dead = transport.dead_letters().drain();
        let ns: Vec<u64> = dead
            .iter()
            .map(|d| n_of(&d.item.event().unwrap()))
            .collect();
        assert_eq!(ns, vec![0, 1, 2, 3, 4]);
    });
}
