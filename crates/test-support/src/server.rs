//! A raw tokio-tungstenite server: "any server" in the spec's sense.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use watchtower_core::Event;

/// One data frame the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Which connection (1-based, in accept order) it came on.
    pub connection: u64,
    /// True for binary frames.
    pub binary: bool,
    /// The payload.
    pub bytes: Bytes,
}

/// Reads a sequence number out of a frame, for servers that only count.
pub type SequenceOf = fn(&[u8]) -> Option<u64>;

#[derive(Default)]
struct State {
    /// `Some` for a counting server: frames are not kept, only counted and
    /// checked for order with this.
    sequence_of: Option<SequenceOf>,
    counted: AtomicU64,
    last_sequence: Mutex<Option<u64>>,
    out_of_order: AtomicU64,
    received: Mutex<Vec<Received>>,
    closes: Mutex<Vec<Option<u16>>>,
    headers: Mutex<Vec<Vec<(String, String)>>>,
    connections: AtomicUsize,
    accepted: AtomicU64,
    pings: AtomicU64,
}

/// A WebSocket server on 127.0.0.1 that records every frame it receives,
/// sends whatever the test asks to every client, and can be stopped and
/// started again on the same address.
pub struct RawServer {
    addr: SocketAddr,
    state: Arc<State>,
    outbound: broadcast::Sender<Message>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for RawServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RawServer {
    /// Starts on a free port.
    pub async fn start() -> RawServer {
        RawServer::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `addr` (e.g. the address of a server that was stopped).
    pub async fn start_on(addr: SocketAddr) -> RawServer {
        RawServer::start_with(addr, None).await
    }

    /// Starts a server that keeps no frames: it counts them, and checks
    /// with `sequence_of` that they arrive in increasing order. For floods
    /// too large to keep.
    pub async fn start_counting(addr: SocketAddr, sequence_of: SequenceOf) -> RawServer {
        let state = State {
            sequence_of: Some(sequence_of),
            ..State::default()
        };
        RawServer::start_state(addr, None, state).await
    }

    /// Starts with a maximum incoming message size.
    pub async fn start_with(addr: SocketAddr, max_message_size: Option<usize>) -> RawServer {
        RawServer::start_state(addr, max_message_size, State::default()).await
    }

    async fn start_state(
        addr: SocketAddr,
        max_message_size: Option<usize>,
        state: State,
    ) -> RawServer {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(state);
        let (outbound, _) = broadcast::channel(65_536);
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let state = Arc::clone(&state);
            let outbound = outbound.clone();
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let state = Arc::clone(&state);
                    let rx = outbound.subscribe();
                    let task = tokio::spawn(serve(tcp, state, rx, max_message_size));
                    tasks.lock().unwrap().push(task);
                }
            })
        };
        tasks.lock().unwrap().push(accept);
        RawServer {
            addr,
            state,
            outbound,
            tasks,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/events`.
    pub fn url(&self) -> String {
        format!("ws://{}/events", self.addr)
    }

    /// Every data frame received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many data frames were received.
    pub fn received_count(&self) -> usize {
        match self.state.sequence_of {
            Some(_) => self.state.counted.load(SeqCst) as usize,
            None => self.state.received.lock().unwrap().len(),
        }
    }

    /// Counting servers: frames whose sequence was not above the previous
    /// one (duplicates or reordering).
    pub fn out_of_order(&self) -> u64 {
        self.state.out_of_order.load(SeqCst)
    }

    /// The received frames that decode as events, in arrival order.
    pub fn received_events(&self) -> Vec<Event> {
        self.received()
            .iter()
            .filter_map(|r| Event::from_json(&r.bytes).ok())
            .collect()
    }

    /// Close codes of the close frames received (None: no code).
    pub fn close_codes(&self) -> Vec<Option<u16>> {
        self.state.closes.lock().unwrap().clone()
    }

    /// The request headers of each accepted connection.
    pub fn request_headers(&self) -> Vec<Vec<(String, String)>> {
        self.state.headers.lock().unwrap().clone()
    }

    /// Connected clients now.
    pub fn connections(&self) -> usize {
        self.state.connections.load(SeqCst)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(SeqCst)
    }

    /// Pings received.
    pub fn pings(&self) -> u64 {
        self.state.pings.load(SeqCst)
    }

    /// Sends `message` to every connected client.
    pub fn send(&self, message: Message) {
        let _ = self.outbound.send(message);
    }

    /// Sends a text frame to every connected client.
    pub fn send_text(&self, text: impl Into<String>) {
        self.send(Message::Text(text.into().into()));
    }

    /// Sends an event as a text frame to every connected client.
    pub fn send_event(&self, event: &Event) {
        self.send_text(event.to_json().unwrap());
    }

    /// Stops abruptly: the listener and every connection are dropped
    /// without a close handshake, as a crashed server would.
    pub async fn stop(self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl State {
    fn record(&self, frame: Received) {
        let Some(sequence_of) = self.sequence_of else {
            self.received.lock().unwrap().push(frame);
            return;
        };
        self.counted.fetch_add(1, SeqCst);
        let sequence = sequence_of(&frame.bytes);
        let mut last = self.last_sequence.lock().unwrap();
        if let (Some(previous), Some(current)) = (*last, sequence)
            && current <= previous
        {
            self.out_of_order.fetch_add(1, SeqCst);
        }
        if sequence.is_some() {
            *last = sequence;
        }
    }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    state: Arc<State>,
    mut outbound: broadcast::Receiver<Message>,
    max_message_size: Option<usize>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(max_message_size)
        .max_frame_size(max_message_size);
    let mut headers = Vec::new();
    let callback = |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                    response| {
        headers = request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    state.headers.lock().unwrap().push(headers);
    let connection = state.accepted.fetch_add(1, SeqCst) + 1;
    state.connections.fetch_add(1, SeqCst);
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(t))) => state.record(Received { connection, binary: false, bytes: Bytes::from(t) }),
                Some(Ok(Message::Binary(b))) => state.record(Received { connection, binary: true, bytes: b }),
                Some(Ok(Message::Ping(_))) => {
                    state.pings.fetch_add(1, SeqCst);
                    // The pong is queued by tungstenite; flushing sends it.
                    if sink.flush().await.is_err() { break; }
                }
                Some(Ok(Message::Close(frame))) => {
                    state.closes.lock().unwrap().push(frame.map(|f| u16::from(f.code)));
                    let _ = sink.flush().await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            message = outbound.recv() => match message {
                Ok(message) => if sink.send(message).await.is_err() { break },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    state.connections.fetch_sub(1, SeqCst);
}
