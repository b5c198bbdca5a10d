//! The hub under hostile clients: each attack of issue 12 reproduced
//! against a real hub on 127.0.0.1, with the bound that stops it asserted
//! by counting, never by timing.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use watchtower_hub::{DEFAULT_MAX_FILTER_TYPES, Hub, HubConfig};

use crate::support::*;

/// A `subscribe` frame adding `types` (setting them, with `replace`).
fn subscribe_with(types: &[String], replace: bool) -> String {
    serde_json::json!({ "type": "subscribe", "event_types": types, "replace": replace }).to_string()
}

fn subscribe(types: &[String]) -> String {
    subscribe_with(types, false)
}

/// Sends a frame the hub may already have closed the connection for.
async fn send_anyway(client: &mut Client, text: String) {
    let _ = client.send(Message::text(text)).await;
}

/// Publishes `n` events of type `legit`, numbered from `first`, and
/// checks that `subscriber` receives each of them, in order.
async fn legit_round(publisher: &mut Client, subscriber: &mut Client, first: u64, n: u64) {
    for i in first..first + n {
        send(publisher, &event("legit", i)).await;
    }
    for i in first..first + n {
        let frame = next_text(subscriber).await;
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["event_type"], "legit");
        assert_eq!(
            value["payload"]["n"], i,
            "events arrive in order, none lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_abuse_is_refused_and_a_legit_pair_still_gets_every_event() {
    let hub = hub_with(HubConfig::default()).await;
    let mut c = clients(&hub, 2).await;
    let (mut subscriber, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    send(
        &mut subscriber,
        r#"{"type":"subscribe","event_types":["legit"],"replace":true}"#,
    )
    .await;
    stats_until(&hub, "the legit filter", |s| s.control_frames == 1).await;
    let mut published = 0;
    legit_round(&mut publisher, &mut subscriber, published, 50).await;
    published += 50;

    // 1. One event type of 16 KiB, the measured attack's unit: refused
    //    while parsing (limit 256 bytes).
    let mut long_type = clients(&hub, 1).await.pop().unwrap();
    send_anyway(&mut long_type, subscribe(&["x".repeat(16 * 1024)])).await;
    assert_eq!(close_code(&mut long_type).await, CloseCode::Policy);
    legit_round(&mut publisher, &mut subscriber, published, 50).await;
    published += 50;

    // 2. A 1 MiB frame of such types (the measured attack sent 4096):
    //    parsing stops at the first one.
    let mut huge = clients(&hub, 1).await.pop().unwrap();
    let types: Vec<String> = (0..60).map(|i| format!("{i:0>16384}")).collect();
    send_anyway(&mut huge, subscribe(&types)).await;
    assert_eq!(close_code(&mut huge).await, CloseCode::Policy);

    // 3. Many short types, added 512 at a time, until past the 4096 cap.
    let mut many = clients(&hub, 1).await.pop().unwrap();
    let frames = DEFAULT_MAX_FILTER_TYPES / 512 + 1;
    for f in 0..frames {
        let types: Vec<String> = (0..512).map(|i| format!("t{f}-{i}")).collect();
        send_anyway(&mut many, subscribe_with(&types, f == 0)).await;
    }
    assert_eq!(close_code(&mut many).await, CloseCode::Policy);
    legit_round(&mut publisher, &mut subscriber, published, 50).await;
    published += 50;

    // 4. Types of 200 bytes, 100 at a time, growing the set of types it
    //    does *not* want: the 64 KiB byte budget ends it (at 327 types)
    //    long before the type cap.
    let mut wide = clients(&hub, 1).await.pop().unwrap();
    for f in 0..4 {
        let types: Vec<String> = (0..100).map(|i| format!("{f}-{i:0>196}")).collect();
        let frame = serde_json::json!({ "type": "unsubscribe", "event_types": types });
        send_anyway(&mut wide, frame.to_string()).await;
    }
    assert_eq!(close_code(&mut wide).await, CloseCode::Policy);

    // 5. Within the limits, a client may churn its filter as it likes; it
    //    stays connected and the pair does not notice.
    let mut churn = clients(&hub, 1).await.pop().unwrap();
    // The attackers' frames that fitted were applied: 1 + 8 + 3 so far.
    let before = stats_until(&hub, "accepted attack frames", |s| s.control_frames == 12)
        .await
        .control_frames;
    let types: Vec<String> = (0..256).map(|i| format!("churn-{i}")).collect();
    for _ in 0..200 {
        send(&mut churn, &subscribe(&types)).await;
        send(&mut churn, r#"{"type":"unsubscribe","event_types":[]}"#).await;
    }
    legit_round(&mut publisher, &mut subscriber, published, 50).await;
    let stats = stats_until(&hub, "every churn frame applied", |s| {
        s.control_frames == before + 400
    })
    .await;

    assert_eq!(stats.control_rejected, 4, "{stats:?}");
    assert_eq!(stats.malformed.total(), 0, "{stats:?}");
    // Publisher, subscriber and the churning client; the four attackers
    // were closed.
    stats_until(&hub, "attackers gone", |s| s.clients == 3).await;
    drop(churn);
    let _: Hub = hub;
}

const HELLO: &str = r#"{"type":"hello","acks":true}"#;

/// An event with a chosen id.
fn event_with_id(id: &str, event_type: &str, by: &str) -> String {
    serde_json::json!({ "id": id, "event_type": event_type, "payload": { "by": by } }).to_string()
}

/// Reads frames until the ack for `upto`.
async fn acked(client: &mut Client, upto: u64) {
    loop {
        let frame = next_text(client).await;
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        if value["type"] == "ack" && value["upto"] == upto {
            return;
        }
    }
}

/// A subscriber to `event_type` only.
async fn subscriber_of(hub: &Hub, event_type: &str) -> Client {
    let mut sub = clients(hub, 1).await.pop().unwrap();
    let before = hub.stats().control_frames;
    let frame = serde_json::json!({
        "type": "subscribe", "event_types": [event_type], "replace": true
    });
    send(&mut sub, &frame.to_string()).await;
    stats_until(hub, "filter applied", |s| s.control_frames == before + 1).await;
    sub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_id_cannot_suppress_a_genuine_event() {
    let hub = hub().await;
    let mut sub = subscriber_of(&hub, "orders").await;
    let mut c = clients(&hub, 2).await;
    let (mut victim, mut attacker) = (c.pop().unwrap(), c.pop().unwrap());
    send(&mut attacker, HELLO).await;
    send(&mut victim, HELLO).await;

    // The attacker claims the victim's next id first.
    let squat = event_with_id("order-1001", "orders", "attacker");
    send(&mut attacker, &squat).await;
    acked(&mut attacker, 1).await;
    assert_eq!(next_text(&mut sub).await, squat);

    // The genuine event is relayed, not dropped (and acked).
    let genuine = event_with_id("order-1001", "orders", "victim");
    send(&mut victim, &genuine).await;
    acked(&mut victim, 1).await;
    assert_eq!(next_text(&mut sub).await, genuine);
    assert_eq!(hub.stats().duplicates_dropped, 0);

    // The victim's own resend of it still is a duplicate.
    send(&mut victim, &genuine).await;
    let marker = event_with_id("order-1002", "orders", "victim");
    send(&mut victim, &marker).await;
    acked(&mut victim, 3).await;
    assert_eq!(
        next_text(&mut sub).await,
        marker,
        "the resend was not relayed"
    );
    assert_eq!(hub.stats().duplicates_dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_flush_the_dedup_window() {
    const SHARE: u64 = 100;
    const JUNK: u64 = 5000;
    let mut config = HubConfig::default();
    config.dedup_window_events = 1000;
    config.dedup_client_share = SHARE as usize;
    let hub = hub_with(config).await;
    let mut sub = subscriber_of(&hub, "orders").await;
    let mut c = clients(&hub, 2).await;
    let (mut victim, mut attacker) = (c.pop().unwrap(), c.pop().unwrap());
    send(&mut victim, HELLO).await;
    let genuine = event_with_id("order-1001", "orders", "victim");
    send(&mut victim, &genuine).await;
    acked(&mut victim, 1).await;
    assert_eq!(next_text(&mut sub).await, genuine);

    // Five times the whole window of junk ids, from one connection.
    send(&mut attacker, HELLO).await;
    for i in 0..JUNK {
        send(
            &mut attacker,
            &event_with_id(&format!("junk-{i}"), "junk", "attacker"),
        )
        .await;
    }
    acked(&mut attacker, JUNK).await;
    let stats = hub.stats();
    assert!(
        stats.dedup_window_ids <= SHARE + 1,
        "the attacker holds at most its share: {stats:?}"
    );

    // The victim's connection broke; it resends on a new one, and the
    // resend is still recognised.
    drop(victim);
    stats_until(&hub, "the victim's old connection gone", |s| s.clients == 2).await;
    let victim = clients(&hub, 1).await.pop().unwrap();
    resend_is_recognised(&hub, victim, &genuine, &mut sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_cannot_flush_the_dedup_window() {
    const SHARE: u64 = 100;
    const ROUNDS: u64 = 15;
    let mut config = HubConfig::default();
    config.dedup_window_events = 1000;
    config.dedup_client_share = SHARE as usize;
    let hub = hub_with(config).await;
    let mut sub = subscriber_of(&hub, "orders").await;
    let mut victim = connect_from("127.0.0.2", &hub, &[]).await.unwrap();
    stats_until(&hub, "the victim connected", |s| s.clients == 2).await;
    send(&mut victim, HELLO).await;
    let genuine = event_with_id("order-1001", "orders", "victim");
    send(&mut victim, &genuine).await;
    acked(&mut victim, 1).await;
    assert_eq!(next_text(&mut sub).await, genuine);
    // The victim's connection broke before it saw the ack.
    drop(victim);
    stats_until(&hub, "the victim's connection gone", |s| s.clients == 1).await;

    // One and a half windows of junk ids, a share's worth per connection,
    // reconnecting for each.
    for round in 0..ROUNDS {
        let mut attacker = clients(&hub, 1).await.pop().unwrap();
        send(&mut attacker, HELLO).await;
        for i in 0..SHARE {
            let id = format!("junk-{round}-{i}");
            send(&mut attacker, &event_with_id(&id, "junk", "attacker")).await;
        }
        acked(&mut attacker, SHARE).await;
        drop(attacker);
        stats_until(&hub, "the attacker's connection gone", |s| s.clients == 1).await;
    }
    // The window is full of junk, the victim's one id among it: a full
    // window takes from whoever holds the most, never the victim's.
    assert_eq!(hub.stats().dedup_window_ids, 1000);

    // The victim resends on a new connection, and the resend is still
    // recognised.
    let victim = connect_from("127.0.0.2", &hub, &[]).await.unwrap();
    resend_is_recognised(&hub, victim, &genuine, &mut sub).await;
}

/// `victim`, on a new connection, resends `genuine` (which `sub` already
/// got) and then a marker: `sub` gets the marker next, and the hub counts
/// one duplicate dropped.
async fn resend_is_recognised(hub: &Hub, mut victim: Client, genuine: &str, sub: &mut Client) {
    send(&mut victim, HELLO).await;
    send(&mut victim, genuine).await;
    let marker = event_with_id("order-1002", "orders", "victim");
    send(&mut victim, &marker).await;
    acked(&mut victim, 2).await;
    assert_eq!(next_text(sub).await, marker, "the resend was not relayed");
    assert_eq!(hub.stats().duplicates_dropped, 1);
}

/// The HTTP status of a refused upgrade (panics if it was accepted).
fn status_of<T: std::fmt::Debug>(result: Result<T, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// An upgrade request to `url` with extra headers (appended, so a name
/// may repeat).
fn request_with(
    url: &str,
    headers: &[(&'static str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_a_foreign_origin_is_refused_with_403() {
    use tokio_tungstenite::connect_async;

    let hub = hub().await;
    let foreign = request_with(&hub.url(), &[("origin", "https://evil.example")]);
    assert_eq!(status_of(connect_async(foreign).await), 403);
    let stats = stats_until(&hub, "one refusal", |s| s.origin_rejected == 1).await;
    assert_eq!((stats.handshake_failures, stats.connections_total), (1, 0));

    // Native clients send no Origin; a page served by the hub itself
    // sends the hub's own.
    let (mut native, _) = connect_async(hub.url()).await.unwrap();
    let own = format!("http://{}", hub.local_addr());
    let (mut page, _) = connect_async(request_with(&hub.url(), &[("origin", &own)]))
        .await
        .unwrap();
    stats_until(&hub, "two members", |s| s.clients == 2).await;
    send(&mut native, &event("t", 1)).await;
    assert_eq!(type_of(&next_text(&mut page).await), "t");

    // An operator can allow a site, or every site, by saying so.
    let mut config = HubConfig::default();
    config.allowed_origins = vec!["https://app.example".into()];
    let listed = hub_with(config).await;
    let app = request_with(&listed.url(), &[("origin", "https://app.example")]);
    assert!(connect_async(app).await.is_ok());
    let evil = request_with(&listed.url(), &[("origin", "https://evil.example")]);
    assert_eq!(status_of(connect_async(evil).await), 403);
    let mut config = HubConfig::default();
    config.allowed_origins = vec!["*".into()];
    let open = hub_with(config).await;
    let evil = request_with(&open.url(), &[("origin", "https://evil.example")]);
    assert!(connect_async(evil).await.is_ok());

    // A malformed entry is a config error at start.
    let mut config = HubConfig::default();
    config.allowed_origins = vec!["https://app.example/".into()];
    let error = Hub::bind_with("127.0.0.1:0", config).await.unwrap_err();
    assert!(error.to_string().contains("allowed_origins"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_carries_one_token_guess() {
    use tokio_tungstenite::connect_async;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    let hub = Hub::builder()
        .bearer_token(TOKEN)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let bearer = format!("Bearer {TOKEN}");

    // Two Authorization headers, the right one among them: 400.
    let two = request_with(
        &hub.url(),
        &[
            ("authorization", "Bearer guess"),
            ("authorization", &bearer),
        ],
    );
    assert_eq!(status_of(connect_async(two).await), 400);
    // A header and a query token: 400.
    let both = request_with(
        &format!("{}?token=guess", hub.url()),
        &[("authorization", &bearer)],
    );
    assert_eq!(status_of(connect_async(both).await), 400);
    // The measured attack: 3,001 candidates in one URL, one of them right.
    let mut query: Vec<String> = (0..3000).map(|i| format!("token=guess{i}")).collect();
    query.push(format!("token={TOKEN}"));
    let many = format!("{}?{}", hub.url(), query.join("&"));
    assert_eq!(status_of(connect_async(many).await), 400);
    let stats = stats_until(&hub, "three refusals", |s| s.auth_rejected == 3).await;
    assert_eq!((stats.clients, stats.connections_total), (0, 0));

    // Exactly one, and the right one: admitted.
    let one = request_with(&hub.url(), &[("authorization", &bearer)]);
    assert!(connect_async(one).await.is_ok());

    // `?token=` can be turned off.
    let mut config = HubConfig::default();
    config.allow_query_token = false;
    let header_only = Hub::builder()
        .config(config)
        .bearer_token(TOKEN)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let in_url = format!("{}?token={TOKEN}", header_only.url());
    assert_eq!(status_of(connect_async(in_url).await), 401);
    let one = request_with(&header_only.url(), &[("authorization", &bearer)]);
    assert!(connect_async(one).await.is_ok());

    // A token shorter than min_token_len is refused at start, unquoted.
    let mut config = HubConfig::default();
    config.min_token_len = 16;
    let error = Hub::builder()
        .config(config)
        .bearer_token("short-token")
        .bind("127.0.0.1:0")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("min_token_len") && !text.contains("short-token"),
        "{text}"
    );
}

/// Upgrades to `hub` from a chosen local address (any of 127.0.0.0/8 on
/// Linux), with `headers`.
async fn connect_from(
    from: &str,
    hub: &Hub,
    headers: &[(&'static str, &str)],
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(hub.local_addr()).await.unwrap();
    let request = request_with(&hub.url(), headers);
    tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tokens_are_throttled_per_peer_address() {
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    let mut config = HubConfig::default();
    config.auth_failures_per_minute = 3;
    let hub = Hub::builder()
        .config(config)
        .bearer_token(TOKEN)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let bearer = format!("Bearer {TOKEN}");
    for i in 0..3 {
        let guess = format!("Bearer guess-{i}");
        let result = connect_from("127.0.0.1", &hub, &[("authorization", &guess)]).await;
        assert_eq!(status_of(result), 401);
    }
    // Now even the right token is refused from that address, unchecked...
    let result = connect_from("127.0.0.1", &hub, &[("authorization", &bearer)]).await;
    assert_eq!(status_of(result), 429);
    // ...while another address is served.
    let other = connect_from("127.0.0.2", &hub, &[("authorization", &bearer)]).await;
    assert!(other.is_ok(), "{other:?}");
    let stats = stats_until(&hub, "one member", |s| s.clients == 1).await;
    assert_eq!((stats.auth_rejected, stats.auth_throttled), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_pins_at_most_its_budget_and_is_closed_by_a_timer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::Duration;

    const BUDGET: u64 = 256 * 1024;
    const EVENT: usize = 64 * 1024;
    /// One read burst at most: 1 MiB, plus the frame that crosses it.
    const BURST: u64 = (1 << 20) + EVENT as u64;
    // A wave fits the budget: the fast client, which reads each wave
    // before the next is sent, never holds more than its budget, so no
    // frame of its may be dropped. (Eight events, twice the budget, were
    // dropped for it now and then when the hub read a wave in several
    // bursts while the machine was loaded: that is the budget working.)
    const WAVE: u64 = 2;
    const _: () = assert!(WAVE * EVENT as u64 <= BUDGET);
    let mut config = HubConfig::default();
    config.client_queue_bytes = BUDGET as usize;
    config.slow_client_timeout = Duration::from_millis(300);
    let hub = hub_with(config).await;

    // Never reads, and a tiny receive buffer backs the hub up at once.
    let mut never = tiny_window_client(&hub).await;
    stats_until(&hub, "never-reader connected", |s| s.clients == 1).await;
    let mut c = clients(&hub, 2).await;
    let (mut fast, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        loop {
            next_text(&mut fast).await;
            counter.fetch_add(1, SeqCst);
        }
    });

    // Publish 64 KiB events until the hub drops for the never-reader,
    // then stop: no further traffic.
    let pad = "x".repeat(EVENT);
    let mut published = 0;
    while hub.stats().dropped_frames == 0 {
        assert!(
            published < 100_000,
            "the hub never dropped for the never-reader"
        );
        for _ in 0..WAVE {
            let frame = serde_json::json!({
                "id": format!("e{published}"), "event_type": "big", "payload": pad
            });
            send(&mut publisher, &frame.to_string()).await;
            published += 1;
        }
        until("the fast client got the wave", || {
            received.load(SeqCst) == published
        })
        .await;
    }
    let stats = stats_until(&hub, "closed by the timer, with no new traffic", |s| {
        s.disconnected_slow == 1
    })
    .await;
    assert!(
        stats.client_bytes_high_water <= BUDGET + BURST,
        "held {} bytes for one client; budget {BUDGET} + one burst {BURST}; {} published",
        stats.client_bytes_high_water,
        published * EVENT as u64
    );
    assert!(
        published * EVENT as u64 > BUDGET + BURST,
        "more was published than the bound"
    );
    eprintln!(
        "never-reader: published {} bytes, one client held at most {} bytes, {} frames dropped",
        published * EVENT as u64,
        stats.client_bytes_high_water,
        stats.dropped_frames
    );
    // Behind what was buffered for it, the never-reader finds a 1013.
    assert_eq!(close_code(&mut never).await, CloseCode::Again);
    // The fast client lost nothing.
    assert_eq!(received.load(SeqCst), published);
    assert_eq!(hub.stats().dropped_frames, stats.dropped_frames);
    reader.abort();
}

/// The hub closed `tcp` without reading or answering: end of stream or a
/// reset, nothing else.
async fn assert_closed_unread(tcp: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(LIMIT, tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_caps_are_refused_at_once() {
    use tokio::net::TcpStream;

    let mut config = HubConfig::default();
    config.max_connections = 4;
    config.max_pending_handshakes = 2;
    let hub = hub_with(config).await;

    // Two bare TCP connections that never speak hold both pending places
    // (for `handshake_timeout`, 10 s, unless they go first)...
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(hub.local_addr()).await.unwrap());
    }
    stats_until(&hub, "two pending", |s| s.connections_open == 2).await;
    // ...so a third is closed at once, unread.
    let mut third = TcpStream::connect(hub.local_addr()).await.unwrap();
    assert_closed_unread(&mut third).await;
    assert_eq!(hub.stats().connections_refused, 1);

    // When they go, their places are free again.
    drop(silent);
    stats_until(&hub, "pending places free", |s| s.connections_open == 0).await;

    // Four clients fill max_connections; a fifth is refused, cheaply.
    let mut members = clients(&hub, 4).await;
    let fifth = tokio_tungstenite::connect_async(hub.url()).await;
    assert!(fifth.is_err(), "the fifth connection was admitted");
    let stats = hub.stats();
    assert_eq!((stats.connections_refused, stats.connections_open), (2, 4));

    // One leaves: room for one more.
    members.pop().unwrap().close(None).await.unwrap();
    stats_until(&hub, "a place free", |s| s.connections_open == 3).await;
    let mut fifth = clients(&hub, 1).await.pop().unwrap();
    send(&mut members[0], &event("t", 1)).await;
    assert_eq!(type_of(&next_text(&mut fifth).await), "t");
}

/// The head of a client text frame of `len` payload bytes, masked with a
/// zero key (which leaves the payload as it is).
fn text_frame_head(len: usize) -> Vec<u8> {
    let mut head = vec![0x81, 0x80 | 127];
    head.extend_from_slice(&(len as u64).to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]);
    head
}

/// A client frame (masked with a zero key) of a small control opcode.
fn control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_write_pings_or_pongs_but_never_read_are_dropped_as_dead() {
    use tokio::io::AsyncWriteExt;

    let mut config = HubConfig::default();
    config.ping_interval = std::time::Duration::from_millis(200);
    config.pong_timeout = std::time::Duration::from_millis(800);
    let hub = hub_with(config).await;

    // A client that reads (and so answers the hub's pings), sending nothing.
    let live = clients(&hub, 1).await.pop().unwrap();
    let pings = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&pings);
    let reader = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut live = live;
        while let Some(Ok(message)) = live.next().await {
            if let Message::Ping(_) = message {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });

    // Two that write every 50 ms and never read: one unsolicited pongs
    // (the measured attack), one pings.
    let mut writers = Vec::new();
    for opcode in [0xA, 0x9] {
        let mut tcp = raw_upgrade(&hub).await;
        writers.push(tokio::spawn(async move {
            let frame = control_frame(opcode, b"alive!");
            while tcp.write_all(&frame).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }));
    }
    stats_until(&hub, "three clients", |s| s.clients == 3).await;
    stats_until(&hub, "both writers dropped as dead", |s| {
        s.disconnected_dead == 2
    })
    .await;
    // The reading client outlives them by many more pings.
    let before = pings.load(std::sync::atomic::Ordering::SeqCst);
    until("the live client answered 10 more pings", || {
        pings.load(std::sync::atomic::Ordering::SeqCst) >= before + 10
    })
    .await;
    let stats = hub.stats();
    assert_eq!((stats.clients, stats.disconnected_dead), (1, 2));
    reader.abort();
    for writer in writers {
        writer.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_arriving_slowly_keeps_its_sender_alive() {
    use tokio::io::AsyncWriteExt;

    let mut config = HubConfig::default();
    config.ping_interval = std::time::Duration::from_millis(500);
    config.pong_timeout = std::time::Duration::from_millis(500);
    let hub = hub_with(config).await;
    // The subscriber reads all along, and so answers the hub's pings.
    let mut subscriber = clients(&hub, 1).await.pop().unwrap();
    let received = tokio::spawn(async move { next_text(&mut subscriber).await });

    // The sender never reads (so never answers a ping): only the bytes of
    // its message arriving say it is alive. 3 s of trickle, three times
    // the keepalive limit of 1 s, in 60 steps.
    let mut sender = raw_upgrade(&hub).await;
    let payload = "x".repeat(60 * 1024);
    let event = format!(
        r#"{{"id":"slow-1","event_type":"big","timestamp":"2026-11-30T00:00:00Z","payload":{{"text":"{payload}"}},"metadata":{{}}}}"#
    );
    let mut bytes = text_frame_head(event.len());
    bytes.extend_from_slice(event.as_bytes());
    for chunk in bytes.chunks(bytes.len().div_ceil(60)) {
        sender.write_all(chunk).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let frame = received.await.unwrap();
    assert_eq!(type_of(&frame), "big");
    assert_eq!(frame.len(), event.len(), "relayed whole");
    let stats = hub.stats();
    assert_eq!((stats.disconnected_dead, stats.events_in), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_finishes_is_closed_at_message_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut config = HubConfig::default();
    config.ping_interval = std::time::Duration::from_millis(500);
    config.pong_timeout = std::time::Duration::from_millis(500);
    config.message_timeout = std::time::Duration::from_secs(1);
    let hub = hub_with(config).await;

    // Announces 512 KiB, then trickles 100 bytes every 50 ms: alive by the
    // keepalive rule for ever, but never whole.
    let tcp = raw_upgrade(&hub).await;
    let (mut read, mut write) = tcp.into_split();
    let trickle = tokio::spawn(async move {
        if write.write_all(&text_frame_head(512 * 1024)).await.is_err() {
            return;
        }
        while write.write_all(&[b' '; 100]).await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    // Reads the hub's frames (pings, then a close) until the close.
    let close_code = tokio::time::timeout(LIMIT, async {
        loop {
            let head = read.read_u16().await.ok()?;
            let (opcode, len) = ((head >> 8) & 0x0F, usize::from(head as u8 & 0x7F));
            let mut payload = vec![0; len];
            read.read_exact(&mut payload).await.ok()?;
            if opcode == 0x8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    })
    .await
    .expect("the hub neither closed nor dropped the client");
    assert_eq!(close_code, Some(1008), "closed with 1008, not dropped");
    let stats = stats_until(&hub, "counted", |s| s.disconnected_unfinished == 1).await;
    assert_eq!(stats.disconnected_dead, 0);
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_pending_handshake() {
    let mut config = HubConfig::default();
    config.max_pending_handshakes = 8;
    config.max_pending_handshakes_per_peer = 2;
    let hub = hub_with(config).await;

    // A flood of silent TCP connections from 127.0.0.1: two hold places,
    // the rest are closed at once, unread.
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(
            tokio::net::TcpStream::connect(hub.local_addr())
                .await
                .unwrap(),
        );
    }
    for tcp in &mut flood[2..] {
        assert_closed_unread(tcp).await;
    }
    let stats = hub.stats();
    assert_eq!((stats.connections_open, stats.connections_refused), (2, 6));

    // Another address still gets in and is served while the flood holds
    // its two places.
    let mut operator = connect_from("127.0.0.2", &hub, &[]).await.unwrap();
    let mut publisher = connect_from("127.0.0.3", &hub, &[]).await.unwrap();
    stats_until(&hub, "two members", |s| s.clients == 2).await;
    send(&mut publisher, &event("t", 1)).await;
    assert_eq!(type_of(&next_text(&mut operator).await), "t");
    drop(flood);
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_refused_clients_logs_about_one_line_a_second() {
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    // Current thread: every task of the hub logs on this thread, into
    // this capture.
    let logs = watchtower_test_support::LogCapture::new();
    let _guard = logs.set_default();
    let mut config = HubConfig::default();
    config.auth_failures_per_minute = 0;
    let hub = Hub::builder()
        .config(config)
        .bearer_token(TOKEN)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..200 {
        let guess = format!("Bearer guess-{i:04}");
        let result = connect_from("127.0.0.1", &hub, &[("authorization", &guess)]).await;
        assert_eq!(status_of(result), 401);
    }
    let seconds = started.elapsed().as_secs();
    assert_eq!(hub.stats().auth_rejected, 200, "every refusal is counted");
    let lines = logs.contents().matches("client refused").count() as u64;
    assert!(lines >= 1, "refusals are logged");
    // At most one line per started second of the flood.
    assert!(
        lines <= seconds + 1,
        "{lines} lines logged in {seconds} whole seconds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_filters_flat_out_is_paced_to_its_control_budget() {
    const BUDGET: usize = 64 * 1024;
    let mut config = HubConfig::default();
    config.control_bytes_per_second = BUDGET;
    let hub = hub_with(config).await;
    let mut c = clients(&hub, 2).await;
    let (mut subscriber, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    send(
        &mut subscriber,
        r#"{"type":"subscribe","event_types":["legit"],"replace":true}"#,
    )
    .await;
    stats_until(&hub, "the legit filter", |s| s.control_frames == 1).await;

    // Maximal-ish filters (1000 types of 15 bytes), replaced flat out.
    let types: Vec<String> = (0..1000).map(|i| format!("{i:0>15}")).collect();
    let frame = subscribe_with(&types, true);
    let mut attacker = clients(&hub, 1).await.pop().unwrap();
    let started = std::time::Instant::now();
    let attack = {
        let frame = frame.clone();
        tokio::spawn(
            async move { while attacker.send(Message::text(frame.as_str())).await.is_ok() {} },
        )
    };
    // The legitimate pair is served all along.
    legit_round(&mut publisher, &mut subscriber, 0, 50).await;
    stats_until(&hub, "the attacker paced", |s| s.control_paced >= 2).await;
    let stats = hub.stats();
    let seconds = started.elapsed().as_secs_f64();
    attack.abort();

    // What the hub parsed for the attacker is within a second's burst
    // plus the rate over the time it ran, plus the frame that crossed it.
    let parsed_frames = stats.control_frames - 1;
    let bound = ((BUDGET as f64 * (1.0 + seconds)) / frame.len() as f64).floor() as u64 + 1;
    assert!(
        parsed_frames <= bound,
        "{parsed_frames} frames of {} bytes parsed in {seconds:.2} s; budget {BUDGET} bytes/s",
        frame.len()
    );
    assert!(parsed_frames >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_subscriber_keeps_alive_only_the_frames_it_matched() {
    use std::time::Duration;

    // Large common events, small rare ones: a burst holding a rare event
    // and any common one is many times the rare event's size.
    const EVENT: usize = 8 * 1024;
    const WAVE: u64 = 128;
    const WAVES: u64 = 16;
    /// A rare event's frame is under this many bytes.
    const RARE: u64 = 128;
    let mut config = HubConfig::default();
    // Room for everything, and no timer closing the slow client: the
    // test reads what the hub charges it for, then everything it was sent.
    config.client_queue_bytes = 64 << 20;
    config.slow_client_timeout = Duration::from_secs(3600);
    let hub = hub_with(config).await;

    // Reads nothing until the end, through a tiny receive buffer, so the
    // hub keeps what it matched queued.
    let mut rare = tiny_window_client(&hub).await;
    let filter =
        serde_json::json!({ "type": "subscribe", "event_types": ["rare"], "replace": true });
    send(&mut rare, &filter.to_string()).await;
    stats_until(&hub, "filter applied", |s| s.control_frames == 1).await;
    let mut publisher = clients(&hub, 1).await.pop().unwrap();

    // Waves of 128 large events written at once, so the hub reads them in
    // bursts of many frames; one in 128 is `rare`.
    let pad = "x".repeat(EVENT);
    let mut published = 0;
    for wave in 0..WAVES {
        for i in 0..WAVE {
            let frame = if i == WAVE / 2 {
                serde_json::json!({
                    "id": format!("e{wave}-{i}"), "event_type": "rare",
                    "payload": { "wave": wave }
                })
            } else {
                serde_json::json!({
                    "id": format!("e{wave}-{i}"), "event_type": "common",
                    "payload": { "wave": wave, "pad": pad }
                })
            };
            publisher
                .feed(Message::text(frame.to_string()))
                .await
                .unwrap();
            published += 1;
        }
        publisher.flush().await.unwrap();
        stats_until(&hub, "the wave relayed", |s| s.events_in == published).await;
    }
    let stats = hub.stats();
    let matched = WAVES * RARE;
    // A burst whose frames are at least half matched is kept whole: at
    // most twice what was matched. Whole bursts would be over 40 times.
    assert!(
        stats.client_bytes_high_water <= 2 * matched,
        "the rare subscriber held {} bytes for {matched} bytes of matched events (about {} published)",
        stats.client_bytes_high_water,
        published * EVENT as u64
    );
    assert_eq!(stats.dropped_frames, 0);
    // It is sent exactly what it matched, in order.
    for wave in 0..WAVES {
        let frame = next_text(&mut rare).await;
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["event_type"], "rare");
        assert_eq!(value["payload"]["wave"], wave);
    }
}
