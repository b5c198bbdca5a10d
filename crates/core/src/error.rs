//! The one error type every Watchtower operation returns.

use std::time::Duration;

use crate::decode::DecodeError;

/// A boxed error that can cross tasks: what handlers return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`WatchtowerError`] as the default error.
pub type Result<T, E = WatchtowerError> = std::result::Result<T, E>;

/// Everything that can go wrong in Watchtower.
///
/// Each variant says what happened and what to do about it. Messages never
/// contain URL query strings, header values or payloads.
///
/// One convention for causes: an underlying error is printed as part of
/// the variant's message (most callers print only `Display`), and so is
/// never also returned by `source()`, where chain printers such as
/// `anyhow`'s would repeat it. (`Decode` is transparent: it *is* the
/// decode error.) A handler's failure is not a `WatchtowerError`: it
/// dead-letters the event with the handler's message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchtowerError {
    /// The circuit breaker is open: connecting failed repeatedly, so
    /// publishing fails fast instead of queueing into the void.
    #[error(
        "Circuit breaker is open: the server could not be reached after repeated attempts; \
         publishing fails fast until a trial reconnect succeeds{}",
        retry_hint(*retry_after)
    )]
    CircuitOpen {
        /// Time left until the next trial connect, when known.
        retry_after: Option<Duration>,
    },

    /// A connection could not be made or was lost.
    #[error("connection failed: {message}{}", cause_suffix(cause))]
    Connection {
        /// What failed, with the (redacted) URL where useful.
        message: String,
        /// The underlying error. It is printed as part of this error's
        /// message (most callers print only `Display`), so it is not also
        /// returned by `source()`, where chain printers would repeat it.
        cause: Option<BoxError>,
    },

    /// A configuration value is invalid. Raised before any I/O.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The queue is full and the `DropNewest` strategy rejected the event.
    #[error(
        "queue full: {capacity} events are waiting to be sent, so the DropNewest strategy \
         rejected this one; publish more slowly, raise backpressure.max_queue_size, or use \
         DropOldest or Block"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },

    /// An event is larger than the configured maximum message size.
    #[error(
        "event is {size} bytes, over the maximum message size of {max} bytes; \
         send a smaller payload or raise max_message_size (the server must accept it too)"
    )]
    MessageTooLarge {
        /// The serialised event's size.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The transport was shut down.
    #[error("the transport is shut down; create a new one to publish or subscribe")]
    Closed,

    /// An operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out, e.g. "connect" or "flush".
        operation: &'static str,
        /// The limit that passed.
        after: Duration,
    },

    /// The event could not be serialised.
    #[error("could not serialise the event: {0}")]
    Serialization(serde_json::Error),

    /// A frame could not be decoded as an event.
    #[error(transparent)]
    Decode(#[from] DecodeError),

    /// A subscription operation failed (e.g. an unknown handle).
    #[error("subscription error: {0}")]
    Subscription(String),

    /// A TLS handshake or TLS configuration failed.
    #[error("TLS error: {message}{}", cause_suffix(cause))]
    Tls {
        /// Which TLS failure this is.
        kind: TlsErrorKind,
        /// What failed and what to do about it.
        message: String,
        /// The underlying error, printed as part of the message (see
        /// [`WatchtowerError::Connection`]).
        cause: Option<BoxError>,
    },

    /// The server rejected the credentials at the WebSocket upgrade.
    #[error(
        "the server rejected the credentials (HTTP {status}); check the token or \
         client certificate, or the credential provider"
    )]
    Auth {
        /// The HTTP status of the rejected upgrade (401 or 403).
        status: u16,
    },

    /// The server paces this client's address (HTTP 429 to the upgrade,
    /// or 503 with a `Retry-After`): it is up, and asks to be tried
    /// later. The transport waits at least `retry_after` before its next
    /// attempt, which still counts against `max_reconnect_attempts`.
    #[error(
        "the server asked to be tried later (HTTP {status}){}; connections from this address \
         are paced",
        later_hint(*retry_after)
    )]
    RateLimited {
        /// The HTTP status of the refused upgrade (429 or 503).
        status: u16,
        /// The server's `Retry-After`, when it sent one in seconds.
        retry_after: Option<Duration>,
    },

    /// The credential provider failed to produce credentials.
    #[error("the credential provider failed: {0}")]
    Credentials(BoxError),
}

/// Which TLS failure a [`WatchtowerError::Tls`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's certificate chains to no trusted root.
    UnknownIssuer,
    /// The certificate is not valid for the host name in the URL.
    NameMismatch,
    /// The certificate has expired (or is not valid yet).
    Expired,
    /// The server wants a client certificate, or rejected ours.
    ClientCertificate,
    /// The TLS handshake did not finish in time.
    HandshakeTimeout,
    /// A certificate, key or root store could not be loaded.
    Config,
    /// Any other TLS failure.
    Other,
}

fn cause_suffix(cause: &Option<BoxError>) -> String {
    match cause {
        Some(cause) => format!(" ({cause})"),
        None => String::new(),
    }
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (next trial in {:.1} s)", d.as_secs_f64()),
        None => String::new(),
    }
}

fn later_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" after {} s", d.as_secs()),
        None => String::new(),
    }
}

impl WatchtowerError {
    /// A `Connection` error from a message alone.
    pub fn connection(message: impl Into<String>) -> Self {
        WatchtowerError::Connection {
            message: message.into(),
            cause: None,
        }
    }

    /// A `Connection` error with an underlying cause.
    pub fn connection_with(message: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        WatchtowerError::Connection {
            message: message.into(),
            cause: Some(cause.into()),
        }
    }

    /// A `Tls` error.
    pub fn tls(kind: TlsErrorKind, message: impl Into<String>, cause: Option<BoxError>) -> Self {
        WatchtowerError::Tls {
            kind,
            message: message.into(),
            cause,
        }
    }

    /// True for errors that a later retry may cure (connection, timeout,
    /// circuit open, queue full); false for misuse and bad input.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            WatchtowerError::CircuitOpen { .. }
                | WatchtowerError::Connection { .. }
                | WatchtowerError::RateLimited { .. }
                | WatchtowerError::QueueFull { .. }
                | WatchtowerError::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_says_the_server_is_up_and_when_to_come_back() {
        let e = WatchtowerError::RateLimited {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
        };
        let text = e.to_string();
        assert!(
            text.contains("HTTP 429") && text.contains("after 2 s"),
            "{text}"
        );
        assert!(e.is_transient());
    }

    #[test]
    fn circuit_open_message_contains_the_spec_text() {
        let e = WatchtowerError::CircuitOpen {
            retry_after: Some(Duration::from_millis(1500)),
        };
        let text = e.to_string();
        assert!(text.contains("Circuit breaker is open"), "{text}");
        assert!(text.contains("1.5 s"), "{text}");
    }

    #[test]
    fn connection_errors_print_their_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = WatchtowerError::connection_with("could not reach ws://h:1/x", io);
        assert_eq!(
            e.to_string(),
            "connection failed: could not reach ws://h:1/x (refused)"
        );
        assert!(std::error::Error::source(&e).is_none());
        let e = WatchtowerError::Credentials("vault sealed".into());
        assert_eq!(
            e.to_string(),
            "the credential provider failed: vault sealed"
        );
        assert!(std::error::Error::source(&e).is_none());
        let e = WatchtowerError::Serialization(serde_json::from_str::<u8>("x").unwrap_err());
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<WatchtowerError>();
        check::<DecodeError>();
    }

    #[test]
    fn boxes_into_the_spec_error_type() {
        fn f() -> std::result::Result<(), Box<dyn std::error::Error>> {
            Err(WatchtowerError::Closed)?
        }
        assert!(f().is_err());
    }
}
