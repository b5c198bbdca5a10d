//! What the dashboard's live tail relies on, with raw clients against a
//! real hub: a sampled subscription (`?sample=N`), which gets at most N
//! events a second and is told how many it was not sent, and a bearer
//! token offered as a WebSocket subprotocol, which a browser can send
//! where it cannot set a header (so the dashboard works on a hub that
//! refuses `?token=`).

use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use watchtower_core::ControlFrame;
use watchtower_hub::{Hub, HubConfig};

use crate::support::*;

/// The status of a refused upgrade.
fn refused(result: Result<impl Sized, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("expected an HTTP refusal, but the upgrade succeeded"),
    }
}

/// Base64url without padding, written here independently of the hub's
/// decoder.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            n |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_client_gets_at_most_its_rate_and_is_told_what_was_skipped() {
    const PER_SECOND: u64 = 5;
    const EVENTS: u64 = 3_000;
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut tail, _) = connect_async(format!("{}?sample={PER_SECOND}", hub.url()))
        .await
        .unwrap();
    stats_until(&hub, "the tail joined", |s| s.clients == 3).await;

    // The tail reads on its own: events, and the hub's skipped counts.
    let reader = tokio::spawn(async move {
        let (mut events, mut skipped) = (0u64, 0u64);
        let read = async {
            while events + skipped < EVENTS {
                match tail.next().await {
                    Some(Ok(Message::Text(text))) => {
                        match ControlFrame::from_json(text.as_bytes()) {
                            Some(ControlFrame::Skipped { events }) => skipped = events,
                            Some(other) => panic!("unexpected control frame {other:?}"),
                            None => {
                                assert_eq!(type_of(&text), "t");
                                events += 1;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the tail ended: {other:?}"),
                }
            }
        };
        timeout(LIMIT, read)
            .await
            .unwrap_or_else(|_| panic!("tail: {events} events, {skipped} skipped"));
        // Still connected, for `/api/clients` below.
        (events, skipped, tail)
    });

    let started = Instant::now();
    let mut publisher = c.remove(0);
    for n in 0..EVENTS {
        send(&mut publisher, &event("t", n)).await;
    }
    // Every plain subscriber still gets every event.
    for _ in 0..EVENTS {
        assert_eq!(type_of(&next_text(&mut c[0]).await), "t");
    }
    let (events, skipped, _tail) = reader.await.unwrap();
    // Every offer to the tail happened by now (its counts add up to every
    // event): the windows it could use are at most one per second of
    // this, plus the one open at the start.
    let windows = started.elapsed().as_secs() + 1;
    assert_eq!(events + skipped, EVENTS);
    assert!(events >= 1, "the tail got nothing");
    assert!(
        events <= PER_SECOND * windows,
        "{events} events in at most {windows} windows of {PER_SECOND}"
    );
    // The skipped events were never queued: only the plain subscriber's
    // and the tail's sample were.
    // (The counters are added just after the frames go out: waited for.)
    let s = stats_until(&hub, "every frame counted", |s| {
        s.frames_out == EVENTS + events
    })
    .await;
    assert_eq!(s.frames_queued, EVENTS + events);
    assert_eq!(s.dropped_frames, 0);

    // `/api/clients` says which client is sampled, and how much it skipped.
    let deadline = Instant::now() + LIMIT;
    loop {
        let rows = hub_clients(&hub).await;
        let sampled: Vec<&Value> = rows.iter().filter(|row| !row["sample"].is_null()).collect();
        assert_eq!(sampled.len(), 1, "{rows:?}");
        assert_eq!(sampled[0]["sample"]["per_second"], PER_SECOND);
        assert_eq!(sampled[0]["sample"]["skipped"], skipped);
        if sampled[0]["frames_out"] == events {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
    }
}

/// The rows of `/api/clients`.
async fn hub_clients(hub: &Hub) -> Vec<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = hub.local_addr();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /api/clients HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    timeout(LIMIT, tcp.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    if head.starts_with("HTTP/1.1 429") {
        // Paced, hub-wide: ask again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        return Box::pin(hub_clients(hub)).await;
    }
    let json: Value = serde_json::from_str(body).unwrap();
    json["clients"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_out_of_budget_repeated_or_beside_a_resume_is_refused() {
    // History on (the default): a resume position would be honoured.
    let hub = hub().await;
    let url = hub.url();
    for query in [
        "sample=0",
        "sample=1001",
        "sample=-1",
        "sample=ten",
        "sample=5&sample=5",
        "sample=5&resume=new",
    ] {
        let status = refused(connect_async(format!("{url}?{query}")).await);
        assert_eq!(status, 400, "{query}");
    }
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("watchtower-sample", "5".parse().unwrap());
    let mut both = request.clone();
    both.headers_mut()
        .insert("watchtower-resume", "new".parse().unwrap());
    assert_eq!(refused(connect_async(both).await), 400);
    // Within the budget, by header or in the URL, it is admitted.
    let (_a, _) = connect_async(request).await.unwrap();
    let (_b, _) = connect_async(format!("{url}?sample=1000")).await.unwrap();
    let s = stats_until(&hub, "two sampled clients", |s| s.clients == 2).await;
    assert_eq!(s.handshake_failures, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_subprotocol_admits_on_a_hub_that_refuses_query_tokens() {
    const TOKEN: &str = "s3cret/token+with=odd-chars";
    let mut config = HubConfig::default();
    config.allow_query_token = false;
    let hub = Hub::builder()
        .bearer_token(TOKEN)
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let upgrade = |protocols: String| {
        let mut request = hub.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        request
    };
    let offered = format!(
        "watchtower, watchtower.token.{}",
        base64url(TOKEN.as_bytes())
    );
    let (mut browser, response) = connect_async(upgrade(offered)).await.unwrap();
    // Only the protocol's name comes back, never the token.
    let answered: Vec<_> = response
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .collect();
    assert_eq!(answered, ["watchtower"]);
    assert!(!format!("{:?}", response.headers()).contains("token"));

    let wrong = format!(
        "watchtower, watchtower.token.{}",
        base64url(b"not-the-token")
    );
    assert_eq!(refused(connect_async(upgrade(wrong)).await), 401);
    let garbled = "watchtower, watchtower.token.%%%".to_string();
    assert_eq!(refused(connect_async(upgrade(garbled)).await), 401);
    // The promise of `allow_query_token: false` stands.
    let query = format!("{}?token={TOKEN}", hub.url());
    assert_eq!(refused(connect_async(query).await), 401);
    // One candidate per request: a subprotocol beside a header is 400.
    let mut several = upgrade(format!(
        "watchtower, watchtower.token.{}",
        base64url(TOKEN.as_bytes())
    ));
    several
        .headers_mut()
        .insert("authorization", "Bearer guess".parse().unwrap());
    assert_eq!(refused(connect_async(several).await), 400);

    // The admitted client is an ordinary subscriber.
    let mut header = hub.url().into_client_request().unwrap();
    header
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut publisher, response) = connect_async(header).await.unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    // A refusal is counted as its connection ends, which may be after the
    // client has read the answer.
    let s = stats_until(&hub, "two clients, four refusals counted", |s| {
        s.clients == 2 && s.handshake_failures >= 4 && s.auth_rejected >= 4
    })
    .await;
    assert_eq!((s.auth_rejected, s.handshake_failures), (4, 4));
    let frame = event("t", 1);
    send(&mut publisher, &frame).await;
    assert_eq!(next_text(&mut browser).await, frame);
}
