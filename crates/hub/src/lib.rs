//! A WebSocket relay hub for Watchtower events: [`Hub`] accepts clients and
//! relays every event one of them sends to every *other* client whose
//! filter matches its `event_type`. "Other" is by identity: a client that
//! presents one on every upgrade (`Watchtower-Client-Id: <id>`, or
//! `?client_id=` for browsers) is never sent its own events, neither
//! replayed after a resume nor read late from its previous connection.
//!
//! It is the server the Watchtower transport, the examples, the tests, the
//! benchmarks and the `watchtower` CLI talk to. It speaks the event format
//! and the control protocol of `watchtower-core`, and answers a few plain
//! HTTP paths for operators (see below). Its history is in memory, and
//! with feature `nats` the stream it shares with other hubs is NATS
//! JetStream's.
//!
//! ```
//! use watchtower_hub::{Hub, HubConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = HubConfig::default();
//! config.client_queue_frames = 1024;
//! let hub = Hub::bind_with("127.0.0.1:0", config).await?;
//! println!("clients connect to {}", hub.url()); // ws://127.0.0.1:PORT/events
//!
//! let stats = hub.shutdown().await;
//! assert_eq!(stats.clients, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # What the hub does with each frame
//!
//! - **An event** (a JSON object with non-empty `id` and `event_type`,
//!   checked by [`EventHeader::parse`](watchtower_core::EventHeader::parse)
//!   without building the payload) is relayed byte-for-byte as a text
//!   frame, also when it arrived as a binary frame.
//! - **A control frame** ([`ControlFrame`](watchtower_core::ControlFrame))
//!   changes the sender's filter: `subscribe` adds types (`[]`: every type),
//!   with `"replace": true` it sets them atomically; `unsubscribe` removes
//!   types (`[]`: every type, so nothing is received). A client that never
//!   sends one receives everything. `{"type":"hello","acks":true}` turns
//!   on acknowledgements for the sender (see below). A control frame is
//!   parsed once, with the filter limits
//!   ([`HubConfig::max_event_type_len`], [`HubConfig::max_filter_types`],
//!   [`HubConfig::max_filter_bytes`]) enforced while parsing; one that
//!   breaks a limit leaves the filter unchanged, is counted in
//!   [`HubStats::control_rejected`] and closes its sender with 1008
//!   (Policy Violation).
//! - **Anything else** is counted by reason in [`HubStats::malformed`],
//!   logged at warn (at most about once a second per client) and answered
//!   with nothing; the sender stays connected.
//!
//! # Fan-out
//!
//! A client's reader takes one frame, then whatever else is already
//! buffered (up to 256 frames or about 1 MiB, fewer when it holds control
//! frames, after which the task yields), and hands the whole burst, behind
//! one `Arc`, to
//! every other matching client's queue. Frames are reference-counted, so
//! nothing is copied or serialised per recipient. Each client's writer takes
//! everything queued for it and flushes once per wake-up. The fan-out sits
//! behind an internal seam, so a backplane (e.g. NATS) can later connect
//! hubs without changing connection handling.
//!
//! # Acknowledgements and de-duplication (at-least-once publishing)
//!
//! A client that sends `{"type":"hello","acks":true}` (first, on each
//! connection) is acknowledged: after each read burst from it, the hub
//! sends it `{"type":"ack","upto":N}`, where `N` counts the event frames
//! read on this connection so far — valid events, duplicates and malformed
//! frames alike, control frames not. Acks are cumulative, so one small
//! frame covers a whole burst; a newer ack replaces one not yet written,
//! and a due ack is written ahead of the frames queued for that client.
//!
//! **What an ack means.** Every event counted by `upto` was received and
//! either relayed into the queue of every matching client connected at
//! that moment, or dropped as a duplicate of one that was. It does not
//! mean a subscriber has received it: the hub keeps nothing on disk, so an
//! event acknowledged but not yet written to a subscriber when the hub
//! stops or dies is lost for that subscriber, and so is one dropped from a
//! slow plain subscriber's full queue. With history on, the event is also
//! stored in the history before it is relayed, so a subscriber that was
//! disconnected at the time gets it when it resumes while the history
//! holds it; subscribers do not acknowledge what they receive. A publisher resends what
//! was not acknowledged when its connection ends; those resends are what
//! the window below absorbs.
//!
//! **De-duplication.** Events from ack-mode connections are checked
//! against a hub-wide window of recently seen events, so a resend is
//! dropped (counted in [`HubStats::duplicates_dropped`]) yet still
//! acknowledged, also when it comes on a new connection. An event is
//! remembered by its whole frame, id included: a resend is byte-for-byte
//! the frame first sent, while another client's event that reuses the id
//! is a different event and is relayed, so no client can make the hub drop
//! (and acknowledge) another's event. The window holds at most
//! [`HubConfig::dedup_window_events`] events, at most
//! [`HubConfig::dedup_client_share`] of them per client identity (past
//! its share, a client pushes out its own oldest, never another
//! client's; when full, the client holding the most gives one up), none
//! older than [`HubConfig::dedup_window_age`]. A check and the relay of
//! its burst are one step, so a resend on a new connection never
//! overtakes its original. A resend
//! older than that is relayed again. The window is in memory too: after a hub
//! restart, a resend of an event the old hub had relayed but not yet
//! acknowledged is relayed again, so subscribers can see it twice and
//! should de-duplicate by id. Events from clients that did not say hello
//! are neither checked nor recorded: no hashing and no lock for them.
//!
//! # History and resume
//!
//! The hub keeps the events it relays in a bounded history
//! ([`HubConfig::history_size`], [`HubConfig::history_ttl`],
//! [`HubConfig::history_bytes`]) holding the same shared frames, at
//! positions `(epoch, seq)`. A client that presents its position on the
//! upgrade (`Watchtower-Resume`, see [`watchtower_core::Position`]) gets
//! every event after it, then live ones, or nothing and the reason
//! (another epoch, or expired); however many events it missed, it is never
//! refused for their number: its writer reads them from the history a
//! step at a time. The answer comes in the upgrade response and as the
//! first frame. Such a client is sent `{"type":"position","seq":S}`
//! frames as it is written to, and is never dropped from: when its queue
//! is full it lags inside the history and reads from there, and is closed
//! with 1013 (to resume, answered `expired`) only once the history forgot
//! an event not yet written to it. The README has the protocol in full.
//!
//! # Hubs sharing a stream (feature `nats`)
//!
//! `HubBuilder::nats` with a `NatsConfig` makes the hub one of a group
//! sharing a NATS JetStream stream: events its clients send are published
//! to the stream (subject `wt.<stream>.<event type>`, `Nats-Msg-Id` from
//! the event's id and frame), and it delivers what one ordered consumer
//! reads from the stream, its own clients' events included (never back to
//! their sender), so every hub delivers in the stream's order. An ack-mode
//! publisher is acknowledged only once JetStream stored its events (publish
//! acks pipelined); a publish that fails closes it with 1013 so it
//! resends, and JetStream's duplicate window drops resends on any hub.
//! History positions are `(stream epoch, stream sequence)`, so a client
//! resumes on any hub; each hub keeps the stream's recent past in its
//! history (read at start) and forgets what the stream evicted, and a gap
//! in the stream is never taken for continuity. A hub whose reading of the
//! stream is behind the hub a client comes from reads up to where the
//! stream stood when the client asked (within half the handshake timeout)
//! before it answers the client's position. The README's "Scaling out"
//! says what an ack then means and which server settings matter.
//!
//! # Slow, dead and misbehaving clients
//!
//! - Each client's queue holds at most [`HubConfig::client_queue_frames`]
//!   frames and [`HubConfig::client_queue_bytes`] bytes, counting what its
//!   writer has taken but not yet written; when it is full the oldest
//!   frames are dropped and counted (a resuming client catches up from
//!   the history instead, see above), and neither the sender nor other
//!   clients slow down. A client that keeps dropping for
//!   [`HubConfig::slow_client_timeout`] is closed with 1013 (Try Again
//!   Later), by a timer, even if nothing more is published.
//! - Each client is pinged every [`HubConfig::ping_interval`]; one that
//!   sends nothing for that plus [`HubConfig::pong_timeout`] is dropped.
//! - A message over [`HubConfig::max_message_size`] closes that client with
//!   1009; invalid UTF-8 in a text frame with 1007; other protocol errors
//!   with 1002.
//! - [`Hub::shutdown`] closes everyone with 1001 within
//!   [`HubConfig::shutdown_timeout`].
//! - At most [`HubConfig::max_connections`] connections are served at
//!   once, at most [`HubConfig::max_pending_handshakes`] of them still in
//!   their handshake; the hub closes any more at once, unread, and counts
//!   them in [`HubStats::connections_refused`].
//! - One address opens at most [`HubConfig::handshake_burst_per_peer`]
//!   connections at once and [`HubConfig::handshakes_per_second_per_peer`]
//!   a second after that; past it a connection is held for a second and
//!   answered with 429, unread ([`HubStats::connections_paced`]), so a
//!   client upgrading in a loop cannot take the hub's CPU from connected
//!   clients.
//!
//! # Security
//!
//! [`Hub::builder`] adds, each optional:
//!
//! - **`wss://`** with [`HubTls`]: a certificate chain and key (PEM), via
//!   rustls. With [`HubTls::require_client_certificates`] only clients
//!   presenting a certificate from the given CA complete the TLS handshake
//!   (mutual TLS).
//! - **A bearer token** with [`HubBuilder::bearer_token`]: the upgrade must
//!   carry exactly one candidate, `Authorization: Bearer TOKEN`, the
//!   subprotocol `watchtower.token.<base64url TOKEN>` (what a browser can
//!   send; the hub answers with the subprotocol `watchtower` only) or
//!   (unless [`HubConfig::allow_query_token`] is off) `?token=TOKEN`; a missing or
//!   wrong token is answered with HTTP 401, several with 400, and neither
//!   joins the fan-out. A peer address that fails more than
//!   [`HubConfig::auth_failures_per_minute`] times in a minute gets 429
//!   until the minute is over. Tokens shorter than
//!   [`HubConfig::min_token_len`] fail at start.
//!
//! Always on: an upgrade carrying an `Origin` header (a browser page) is
//! refused with HTTP 403 unless the origin is on
//! [`HubConfig::allowed_origins`] or is the hub's own: equal to the
//! request's `Host`, and that `Host` one of the hub's own names (an IP
//! address or `localhost` with the hub's port; a DNS name only when
//! listed, so a rebound name is foreign). Native clients send none.
//!
//! Failed TLS handshakes and refused upgrades are counted in
//! [`HubStats::tls_failures`], [`HubStats::auth_rejected`],
//! [`HubStats::auth_throttled`] and [`HubStats::origin_rejected`] and
//! logged with the peer address; tokens and header values never are.
//!
//! # The HTTP side
//!
//! The same port answers plain HTTP: the hub reads each connection's
//! request head itself (at most 64 KiB, within
//! [`HubConfig::handshake_timeout`], after TLS) and hands an upgrade to
//! the WebSocket handshake as before, on any path. A `GET` (or `HEAD`) of
//! `/metrics` (Prometheus text), `/healthz`, `/api/stats`, `/api/clients`
//! or `/` (a dashboard page embedded in the binary, see [`Hub::http_url`])
//! is answered and the connection closed; other paths get 404, other
//! methods 405. With a token every path but `/healthz` and the (static)
//! page needs it, and the Origin check applies as for upgrades. The page's
//! live tail is a sampled subscription (`?sample=N`: at most N events a
//! second queued for it, the rest only counted and reported to it as
//! `{"type":"skipped","events":N}`), so an open dashboard costs the hub's
//! real subscribers next to nothing. Every figure shown — in `/metrics`,
//! `/api/stats` and the CLI — comes from one table,
//! [`HubStats::figures`].
//!
//! Logs (`tracing`): info for start, stop, connect and disconnect (with the
//! peer address and reason) and for refused clients; warn for malformed
//! input and dropped clients. Payloads, tokens and header values are never
//! logged.
//!
//! Dependencies: tokio (runtime), tokio-tungstenite (the protocol),
//! futures-util (stream and sink combinators), serde (config files),
//! thiserror (errors), tracing (logs), watchtower-core (the wire format),
//! rustls + tokio-rustls + rustls-pki-types (`wss://` without OpenSSL),
//! httparse (request heads, shared with tungstenite) and ring (SHA-256 for
//! the dashboard's Content-Security-Policy, shared with rustls); with
//! feature `nats`, async-nats (the NATS client, JetStream and `.creds`
//! files) and bytes (its payload type).

#![deny(missing_docs)]

mod backplane;
mod builder;
mod clients;
mod config;
mod connection;
mod error;
mod figures;
mod gates;
mod http;
mod hub;
#[cfg(feature = "nats")]
mod nats;
mod relay;
mod shared;
mod stats;
mod tls;

// The backplane still names the relay's modules from the crate's root.
#[cfg(feature = "nats")]
use relay::{dedup, fanout, history, outbox};

pub use builder::HubBuilder;
pub use config::{
    DEFAULT_AUTH_FAILURES_PER_MINUTE, DEFAULT_CLIENT_QUEUE_BYTES, DEFAULT_CLIENT_QUEUE_FRAMES,
    DEFAULT_CONTROL_BYTES_PER_SECOND, DEFAULT_DEDUP_CLIENT_SHARE, DEFAULT_DEDUP_WINDOW_AGE,
    DEFAULT_DEDUP_WINDOW_EVENTS, DEFAULT_HANDSHAKE_BURST_PER_PEER, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HANDSHAKES_PER_SECOND_PER_PEER, DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_EVENT_TYPE_LEN,
    DEFAULT_MAX_FILTER_BYTES, DEFAULT_MAX_FILTER_TYPES, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_MAX_PENDING_HANDSHAKES_PER_PEER, DEFAULT_MAX_REPLAY,
    DEFAULT_MESSAGE_TIMEOUT, DEFAULT_MIN_TOKEN_LEN, DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT,
    DEFAULT_READ_BUFFER_SIZE, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SLOW_CLIENT_TIMEOUT, HubConfig,
};
pub use error::{HubError, Result};
pub use figures::{Figure, FigureKind};
pub use hub::{Hub, HubHandle};
#[cfg(feature = "nats")]
pub use nats::{DEFAULT_NATS_STREAM, NatsConfig};
pub use stats::{HubStats, MalformedCounts};
pub use tls::HubTls;
