//! The connection engine at its edges: each test names a guarantee that
//! failed at commit 1ec7a18 (issue 11), and exercises it through the public
//! API against real servers on 127.0.0.1.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use watchtower_hub::{Hub, HubConfig};
use watchtower_test_support::{FaultProxy, Mode, RawServer, unused_addr, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{
    AtLeastOnce, Credentials, DeadLetterReason, HandlerFuture, MaxAttempts, ReconnectPolicy,
    SubscriptionHandle,
};

use crate::support::{Collector, LIMIT, event, fast, init_logs, n_of};

/// A policy that never gives up, for tests about something else.
fn forever() -> ReconnectPolicy {
    ReconnectPolicy::fixed(Duration::from_millis(20), MaxAttempts::Unlimited)
}

/// A handler that waits for a permit per event, then records it.
fn gated(
    gate: &Arc<Semaphore>,
    got: &Collector,
) -> impl Fn(Event) -> HandlerFuture + Send + Sync + use<> {
    let gate = Arc::clone(gate);
    let got = got.clone();
    move |event| {
        let (gate, got) = (Arc::clone(&gate), got.clone());
        Box::pin(async move {
            gate.acquire()
                .await
                .map_err(|e| WatchtowerError::Subscription(e.to_string()))?
                .forget();
            got.handler()(event).await
        })
    }
}

// ---- Panics (P1, P2) ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_too_long_to_add_to_an_instant_are_config_errors() {
    init_logs();
    let server = RawServer::start().await;
    let url = server.url();
    let builders = [
        (
            "keepalive",
            fast(&url, 1).keepalive(Duration::MAX, Duration::from_secs(1)),
        ),
        (
            "pong timeout",
            fast(&url, 1).keepalive(Duration::from_secs(1), Duration::MAX),
        ),
        (
            "connect_timeout",
            fast(&url, 1).connect_timeout(Duration::MAX),
        ),
        (
            "shutdown_timeout",
            fast(&url, 1).shutdown_timeout(Duration::MAX),
        ),
        (
            "breaker_timeout",
            fast(&url, 1).breaker_timeout(Duration::MAX),
        ),
        (
            "ack_timeout",
            fast(&url, 1).delivery(AtLeastOnce {
                ack_timeout: Duration::MAX,
                max_in_flight: 8,
            }),
        ),
    ];
    for (what, builder) in builders {
        // A panic here, or later in the connection task, fails the test.
        let outcome = tokio::spawn(async move { builder.connect().await.map(|_| ()) })
            .await
            .unwrap_or_else(|panic| panic!("{what}: panicked: {panic}"));
        assert!(
            matches!(outcome, Err(WatchtowerError::Config(ref m)) if m.contains("24 hours")),
            "{what}: {outcome:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_credential_provider_is_a_credentials_error() {
    init_logs();
    let server = RawServer::start().await;
    let connect = fast(&server.url(), 1)
        .credential_provider(
            || -> std::future::Ready<Result<Credentials, std::io::Error>> {
                panic!("token service exploded")
            },
        )
        .connect();
    let error = tokio::spawn(connect)
        .await
        .expect("the panic must not reach the caller")
        .unwrap_err();
    assert!(
        matches!(&error, WatchtowerError::Credentials(e) if e.to_string().contains("exploded")),
        "{error:?}"
    );

    // Lazily, the connection task survives it and gives up as the policy says.
    let transport = fast(&server.url(), 1)
        .connect_lazily(true)
        .breaker_timeout(Duration::from_secs(3600))
        .credential_provider(|| async {
            if std::hint::black_box(true) {
                panic!("again");
            }
            Ok::<_, std::io::Error>(Credentials::bearer("never"))
        })
        .connect()
        .await
        .unwrap();
    wait_until("the breaker opens", LIMIT, || {
        transport.state() == ConnectionState::CircuitOpen
    })
    .await;
    assert!(matches!(
        transport.publish(event("x", 1)).await,
        Err(WatchtowerError::CircuitOpen { .. })
    ));
    assert_eq!(server.connections(), 0);
}

// ---- Bad input (D4) ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_events_no_receiver_could_decode() {
    init_logs();
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3).connect().await.unwrap();
    let mut empty_id = event("t", 1);
    empty_id.id.clear();
    let empty_type = event("", 2);
    let mut deep = serde_json::json!(1);
    for _ in 0..200 {
        deep = serde_json::Value::Array(vec![deep]);
    }
    let too_deep = Event::new("t", deep, EventMetadata::default());
    for bad in [empty_id, empty_type, too_deep] {
        let error = transport.publish(bad).await.unwrap_err();
        assert!(matches!(error, WatchtowerError::Decode(_)), "{error:?}");
    }
    transport.publish(event("t", 4)).await.unwrap();
    transport.flush().await.unwrap();
    wait_until("the good event", LIMIT, || server.received_count() == 1).await;
    let received = server.received_events();
    assert_eq!(received.iter().map(n_of).collect::<Vec<_>>(), [4]);
    assert_eq!(transport.connection_stats().frames_out, 1);
}

// ---- Subscriptions (D5, D6, H5) -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_typed_subscription_counts_only_its_types_against_its_mailbox() {
    init_logs();
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3)
        .mailbox_size(8)
        .connect()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let got = Collector::default();
    transport
        .subscribe(vec!["wanted".into()], gated(&gate, &got))
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    for n in 0..2_000 {
        server.send_event(&event("other", n));
    }
    for n in 0..5 {
        server.send_event(&event("wanted", n));
    }
    wait_until("every frame read", LIMIT, || {
        transport.connection_stats().frames_in == 2_005
    })
    .await;
    gate.add_permits(5);
    wait_until("the wanted events", LIMIT, || got.len() == 5).await;
    assert_eq!(got.ns(), vec![0, 1, 2, 3, 4]);
    let stats = transport.connection_stats();
    assert_eq!(stats.mailbox_overflow, 0, "{stats:?}");
    assert_eq!(stats.events_unmatched, 2_000, "{stats:?}");
    assert_eq!(transport.dlq_stats().total_pushed, 0);
}

/// A transport with a 300 ms stop timeout, one subscription whose handler
/// finishes only `handled` events, and 20 events read into its mailbox.
async fn stuck_subscription(
    server: &RawServer,
    handled: usize,
) -> (WebSocketTransport, SubscriptionHandle, Collector) {
    let transport = fast(&server.url(), 3)
        .shutdown_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(handled));
    let got = Collector::default();
    let handle = transport
        .subscribe(vec![], gated(&gate, &got))
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    for n in 0..20 {
        server.send_event(&event("t", n));
    }
    wait_until(
        "all 20 in the mailbox, the allowed ones handled",
        LIMIT,
        || transport.connection_stats().frames_in == 20 && got.len() == handled,
    )
    .await;
    (transport, handle, got)
}

/// `unsubscribe` at its timeout: the handler is interrupted, and the event
/// it was on plus everything still in its mailbox is dead-lettered and
/// counted — none of it vanishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_at_its_timeout_dead_letters_what_the_mailbox_held() {
    init_logs();
    let server = RawServer::start().await;
    let (transport, handle, got) = stuck_subscription(&server, 0).await;
    transport.unsubscribe(&handle).await.unwrap();
    assert_eq!(got.len(), 0, "the handler never finished an event");
    let letters = transport.dead_letters().drain();
    assert_eq!(letters.len(), 20, "every held event is dead-lettered");
    assert!(
        letters
            .iter()
            .all(|l| l.reason == DeadLetterReason::Shutdown)
    );
    let mut ns: Vec<u64> = letters
        .iter()
        .map(|l| n_of(&l.item.event().unwrap()))
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
    assert_eq!(transport.connection_stats().mailbox_abandoned, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_at_its_timeout_dead_letters_what_mailboxes_held() {
    init_logs();
    let server = RawServer::start().await;
    let (transport, _handle, _got) = stuck_subscription(&server, 1).await;
    transport.shutdown().await.unwrap();
    assert_eq!(
        transport.dlq_stats().total_pushed,
        19,
        "handled 1, the rest dead-lettered"
    );
    assert_eq!(transport.connection_stats().mailbox_abandoned, 19);
}

/// A handler that unsubscribes its own subscription is not waited for (it
/// would wait on itself) nor aborted: it runs to its end, and is not
/// called again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_can_unsubscribe_its_own_subscription() {
    init_logs();
    let server = RawServer::start().await;
    let transport = Arc::new(
        fast(&server.url(), 3)
            .shutdown_timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap(),
    );
    let handle: Arc<OnceLock<SubscriptionHandle>> = Arc::new(OnceLock::new());
    let finished = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let (t, h, f, c) = (
        Arc::downgrade(&transport),
        Arc::clone(&handle),
        Arc::clone(&finished),
        Arc::clone(&calls),
    );
    let subscribed = transport
        .subscribe(vec![], move |_event| {
            let (t, h, f, c) = (t.clone(), Arc::clone(&h), Arc::clone(&f), Arc::clone(&c));
            Box::pin(async move {
                c.fetch_add(1, Ordering::SeqCst);
                if let (Some(transport), Some(handle)) = (t.upgrade(), h.get()) {
                    transport.unsubscribe(handle).await?;
                    // Still running after unsubscribing itself.
                    tokio::task::yield_now().await;
                    f.store(true, Ordering::SeqCst);
                }
                Ok(())
            })
        })
        .await
        .unwrap();
    handle.set(subscribed).unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    for n in 0..3 {
        server.send_event(&event("t", n));
    }
    wait_until("the handler ran to its end", LIMIT, || {
        finished.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(transport.subscription_count(), 0);
    wait_until("the rest settled", LIMIT, || {
        let s = transport.connection_stats();
        s.handler_ok + s.mailbox_abandoned + s.events_unmatched >= 3
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "not called after unsubscribing"
    );
    assert_eq!(transport.connection_stats().handler_ok, 1);
}

// ---- Hub protocol (R1, R5, H3) --------------------------------------------

fn filtered(url: &str) -> watchtower_websocket::TransportBuilder {
    fast(url, 3).server_filters(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_returns_once_the_server_has_the_first_filter() {
    // Without this, a hub may relay events to a client between its join
    // and its first filter: a publish-only client got another publisher's
    // events once in ~40 runs under load.
    let server = RawServer::start().await;
    let _quiet = filtered(&server.url()).connect().await.unwrap();
    // No waiting: the server read the filter before `connect` returned.
    let frames: Vec<String> = server
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.bytes).into_owned())
        .collect();
    assert_eq!(
        frames,
        [r#"{"type":"unsubscribe","event_types":[]}"#],
        "the first filter: nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_client_with_server_filters_receives_nothing() {
    init_logs();
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let quiet = filtered(&hub.url()).connect().await.unwrap();
    let everything = filtered(&hub.url()).connect().await.unwrap();
    let got = Collector::default();
    everything.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = filtered(&hub.url()).connect().await.unwrap();
    wait_until("three clients", LIMIT, || hub.stats().clients == 3).await;
    for n in 0..100 {
        publisher.publish(event("t", n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    wait_until("the subscriber has them all", LIMIT, || got.len() == 100).await;
    // The quiet client read the hub's answer to its filter ping after its
    // filter, so anything the hub sent it would have been read by now...
    quiet.publish(event("probe", 0)).await.unwrap();
    quiet.flush().await.unwrap();
    wait_until("the probe relayed", LIMIT, || got.len() == 101).await;
    assert_eq!(quiet.connection_stats().events_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_the_hub_would_refuse_fails_subscribe() {
    init_logs();
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let transport = filtered(&hub.url()).connect().await.unwrap();
    let too_many: Vec<String> = (0..5_000).map(|i| format!("type.{i}")).collect();
    let error = transport
        .subscribe(too_many, |_e| Box::pin(async { Ok(()) }))
        .await
        .unwrap_err();
    assert!(
        matches!(error, WatchtowerError::Subscription(_)),
        "{error:?}"
    );
    assert_eq!(transport.subscription_count(), 0);
    let too_long = vec!["x".repeat(100_000)];
    let error = transport
        .subscribe(too_long, |_e| Box::pin(async { Ok(()) }))
        .await
        .unwrap_err();
    assert!(
        matches!(error, WatchtowerError::Subscription(_)),
        "{error:?}"
    );
}

/// At least once, a frame the hub answers by closing the connection (over
/// its size limit) is dead-lettered after `ack_attempts` connections, not
/// resent forever; the events around it get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_the_server_refuses_is_dead_lettered_not_resent_forever() {
    init_logs();
    let mut config = HubConfig::default();
    config.max_message_size = 2_048;
    let hub = Hub::builder()
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let subscriber = filtered(&hub.url()).connect().await.unwrap();
    let got = Collector::default();
    subscriber
        .subscribe(vec!["t".into()], got.handler())
        .await
        .unwrap();
    let publisher = filtered(&hub.url())
        .reconnect_policy(forever())
        .delivery(AtLeastOnce::default())
        .ack_attempts(3)
        .connect()
        .await
        .unwrap();
    publisher.publish(event("t", 1)).await.unwrap();
    publisher.flush().await.unwrap();
    let big = Event::new(
        "t",
        serde_json::json!({ "n": 2, "pad": "x".repeat(4_096) }),
        EventMetadata::default(),
    );
    publisher.publish(big).await.unwrap();
    publisher.publish(event("t", 3)).await.unwrap();
    wait_until("the refused frame is dead-lettered", LIMIT, || {
        publisher.dlq_stats().total_pushed == 1
    })
    .await;
    wait_until("the events around it", LIMIT, || got.len() == 2).await;
    assert_eq!(got.ns(), vec![1, 3]);
    let letters = publisher.dead_letters().drain();
    assert_eq!(letters[0].reason, DeadLetterReason::SendFailed);
    assert!(letters[0].error.contains("refused"), "{}", letters[0].error);
    assert!(publisher.connection_stats().connects <= 5);
}

/// At least once, the subscriber's de-duplication drops a resend — the
/// same frame again — but not another publisher's event that reuses an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_id_cannot_suppress_another_event_at_the_subscriber() {
    init_logs();
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3)
        .delivery(AtLeastOnce::default())
        .connect()
        .await
        .unwrap();
    let got = Collector::default();
    transport.subscribe(vec![], got.handler()).await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    let mut squatter = event("t", 1);
    squatter.id = "order-1001".into();
    let mut genuine = event("t", 2);
    genuine.id = "order-1001".into();
    server.send_event(&squatter);
    server.send_event(&genuine);
    server.send_event(&genuine); // a resend: the same frame
    server.send_event(&event("t", 3));
    wait_until("four frames read", LIMIT, || {
        transport.connection_stats().frames_in == 4
    })
    .await;
    wait_until("three handled", LIMIT, || got.len() == 3).await;
    assert_eq!(got.ns(), vec![1, 2, 3]);
    assert_eq!(transport.connection_stats().duplicates_dropped, 1);
}

// ---- Backoff and the breaker (H2, H4) -----------------------------------

/// A server that completes the WebSocket handshake and closes at once.
async fn flapping_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/events", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = ws.close(None).await;
                    while ws.next().await.is_some() {}
                }
            });
        }
    });
    (url, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_escalates_and_the_breaker_opens_against_a_flapping_server() {
    init_logs();
    let (url, accepted) = flapping_server().await;
    let transport = WebSocketTransport::builder(WebSocketConfig::new(url))
        .reconnect_policy(ReconnectPolicy::linear(Duration::from_millis(50), 5))
        .breaker_timeout(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    wait_until("the breaker opens", LIMIT, || {
        transport.state() == ConnectionState::CircuitOpen
    })
    .await;
    // The first connection and one per attempt of the policy.
    let made = accepted.load(Ordering::SeqCst);
    assert!(made <= 6, "{made} connections");
    assert_eq!(transport.connection_stats().gave_up, 1);
}

#[tokio::test(start_paused = true)]
async fn a_zero_reconnect_delay_is_not_a_tight_loop() {
    init_logs();
    let started = tokio::time::Instant::now();
    let transport = WebSocketTransport::builder(WebSocketConfig {
        url: format!("ws://{}/events", unused_addr()),
        max_reconnect_attempts: 1_000_000,
        reconnect_delay_seconds: 0,
        ..WebSocketConfig::default()
    })
    .connect_lazily(true)
    .connect()
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = transport.connection_stats().failed_connects;
    let elapsed = started.elapsed();
    // Each attempt after the first waits at least 50 ms of (paused) time.
    let bound = elapsed.as_millis() as u64 / 50 + 1;
    assert!(attempts >= 1);
    assert!(attempts <= bound, "{attempts} attempts in {elapsed:?}");
}

/// A server that accepts TCP connections and never answers the upgrade:
/// every connect attempt, trial connects included, lasts the whole connect
/// timeout.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    url
}

/// Publishers never drive the breaker: once it has opened, `publish` fails
/// fast until a trial connect has succeeded — also while a trial is under
/// way — so nothing is queued behind a trial that then fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_see_the_breaker_open_until_a_trial_succeeds() {
    init_logs();
    let transport = WebSocketTransport::builder(WebSocketConfig::new(silent_server().await))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Limited(1),
        ))
        .connect_timeout(Duration::from_millis(300))
        .breaker_timeout(Duration::from_millis(100))
        .connect_lazily(true)
        .connect()
        .await
        .unwrap();
    wait_until("the breaker opens", LIMIT, || {
        transport.state() == ConnectionState::CircuitOpen
    })
    .await;
    // Trials of 300 ms every 100 ms: publish all through several of them.
    let mut accepted = 0u64;
    for n in 0..150 {
        if transport.publish(event("x", n)).await.is_ok() {
            accepted += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(transport.connection_stats().failed_connects >= 3);
    // Whatever was accepted must be settled: dead-lettered after a failed trial.
    wait_until("every accepted event settled", LIMIT, || {
        transport.dlq_stats().total_pushed == accepted
    })
    .await;
    assert_eq!(accepted, 0, "no trial succeeded");
    assert_eq!(transport.connection_stats().publishes_rejected, 150);
}

// ---- Loss and order (D1, D3, D7, flush) --------------------------------

/// A transport that connects lazily to an address nobody listens on, and
/// keeps trying: everything published stays queued until `shutdown`.
async fn never_connected(shutdown_timeout: Duration) -> Arc<WebSocketTransport> {
    let url = format!("ws://{}/events", unused_addr());
    let transport = WebSocketTransport::builder(WebSocketConfig::new(url))
        .reconnect_policy(forever())
        .shutdown_timeout(shutdown_timeout)
        .connect_lazily(true)
        .connect()
        .await
        .unwrap();
    Arc::new(transport)
}

/// Every `publish` that returned `Ok` before `shutdown` is either received
/// by the server or in the dead-letter queue: none vanishes in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_never_loses_an_accepted_publish() {
    init_logs();
    for round in 0..20 {
        let transport = never_connected(Duration::from_millis(50)).await;
        let accepted = Arc::new(AtomicU64::new(0));
        let publishers: Vec<_> = (0..2)
            .map(|p| {
                let (transport, accepted) = (Arc::clone(&transport), Arc::clone(&accepted));
                tokio::spawn(async move {
                    for n in 0..10_000u64 {
                        match transport.publish(event("x", p * 100_000 + n)).await {
                            Ok(()) => accepted.fetch_add(1, Ordering::SeqCst),
                            Err(WatchtowerError::Closed) => break,
                            Err(_) => continue,
                        };
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5 + round)).await;
        transport.shutdown().await.unwrap();
        for p in publishers {
            p.await.unwrap();
        }
        let accepted = accepted.load(Ordering::SeqCst);
        let dead = transport.dlq_stats().total_pushed;
        // The default DLQ holds 10,000 and counts what it drops.
        let dropped = transport.dlq_stats().dropped;
        assert_eq!(dead, accepted, "round {round}: {dropped} dropped");
    }
}

/// `flush` reports events written only once the server has them: a
/// half-open connection that swallows everything makes it wait, not
/// succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_does_not_succeed_for_events_the_server_never_read() {
    init_logs();
    let server = RawServer::start().await;
    let proxy = FaultProxy::start(server.addr()).await;
    let transport = fast(&proxy.url("/events"), 3).connect().await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    // Everything now takes 3 s to reach the server (and to come back).
    proxy.set_mode(Mode::Latency(Duration::from_secs(3)));
    for n in 0..10 {
        transport.publish(event("x", n)).await.unwrap();
    }
    let flushed = tokio::time::timeout(Duration::from_secs(1), transport.flush()).await;
    assert!(
        flushed.is_err(),
        "flush returned {flushed:?} with nothing received"
    );
    assert_eq!(server.received_count(), 0);
    proxy.set_mode(Mode::Pass);
    transport.flush().await.unwrap();
    assert_eq!(
        server.received_count(),
        10,
        "flush returned: the server has them"
    );
}

/// At most once, a burst's tail written while a receipt ping is still
/// unanswered gets a receipt of its own once that ping's pong is back:
/// `flush` returns then, not at the next keepalive ping (30 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_written_while_a_receipt_is_out_is_confirmed_after_its_pong() {
    init_logs();
    let server = RawServer::start().await;
    let proxy = FaultProxy::start(server.addr()).await;
    let transport = fast(&proxy.url("/events"), 3).connect().await.unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    // A pong now comes back a second after its ping.
    proxy.set_mode(Mode::Latency(Duration::from_millis(500)));
    let pings = transport.connection_stats().pings_sent;
    transport.publish(event("x", 0)).await.unwrap();
    wait_until("the first event's receipt is out", LIMIT, || {
        transport.connection_stats().pings_sent > pings
    })
    .await;
    for n in 1..=5 {
        transport.publish(event("x", n)).await.unwrap();
    }
    wait_until("the tail is written", LIMIT, || {
        transport.connection_stats().frames_out == 6
    })
    .await;
    let flushed = tokio::time::timeout(Duration::from_secs(10), transport.flush()).await;
    assert!(
        matches!(flushed, Ok(Ok(()))),
        "flush returned {flushed:?} (stats {:?})",
        transport.connection_stats()
    );
    assert_eq!(transport.connection_stats().frames_confirmed, 6);
    assert_eq!(server.received_count(), 6);
}

/// At least once, an ack that does not come ends the connection: what it
/// held is resent on the next one, in the original order, exactly once
/// after de-duplication, and nothing is dead-lettered while keepalive has
/// not even noticed the stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_timeout_resends_on_a_new_connection_in_order() {
    init_logs();
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let subscriber = filtered(&hub.url()).connect().await.unwrap();
    let got = Collector::default();
    subscriber.subscribe(vec![], got.handler()).await.unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let publisher = filtered(&proxy.url("/events"))
        .reconnect_policy(forever())
        .delivery(AtLeastOnce {
            ack_timeout: Duration::from_millis(300),
            max_in_flight: 64,
        })
        .connect()
        .await
        .unwrap();
    publisher.publish(event("t", 0)).await.unwrap();
    publisher.flush().await.unwrap();
    // The connection stalls both ways: frames and acks are swallowed.
    proxy.set_mode(Mode::Blackhole);
    for n in 1..=5 {
        publisher.publish(event("t", n)).await.unwrap();
    }
    wait_until("the ack timeout ended the connection", LIMIT, || {
        publisher.connection_stats().disconnects >= 1
    })
    .await;
    proxy.set_mode(Mode::Pass);
    publisher.flush().await.unwrap();
    wait_until("all six delivered", LIMIT, || got.len() >= 6).await;
    assert_eq!(got.ns(), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(publisher.dlq_stats().total_pushed, 0);
    let stats = publisher.connection_stats();
    assert_eq!(stats.frames_out, 6, "each frame counted once: {stats:?}");
    assert!(stats.resent >= 5, "{stats:?}");
}

/// Two `shutdown` calls at once: both wait for the one drain, and both
/// report it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shutdowns_report_the_same_drain() {
    init_logs();
    let transport = never_connected(Duration::from_millis(300)).await;
    for n in 0..10 {
        transport.publish(event("x", n)).await.unwrap();
    }
    let reports = Arc::new(Mutex::new(Vec::new()));
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (transport, reports) = (Arc::clone(&transport), Arc::clone(&reports));
            tokio::spawn(async move {
                let report = transport.shutdown().await.unwrap();
                reports.lock().unwrap().push(report);
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let reports = reports.lock().unwrap();
    assert_eq!(reports[0].dead_lettered, 10);
    assert_eq!(reports[0], reports[1]);
}

/// R2: dead-lettering keeps the frame as it came, decoding only when
/// asked — so a received frame whose head routes it but whose body does
/// not decode (here metadata that is not an object) is still dead-lettered when its
/// subscription cannot take it, JSON and all, instead of vanishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_does_not_decode_is_still_dead_lettered_as_it_came() {
    init_logs();
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 3)
        .shutdown_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let got = Collector::default();
    let handle = transport
        .subscribe(vec![], gated(&gate, &got))
        .await
        .unwrap();
    wait_until("connected", LIMIT, || server.connections() == 1).await;
    // A good event first: the handler takes it and sticks there.
    server.send_event(&event("t", 0));
    let bad = |n: u64| {
        format!(
            r#"{{"id":"bad-{n}","event_type":"t","timestamp":"2026-11-30T00:00:00Z","payload":{{"n":{n}}},"metadata":5}}"#
        )
    };
    for n in 1..5 {
        server.send_text(bad(n));
    }
    wait_until("all 5 read", LIMIT, || {
        transport.connection_stats().frames_in == 5
    })
    .await;
    transport.unsubscribe(&handle).await.unwrap();
    let letters = transport.dead_letters().drain();
    assert_eq!(letters.len(), 5, "{letters:?}");
    assert_eq!(n_of(&letters[0].item.event().unwrap()), 0);
    for (letter, n) in letters[1..].iter().zip(1..) {
        assert!(
            letter.item.event().is_err(),
            "the bad frame does not decode"
        );
        assert_eq!(letter.item.json(), bad(n), "kept byte for byte");
    }
}
