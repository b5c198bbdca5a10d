//! The Watchtower WebSocket connection engine: [`WebSocketTransport`], the
//! spec's [`WebSocketSubscriber`], and their [`WebSocketConfig`].
//!
//! One task per connection owns the socket. Its writer drains a bounded
//! [`BackpressureQueue`](watchtower_backpressure::BackpressureQueue) in
//! batches and flushes once per batch; its reader decodes text and binary
//! JSON frames and hands each event to every matching subscription's own
//! mailbox; it pings, detects dead connections, and reconnects on the
//! [`ReconnectPolicy`](watchtower_reconnect::ReconnectPolicy)'s schedule,
//! behind a circuit breaker. Events that cannot be delivered go to a
//! dead-letter queue with the reason; nothing is dropped silently.
//!
//! Most users depend on the `watchtower-websocket` facade, which re-exports
//! this crate's API.
//!
//! ```no_run
//! use watchtower_core::{Event, EventMetadata};
//! use watchtower_websocket_transport::{WebSocketConfig, WebSocketTransport};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = WebSocketTransport::new(WebSocketConfig::new("ws://localhost:8080/events")).await?;
//! transport
//!     .subscribe(vec!["user.login".to_string()], |event| Box::pin(async move {
//!         println!("{}", event.payload);
//!         Ok(())
//!     }))
//!     .await?;
//! transport.publish(Event::new("user.login", serde_json::json!({"user_id": 1}), EventMetadata::default())).await?;
//! transport.flush().await?;
//! # Ok(()) }
//! ```
//!
//! Why each dependency: tokio (runtime), tokio-tungstenite (the protocol),
//! futures-util (sink/stream combinators, `catch_unwind`), bytes (frames
//! shared without copies), serde/serde_json (the wire format), tracing
//! (logs), rustls + tokio-rustls + webpki-roots + rustls-native-certs +
//! rustls-pki-types (`wss://` without OpenSSL).

#![deny(missing_docs)]

mod builder;
mod checkpoint;
mod client_id;
mod config;
mod connect;
mod connection;
mod credentials;
mod dead_event;
mod delivery;
mod filter_limits;
mod resume;
mod settings;
mod shared;
mod stats;
mod subscriber;
mod subscription;
mod tls;
mod transport;
mod url;

pub use builder::{
    DEFAULT_BREAKER_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_MAILBOX_SIZE, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PONG_TIMEOUT, DEFAULT_READ_BUFFER_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_WRITE_BATCH, DEFAULT_WRITE_TIMEOUT, MAX_DURATION,
    TransportBuilder,
};
pub use checkpoint::{CheckpointStore, DEFAULT_CHECKPOINT_INTERVAL, FileCheckpoint};
pub use client_id::CLIENT_ID_HEADER;
pub use config::WebSocketConfig;
pub use credentials::Credentials;
pub use dead_event::DeadEvent;
pub use delivery::{AtLeastOnce, DEFAULT_ACK_ATTEMPTS, DEFAULT_DEDUP_WINDOW, Delivery};
pub use resume::ResumeOutcome;
pub use stats::{ConnectionState, ConnectionStats, TransportStats};
pub use subscriber::WebSocketSubscriber;
pub use subscription::MailboxOverflow;
pub use transport::{ShutdownReport, WebSocketTransport};
pub use url::redact as redact_url;
pub use watchtower_core::MalformedCounts;
