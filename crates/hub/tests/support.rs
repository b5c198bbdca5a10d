//! Helpers shared by the hub's integration tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use watchtower_core::{Event, EventMetadata};
use watchtower_hub::{Hub, HubConfig, HubStats};

/// The upper bound for waiting on a condition. Generous: it only decides
/// how long a broken test takes to fail.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// A raw WebSocket client.
pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) async fn hub_with(config: HubConfig) -> Hub {
    Hub::bind_with("127.0.0.1:0", config).await.unwrap()
}

pub(crate) async fn hub() -> Hub {
    hub_with(HubConfig::default()).await
}

/// Connects `n` clients and waits until the hub counts all of them, so
/// that none misses an event published next.
pub(crate) async fn clients(hub: &Hub, n: usize) -> Vec<Client> {
    let before = hub.stats().clients;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect_async(hub.url()).await.unwrap().0);
    }
    let want = before + n as u64;
    stats_until(hub, "clients connected", |s| s.clients == want).await;
    out
}

/// Polls `condition` until it holds, failing the test after [`LIMIT`].
pub(crate) async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the hub's stats until `condition` holds; returns them.
pub(crate) async fn stats_until(
    hub: &Hub,
    what: &str,
    condition: impl Fn(&HubStats) -> bool,
) -> HubStats {
    until(what, || condition(&hub.stats())).await;
    hub.stats()
}

/// A valid event frame of `event_type` carrying `n`.
pub(crate) fn event(event_type: &str, n: u64) -> String {
    Event::new(
        event_type,
        serde_json::json!({ "n": n }),
        EventMetadata::default(),
    )
    .to_json()
    .unwrap()
}

pub(crate) async fn send(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.unwrap();
}

/// The next data frame, as text; pings and pongs are skipped (reading
/// answers pings).
pub(crate) async fn next_text(client: &mut Client) -> String {
    let read = async {
        loop {
            match client.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    };
    timeout(LIMIT, read).await.expect("no frame arrived")
}

/// Reads until the hub's close frame and returns its code, then keeps
/// reading until the connection ends, which sends our close reply. Data
/// frames on the way are skipped.
pub(crate) async fn close_code(client: &mut Client) -> CloseCode {
    let read = async {
        let code = loop {
            match client.next().await {
                Some(Ok(Message::Close(Some(frame)))) => break frame.code,
                Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        };
        while let Some(Ok(_)) = client.next().await {}
        code
    };
    timeout(LIMIT, read).await.expect("no close frame arrived")
}

/// The `event_type` of an event frame.
pub(crate) fn type_of(frame: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(frame).unwrap();
    value["event_type"].as_str().unwrap().to_string()
}

/// Upgrades a bare TCP connection by hand, so the test can then write
/// frames byte by byte (or not read at all).
pub(crate) async fn raw_upgrade(hub: &Hub) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(hub.local_addr())
        .await
        .unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        response.push(tcp.read_u8().await.unwrap());
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    tcp
}

/// A client with a 4 KiB receive buffer: when it does not read, the hub's
/// writes back up at once and what is meant for it stays queued.
pub(crate) async fn tiny_window_client(hub: &Hub) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(hub.local_addr()).await.unwrap();
    tokio_tungstenite::client_async(hub.url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .unwrap()
        .0
}
