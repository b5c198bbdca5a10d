//! One client connection: the TLS handshake for `wss://`, the upgrade (with
//! the bearer-token check), then one task that reads and fans out bursts,
//! writes this client's queue, pings, and closes with the right code.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};
use watchtower_core::{ControlFrame, DecodeError, EventHeader};

use crate::auth::{Auth, Refusal};
use crate::dedup::{DedupWindow, Key};
use crate::fanout::{Burst, ClientId, MAX_BURST};
use crate::hub::{Shared, draining};
use crate::outbox::{Entry, FrameSet, Outbox};
use crate::stats::{Counters, add, bump};

/// After a close frame is out, how long to discard what the client still
/// sends before dropping the socket.
const LINGER: Duration = Duration::from_secs(1);

type Sink<S> = SplitSink<WebSocketStream<S>, Message>;
type Stream<S> = SplitStream<WebSocketStream<S>>;

/// Serves one accepted TCP connection until it ends: the TLS handshake
/// first for `wss://`, then [`serve`]. One `handshake_timeout` covers the
/// TLS handshake and the upgrade together.
pub(crate) async fn accept(tcp: TcpStream, peer: SocketAddr, id: ClientId, shared: Arc<Shared>) {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    // Each branch's future is boxed: inline, every plain connection's task
    // would reserve room for the TLS one's state (and rustls's), which
    // doubled the memory an idle plain connection costs.
    let Some(acceptor) = shared.tls.as_ref().map(|tls| tls.acceptor()) else {
        Box::pin(serve(tcp, peer, id, shared, deadline)).await;
        return;
    };
    match Box::pin(timeout_at(deadline, acceptor.accept(tcp).into_fallible())).await {
        Ok(Ok(tls)) => Box::pin(serve(tls, peer, id, shared, deadline)).await,
        Ok(Err((error, tcp))) => {
            tls_failed(&shared);
            // rustls errors say what was wrong with the peer's handshake
            // (untrusted or missing certificate, no common version); they
            // hold no secrets.
            tracing::info!(%peer, %error, "client refused: TLS handshake failed");
            // rustls has written its alert; let it reach the client
            // instead of a reset, so the client can say why it failed.
            linger(tcp).await;
        }
        Err(_) => {
            tls_failed(&shared);
            tracing::info!(%peer, after = ?shared.config.handshake_timeout, "client refused: TLS handshake timed out");
        }
    }
}

fn tls_failed(shared: &Shared) {
    bump(&shared.counters.handshake_failures);
    bump(&shared.counters.tls_failures);
}

/// Serves one connection, plain or TLS, from the WebSocket upgrade (due by
/// `deadline`) until it ends.
///
/// Generic over the byte stream so that TLS (`wss://`) wraps the TCP
/// stream before the upgrade without touching anything below.
async fn serve<S>(socket: S, peer: SocketAddr, id: ClientId, shared: Arc<Shared>, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let outbox = Arc::new(Outbox::new(
        id,
        config.client_queue_frames,
        config.slow_client_timeout,
    ));
    // Join the fan-out once the request is accepted, before the response
    // goes out: when a client's handshake completes it is already
    // receiving, so an event published right after by anyone reaches it.
    // Frames relayed meanwhile wait in its queue for the writer. A refused
    // client never joins.
    let mut member = None;
    let mut refused = None;
    // `Result` with tungstenite's large `ErrorResponse` is the callback's signature.
    #[allow(clippy::result_large_err)]
    let accept = |request: &Request, response: Response| {
        let response =
            check_upgrade(&shared.auth, request, response).map_err(|(why, answer)| {
                refused = Some(why);
                answer
            })?;
        member = Some(Membership::join(&shared, Arc::clone(&outbox)));
        Ok(response)
    };
    let upgrade = accept_hdr_async_with_config(socket, accept, Some(config.wire_config()));
    let ws = match timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            bump(&shared.counters.handshake_failures);
            match refused {
                Some(why) => {
                    bump(&shared.counters.auth_rejected);
                    tracing::info!(%peer, reason = %why, "client refused with 401");
                }
                None => tracing::debug!(%error, "websocket upgrade failed"),
            }
            return;
        }
        Err(_) => {
            bump(&shared.counters.handshake_failures);
            tracing::debug!(after = ?config.handshake_timeout, "websocket upgrade timed out");
            return;
        }
    };

    tracing::info!(%peer, "client connected");

    let (mut sink, mut stream) = ws.split();
    let clock = Clock::new();
    let mut pending = VecDeque::new();
    let mut lifecycle = shared.lifecycle.subscribe();
    // Unbiased on purpose: a client that publishes flat out must not starve
    // its own writer of the task's I/O budget.
    let end = tokio::select! {
        deadline = draining(&mut lifecycle) => End::Shutdown(deadline),
        () = outbox.became_slow() => End::Slow,
        end = keepalive(&shared, &clock) => end,
        end = read_loop(&shared, &outbox, &clock, &mut stream) => end,
        end = write_loop(&shared, &outbox, &mut pending, &mut sink) => end,
    };
    // From here on nothing new is queued for this client, and it no longer
    // counts as connected while it is being closed.
    outbox.close();
    drop(member);
    count(&shared.counters, &end);
    finish(&shared, &end, &outbox, &mut pending, sink, stream).await;
    tracing::info!(%peer, reason = %end, "client disconnected");
}

/// Accepts an upgrade, whatever the path, if `auth` admits its bearer
/// token; otherwise answers 401 with a `WWW-Authenticate: Bearer`
/// challenge. Neither the answer nor the refusal quotes what was sent.
// `Result` with tungstenite's large `ErrorResponse` is the callback's signature.
#[allow(clippy::result_large_err)]
fn check_upgrade(
    auth: &Auth,
    request: &Request,
    response: Response,
) -> Result<Response, (Refusal, ErrorResponse)> {
    match auth.check(request) {
        Ok(()) => Ok(response),
        Err(why) => Err((why, unauthorized(why))),
    }
}

/// A 401 answer to a refused upgrade.
fn unauthorized(why: Refusal) -> ErrorResponse {
    let body = match why {
        Refusal::Missing => {
            "unauthorized: send Authorization: Bearer <token> (or ?token=<token>)\n"
        }
        Refusal::Wrong => "unauthorized: the bearer token is not valid\n",
    };
    let mut answer = ErrorResponse::new(Some(body.to_string()));
    *answer.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = answer.headers_mut();
    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// Keeps the client in the fan-out and the `clients` gauge for as long as
/// it lives, even if the task is aborted.
struct Membership<'a> {
    shared: &'a Shared,
    id: ClientId,
}

impl<'a> Membership<'a> {
    fn join(shared: &'a Shared, outbox: Arc<Outbox>) -> Membership<'a> {
        let id = outbox.id();
        shared.fanout.join(outbox);
        bump(&shared.counters.connections_total);
        bump(&shared.counters.clients);
        Membership { shared, id }
    }
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.shared.fanout.leave(self.id);
        self.shared.counters.clients.fetch_sub(1, Relaxed);
    }
}

/// Why a connection ended, and so how it is closed.
#[derive(Debug)]
enum End {
    /// The hub is shutting down: close with 1001 by the deadline.
    Shutdown(Instant),
    /// The queue stayed full too long: close with 1013.
    Slow,
    /// Nothing arrived for this long: drop.
    Dead(Duration),
    /// The client sent a close frame: send the reply.
    PeerClosed,
    /// The TCP connection ended without a close frame.
    Gone,
    /// A message over the size limit: close with 1009.
    Oversize,
    /// Invalid UTF-8 in a text frame: close with 1007.
    InvalidUtf8,
    /// Any other protocol violation: close with 1002.
    Protocol(ProtocolError),
    /// Reading from the socket failed.
    ReadFailed(tungstenite::Error),
    /// Writing to the socket failed.
    WriteFailed(tungstenite::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Shutdown(_) => f.write_str("hub shutting down (1001)"),
            End::Slow => f.write_str("queue stayed full; slow consumer (1013)"),
            End::Dead(after) => write!(f, "nothing received for {after:?}; keepalive timeout"),
            End::PeerClosed => f.write_str("client closed"),
            End::Gone => f.write_str("connection ended without a close frame"),
            End::Oversize => f.write_str("message over max_message_size (1009)"),
            End::InvalidUtf8 => f.write_str("invalid UTF-8 in a text frame (1007)"),
            End::Protocol(e) => write!(f, "protocol error (1002): {e}"),
            End::ReadFailed(e) => write!(f, "read failed: {e}"),
            End::WriteFailed(e) => write!(f, "write failed: {e}"),
        }
    }
}

fn count(counters: &Counters, end: &End) {
    match end {
        End::Slow => bump(&counters.disconnected_slow),
        End::Dead(_) => bump(&counters.disconnected_dead),
        End::Oversize => bump(&counters.oversize_closed),
        End::InvalidUtf8 => counters
            .malformed
            .record(watchtower_core::DecodeErrorKind::InvalidUtf8),
        End::Protocol(_) => bump(&counters.protocol_errors),
        _ => {}
    }
}

/// Says goodbye in the way `end` calls for, within bounded time.
async fn finish<S>(
    shared: &Shared,
    end: &End,
    outbox: &Outbox,
    pending: &mut VecDeque<Entry>,
    mut sink: Sink<S>,
    mut stream: Stream<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A peer gets this long to take our close frame off the wire.
    let grace = shared.config.pong_timeout;
    let (code, reason) = match end {
        End::Shutdown(deadline) => {
            let _ = timeout_at(
                *deadline,
                goodbye(shared, outbox, pending, &mut sink, &mut stream),
            )
            .await;
            return;
        }
        End::PeerClosed => {
            // tungstenite queued the reply when it read the close; flushing
            // sends it.
            let _ = timeout(grace, sink.flush()).await;
            return;
        }
        // Nobody is listening, or the socket is broken: nothing to say.
        End::Dead(_) | End::Gone | End::ReadFailed(_) | End::WriteFailed(_) => return,
        End::Slow => (
            CloseCode::Again,
            "slow consumer: your queue stayed full; reconnect and read faster",
        ),
        End::Oversize => (CloseCode::Size, "message over the hub's max_message_size"),
        End::InvalidUtf8 => (CloseCode::Invalid, "text frame is not valid UTF-8"),
        End::Protocol(_) => (CloseCode::Protocol, "websocket protocol error"),
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    if !matches!(
        timeout(grace, sink.send(Message::Close(Some(frame)))).await,
        Ok(Ok(()))
    ) {
        return;
    }
    if let Ok(ws) = sink.reunite(stream) {
        linger(ws.into_inner()).await;
    }
}

/// Shutdown: deliver what is queued, send 1001, wait for the client's
/// reply (then it has read everything).
async fn goodbye<S>(
    shared: &Shared,
    outbox: &Outbox,
    pending: &mut VecDeque<Entry>,
    sink: &mut Sink<S>,
    stream: &mut Stream<S>,
) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    outbox.take(pending);
    let fed = feed(&shared.counters, outbox, pending, sink).await?;
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: Utf8Bytes::from_static("hub shutting down"),
    };
    sink.send(Message::Close(Some(frame))).await?;
    add(&shared.counters.frames_out, fed);
    while let Some(message) = stream.next().await {
        if matches!(message, Ok(Message::Close(_)) | Err(_)) {
            break;
        }
    }
    Ok(())
}

/// Half-closes, then discards input until the client closes too (or
/// [`LINGER`] passes). Closing a socket that still has unread input makes
/// the kernel send RST, which can destroy the close frame before the client
/// reads it.
async fn linger<S>(mut socket: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout(LINGER, async {
        if socket.shutdown().await.is_err() {
            return;
        }
        let mut discard = [0u8; 1024];
        while let Ok(1..) = socket.read(&mut discard).await {}
    })
    .await;
}

/// When the client last sent anything.
struct Clock {
    epoch: Instant,
    /// Nanoseconds after `epoch`. Atomic only because the task must be
    /// `Send`; one task reads and writes it.
    last_rx: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            last_rx: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_rx.store(nanos, Relaxed);
    }

    fn last_rx(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last_rx.load(Relaxed))
    }
}

/// Ends the connection when the client sent nothing at all for
/// `ping_interval + pong_timeout`. The writer pings every `ping_interval`,
/// so a live client always answers in time.
async fn keepalive(shared: &Shared, clock: &Clock) -> End {
    let dead_after = shared.config.ping_interval + shared.config.pong_timeout;
    loop {
        let deadline = clock.last_rx() + dead_after;
        if Instant::now() >= deadline {
            return End::Dead(dead_after);
        }
        sleep_until(deadline).await;
    }
}

/// Reads bursts: after one awaited frame, takes whatever else is already
/// buffered without waiting, then fans the events out as one shared burst.
/// For an ack-mode client, duplicates are dropped before the fan-out and
/// the ack is queued after it.
async fn read_loop<S>(
    shared: &Shared,
    outbox: &Outbox,
    clock: &Clock,
    stream: &mut Stream<S>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = Reader {
        counters: &shared.counters,
        outbox,
        dedup: &shared.dedup,
        frames: Vec::new(),
        types: Vec::new(),
        keyed: Vec::new(),
        acks: false,
        data_frames: 0,
        acked: 0,
        warn: WarnLimiter::default(),
    };
    loop {
        let message = stream.next().await;
        clock.touch();
        let mut end = reader.on_message(message);
        let mut reads = 1;
        while end.is_none() && reads < MAX_BURST {
            // Polls once; `None` means nothing more is buffered right now.
            let Some(message) = stream.next().now_or_never() else {
                break;
            };
            reads += 1;
            end = reader.on_message(message);
        }
        if !reader.keyed.is_empty() {
            reader.drop_duplicates();
        }
        if !reader.frames.is_empty() {
            let burst = Arc::new(Burst {
                sender: outbox.id(),
                frames: std::mem::take(&mut reader.frames),
                types: std::mem::take(&mut reader.types),
            });
            let counters = &shared.counters;
            add(&counters.events_in, burst.frames.len() as u64);
            let delivery = shared.fanout.publish(burst);
            add(&counters.frames_queued, delivery.queued);
            add(&counters.dropped_frames, delivery.dropped);
        }
        // Only now is every frame counted so far relayed or dropped as a
        // duplicate, which is what an ack promises.
        if reader.acks && reader.data_frames > reader.acked {
            reader.acked = reader.data_frames;
            outbox.ack(reader.acked);
        }
        if let Some(end) = end {
            return end;
        }
    }
}

/// The reader's per-message work and the burst being collected.
struct Reader<'a> {
    counters: &'a Counters,
    outbox: &'a Outbox,
    dedup: &'a DedupWindow,
    frames: Vec<Utf8Bytes>,
    types: Vec<Box<str>>,
    /// `(index in frames, id key)` of the burst's events that arrived in
    /// ack mode: only those are checked against the window and recorded.
    keyed: Vec<(usize, Key)>,
    /// The client said `{"type":"hello","acks":true}` (and not since
    /// `false`).
    acks: bool,
    /// Event and malformed frames read on this connection, duplicates
    /// included: what an ack's `upto` counts. Control frames are not
    /// counted; the client does not count them either.
    data_frames: u64,
    /// The last `upto` handed to the writer.
    acked: u64,
    warn: WarnLimiter,
}

impl Reader<'_> {
    /// Handles one read; `Some` when the connection must end.
    fn on_message(&mut self, message: Option<Result<Message, tungstenite::Error>>) -> Option<End> {
        use tungstenite::Error;
        let message = match message {
            None => return Some(End::Gone),
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                return Some(match error {
                    Error::Capacity(_) => End::Oversize,
                    Error::Utf8(_) => End::InvalidUtf8,
                    Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                    | Error::ConnectionClosed
                    | Error::AlreadyClosed => End::Gone,
                    Error::Protocol(e) => End::Protocol(e),
                    e => End::ReadFailed(e),
                });
            }
        };
        match message {
            Message::Text(text) => self.on_text(text),
            Message::Binary(bytes) => self.on_binary(bytes),
            Message::Close(_) => return Some(End::PeerClosed),
            // tungstenite answers pings itself on the next read; a pong only
            // proves liveness, which the clock already noted.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        None
    }

    fn on_text(&mut self, text: Utf8Bytes) {
        self.received(text.len());
        match EventHeader::parse(text.as_bytes()) {
            Ok(header) => {
                let key = self.acks.then(|| self.dedup.key(&header.id));
                let event_type = Box::from(header.event_type);
                self.relay(text, event_type, key);
            }
            Err(error) => self.not_an_event(text.as_bytes(), &error),
        }
    }

    /// Binary frames holding a valid JSON event are relayed as text.
    fn on_binary(&mut self, bytes: Bytes) {
        self.received(bytes.len());
        match EventHeader::parse(&bytes) {
            Ok(header) => {
                let key = self.acks.then(|| self.dedup.key(&header.id));
                let event_type = Box::from(header.event_type);
                let len = bytes.len();
                // The header parse skips the payload without checking that
                // its strings are UTF-8, so this check is not redundant.
                match Utf8Bytes::try_from(bytes) {
                    Ok(text) => self.relay(text, event_type, key),
                    Err(e) => self.malformed(
                        &DecodeError::InvalidUtf8 {
                            valid_up_to: e.valid_up_to(),
                        },
                        len,
                    ),
                }
            }
            Err(error) => self.not_an_event(&bytes, &error),
        }
    }

    fn received(&self, len: usize) {
        bump(&self.counters.frames_in);
        add(&self.counters.bytes_in, len as u64);
    }

    /// Adds an event to the burst; `key` is its id's key in ack mode.
    fn relay(&mut self, frame: Utf8Bytes, event_type: Box<str>, key: Option<Key>) {
        self.data_frames += 1;
        if let Some(key) = key {
            self.keyed.push((self.frames.len(), key));
        }
        self.frames.push(frame);
        self.types.push(event_type);
    }

    /// Checks the burst's ack-mode events against the window (one lock for
    /// the whole burst) and takes out the duplicates.
    fn drop_duplicates(&mut self) {
        let duplicates = self.dedup.duplicates(&self.keyed);
        self.keyed.clear();
        if duplicates.is_empty() {
            return;
        }
        add(&self.counters.duplicates_dropped, duplicates.len() as u64);
        remove_indices(&mut self.frames, &duplicates);
        remove_indices(&mut self.types, &duplicates);
    }

    /// A control frame updates this client's filter or, for `hello`, its
    /// ack mode; anything else is counted and dropped, with no reply.
    fn not_an_event(&mut self, bytes: &[u8], error: &DecodeError) {
        let Some(control) = ControlFrame::from_json(bytes) else {
            self.malformed(error, bytes.len());
            return;
        };
        if let ControlFrame::Hello { acks } = control {
            self.acks = acks;
            bump(&self.counters.control_frames);
            tracing::debug!(acks, "hello");
            return;
        }
        match self.outbox.apply(&control) {
            Ok(()) => {
                bump(&self.counters.control_frames);
                tracing::debug!(?control, "filter updated");
            }
            Err(_) => {
                bump(&self.counters.control_rejected);
                if let Some(suppressed) = self.warn.allow() {
                    tracing::warn!(
                        max = crate::filter::MAX_FILTER_TYPES,
                        suppressed,
                        "control frame refused: the filter would hold too many event types"
                    );
                }
            }
        }
    }

    fn malformed(&mut self, error: &DecodeError, len: usize) {
        // The client counted it as an event it sent.
        self.data_frames += 1;
        self.counters.malformed.record(error.kind());
        // The reason only: the error text can quote the frame, and payloads
        // never go to logs at warn.
        if let Some(suppressed) = self.warn.allow() {
            tracing::warn!(reason = ?error.kind(), bytes = len, suppressed, "malformed frame ignored");
        }
        tracing::debug!(%error, bytes = len, "malformed frame");
    }
}

/// Removes the items at the indices in `set`, keeping the order of the rest.
fn remove_indices<T>(items: &mut Vec<T>, set: &FrameSet) {
    let mut index = 0;
    items.retain(|_| {
        let keep = !set.contains(index);
        index += 1;
        keep
    });
}

/// At most one warning per second per client, with a count of the ones
/// left out, so a client sending garbage cannot flood the logs.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(suppressed since the last warning)` if a warning may be logged
    /// now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Writes this client's queue: takes everything queued, feeds each frame
/// (a due ack first), flushes once per wake-up; pings every
/// `ping_interval`, busy or not.
async fn write_loop<S>(
    shared: &Shared,
    outbox: &Outbox,
    pending: &mut VecDeque<Entry>,
    sink: &mut Sink<S>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let interval = shared.config.ping_interval;
    let mut next_ping = Instant::now() + interval;
    loop {
        if pending.is_empty() {
            outbox.take(pending);
        }
        if pending.is_empty() && outbox.pending_ack().is_none() {
            tokio::select! {
                biased;
                () = outbox.ready() => continue,
                () = sleep_until(next_ping) => {}
            }
        }
        if Instant::now() >= next_ping {
            if let Err(e) = sink.feed(Message::Ping(Bytes::new())).await {
                return End::WriteFailed(e);
            }
            next_ping = Instant::now() + interval;
        }
        let fed = match feed(&shared.counters, outbox, pending, sink).await {
            Ok(fed) => fed,
            Err(e) => return End::WriteFailed(e),
        };
        if let Err(e) = sink.flush().await {
            return End::WriteFailed(e);
        }
        add(&shared.counters.frames_out, fed);
    }
}

/// Feeds every pending frame to the sink, without flushing; returns how
/// many. A due ack is looked for before each frame and once at the end, so
/// it never waits behind a backlog (only behind what the socket has
/// already taken) and goes out when nothing else is queued. Cancel-safe: a
/// frame leaves `pending`, and an ack stops being due, only once the sink
/// has taken it.
async fn feed<S>(
    counters: &Counters,
    outbox: &Outbox,
    pending: &mut VecDeque<Entry>,
    sink: &mut Sink<S>,
) -> Result<u64, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut fed = 0;
    while let Some(entry) = pending.front_mut() {
        while let Some(i) = entry.frames.first_index() {
            // One relaxed load per frame; an ack is due at most once per
            // burst the client sent, and only in ack mode.
            if let Some(upto) = outbox.pending_ack() {
                send_ack(counters, outbox, upto, sink).await?;
            }
            if let Some(frame) = entry.burst.frames.get(i) {
                sink.feed(Message::Text(frame.clone())).await?;
                fed += 1;
            }
            entry.frames.remove(i);
        }
        pending.pop_front();
    }
    if let Some(upto) = outbox.pending_ack() {
        send_ack(counters, outbox, upto, sink).await?;
    }
    Ok(fed)
}

/// Feeds `{"type":"ack","upto":upto}`, without flushing.
async fn send_ack<S>(
    counters: &Counters,
    outbox: &Outbox,
    upto: u64,
    sink: &mut Sink<S>,
) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = ControlFrame::Ack { upto }.to_json();
    sink.feed(Message::Text(Utf8Bytes::from(frame))).await?;
    outbox.ack_sent(upto);
    bump(&counters.acks_sent);
    Ok(())
}
