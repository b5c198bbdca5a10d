//! A WebSocket relay hub for Watchtower events: [`Hub`] accepts clients and
//! relays every event one of them sends to every *other* client whose
//! filter matches its `event_type`.
//!
//! It is the server the Watchtower transport, the examples, the tests, the
//! benchmarks and the `watchtower` CLI talk to. It speaks the event format
//! and the control protocol of `watchtower-core` and nothing else: no
//! storage, no history.
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
//!   sends one receives everything.
//! - **Anything else** is counted by reason in [`HubStats::malformed`],
//!   logged at warn (at most about once a second per client) and answered
//!   with nothing; the sender stays connected.
//!
//! # Fan-out
//!
//! A client's reader takes one frame, then whatever else is already
//! buffered (up to 256), and hands the whole burst, behind one `Arc`, to
//! every other matching client's queue. Frames are reference-counted, so
//! nothing is copied or serialised per recipient. Each client's writer takes
//! everything queued for it and flushes once per wake-up. The fan-out sits
//! behind an internal seam, so a backplane (e.g. NATS) can later connect
//! hubs without changing connection handling.
//!
//! # Slow, dead and misbehaving clients
//!
//! - Each client's queue holds at most [`HubConfig::client_queue_frames`];
//!   when it is full the oldest frames are dropped and counted, and neither
//!   the sender nor other clients slow down. A client that keeps dropping
//!   for [`HubConfig::slow_client_timeout`] is closed with 1013 (Try Again
//!   Later).
//! - Each client is pinged every [`HubConfig::ping_interval`]; one that
//!   sends nothing for that plus [`HubConfig::pong_timeout`] is dropped.
//! - A message over [`HubConfig::max_message_size`] closes that client with
//!   1009; invalid UTF-8 in a text frame with 1007; other protocol errors
//!   with 1002.
//! - [`Hub::shutdown`] closes everyone with 1001 within
//!   [`HubConfig::shutdown_timeout`].
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
//!   carry `Authorization: Bearer TOKEN` or `?token=TOKEN`; anything else
//!   is answered with HTTP 401 and never joins the fan-out.
//!
//! Failed TLS handshakes and refused upgrades are counted in
//! [`HubStats::tls_failures`] and [`HubStats::auth_rejected`] and logged at
//! info with the peer address; tokens and header values never are.
//!
//! Logs (`tracing`): info for start, stop, connect and disconnect (with the
//! peer address and reason) and for refused clients; warn for malformed
//! input and dropped clients. Payloads, tokens and header values are never
//! logged.
//!
//! Dependencies: tokio (runtime), tokio-tungstenite (the protocol),
//! futures-util (stream and sink combinators), serde (config files),
//! thiserror (errors), tracing (logs), watchtower-core (the wire format),
//! rustls + tokio-rustls + rustls-pki-types (`wss://` without OpenSSL).

#![deny(missing_docs)]

mod auth;
mod builder;
mod config;
mod connection;
mod error;
mod fanout;
mod filter;
mod hub;
mod outbox;
mod stats;
mod tls;

pub use builder::HubBuilder;
pub use config::{
    DEFAULT_CLIENT_QUEUE_FRAMES, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT, DEFAULT_READ_BUFFER_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SLOW_CLIENT_TIMEOUT, HubConfig,
};
pub use error::{HubError, Result};
pub use hub::{Hub, HubHandle};
pub use stats::{HubStats, MalformedCounts};
pub use tls::HubTls;
