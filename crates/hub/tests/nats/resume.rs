//! Resume positions are stream sequences, valid on every hub: a
//! subscriber fails over with its position, and a position the stream no
//! longer holds is never taken for one it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use watchtower_core::{
    ControlFrame, NotRecoveredReason, POSITION_HEADER, Position, RESUME_HEADER, frame_key,
};
use watchtower_hub::{Hub, HubConfig, NatsConfig};
use watchtower_test_support::NatsServer;

use crate::group::{
    AckPublisher, Outcome, Thaw, ThreadHub, frame, hub_on, hub_on_config, join, once_in_order,
    stream_name,
};
use crate::support::{Client, LIMIT, next_text, stats_until};

/// A subscriber speaking the resume protocol over a raw socket: it keeps
/// its position from the hub's position frames and the key of the last
/// event after the last one, as the transport does.
struct Resumer {
    ws: Option<Client>,
    epoch: u64,
    seq: u64,
    last: Option<u64>,
    events: Vec<(u64, u64)>,
    /// Resumes after a connection ended.
    failovers: usize,
}

impl Resumer {
    /// Connects with `resume` (`new` or a position); returns the answer.
    async fn connect(url: &str, resume: &str) -> (Resumer, ControlFrame) {
        let mut r = Resumer {
            ws: None,
            epoch: 0,
            seq: 0,
            last: None,
            events: Vec::new(),
            failovers: 0,
        };
        let answer = r.reconnect(url, resume).await;
        (r, answer)
    }

    async fn reconnect(&mut self, url: &str, resume: &str) -> ControlFrame {
        self.try_reconnect(url, resume).await.unwrap()
    }

    /// `None` when `url` cannot be reached (a hub that is down).
    async fn try_reconnect(&mut self, url: &str, resume: &str) -> Option<ControlFrame> {
        let (mut ws, _) = connect_async(format!("{url}?resume={resume}")).await.ok()?;
        let first = match timeout(LIMIT, ws.next()).await.ok()? {
            Some(Ok(Message::Text(t))) => ControlFrame::from_json(t.as_bytes()).unwrap(),
            _ => return None,
        };
        let ControlFrame::Resumed { position, .. } = &first else {
            panic!("expected the resume answer, got {first:?}");
        };
        let position: Position = position.parse().unwrap();
        if self.ws.is_none() && self.events.is_empty() {
            (self.epoch, self.seq) = (position.epoch(), position.seq());
        }
        self.ws = Some(ws);
        Some(first)
    }

    /// [`Resumer::try_reconnect`] until `url` answers (a hub refuses with
    /// 503 while it cannot tell what the client missed).
    async fn reconnect_once_answered(&mut self, url: &str, resume: &str) -> ControlFrame {
        let deadline = tokio::time::Instant::now() + 2 * LIMIT;
        loop {
            if let Some(answer) = self.try_reconnect(url, resume).await {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url} never answered"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Reads `n` events in all, moving through `urls` (from `at`) with its
    /// position whenever a connection ends; every resume must recover.
    async fn read_with_failover(&mut self, urls: &[String], mut at: usize, n: usize) {
        let deadline = tokio::time::Instant::now() + 4 * LIMIT;
        while !self.read_until(n).await {
            at += 1;
            let url = &urls[at % urls.len()];
            let position = self.position();
            if let Some(answer) = self.try_reconnect(url, &position).await {
                self.failovers += 1;
                let got = self.events.len();
                assert!(
                    recovered(&answer).is_ok(),
                    "resume at {position} on {url} after {got} events: {answer:?}"
                );
            } else {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no hub to fail over to"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    fn position(&self) -> String {
        Position::new(self.epoch, self.seq)
            .after(self.last)
            .to_string()
    }

    /// Reads until `n` events arrived in all, or the connection ends;
    /// returns whether it is still open.
    async fn read_until(&mut self, n: usize) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        while self.events.len() < n {
            let next = timeout(LIMIT, ws.next()).await.expect("nothing arrived");
            let text = match next {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => {
                    self.ws = None;
                    return false;
                }
            };
            if let Some(ControlFrame::Position { seq }) = ControlFrame::from_json(text.as_bytes()) {
                self.seq = seq;
                self.last = None;
                continue;
            }
            let e: serde_json::Value = serde_json::from_str(&text).unwrap();
            self.last = Some(frame_key(text.as_bytes()));
            self.events.push((
                e["payload"]["p"].as_u64().unwrap(),
                e["payload"]["n"].as_u64().unwrap(),
            ));
        }
        true
    }
}

/// Waits until a new client on `url` is told the stream position `seq`.
async fn head_at(url: &str, seq: u64) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (_, answer) = Resumer::connect(url, "new").await;
        let ControlFrame::Resumed { position, .. } = answer else {
            panic!("expected the resume answer");
        };
        if position.parse::<Position>().unwrap().seq() >= seq {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached {seq}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn recovered(answer: &ControlFrame) -> Result<u64, NotRecoveredReason> {
    match answer {
        ControlFrame::Resumed {
            recovered: true,
            replayed,
            ..
        } => Ok(*replayed),
        ControlFrame::Resumed { reason, .. } => Err(reason.unwrap()),
        other => panic!("not a resume answer: {other:?}"),
    }
}

/// Done-when 3: a subscriber on A, A killed, the subscriber fails over to
/// B with its position: recovered, every missed event once, in order.
///
/// B's history follows B's consumer, which may still be reading when the
/// publisher's acks (JetStream stored the events) are in: the test waits
/// until B's history holds all 600 before resuming there, so B replays
/// exactly what the subscriber missed. (Ignored for a while after a run
/// where B answered `replayed: 187` with `position: "…:487"`: that position
/// is B's head when the subscriber joined, not the subscriber's; 300 + 187
/// replayed + 113 live is all 600, and the exact count assumed B had read
/// all 600 already.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_fails_over_to_another_hub_with_its_position() {
    let Some(nats) = NatsServer::start_or_skip("a_subscriber_fails_over_with_its_position").await
    else {
        return;
    };
    let stream = stream_name();
    let a = hub_on(&nats, &stream, HubConfig::default()).await;
    let b = hub_on(&nats, &stream, HubConfig::default()).await;
    let (mut sub, answer) = Resumer::connect(&a.url(), "new").await;
    assert!(matches!(
        answer,
        ControlFrame::Resumed {
            recovered: false,
            ..
        }
    ));
    stats_until(&a, "subscriber joined", |s| s.clients == 1).await;

    let frames: Vec<String> = (0..600).map(|n| frame("t", 1, n)).collect();
    let mut first = AckPublisher::new(frames[..300].to_vec());
    assert_eq!(first.run(&b.url()).await, Outcome::AllAcked);
    assert!(sub.read_until(200).await);
    // A dies: its sockets are dropped without a goodbye.
    drop(a);
    let mut rest = AckPublisher::new(frames[300..].to_vec());
    assert_eq!(rest.run(&b.url()).await, Outcome::AllAcked);
    // Whatever A had written before it died still counts as received.
    assert!(!sub.read_until(600).await, "A's socket should have ended");
    let before = sub.events.len();
    assert!(before < 600);

    head_at(&b.url(), 600).await;
    let answer = sub.reconnect(&b.url(), &sub.position()).await;
    assert_eq!(recovered(&answer), Ok((600 - before) as u64), "{answer:?}");
    assert!(sub.read_until(600).await);
    once_in_order(&sub.events);
    let want: Vec<(u64, u64)> = (0..600).map(|n| (1, n)).collect();
    assert_eq!(sub.events, want);
}

/// A hub whose view of the stream is behind the hub a subscriber comes
/// from waits for its consumer before answering the subscriber's resume:
/// recovered, every event once, in order. Without the wait, B's history
/// has not reached the position yet and takes it for another history's
/// (`recovered: false`, reason `epoch`), though nothing was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_behind_the_stream_catches_up_before_answering_a_resume() {
    let Some(nats) = NatsServer::start_or_skip("a_hub_behind_the_stream_catches_up").await else {
        return;
    };
    const N: u64 = 2_000;
    let (a, b, mut sub, thaw) = a_subscriber_ahead_of_b(&nats, N).await;
    // The resume waits in B's listen backlog; B then has both the client
    // and the stream's events to take in.
    let position = sub.position();
    let url = b.url.clone();
    let resuming = tokio::spawn(async move {
        let answer = sub.reconnect(&url, &position).await;
        (sub, answer)
    });
    // Only so the request is most likely queued before B thaws; the test
    // holds whichever comes first.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(thaw);
    let (mut sub, answer) = resuming.await.unwrap();
    assert!(recovered(&answer).is_ok(), "{answer:?}");

    let mut marker = AckPublisher::new(vec![frame("t", 2, 0)]);
    assert_eq!(marker.run(&a.url()).await, Outcome::AllAcked);
    assert!(sub.read_until(N as usize + 1).await);
    let mut want: Vec<(u64, u64)> = (0..N).map(|n| (1, n)).collect();
    want.push((2, 0));
    assert_eq!(sub.events, want);
}

/// Hubs A and B on a stream of their own, and a resuming subscriber that
/// has read `n` events on A while B, frozen, stopped reading the stream:
/// more events than B's consumer had asked for, and more than it reads
/// in a few handshakes' time. B thaws when the last value is dropped; the
/// subscriber is disconnected.
async fn a_subscriber_ahead_of_b(nats: &NatsServer, n: u64) -> (Hub, ThreadHub, Resumer, Thaw) {
    let stream = stream_name();
    let a = hub_on(nats, &stream, HubConfig::default()).await;
    let b = ThreadHub::start(NatsConfig::new(nats.url()).stream(&stream)).await;
    let (mut sub, _) = Resumer::connect(&a.url(), "new").await;
    stats_until(&a, "subscriber joined", |s| s.clients == 1).await;
    let thaw = b.freeze().await;
    let frames: Vec<String> = (0..n).map(|i| frame("t", 1, i)).collect();
    let mut publisher = AckPublisher::new(frames);
    assert_eq!(publisher.run(&a.url()).await, Outcome::AllAcked);
    assert!(sub.read_until(n as usize).await);
    sub.ws = None;
    (a, b, sub, thaw)
}

/// Done-when 5: a position the stream already evicted is not recovered
/// (`expired`), on a hub that started after the eviction and on one that
/// saw the events; JetStream's silent start at its first retained message
/// is not taken for continuity. A position it still holds is recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_the_stream_evicted_is_expired_not_clamped() {
    let Some(nats) = NatsServer::start_or_skip("a_position_the_stream_evicted_is_expired").await
    else {
        return;
    };
    let stream = stream_name();
    let small = NatsConfig::new(nats.url()).stream(&stream).max_messages(50);
    let a = hub_on_config(small, HubConfig::default()).await;
    let (sub, _) = Resumer::connect(&a.url(), "new").await;
    let start = sub.position();
    drop(sub);

    let frames: Vec<String> = (0..200).map(|n| frame("t", 1, n)).collect();
    let mut publisher = AckPublisher::new(frames);
    assert_eq!(publisher.run(&a.url()).await, Outcome::AllAcked);
    // The stream may evict events before A's consumer reads them (it holds
    // 50): wait until A's position, not its count, reaches the end.
    head_at(&a.url(), 200).await;

    // A hub started now reads the stream from its first retained event.
    let c = hub_on(&nats, &stream, HubConfig::default()).await;
    let (_, answer) = Resumer::connect(&c.url(), &start).await;
    assert_eq!(recovered(&answer), Err(NotRecoveredReason::Expired));
    // The hub that saw every event forgets what the stream evicted.
    stats_until(&a, "history trimmed to the stream", |s| {
        s.history_events <= 50
    })
    .await;
    let (_, answer) = Resumer::connect(&a.url(), &start).await;
    assert_eq!(recovered(&answer), Err(NotRecoveredReason::Expired));
    // Ten events from the end is still held, on both.
    let epoch: Position = start.parse().unwrap();
    let near = Position::new(epoch.epoch(), 190).to_string();
    for hub in [&a, &c] {
        let (mut sub, answer) = Resumer::connect(&hub.url(), &near).await;
        assert_eq!(recovered(&answer), Ok(10));
        assert!(sub.read_until(10).await);
        let want: Vec<(u64, u64)> = (190..200).map(|n| (1, n)).collect();
        assert_eq!(sub.events, want);
    }
}

/// Done-when 7: three hubs, publishers and subscribers spread across them,
/// one hub killed and restarted on its port during the run: nothing lost,
/// nothing twice, each publisher's order kept, every resume recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_one_killed_and_restarted_lose_nothing() {
    let Some(nats) = NatsServer::start_or_skip("three_hubs_one_killed_and_restarted").await else {
        return;
    };
    let stream = stream_name();
    let mut hubs = Vec::new();
    for _ in 0..3 {
        hubs.push(Some(hub_on(&nats, &stream, HubConfig::default()).await));
    }
    let urls: Vec<String> = hubs.iter().flatten().map(|h| h.url()).collect();
    let addr = hubs[1].as_ref().unwrap().local_addr();
    const PUBLISHERS: u64 = 3;
    const EACH: u64 = 600;
    const TOTAL: usize = (PUBLISHERS * EACH) as usize;

    let mut subscribers = Vec::new();
    for i in 0..3 {
        let (sub, _) = Resumer::connect(&urls[i], "new").await;
        let urls = urls.clone();
        subscribers.push(tokio::spawn(async move {
            let mut sub = sub;
            sub.read_with_failover(&urls, i, TOTAL).await;
            (sub.events, sub.failovers)
        }));
    }
    for hub in hubs.iter().flatten() {
        stats_until(hub, "subscriber joined", |s| s.clients == 1).await;
    }
    let restarted = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let urls = urls.clone();
        let restarted = Arc::clone(&restarted);
        publishers.push(tokio::spawn(async move {
            let mut publisher = AckPublisher::new(Vec::new());
            let mut at = p as usize;
            for chunk in 0..(EACH / 50) {
                if chunk == EACH / 50 / 3 {
                    // A third is out: the rest only once hub 1 died and
                    // came back, so that lands mid-run.
                    while !restarted.load(Relaxed) {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
                publisher
                    .frames
                    .extend((chunk * 50..(chunk + 1) * 50).map(|n| frame("t", p, n)));
                // On to the next hub whenever one closes or is gone.
                while publisher.run(&urls[at % urls.len()]).await != Outcome::AllAcked {
                    at += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Mid-run: hub 1 dies without a goodbye and comes back on its port.
    stats_until(hubs[0].as_ref().unwrap(), "a third delivered", |s| {
        s.backplane_delivered >= (TOTAL / 3) as u64
    })
    .await;
    drop(hubs[1].take());
    let again = Hub::builder()
        .nats(NatsConfig::new(nats.url()).stream(&stream))
        .bind(addr)
        .await
        .unwrap();
    restarted.store(true, Relaxed);
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for (i, subscriber) in subscribers.into_iter().enumerate() {
        let (events, failovers) = subscriber.await.unwrap();
        assert_eq!(events.len(), TOTAL);
        once_in_order(&events);
        if i == 1 {
            assert!(failovers >= 1, "hub 1's subscriber never failed over");
        }
    }
    drop(again);
}

/// Client failover with the transport: a subscriber on A with B as its
/// fallback; A dies; the transport moves to B, resumes its position there
/// (recovered) and handles every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_fails_over_to_the_next_hub_and_resumes() {
    use std::sync::Mutex;
    use watchtower_core::{Event, EventMetadata};
    use watchtower_websocket_transport::{
        AtLeastOnce, ResumeOutcome, WebSocketConfig, WebSocketTransport,
    };

    let Some(nats) = NatsServer::start_or_skip("the_transport_fails_over_to_the_next_hub").await
    else {
        return;
    };
    let stream = stream_name();
    let a = hub_on(&nats, &stream, HubConfig::default()).await;
    let b = hub_on(&nats, &stream, HubConfig::default()).await;
    let mut config = WebSocketConfig::new(a.url());
    // Attempt n waits n seconds: A refused once, B on the second.
    config.reconnect_delay_seconds = 1;
    let sub = WebSocketTransport::builder(config)
        .fallback_urls([b.url()])
        .mailbox_size(10_000)
        .connect()
        .await
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    sub.subscribe(vec![], move |event: Event| {
        let sink = Arc::clone(&sink);
        Box::pin(async move {
            sink.lock()
                .unwrap()
                .push(event.payload["n"].as_u64().unwrap());
            Ok(())
        }) as watchtower_core::HandlerFuture
    })
    .await
    .unwrap();
    let publisher = WebSocketTransport::builder(WebSocketConfig::new(b.url()))
        .delivery(AtLeastOnce::default())
        .resume(false)
        .connect()
        .await
        .unwrap();
    let publish = |n: u64| Event::new("t", serde_json::json!({ "n": n }), EventMetadata::default());
    for n in 0..300 {
        publisher.publish(publish(n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    crate::support::until("a third handled", || got.lock().unwrap().len() >= 100).await;
    drop(a);
    for n in 300..600 {
        publisher.publish(publish(n)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    crate::support::until("all handled", || got.lock().unwrap().len() >= 600).await;
    assert_eq!(sub.url(), b.url());
    assert_eq!(sub.connection_stats().url_index, 1);
    assert!(
        matches!(sub.last_resume(), Some(ResumeOutcome::Recovered { .. })),
        "{:?}",
        sub.last_resume()
    );
    let got = got.lock().unwrap().clone();
    assert_eq!(got, (0..600).collect::<Vec<u64>>());
}

/// The identity an at-least-once client presents on both hubs.
const CLIENT_ID: &str = "0b6c7a52-3d1e-4f9a-8c2b-5e6f7a8b9c0d";

/// Connects to `url` presenting [`CLIENT_ID`] and the resume cursor
/// `resume`; returns the socket and the position the hub answered.
async fn connect_as_me(url: &str, resume: &str) -> (Client, Position) {
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("Watchtower-Client-Id", HeaderValue::from_static(CLIENT_ID));
    headers.insert(RESUME_HEADER, HeaderValue::from_str(resume).unwrap());
    let (ws, response) = connect_async(request).await.unwrap();
    let position = response.headers()[POSITION_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (ws, position)
}

/// The next frame of `client` that is an event or an ack, as JSON.
async fn next_event_or_ack(client: &mut Client) -> serde_json::Value {
    loop {
        let text = next_text(client).await;
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if value.get("id").is_some() || value["type"] == "ack" {
            return value;
        }
    }
}

/// A client (one `Watchtower-Client-Id`) publishes at-least-once on hub
/// A and resumes on hub B from the position it had before: B replays and
/// relays the other client's events only, never its own. Before, events
/// from another node's clients had no sender on B, so its own came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_another_hub_never_echoes_own_events() {
    let Some(nats) = NatsServer::start_or_skip("a_resume_on_another_hub_never_echoes").await else {
        return;
    };
    let stream = stream_name();
    let a = hub_on(&nats, &stream, HubConfig::default()).await;
    let b = hub_on(&nats, &stream, HubConfig::default()).await;
    let mut other = join(&a, "").await;
    let (mut me, start) = connect_as_me(&a.url(), "new").await;
    stats_until(&a, "both connected", |s| s.clients == 2).await;
    me.send(Message::text(r#"{"type":"hello","acks":true}"#))
        .await
        .unwrap();
    // Mine and the other client's, interleaved.
    for n in 0..5 {
        me.send(Message::text(frame("t", 1, n))).await.unwrap();
        other.send(Message::text(frame("t", 2, n))).await.unwrap();
    }
    // Mine are stored: acknowledged.
    loop {
        let value = next_event_or_ack(&mut me).await;
        if value["type"] == "ack" && value["upto"].as_u64() == Some(5) {
            break;
        }
    }
    drop(me);
    stats_until(&b, "all ten read on B", |s| s.backplane_delivered >= 10).await;

    let (mut back, _) = connect_as_me(&b.url(), &start.to_string()).await;
    stats_until(&b, "back on B", |s| s.clients == 1).await;
    other.send(Message::text(frame("t", 2, 5))).await.unwrap();
    // The other client's events only, replayed then live.
    let mut got = Vec::new();
    while got.last() != Some(&(2, 5)) {
        let value = next_event_or_ack(&mut back).await;
        let p = value["payload"]["p"].as_u64().unwrap();
        let n = value["payload"]["n"].as_u64().unwrap();
        assert_ne!(p, 1, "its own event p1-{n} was sent back; got {got:?}");
        got.push((p, n));
    }
    assert_eq!(got, (0..6).map(|n| (2, n)).collect::<Vec<_>>());
}

/// #11: an event's age in the history counts from when the stream stored
/// it, on every hub: once the hub that read the events as they came
/// answers `expired` for a position before them, a hub started after that
/// (which reads them from the stream at its start) answers `expired` too.
/// At f945df2 each hub counted from when it read an event: the later hub
/// recovered all 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_ages_count_from_the_streams_timestamps_on_every_hub() {
    let Some(nats) = NatsServer::start_or_skip("history_ages_count_from_the_streams").await else {
        return;
    };
    let stream = stream_name();
    let mut config = HubConfig::default();
    config.history_ttl = std::time::Duration::from_secs(2);
    let a = hub_on(&nats, &stream, config.clone()).await;
    let (sub, _) = Resumer::connect(&a.url(), "new").await;
    let start = sub.position();
    drop(sub);
    let mut publisher = AckPublisher::new((0..100).map(|n| frame("t", 1, n)).collect());
    publisher.run_until_acked(&a.url()).await;
    head_at(&a.url(), 100).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (_, answer) = Resumer::connect(&a.url(), &start).await;
        match recovered(&answer) {
            Err(NotRecoveredReason::Expired) => break,
            Ok(100) => {}
            other => panic!("A answered {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never forgot the events"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let b = hub_on(&nats, &stream, config).await;
    let (_, answer) = Resumer::connect(&b.url(), &start).await;
    assert_eq!(recovered(&answer), Err(NotRecoveredReason::Expired));
}

/// #5: a resume on a hub cut off from NATS (the server killed, its store
/// kept) whose history has not read as far as the client's position is
/// refused with 503, as a hub that is down would be, so the client resumes
/// on another hub or later; it is never told `epoch` for its own epoch.
/// Once NATS is back, the same position is recovered there, and nothing
/// the client had is sent again. At f945df2 it was answered `epoch` after
/// 5 s, and then the events the client already had arrived again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_a_hub_cut_off_from_nats_is_refused_not_told_epoch() {
    let Some(mut nats) = NatsServer::start_or_skip("a_resume_on_a_hub_cut_off_from_nats").await
    else {
        return;
    };
    const N: u64 = 2_000;
    let (a, b, mut sub, thaw) = a_subscriber_ahead_of_b(&nats, N).await;
    // Then NATS goes away.
    nats.kill();
    drop(thaw);
    let position = sub.position();
    match connect_async(format!("{}?resume={position}", b.url)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        Err(other) => panic!("refused otherwise: {other}"),
        Ok((mut ws, _)) => panic!("answered: {:?}", ws.next().await),
    }
    nats.restart().await;
    // Refused until B has read as far again; then recovered.
    let answer = sub.reconnect_once_answered(&b.url, &position).await;
    assert_eq!(recovered(&answer), Ok(0), "{answer:?}");
    let mut marker = AckPublisher::new(vec![frame("t", 2, 0)]);
    marker.run_until_acked(&a.url()).await;
    assert!(sub.read_until(N as usize + 1).await);
    let mut want: Vec<(u64, u64)> = (0..N).map(|n| (1, n)).collect();
    want.push((2, 0));
    assert_eq!(sub.events, want, "nothing twice");
}

/// A client with a position of a stream made anew resumes on a hub that
/// has not found the new stream yet (frozen while NATS came back on a
/// wiped store): that hub waits until it has, and recovers it, rather than
/// answer `epoch` for the stream's own epoch; nothing is missing or
/// repeated after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_of_a_stream_made_anew_waits_for_the_hub_to_find_it() {
    let Some(mut nats) = NatsServer::start_or_skip("a_position_of_a_stream_made_anew").await else {
        return;
    };
    let stream = stream_name();
    let a = hub_on(&nats, &stream, HubConfig::default()).await;
    let b = ThreadHub::start(NatsConfig::new(nats.url()).stream(&stream)).await;
    let mut before = AckPublisher::new((0..5).map(|n| frame("t", 1, n)).collect());
    before.run_until_acked(&a.url()).await;
    let thaw = b.freeze().await;
    nats.kill();
    std::fs::remove_dir_all(nats.store().join("js")).unwrap();
    nats.restart().await;
    stats_until(&a, "A goes on with the new stream", |s| {
        s.backplane_new_streams == 1
    })
    .await;
    let (mut sub, _) = Resumer::connect(&a.url(), "new").await;
    stats_until(&a, "subscriber joined", |s| s.clients == 1).await;
    let mut after = AckPublisher::new((0..10).map(|n| frame("t", 2, n)).collect());
    after.run_until_acked(&a.url()).await;
    assert!(sub.read_until(10).await);
    sub.ws = None;
    let position = sub.position();
    drop(thaw);
    let answer = sub.reconnect_once_answered(&b.url, &position).await;
    assert!(recovered(&answer).is_ok(), "{answer:?}");
    let mut marker = AckPublisher::new(vec![frame("t", 3, 0)]);
    marker.run_until_acked(&a.url()).await;
    assert!(sub.read_until(11).await);
    let mut want: Vec<(u64, u64)> = (0..10).map(|n| (2, n)).collect();
    want.push((3, 0));
    assert_eq!(sub.events, want);
}
