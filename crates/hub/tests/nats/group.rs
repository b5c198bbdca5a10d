//! Helpers for groups of hubs on one NATS server.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use watchtower_hub::{Hub, HubConfig, NatsConfig};
use watchtower_test_support::NatsServer;

use crate::support::{Client, LIMIT, stats_until};

static NEXT_STREAM: AtomicU64 = AtomicU64::new(0);

/// A stream name of its own for each test.
pub(crate) fn stream_name() -> String {
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT_STREAM.fetch_add(1, Relaxed)
    )
}

/// A hub in the group sharing `stream` on `nats`.
pub(crate) async fn hub_on(nats: &NatsServer, stream: &str, config: HubConfig) -> Hub {
    hub_on_config(NatsConfig::new(nats.url()).stream(stream), config).await
}

/// Two hubs on `stream` whose clients' queues hold a whole test's events
/// (65,536 frames), for subscribers that read as they go.
pub(crate) async fn two_roomy_hubs(nats: &NatsServer, stream: &str) -> (Hub, Hub) {
    let mut config = HubConfig::default();
    config.client_queue_frames = 65_536;
    let a = hub_on(nats, stream, config.clone()).await;
    let b = hub_on(nats, stream, config).await;
    (a, b)
}

pub(crate) async fn hub_on_config(nats: NatsConfig, config: HubConfig) -> Hub {
    Hub::builder()
        .config(config)
        .nats(nats)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// Connects a raw client (with `query`, e.g. `?resume=new`) and waits
/// until `hub` counts it.
pub(crate) async fn join(hub: &Hub, query: &str) -> Client {
    let before = hub.stats().clients;
    let client = connect_async(format!("{}{query}", hub.url()))
        .await
        .unwrap()
        .0;
    stats_until(hub, "client counted", |s| s.clients > before).await;
    client
}

/// The next event frame (control frames such as position marks and acks
/// are skipped).
pub(crate) async fn next_event(client: &mut Client) -> serde_json::Value {
    try_next_event(client).await.expect("no event arrived")
}

/// [`next_event`], or `None` when nothing arrived within [`LIMIT`].
pub(crate) async fn try_next_event(client: &mut Client) -> Option<serde_json::Value> {
    let read = async {
        loop {
            match client.next().await {
                Some(Ok(Message::Text(t))) => {
                    let value: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if value.get("id").is_some() {
                        return value;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    };
    timeout(LIMIT, read).await.ok()
}

/// `n` events read from `client`; their `(publisher, n)` payloads.
pub(crate) async fn read_events(client: &mut Client, n: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(n);
    assert!(
        read_events_into(client, n, &mut out).await,
        "no event arrived"
    );
    out
}

/// Reads `n` more events into `out`; `false` if nothing arrived for
/// [`LIMIT`] first.
pub(crate) async fn read_events_into(
    client: &mut Client,
    n: usize,
    out: &mut Vec<(u64, u64)>,
) -> bool {
    for _ in 0..n {
        let Some(e) = try_next_event(client).await else {
            return false;
        };
        out.push((
            e["payload"]["p"].as_u64().unwrap(),
            e["payload"]["n"].as_u64().unwrap(),
        ));
    }
    true
}

/// Event frames with fixed ids: `p` names the publisher, `n` counts.
pub(crate) fn frame(event_type: &str, p: u64, n: u64) -> String {
    serde_json::json!({
        "id": format!("p{p}-{n}"),
        "event_type": event_type,
        "timestamp": "2026-01-01T00:00:00Z",
        "payload": {"p": p, "n": n},
        "metadata": {}
    })
    .to_string()
}

/// An at-least-once publisher speaking the raw protocol: it says hello
/// with acks, keeps every event not yet acknowledged, and resends them on
/// its next connection, as the transport does.
pub(crate) struct AckPublisher {
    pub(crate) frames: Vec<String>,
    /// Frames acknowledged so far (a prefix of `frames`).
    pub(crate) acked: usize,
}

/// How one connection of an [`AckPublisher`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every frame is acknowledged.
    AllAcked,
    /// The hub closed the connection (or it broke) first.
    Closed,
}

impl AckPublisher {
    pub(crate) fn new(frames: Vec<String>) -> AckPublisher {
        AckPublisher { frames, acked: 0 }
    }

    /// Connects to `url`, says hello, sends every frame not yet
    /// acknowledged, and reads acks until all are or the connection ends.
    pub(crate) async fn run(&mut self, url: &str) -> Outcome {
        let Some((mut ws, sent_from)) = self.open(url).await else {
            return Outcome::Closed;
        };
        self.read_acks(&mut ws, sent_from).await
    }

    /// [`run`](Self::run) again and again until every frame is
    /// acknowledged.
    pub(crate) async fn run_until_acked(&mut self, url: &str) {
        for _ in 0..100 {
            if self.run(url).await == Outcome::AllAcked {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("not acknowledged after 100 connections");
    }

    /// Connects, says hello and sends what is not acknowledged; returns
    /// the socket and how many frames were acknowledged before.
    pub(crate) async fn open(&mut self, url: &str) -> Option<(Client, usize)> {
        let (mut ws, _) = connect_async(url).await.ok()?;
        let sent_from = self.acked;
        let hello = r#"{"type":"hello","acks":true}"#;
        ws.send(Message::text(hello)).await.ok()?;
        for f in &self.frames[sent_from..] {
            ws.feed(Message::text(f.as_str())).await.ok()?;
        }
        ws.flush().await.ok()?;
        Some((ws, sent_from))
    }

    pub(crate) async fn read_acks(&mut self, ws: &mut Client, sent_from: usize) -> Outcome {
        loop {
            if self.acked == self.frames.len() {
                let _ = ws.close(None).await;
                return Outcome::AllAcked;
            }
            let Ok(next) = timeout(LIMIT, ws.next()).await else {
                panic!("neither an ack nor a close within {LIMIT:?}");
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ack" {
                        let upto = v["upto"].as_u64().unwrap() as usize;
                        self.acked = self.acked.max(sent_from + upto);
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Outcome::Closed,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Asserts each `(publisher, n)` appears once and, per publisher, in
/// increasing `n`.
pub(crate) fn once_in_order(events: &[(u64, u64)]) {
    let mut seen = HashSet::new();
    let mut last = std::collections::HashMap::new();
    for &(p, n) in events {
        assert!(seen.insert((p, n)), "event p{p}-{n} delivered twice");
        if let Some(prev) = last.insert(p, n) {
            assert!(n > prev, "publisher {p}: {n} after {prev}");
        }
    }
}

/// A hub of the group on a thread and runtime of its own, which the test
/// can freeze (block that thread): its consumer stops reading the stream
/// while the rest of the group goes on, as on a node that fell behind.
pub(crate) struct ThreadHub {
    pub(crate) url: String,
    freeze: tokio::sync::mpsc::UnboundedSender<Freeze>,
}

/// Asks a [`ThreadHub`] to block its thread until `thaw` is dropped.
struct Freeze {
    frozen: tokio::sync::oneshot::Sender<()>,
    thaw: std::sync::mpsc::Receiver<()>,
}

/// Thaws the [`ThreadHub`] it came from when dropped.
pub(crate) struct Thaw(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

impl ThreadHub {
    pub(crate) async fn start(nats: NatsConfig) -> ThreadHub {
        let (started, url) = tokio::sync::oneshot::channel();
        let (freeze, mut requests) = tokio::sync::mpsc::unbounded_channel::<Freeze>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let hub = Hub::builder().nats(nats).bind("127.0.0.1:0").await.unwrap();
                let _ = started.send(hub.url());
                while let Some(Freeze { frozen, thaw }) = requests.recv().await {
                    let _ = frozen.send(());
                    // The runtime's only thread: nothing of this hub runs
                    // until the test thaws it.
                    let _ = thaw.recv();
                }
                drop(hub);
            });
        });
        ThreadHub {
            url: url.await.unwrap(),
            freeze,
        }
    }

    /// Returns once the hub's thread is blocked; dropping the answer thaws it.
    pub(crate) async fn freeze(&self) -> Thaw {
        let (frozen, is_frozen) = tokio::sync::oneshot::channel();
        let (thaw, thawed) = std::sync::mpsc::channel();
        self.freeze
            .send(Freeze {
                frozen,
                thaw: thawed,
            })
            .unwrap();
        is_frozen.await.unwrap();
        Thaw(thaw)
    }
}
