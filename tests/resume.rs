//! History and resume against a real hub: a subscriber whose link is cut
//! (through the fault proxy) gets every event published meanwhile, exactly
//! once and in order, or is told why not.
//!
//! Runs are seeded like `chaos.rs`; the counts here are scaled so the file
//! runs in seconds in debug builds. The full counts are the
//! ignored `soak_*` variants (`cargo xtask soak`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;

use watchtower_hub::{Hub, HubConfig};
use watchtower_test_support::{FaultProxy, Mode, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{
    MailboxOverflow, MaxAttempts, NotRecoveredReason, ReconnectPolicy, ResumeOutcome,
    TransportBuilder,
};

use crate::support::{Collector, LIMIT, event, init_logs};

/// A subscriber builder: reconnects every 20 ms forever, gives up an
/// attempt that gets no answer (a blackholed link) after 250 ms.
pub(crate) fn subscriber(url: &str) -> TransportBuilder {
    init_logs();
    WebSocketTransport::builder(WebSocketConfig::new(url))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Unlimited,
        ))
        .connect_timeout(Duration::from_millis(250))
        .mailbox_size(100_000)
        .shutdown_timeout(Duration::from_secs(5))
}

fn publisher_config(url: &str) -> WebSocketConfig {
    let mut config = WebSocketConfig::new(url);
    config.backpressure.strategy = BackpressureStrategy::Block;
    config
}

pub(crate) async fn publisher(url: &str) -> WebSocketTransport {
    WebSocketTransport::builder(publisher_config(url))
        .resume(false)
        .connect()
        .await
        .unwrap()
}

fn hub_config(configure: impl FnOnce(&mut HubConfig)) -> HubConfig {
    let mut config = HubConfig::default();
    configure(&mut config);
    config
}

/// Takes the subscriber's link down (new attempts get no answer) and
/// breaks the connection it has.
pub(crate) fn cut(proxy: &FaultProxy) {
    proxy.set_mode(Mode::Blackhole);
    proxy.reset_all();
}

/// Brings the link back and waits until the subscriber has answered
/// `resumes` resumes in all.
pub(crate) async fn restore(proxy: &FaultProxy, sub: &WebSocketTransport, resumes: u64) {
    proxy.set_mode(Mode::Pass);
    wait_until("resumed", LIMIT, || {
        let s = sub.connection_stats();
        s.resumes_recovered + s.resumes_not_recovered >= resumes && sub.state().is_connected()
    })
    .await;
}

/// Waits until the hub has relayed `n` events in all.
pub(crate) async fn relayed(hub: &Hub, n: u64) {
    wait_until("hub relayed", LIMIT, || hub.stats().events_in >= n).await;
}

/// Waits until the subscriber's mailbox has handed `n` events to `got`.
/// Waits until `n` events arrived, for as long as they keep arriving:
/// LIMIT without progress fails (a backlog in a debug build on a loaded
/// machine may need longer than LIMIT in all).
pub(crate) async fn received(got: &Collector, n: usize) {
    let mut seen = got.len();
    let mut deadline = tokio::time::Instant::now() + LIMIT;
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event for {LIMIT:?}: got {} of {n}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        if got.len() > seen {
            seen = got.len();
            deadline = tokio::time::Instant::now() + LIMIT;
        }
    }
}

/// The payload numbers received, which must be exactly `expected`.
pub(crate) fn assert_exactly(got: &Collector, expected: impl IntoIterator<Item = u64>) {
    let expected: Vec<u64> = expected.into_iter().collect();
    let ns = got.ns();
    assert_eq!(ns.len(), expected.len(), "count");
    assert!(ns == expected, "not exactly once in order");
}

/// Done when 1: events at a steady rate while the subscriber's link is cut
/// again and again for 100–500 ms: every event handled exactly once and in
/// publish order, every resume recovered, nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_links_recover_every_event_exactly_once_in_order() {
    blinks_run(4_000, 20, 100..500, 0x5eed).await;
}

/// The counts: 20,000 events, 20 cuts of 100–2,000 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with `cargo xtask soak`"]
async fn soak_cut_links_recover_every_event() {
    blinks_run(20_000, 20, 100..2_000, 0x5eed).await;
}

async fn blinks_run(events: u64, cuts: u64, down_ms: std::ops::Range<u64>, seed: u64) {
    // Default settings: however long the subscriber stays away, what it
    // missed is recovered while the history holds it.
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events")).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = Arc::new(publisher(&hub.url()).await);
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;

    // A steady rate: 10 events every 10 ms, at most 1,000 a second.
    let publishing = {
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            for n in 0..events {
                publisher.publish(event("blink", n)).await.unwrap();
                if n % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 1..=cuts {
        // Cut at points of progress, not of time, so every cut has events
        // published during it on a fast or a slow machine.
        relayed(&hub, i * events / (cuts + 2)).await;
        cut(&proxy);
        tokio::time::sleep(Duration::from_millis(rng.u64(down_ms.clone()))).await;
        restore(&proxy, &sub, i).await;
    }
    publishing.await.unwrap();
    publisher.flush().await.unwrap();
    received(&got, events as usize).await;

    assert_exactly(&got, 0..events);
    let stats = sub.connection_stats();
    assert_eq!(stats.resumes_recovered, cuts, "{stats:?}");
    assert_eq!(stats.resumes_not_recovered, 0);
    assert!(stats.events_replayed > 0);
    assert_eq!(sub.dlq_stats().total_pushed, 0);
    assert_eq!(hub.stats().resumes_recovered, cuts);
    sub.shutdown().await.unwrap();
}

/// Done when 2: a history shorter than what was missed: not recovered
/// (`expired`), nothing replayed, and live events after it all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_too_short_says_expired_and_replays_nothing() {
    let hub = Hub::bind_with("127.0.0.1:0", hub_config(|c| c.history_size = 100))
        .await
        .unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events")).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = publisher(&hub.url()).await;
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;

    cut(&proxy);
    for n in 0..500 {
        publisher.publish(event("gap", n)).await.unwrap();
    }
    relayed(&hub, 500).await;
    restore(&proxy, &sub, 1).await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::NotRecovered {
            reason: NotRecoveredReason::Expired
        })
    );
    for n in 500..510 {
        publisher.publish(event("live", n)).await.unwrap();
    }
    received(&got, 10).await;
    assert_exactly(&got, 500..510);
    let stats = sub.connection_stats();
    assert_eq!((stats.resumes_not_recovered, stats.events_replayed), (1, 0));
    sub.shutdown().await.unwrap();
}

/// Done when 3: after a hub restart the history is another one: the
/// answer is `epoch`, not a recovery that looks complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restart_says_epoch() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let addr = hub.local_addr();
    let got = Collector::default();
    let sub = subscriber(&hub.url()).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    assert_eq!(sub.last_resume(), Some(ResumeOutcome::Started));
    let publisher = publisher(&hub.url()).await;
    publisher.publish(event("before", 0)).await.unwrap();
    received(&got, 1).await;
    let before = sub.position().expect("a position");

    hub.shutdown().await;
    let hub = Hub::bind(addr).await.unwrap();
    wait_until("resumed on the new hub", LIMIT, || {
        sub.connection_stats().resumes_not_recovered == 1
    })
    .await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::NotRecovered {
            reason: NotRecoveredReason::Epoch
        })
    );
    assert_ne!(sub.position().map(|p| p.epoch()), Some(before.epoch()));
    wait_until("publisher back", LIMIT, || hub.stats().clients == 2).await;
    publisher.publish(event("after", 1)).await.unwrap();
    received(&got, 2).await;
    assert_exactly(&got, [0, 1]);
    sub.shutdown().await.unwrap();
}

/// Found by chaos (seed 603, `--backplane none`): a subscriber away while
/// its hub restarted, and back only after the new hub had relayed events,
/// is told `epoch` and still gets every event the new hub holds — none of
/// them can have reached it — then the live ones, in order. Before, it
/// started at the new hub's head: the 300 events published meanwhile (by
/// at-least-once publishers resending what the old hub never acked) were
/// never sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_of_a_restarted_hub_gets_what_the_new_hub_held_before_it_came_back() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let addr = hub.local_addr();
    let proxy = FaultProxy::start(addr).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events")).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = publisher(&hub.url()).await;
    publisher.publish(event("before", 0)).await.unwrap();
    received(&got, 1).await;
    let before = sub.position().expect("a position");

    // The subscriber's link is down across the restart, and stays down
    // while the new hub relays 300 events.
    cut(&proxy);
    hub.shutdown().await;
    let hub = Hub::bind(addr).await.unwrap();
    wait_until("publisher back", LIMIT, || hub.stats().clients == 1).await;
    for n in 1..=300 {
        publisher.publish(event("meanwhile", n)).await.unwrap();
    }
    relayed(&hub, 300).await;
    restore(&proxy, &sub, 1).await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::NotRecovered {
            reason: NotRecoveredReason::Epoch
        })
    );
    publisher.publish(event("after", 301)).await.unwrap();
    received(&got, 302).await;
    assert_exactly(&got, 0..302);
    // Its position is the new hub's, past everything it was sent.
    let now = sub.position().expect("a position");
    assert_ne!(now.epoch(), before.epoch());
    wait_until("position at the head", LIMIT, || {
        sub.position().is_some_and(|p| p.seq() == 301)
    })
    .await;
    sub.shutdown().await.unwrap();
}

/// Done when 4 (socket.io#5538): a client that received nothing before its
/// link dropped still recovers, from the position the upgrade answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_received_nothing_recovers() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events")).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = publisher(&hub.url()).await;
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;
    assert_eq!(got.len(), 0);

    cut(&proxy);
    for n in 0..10 {
        publisher.publish(event("missed", n)).await.unwrap();
    }
    relayed(&hub, 10).await;
    restore(&proxy, &sub, 1).await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::Recovered { replayed: 10 })
    );
    received(&got, 10).await;
    assert_exactly(&got, 0..10);
    sub.shutdown().await.unwrap();
}

/// Done when 4 (socket.io#5419, #4880): an empty resume moves the position
/// on, so later reconnects never replay old events again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_resumes_move_the_position_and_replay_nothing_twice() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events")).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = publisher(&hub.url()).await;
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;
    for n in 0..10 {
        publisher.publish(event("seen", n)).await.unwrap();
    }
    received(&got, 10).await;
    for i in 1..=3 {
        cut(&proxy);
        restore(&proxy, &sub, i).await;
        assert_eq!(
            sub.last_resume(),
            Some(ResumeOutcome::Recovered { replayed: 0 }),
            "reconnect {i}"
        );
    }
    // The hub's position frames caught the position up.
    wait_until("position at the head", LIMIT, || {
        sub.position().map(|p| p.seq()) == Some(10)
    })
    .await;
    cut(&proxy);
    for n in 10..15 {
        publisher.publish(event("missed", n)).await.unwrap();
    }
    relayed(&hub, 15).await;
    restore(&proxy, &sub, 4).await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::Recovered { replayed: 5 })
    );
    received(&got, 15).await;
    assert_exactly(&got, 0..15);
    assert_eq!(sub.connection_stats().events_replayed, 5);
    sub.shutdown().await.unwrap();
}

/// Done when 4 (filters): a subscriber filtered to `a` in an `a`/`b`
/// stream is recovered; the gaps in `seq` that its filter makes are not a
/// loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_subscriber_recovers() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events"))
        .server_filters(true)
        .connect()
        .await
        .unwrap();
    sub.subscribe(vec!["a".to_string()], got.handler())
        .await
        .unwrap();
    let publisher = publisher(&hub.url()).await;
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;
    let kind = |n: u64| if n.is_multiple_of(2) { "a" } else { "b" };
    for n in 0..20 {
        publisher.publish(event(kind(n), n)).await.unwrap();
    }
    received(&got, 10).await;
    for round in 1..=3u64 {
        cut(&proxy);
        for n in 20 * round..20 * (round + 1) {
            publisher.publish(event(kind(n), n)).await.unwrap();
        }
        relayed(&hub, 20 * (round + 1)).await;
        restore(&proxy, &sub, round).await;
        assert!(
            matches!(sub.last_resume(), Some(ResumeOutcome::Recovered { .. })),
            "{:?}",
            sub.last_resume()
        );
    }
    received(&got, 40).await;
    assert_exactly(&got, (0..80u64).filter(|n| n.is_multiple_of(2)));
    assert_eq!(sub.connection_stats().resumes_not_recovered, 0);
    sub.shutdown().await.unwrap();
}

/// Done when 5: a publisher at full speed while the subscriber's
/// connection is reset again and again: exactly once, in order, across
/// every seam.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_under_a_full_speed_publisher_keep_every_seam_exact() {
    seams_run(100, 0xfeed).await;
}

/// The count: 1,000 reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with `cargo xtask soak`"]
async fn soak_resets_under_a_full_speed_publisher() {
    seams_run(1_000, 0xfeed).await;
}

/// Most events the seam runs' publisher gets ahead of the subscriber.
const MAX_BACKLOG: u64 = 50_000;

async fn seams_run(resets: u64, seed: u64) {
    let hub = Hub::bind_with(
        "127.0.0.1:0",
        hub_config(|c| {
            c.history_size = 1_000_000;
            c.history_bytes = 512 << 20;
            c.client_queue_bytes = 256 << 20;
            c.client_queue_frames = 1_000_000;
        }),
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events"))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = Arc::new(publisher(&hub.url()).await);
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let publishing = {
        let (publisher, stop, got) = (Arc::clone(&publisher), Arc::clone(&stop), got.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(SeqCst) {
                publisher.publish(event("seam", n)).await.unwrap();
                n += 1;
                if n.is_multiple_of(256) {
                    // Flat out, but never more than a bounded backlog
                    // ahead of the subscriber: a long run must not outgrow
                    // the history (that would be `expired`, another test).
                    while n - got.len() as u64 > MAX_BACKLOG && !stop.load(SeqCst) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    tokio::task::yield_now().await;
                }
            }
            n
        })
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 1..=resets {
        let target = got.len() + rng.usize(1..200);
        let deadline = tokio::time::Instant::now() + LIMIT;
        while got.len() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress after reset {i}: got {} of {target}; state {:?}; last {:?}; \
                 subscriber {:?}; hub {:?}",
                got.len(),
                sub.state(),
                sub.last_resume(),
                sub.connection_stats(),
                hub.stats()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.reset_all();
        wait_until("resumed", LIMIT, || {
            let s = sub.connection_stats();
            s.resumes_recovered + s.resumes_not_recovered >= i
        })
        .await;
    }
    stop.store(true, SeqCst);
    let published = publishing.await.unwrap();
    publisher.flush().await.unwrap();
    // The subscriber may be up to MAX_BACKLOG events behind.
    received(&got, published as usize).await;
    let stats = sub.connection_stats();
    assert_eq!(
        got.len() as u64,
        published,
        "events received; subscriber {stats:?}; hub {:?}",
        hub.stats()
    );

    assert_exactly(&got, 0..published);
    assert_eq!(stats.resumes_recovered, resets, "{stats:?}");
    assert_eq!(stats.resumes_not_recovered, 0);
    assert_eq!(sub.dlq_stats().total_pushed, 0);
    sub.shutdown().await.unwrap();
}

/// Done when 4 (no cliff): a subscriber away for more events than a
/// replay used to be allowed (`max_replay`, here 50; its queue 64 frames)
/// is recovered, and gets every one of them, in order, then live ones.
/// `too_many` is never the answer: `max_replay` is only how many events
/// its writer takes from the history at a time. (Was `too_many` at
/// f945df2.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn however_many_missed_events_the_history_holds_are_all_recovered() {
    const MISSED: u64 = 3_000;
    let hub = Hub::bind_with(
        "127.0.0.1:0",
        hub_config(|c| {
            c.max_replay = 50;
            c.client_queue_frames = 64;
        }),
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let sub = subscriber(&proxy.url("/events")).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = publisher(&hub.url()).await;
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;
    cut(&proxy);
    for n in 0..MISSED {
        publisher.publish(event("missed", n)).await.unwrap();
    }
    relayed(&hub, MISSED).await;
    restore(&proxy, &sub, 1).await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::Recovered { replayed: MISSED })
    );
    received(&got, MISSED as usize).await;
    publisher.publish(event("live", MISSED)).await.unwrap();
    received(&got, MISSED as usize + 1).await;
    assert_exactly(&got, 0..=MISSED);
    let stats = hub.stats();
    assert_eq!(
        (stats.resumes_recovered, stats.resumes_not_recovered),
        (1, 0)
    );
    assert_eq!(stats.events_replayed, MISSED);
    assert_eq!(sub.connection_stats().events_replayed, MISSED);
    sub.shutdown().await.unwrap();
}

/// A subscriber whose handler holds the first event, with a mailbox of
/// one that stops the transport reading (`MailboxOverflow::Block`): it
/// reads nothing until `gate` is notified, then handles each event and
/// lets the next one through.
pub(crate) async fn gated_subscriber(
    url: &str,
    got: &Collector,
) -> (WebSocketTransport, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let sub = subscriber(url)
        .mailbox_size(1)
        .mailbox_overflow(MailboxOverflow::Block)
        .connect()
        .await
        .unwrap();
    let handler = {
        let (gate, inner) = (Arc::clone(&gate), got.handler());
        move |event: Event| {
            let (gate, done) = (Arc::clone(&gate), inner(event));
            Box::pin(async move {
                gate.notified().await;
                gate.notify_one();
                done.await
            }) as watchtower_websocket::HandlerFuture
        }
    };
    sub.subscribe(vec![], handler).await.unwrap();
    (sub, gate)
}

/// An event of `n` with 16 KiB of padding: a few hundred fill the
/// sockets' buffers, 64 the hub's queue of the tests below.
fn big_event(n: u64) -> Event {
    Event::new(
        "big",
        serde_json::json!({ "n": n, "pad": "x".repeat(16 * 1024) }),
        EventMetadata::default(),
    )
}

/// Done when 6: a subscriber too slow for its hub queue (64 frames, while
/// 2,000 16 KiB events, 32 MiB, flow) lags inside the history: the hub
/// neither drops a frame for it nor closes it, and once it reads again it
/// gets every event, in order, on the connection it had. (Was closed with
/// 1013 to resume at f945df2, and, with the defaults, not recovered.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_lags_inside_the_history_and_misses_nothing() {
    const EVENTS: u64 = 2_000;
    let hub = Hub::bind_with("127.0.0.1:0", hub_config(|c| c.client_queue_frames = 64))
        .await
        .unwrap();
    let got = Collector::default();
    let (sub, gate) = gated_subscriber(&hub.url(), &got).await;
    let publisher = publisher(&hub.url()).await;
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;

    for n in 0..EVENTS {
        publisher.publish(big_event(n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    relayed(&hub, EVENTS).await;
    // Everything is relayed while the handler still holds the first
    // event: at most the sockets' buffers went out, the rest waits in
    // the history. The handler may go on now.
    gate.notify_one();
    received(&got, EVENTS as usize).await;

    assert_exactly(&got, 0..EVENTS);
    let stats = hub.stats();
    assert_eq!(
        (
            stats.dropped_frames,
            stats.closed_to_resume,
            stats.disconnected_slow
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    let stats = sub.connection_stats();
    assert_eq!((stats.disconnects, stats.reconnects), (0, 0), "{stats:?}");
    assert_eq!(sub.dlq_stats().total_pushed, 0);
    sub.shutdown().await.unwrap();
}

/// Done when 6: a slow subscriber whose hub forgot events it had not
/// been sent yet (a history of 200 events, while 2,000 flow) is closed at
/// once, with 1013, and resumes; it is told `expired`, never a silent
/// gap: it gets what it was sent before, in order, then live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_the_history_forgot_is_closed_to_resume_and_told_expired() {
    const EVENTS: u64 = 2_000;
    let hub = Hub::bind_with(
        "127.0.0.1:0",
        hub_config(|c| {
            c.client_queue_frames = 64;
            c.history_size = 200;
        }),
    )
    .await
    .unwrap();
    let got = Collector::default();
    let (sub, gate) = gated_subscriber(&hub.url(), &got).await;
    let publisher = publisher(&hub.url()).await;
    wait_until("both connected", LIMIT, || hub.stats().clients == 2).await;

    for n in 0..EVENTS {
        publisher.publish(big_event(n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    relayed(&hub, EVENTS).await;
    wait_until("closed to resume", LIMIT, || {
        hub.stats().closed_to_resume == 1
    })
    .await;
    gate.notify_one();
    wait_until("resumed", LIMIT, || {
        sub.connection_stats().resumes_not_recovered == 1 && sub.state().is_connected()
    })
    .await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::NotRecovered {
            reason: NotRecoveredReason::Expired
        })
    );
    for n in EVENTS..EVENTS + 10 {
        publisher.publish(event("live", n)).await.unwrap();
    }
    wait_until("the live events", LIMIT, || {
        got.ns().iter().filter(|n| **n >= EVENTS).count() == 10
    })
    .await;

    // What it was sent before the close, in order, then the live events:
    // the gap between them is the one its `expired` answer tells of.
    let ns = got.ns();
    let old = ns.iter().take_while(|n| **n < EVENTS).count();
    assert!(old > 0 && old < EVENTS as usize, "{old}");
    assert_eq!(ns[..old], (0..old as u64).collect::<Vec<_>>());
    assert_eq!(ns[old..], (EVENTS..EVENTS + 10).collect::<Vec<_>>());
    let stats = hub.stats();
    assert_eq!(
        (
            stats.closed_to_resume,
            stats.resumes_not_recovered,
            stats.dropped_frames
        ),
        (1, 1, 0),
        "{stats:?}"
    );
    let stats = sub.connection_stats();
    assert_eq!(
        (stats.resumes_recovered, stats.resumes_not_recovered),
        (0, 1)
    );
    assert_eq!(sub.dlq_stats().total_pushed, 0);
    sub.shutdown().await.unwrap();
}

/// A server without history: resume is not supported, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_without_history_says_not_supported() {
    let hub = Hub::bind_with("127.0.0.1:0", hub_config(|c| c.history_size = 0))
        .await
        .unwrap();
    let sub = subscriber(&hub.url()).connect().await.unwrap();
    assert_eq!(sub.last_resume(), Some(ResumeOutcome::NotSupported));
    assert_eq!(sub.position(), None);
    assert_eq!(sub.connection_stats().resumes_not_supported, 1);
    sub.shutdown().await.unwrap();
}

/// A position given at build continues where an earlier transport (an
/// earlier process) stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_continues_an_earlier_transport() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let publisher = publisher(&hub.url()).await;
    let first = Collector::default();
    let sub = subscriber(&hub.url()).connect().await.unwrap();
    sub.subscribe(vec![], first.handler()).await.unwrap();
    for n in 0..5 {
        publisher.publish(event("one", n)).await.unwrap();
    }
    received(&first, 5).await;
    sub.shutdown().await.unwrap();
    let position = sub.position().expect("a position");
    // The text form round-trips, as a process would store it.
    let position: watchtower_websocket::Position = position.to_string().parse().unwrap();
    for n in 5..12 {
        publisher.publish(event("two", n)).await.unwrap();
    }
    relayed(&hub, 12).await;

    let second = Collector::default();
    let sub = subscriber(&hub.url())
        .resume_from(position)
        .connect()
        .await
        .unwrap();
    sub.subscribe(vec![], second.handler()).await.unwrap();
    received(&second, 7).await;
    assert_exactly(&second, 5..12);
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::Recovered { replayed: 7 })
    );
    sub.shutdown().await.unwrap();
}
