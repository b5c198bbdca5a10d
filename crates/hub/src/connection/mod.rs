//! One client connection: the TLS handshake for `wss://`, the upgrade (with
//! the Origin and bearer-token checks), then one task that reads and fans
//! out bursts, writes this client's queue, pings, and closes with the right
//! code.
//!
//! Split by role, as the transport's `connection/` is:
//!
//! - `mod.rs` (here): the task that serves a connection, why it ended
//!   ([`End`]: the counter, the close code and the log line) and the close
//!   handshake;
//! - `upgrade`: the TLS handshake, the request head (a plain HTTP request
//!   is answered by [`crate::http`] and closed), the WebSocket upgrade and
//!   its refusals (403, 401, 400, 429), and membership in the fan-out;
//! - `reader`: burst reads, events, control frames within the filter
//!   limits, de-duplication, acks;
//! - `writer`: the client's queue onto the socket, acks first, pings;
//! - `liveness`: when the client last sent anything, and the dead-client
//!   timer.

mod liveness;
mod reader;
mod upgrade;
mod writer;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::relay::fanout::ClientId;
use crate::relay::filter::OverLimit;
use crate::relay::outbox::{Entry, Outbox};
use crate::shared::{Admission, Shared, draining};
use crate::stats::{Counters, add, bump};

use liveness::{Clock, keepalive};
use reader::read_loop;
pub(crate) use upgrade::accept;
use writer::{Marks, feed, send_ack, write_loop};

/// After a close frame is out, how long to discard what the client still
/// sends before dropping the socket.
const LINGER: Duration = Duration::from_secs(1);

type Sink<S> = SplitSink<WebSocketStream<S>, Message>;

type Stream<S> = SplitStream<WebSocketStream<S>>;

/// Serves one connection, plain or TLS, from the WebSocket upgrade (due by
/// `deadline`) until it ends.
///
/// Generic over the byte stream so that TLS (`wss://`) wraps the TCP
/// stream before the upgrade without touching anything below.
async fn serve<S>(
    socket: S,
    peer: SocketAddr,
    id: ClientId,
    shared: Arc<Shared>,
    deadline: Instant,
    mut admission: Admission,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let outbox = Arc::new(Outbox::new(id, &shared.config));
    let clock = Clock::new();
    let socket = clock.meter(socket);
    // Boxed: the handshake's state (tungstenite's, and the request head's)
    // is the largest this task ever holds; inline, every idle client would
    // carry room for it for as long as it stays connected.
    let upgrading = upgrade::upgrade(socket, peer, &shared, &outbox, deadline, &mut admission);
    let Some((ws, member)) = Box::pin(upgrading).await else {
        return;
    };

    tracing::info!(%peer, "client connected");

    let (mut sink, mut stream) = ws.split();
    // The resume answer goes first, ahead of any replayed event. A fresh
    // socket takes one small frame at once; the bound is for a broken one.
    if let Some(greeting) = member.answer.as_ref().and_then(|a| a.greeting()) {
        let sent = timeout(
            shared.config.pong_timeout,
            sink.send(Message::Text(greeting)),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(%peer, "could not write the resume answer");
            return;
        }
    }
    let mut pending = VecDeque::new();
    let mut lifecycle = shared.lifecycle.subscribe();
    let reading = shared.start_reading();
    // Unbiased on purpose: a client that publishes flat out must not starve
    // its own writer of the task's I/O budget.
    let end = match reading {
        // The hub is stopping already: nothing is read from this client.
        None => End::Shutdown(draining(&mut lifecycle).await),
        Some(_) => tokio::select! {
            deadline = draining(&mut lifecycle) => End::Shutdown(deadline),
            () = outbox.became_slow() => End::Slow,
            () = outbox.backplane_lost() => End::Backplane,
            end = keepalive(&shared, &clock) => end,
            end = read_loop(&shared, &outbox, &clock, &mut stream) => end,
            end = write_loop(&shared, &outbox, &clock, &mut pending, &mut sink) => end,
        },
    };
    // Nothing more is read from this client, or acknowledged to it.
    drop(reading);
    if let End::Shutdown(deadline) = end {
        // A stop stops every reader before any queue closes: an event
        // acknowledged to its publisher is then in the queue of every
        // subscriber still connected, which goes on being written
        // meanwhile (see `goodbye`).
        let _ = timeout_at(deadline, async {
            tokio::select! {
                () = shared.readers_stopped() => {}
                _ = write_loop(&shared, &outbox, &clock, &mut pending, &mut sink) => {}
            }
        })
        .await;
    }
    // From here on nothing new is queued for this client, and it no longer
    // counts as connected while it is being closed.
    outbox.close();
    drop(member);
    if matches!(end, End::Slow) && outbox.overflowed() {
        bump(&shared.counters.closed_to_resume);
    }
    count(&shared.counters, &end);
    finish(&shared, &end, &outbox, &mut pending, sink, stream).await;
    tracing::info!(%peer, reason = %end, "client disconnected");
}

/// Why a connection ended, and so how it is closed.
#[derive(Debug)]
enum End {
    /// The hub is shutting down: close with 1001 by the deadline.
    Shutdown(Instant),
    /// The queue stayed full too long: close with 1013.
    Slow,
    /// No sign of life (a data frame, an answer to a ping, bytes of a
    /// message arriving) for this long: drop.
    Dead(Duration),
    /// A message kept arriving for longer than `message_timeout`: close
    /// with 1008.
    Unfinished(Duration),
    /// The client sent a close frame: send the reply.
    PeerClosed,
    /// The TCP connection ended without a close frame.
    Gone,
    /// A message over the size limit: close with 1009.
    Oversize,
    /// A control frame over the filter limits: close with 1008.
    FilterOverLimit(OverLimit),
    /// Invalid UTF-8 in a text frame: close with 1007.
    InvalidUtf8,
    /// Any other protocol violation: close with 1002.
    Protocol(ProtocolError),
    /// Reading from the socket failed.
    ReadFailed(tungstenite::Error),
    /// Writing to the socket failed.
    WriteFailed(tungstenite::Error),
    /// The backplane did not store an event this ack-mode client sent:
    /// close with 1013 so it resends what was not acknowledged.
    Backplane,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Shutdown(_) => f.write_str("hub shutting down (1001)"),
            End::Slow => f.write_str("queue stayed full; slow consumer (1013)"),
            End::Dead(after) => write!(f, "no sign of life for {after:?}; keepalive timeout"),
            End::Unfinished(after) => write!(f, "message not finished within {after:?} (1008)"),
            End::PeerClosed => f.write_str("client closed"),
            End::Gone => f.write_str("connection ended without a close frame"),
            End::Oversize => f.write_str("message over max_message_size (1009)"),
            End::FilterOverLimit(over) => {
                write!(
                    f,
                    "control frame over the filter limit {} (1008)",
                    over.field()
                )
            }
            End::InvalidUtf8 => f.write_str("invalid UTF-8 in a text frame (1007)"),
            End::Protocol(e) => write!(f, "protocol error (1002): {e}"),
            End::ReadFailed(e) => write!(f, "read failed: {e}"),
            End::WriteFailed(e) => write!(f, "write failed: {e}"),
            End::Backplane => f.write_str("backplane did not store an event (1013)"),
        }
    }
}

fn count(counters: &Counters, end: &End) {
    match end {
        End::Slow => bump(&counters.disconnected_slow),
        End::Dead(_) => bump(&counters.disconnected_dead),
        End::Unfinished(_) => bump(&counters.disconnected_unfinished),
        End::Oversize => bump(&counters.oversize_closed),
        End::FilterOverLimit(_) => bump(&counters.control_rejected),
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
        End::Unfinished(_) => (
            CloseCode::Policy,
            "message not finished within the hub's message_timeout",
        ),
        End::Backplane => (
            CloseCode::Again,
            "backplane unavailable: resend what was not acknowledged",
        ),
        End::FilterOverLimit(over) => (CloseCode::Policy, over_limit_reason(*over)),
        End::InvalidUtf8 => (CloseCode::Invalid, "text frame is not valid UTF-8"),
        End::Protocol(_) => (CloseCode::Protocol, "websocket protocol error"),
    };
    // Frames read before the one that ended the connection were relayed:
    // say so before closing, or an at-least-once client resends them.
    if let Some(upto) = outbox.pending_ack() {
        let _ = timeout(grace, send_ack(&shared.counters, outbox, upto, &mut sink)).await;
    }
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

/// The close reason for a control frame over a filter limit (at most 123
/// bytes, as a close frame allows).
fn over_limit_reason(over: OverLimit) -> &'static str {
    match over {
        OverLimit::TypeTooLong => {
            "filter refused: an event type is over the hub's max_event_type_len"
        }
        OverLimit::TooManyTypes => {
            "filter refused: more event types than the hub's max_filter_types"
        }
        OverLimit::TooManyBytes => "filter refused: event types over the hub's max_filter_bytes",
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
    let fed = feed(
        &shared.counters,
        outbox,
        pending,
        &mut Marks::every_batch(),
        sink,
    )
    .await?;
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: Utf8Bytes::from_static("hub shutting down"),
    };
    sink.send(Message::Close(Some(frame))).await?;
    add(&shared.counters.frames_out, fed);
    outbox.sent(fed);
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
