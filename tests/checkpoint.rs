//! A position means *handled*: `position()`, what a checkpoint stores and
//! what `shutdown` leaves behind cover only what every subscription has
//! handled (or dead-lettered), against a real hub. A process that
//! continues from it gets every event it had not handled, and — when it
//! stopped with a `shutdown`, or its checkpoint had caught up — nothing
//! twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use watchtower_hub::{Hub, HubConfig};
use watchtower_test_support::{FaultProxy, Mode, TempDir, wait_until};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{
    EventHandler, FileCheckpoint, HandlerFuture, MailboxOverflow, MaxAttempts, Position,
    ReconnectPolicy, ResumeOutcome, TransportBuilder,
};

use crate::support::{Collector, LIMIT, event, init_logs};

fn subscriber(url: &str) -> TransportBuilder {
    init_logs();
    WebSocketTransport::builder(WebSocketConfig::new(url))
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_millis(20),
            MaxAttempts::Unlimited,
        ))
        .connect_timeout(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(5))
}

async fn publisher(url: &str) -> WebSocketTransport {
    let mut config = WebSocketConfig::new(url);
    config.backpressure.strategy = BackpressureStrategy::Block;
    WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await
        .unwrap()
}

async fn hub() -> Hub {
    let mut config = HubConfig::default();
    config.history_size = 100_000;
    config.max_replay = 100_000;
    Hub::bind_with("127.0.0.1:0", config).await.unwrap()
}

/// A handler that handles one event per permit of `gate` (none at first),
/// collecting what it handled.
fn gated(got: &Collector, gate: &Arc<Semaphore>) -> EventHandler {
    gated_counting(got, gate, &Arc::default())
}

/// [`gated`], counting in `called` the handler calls (made before the
/// gate).
fn gated_counting(
    got: &Collector,
    gate: &Arc<Semaphore>,
    called: &Arc<AtomicUsize>,
) -> EventHandler {
    let (gate, inner, called) = (Arc::clone(gate), got.handler(), Arc::clone(called));
    Arc::new(move |event: Event| {
        called.fetch_add(1, SeqCst);
        let (gate, done) = (Arc::clone(&gate), inner(event));
        Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            done.await
        }) as HandlerFuture
    })
}

/// Waits until `n` events are in the handled position, with more behind
/// them: handlers run one at a time, and a subscription counts an event
/// handled before it calls the next handler, so once handler `n + 1` is
/// called the first `n` count. The collector alone says less: it has an
/// event as its handler ends, before the subscription counts it (seen
/// under load: a position taken after "three handled" was one of none).
async fn handled_with_more_behind(called: &AtomicUsize, got: &Collector, n: usize) {
    wait_until("the next handler called", LIMIT, || called.load(SeqCst) > n).await;
    assert_eq!(got.len(), n, "handled past the gate");
}

async fn publish(publisher: &WebSocketTransport, range: std::ops::Range<u64>) {
    for n in range {
        publisher.publish(event("t", n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
}

/// Waits until `sub` has read `n` events into its mailboxes.
async fn read(sub: &WebSocketTransport, n: u64) {
    wait_until("events read", LIMIT, || {
        let stats = sub.connection_stats();
        stats.frames_in - stats.control_frames_in >= n
    })
    .await;
}

async fn handled(got: &Collector, n: usize) {
    wait_until("events handled", LIMIT, || got.len() >= n).await;
}

/// What a new transport that continues from `position` receives, once
/// `expected` events have come (and a moment more for any extra).
async fn continued_from(url: &str, position: Position, expected: usize) -> Vec<u64> {
    let got = Collector::default();
    let sub = subscriber(url)
        .resume_from(position)
        .connect()
        .await
        .unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    handled(&got, expected).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.shutdown().await.unwrap();
    got.ns()
}

/// N2: events read into a mailbox but not handled are not in the
/// position; a process that continues from it gets exactly those. (At
/// f945df2 the position covered every event read: the continuation got
/// nothing — 10 events lost, then 6.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_position_covers_only_what_was_handled() {
    let hub = hub().await;
    let got = Collector::default();
    let gate = Arc::new(Semaphore::new(0));
    let sub = subscriber(&hub.url()).connect().await.unwrap();
    let called = Arc::default();
    sub.subscribe_handler(vec![], gated_counting(&got, &gate, &called))
        .await
        .unwrap();
    let start = sub.position().expect("a position");
    let publisher = publisher(&hub.url()).await;
    publish(&publisher, 0..10).await;
    read(&sub, 10).await;
    // Read, none handled: still where it started.
    assert_eq!(sub.position(), Some(start));
    assert_eq!(
        continued_from(&hub.url(), start, 10).await,
        (0..10).collect::<Vec<_>>()
    );

    gate.add_permits(4);
    handled_with_more_behind(&called, &got, 4).await;
    let four = sub.position().expect("a position");
    assert_ne!(four, start);
    assert_eq!(
        continued_from(&hub.url(), four, 6).await,
        (4..10).collect::<Vec<_>>()
    );

    gate.add_permits(6);
    handled(&got, 10).await;
    wait_until("the position at the head", LIMIT, || {
        sub.position().map(|p| p.seq()) == Some(10)
    })
    .await;
    sub.shutdown().await.unwrap();
}

/// N2: a `shutdown` that reaches its timeout with a handler still busy
/// does not count the events that handler left (they are dead-lettered as
/// `Shutdown`, not handled); continuing from the position gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_count_what_a_stopped_handler_left() {
    let hub = hub().await;
    let got = Collector::default();
    let gate = Arc::new(Semaphore::new(3));
    let sub = subscriber(&hub.url())
        .shutdown_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    sub.subscribe_handler(vec![], gated(&got, &gate))
        .await
        .unwrap();
    let publisher = publisher(&hub.url()).await;
    publish(&publisher, 0..10).await;
    read(&sub, 10).await;
    handled(&got, 3).await;
    sub.shutdown().await.unwrap();
    assert_eq!(sub.connection_stats().mailbox_abandoned, 7);
    let position = sub.position().expect("a position");
    assert_eq!(
        continued_from(&hub.url(), position, 7).await,
        (3..10).collect::<Vec<_>>()
    );
}

/// Within one process, a reconnect continues from what was read, not from
/// what was handled: what waits in a mailbox is not asked for again, and
/// every event is handled exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_continues_from_what_was_read() {
    let hub = hub().await;
    let proxy = FaultProxy::start(hub.local_addr()).await;
    let got = Collector::default();
    let gate = Arc::new(Semaphore::new(0));
    let sub = subscriber(&proxy.url("/events")).connect().await.unwrap();
    sub.subscribe_handler(vec![], gated(&got, &gate))
        .await
        .unwrap();
    let publisher = publisher(&hub.url()).await;
    publish(&publisher, 0..10).await;
    read(&sub, 10).await;
    proxy.set_mode(Mode::Blackhole);
    proxy.reset_all();
    publish(&publisher, 10..15).await;
    proxy.set_mode(Mode::Pass);
    wait_until("resumed", LIMIT, || {
        sub.connection_stats().resumes_recovered == 1
    })
    .await;
    // The ten read (and still in the mailbox) are not asked for again;
    // the five published meanwhile are, unless the proxy let them through
    // before the reset took effect.
    assert!(
        matches!(
            sub.last_resume(),
            Some(ResumeOutcome::Recovered { replayed: 0 | 5 })
        ),
        "{:?}",
        sub.last_resume()
    );
    gate.add_permits(100);
    handled(&got, 15).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(got.ns(), (0..15).collect::<Vec<_>>());
    sub.shutdown().await.unwrap();
}

/// A checkpoint file: written while events are handled, read at start. A
/// process that dies without a shutdown (dropped here) and starts again
/// from its checkpoint gets what it had not handled, and — its checkpoint
/// having caught up — nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_continued_from_after_a_crash() {
    let hub = hub().await;
    let dir = TempDir::new();
    let file = dir.path().join("position");
    let checkpointed = |url: &str| {
        subscriber(url)
            .checkpoint_file(&file)
            .checkpoint_interval(Duration::from_millis(20))
    };
    let got = Collector::default();
    let gate = Arc::new(Semaphore::new(3));
    let sub = checkpointed(&hub.url()).connect().await.unwrap();
    let called = Arc::default();
    sub.subscribe_handler(vec![], gated_counting(&got, &gate, &called))
        .await
        .unwrap();
    let publisher = publisher(&hub.url()).await;
    publish(&publisher, 0..8).await;
    read(&sub, 8).await;
    // (Under load, a position taken once the collector had three was
    // seen to be one of none handled: checkpointed, and all ten replayed.)
    handled_with_more_behind(&called, &got, 3).await;
    let position = sub.position().expect("a position");
    // (The count follows the write: the save is counted once it returns.)
    wait_until("the checkpoint caught up", LIMIT, || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.trim() == position.to_string())
            && sub.connection_stats().checkpoints_saved >= 1
    })
    .await;
    // A crash: no shutdown, no last save.
    drop(sub);
    publish(&publisher, 8..10).await;

    let again = Collector::default();
    let sub = checkpointed(&hub.url()).connect().await.unwrap();
    sub.subscribe(vec![], again.handler()).await.unwrap();
    handled(&again, 7).await;
    assert_eq!(
        sub.last_resume(),
        Some(ResumeOutcome::Recovered { replayed: 7 })
    );
    sub.shutdown().await.unwrap();
    assert_eq!(again.ns(), (3..10).collect::<Vec<_>>());
    // The shutdown stored the final position: a third run gets nothing old.
    assert!(
        FileCheckpoint::new(&file).path().exists(),
        "the checkpoint file is there"
    );
    let stored: Position = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Some(stored), sub.position());
}

/// `shutdown` stores the position once the subscriptions have stopped,
/// whatever the interval: a clean restart gets only what is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stores_the_final_position() {
    let hub = hub().await;
    let dir = TempDir::new();
    let file = dir.path().join("position");
    let checkpointed = |url: &str| {
        subscriber(url)
            .checkpoint_file(&file)
            .checkpoint_interval(Duration::from_secs(3600))
    };
    let got = Collector::default();
    let sub = checkpointed(&hub.url()).connect().await.unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let publisher = publisher(&hub.url()).await;
    publish(&publisher, 0..5).await;
    handled(&got, 5).await;
    assert!(!file.exists(), "nothing stored before the interval");
    sub.shutdown().await.unwrap();
    assert_eq!(sub.connection_stats().checkpoints_saved, 1);
    publish(&publisher, 5..8).await;

    let again = Collector::default();
    let sub = checkpointed(&hub.url()).connect().await.unwrap();
    sub.subscribe(vec![], again.handler()).await.unwrap();
    handled(&again, 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(again.ns(), vec![5, 6, 7]);
    sub.shutdown().await.unwrap();
}

/// A checkpoint that does not hold a position fails `connect` with a
/// configuration error rather than start from now and skip what it owes.
#[tokio::test]
async fn a_checkpoint_that_is_not_a_position_fails_connect() {
    let dir = TempDir::new();
    let file = dir.write("position", "yesterday\n");
    let result = subscriber("ws://127.0.0.1:9/events")
        .checkpoint_file(&file)
        .connect()
        .await;
    match result {
        Err(WatchtowerError::Config(message)) => {
            assert!(message.contains("does not hold a position"), "{message}")
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// L2: with a position to continue from, the first connect waits for the
/// first subscribe; a `flush` before it says so instead of waiting
/// forever. (At f945df2 it was still waiting after 2 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_before_the_first_subscribe_does_not_wait_forever() {
    let hub = hub().await;
    let sub = subscriber(&hub.url())
        .resume_from(Position::new(1, 0))
        .connect()
        .await
        .unwrap();
    sub.publish(event("t", 0)).await.unwrap();
    let flushed = tokio::time::timeout(Duration::from_secs(2), sub.flush())
        .await
        .expect("flush returned");
    let error = flushed.unwrap_err().to_string();
    assert!(error.contains("before the first subscribe"), "{error}");
    // Once subscribed, what was queued goes out.
    sub.subscribe(vec![], |_| Box::pin(async { Ok(()) }))
        .await
        .unwrap();
    sub.flush().await.unwrap();
    sub.shutdown().await.unwrap();
}

/// L1: what arrives during the close handshake at shutdown is not taken:
/// not dispatched, not dead-lettered by a full mailbox (`Block`), and no
/// position frame moves the position. A raw server that, on the client's
/// close, sends an event and a position frame before its own close. (At
/// f945df2 the event was handled and the position moved to seq 5.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_handshake_takes_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/events", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        upgrade(&mut tcp, "00000000000000aa:0").await;
        // Frames by hand: tungstenite sends nothing after a close.
        loop {
            let (opcode, _) = read_frame(&mut tcp).await;
            if opcode == 0x8 {
                break;
            }
        }
        let late = event("late", 0).to_json().unwrap();
        write_frame(&mut tcp, 0x1, late.as_bytes()).await;
        write_frame(&mut tcp, 0x1, br#"{"type":"position","seq":5}"#).await;
        write_frame(&mut tcp, 0x8, &1000u16.to_be_bytes()).await;
        tcp.flush().await.unwrap();
        // Until the client hangs up.
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
    });
    let got = Collector::default();
    let sub = subscriber(&url)
        .mailbox_size(1)
        .mailbox_overflow(MailboxOverflow::Block)
        .connect()
        .await
        .unwrap();
    sub.subscribe(vec![], got.handler()).await.unwrap();
    let start = sub.position();
    assert_eq!(start, Some(Position::new(0xaa, 0)));
    let report = sub.shutdown().await.unwrap();
    server.await.unwrap();
    assert!(report.closed_cleanly);
    assert_eq!(got.len(), 0, "nothing dispatched");
    assert_eq!(sub.dlq_stats().total_pushed, 0, "nothing dead-lettered");
    assert_eq!(sub.connection_stats().events_received, 0);
    assert_eq!(sub.position(), start, "the position did not move");
}

/// Answers a WebSocket upgrade on `tcp` by hand, with a hub's position
/// header.
async fn upgrade(tcp: &mut TcpStream, position: &str) {
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        request.push(byte[0]);
    }
    let request = String::from_utf8(request).unwrap();
    let key = request
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .unwrap();
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nWatchtower-Position: {position}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await.unwrap();
}

/// Reads one (masked, client) frame: its opcode and payload.
async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => u64::from(tcp.read_u16().await.unwrap()),
        127 => tcp.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        tcp.read_exact(&mut mask).await.unwrap();
    }
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload).await.unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    (head[0] & 0x0f, payload)
}

/// Writes one unmasked (server) frame, final.
async fn write_frame(tcp: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let mut frame = vec![0x80 | opcode];
    if payload.len() < 126 {
        frame.push(payload.len() as u8);
    } else {
        frame.push(126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(payload);
    tcp.write_all(&frame).await.unwrap();
}
