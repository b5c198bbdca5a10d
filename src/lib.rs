//! Publish and subscribe to JSON events over WebSocket, through server
//! restarts, dead connections, slow consumers and bad input.
//!
//! This crate is the facade: it re-exports the spec's public API from the
//! crates that implement it and holds no logic of its own.
//!
//! | crate | job |
//! |---|---|
//! | [`watchtower_core`] | [`Event`], [`EventMetadata`], [`WatchtowerError`], the [`Subscriber`] / [`Transport`] traits |
//! | [`watchtower_websocket_transport`] | [`WebSocketTransport`], [`WebSocketSubscriber`], [`WebSocketConfig`] |
//! | `watchtower-backpressure`, `watchtower-circuit-breaker`, `watchtower-dlq`, `watchtower-reconnect` | the generic resilience parts, usable on their own |
//!
//! ```no_run
//! use watchtower_websocket::prelude::*;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut subscriber = WebSocketSubscriber::new(WebSocketConfig::default()).await?;
//! let handle = subscriber
//!     .subscribe(vec!["notification.sent".to_string()], |event| Box::pin(async move {
//!         println!("received {}", event.id);
//!         Ok(())
//!     }))
//!     .await?;
//! subscriber
//!     .publish(Event::new("notification.sent", serde_json::json!({"user_id": 456}), EventMetadata::default()))
//!     .await?;
//! subscriber.unsubscribe(&handle).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub use watchtower_core::{
    BackpressureConfig, BackpressureStrategy, BoxError, ControlFrame, DecodeError, Event,
    EventHandler, EventMetadata, HandlerFuture, NotRecoveredReason, Position, PositionParseError,
    Result, Subscriber, SubscriptionHandle, TlsErrorKind, Transport, WatchtowerError,
};
pub use watchtower_websocket_transport::{
    AtLeastOnce, CLIENT_ID_HEADER, CheckpointStore, ConnectionState, ConnectionStats, Credentials,
    DEFAULT_CHECKPOINT_INTERVAL, DeadEvent, Delivery, FileCheckpoint, MailboxOverflow,
    MalformedCounts, ResumeOutcome, ShutdownReport, TransportBuilder, TransportStats,
    WebSocketConfig, WebSocketSubscriber, WebSocketTransport, redact_url,
};

/// Queue statistics.
pub use watchtower_backpressure::BackpressureStats;
/// The generic circuit breaker, and the names the spec uses from it.
pub use watchtower_circuit_breaker::{CircuitBreakerStats, CircuitState};
/// The dead-letter queue the transport feeds.
pub use watchtower_dlq::{
    ConsumerHandle, DeadLetter, DeadLetterQueue, DeadLetterReason, DlqConfig, DlqStats,
};
/// Reconnect policies for [`TransportBuilder::reconnect_policy`].
pub use watchtower_reconnect::{Backoff, Jitter, MaxAttempts, ReconnectPolicy};

/// The member crates, for their full APIs.
pub use watchtower_backpressure as backpressure;
pub use watchtower_circuit_breaker as circuit_breaker;
pub use watchtower_dlq as dlq;
pub use watchtower_reconnect as reconnect;
pub use watchtower_websocket_transport as transport;

/// Everything a typical user needs: `use watchtower_websocket::prelude::*;`.
pub mod prelude {
    pub use crate::{
        BackpressureConfig, BackpressureStrategy, CircuitState, ConnectionState, Event,
        EventMetadata, Subscriber, Transport, WatchtowerError, WebSocketConfig,
        WebSocketSubscriber, WebSocketTransport,
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
