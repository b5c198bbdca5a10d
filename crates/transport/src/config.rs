//! `WebSocketConfig`: the spec's four settings.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use watchtower_core::{BackpressureConfig, WatchtowerError};

use crate::url::{WsUrl, redact};

/// The connection settings the spec defines, built with a struct literal:
///
/// ```
/// use watchtower_websocket_transport::WebSocketConfig;
/// use watchtower_core::{BackpressureConfig, BackpressureStrategy};
///
/// let config = WebSocketConfig {
///     url: "ws://localhost:8080/events".to_string(),
///     max_reconnect_attempts: 5,
///     reconnect_delay_seconds: 5,
///     backpressure: BackpressureConfig {
///         max_queue_size: 1000,
///         strategy: BackpressureStrategy::DropOldest,
///         warning_threshold: 0.8,
///     },
/// };
/// assert_eq!(config, WebSocketConfig::default());
/// ```
///
/// Everything else (keepalive, timeouts, sizes, headers, TLS, backoff kind,
/// mailboxes, DLQ) is set on
/// [`WebSocketTransport::builder`](crate::WebSocketTransport::builder), so
/// this struct keeps exactly the spec's public fields.
///
/// `Debug` hides the URL's query values and userinfo (tokens live there).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebSocketConfig {
    /// The server, `ws://host:port/path` or `wss://…`. Default
    /// `ws://localhost:8080/events`.
    pub url: String,
    /// Connection attempts per outage before the circuit breaker opens.
    /// Default 5. `0` means: do not reconnect; open the breaker at once.
    pub max_reconnect_attempts: u32,
    /// Base reconnect delay: attempt `n` waits `n * reconnect_delay_seconds`
    /// (the spec's `delay * attempt`). Default 5. For sub-second delays use
    /// the builder's `reconnect_policy`.
    pub reconnect_delay_seconds: u64,
    /// The outgoing queue: size, strategy when full, warning threshold.
    pub backpressure: BackpressureConfig,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            url: "ws://localhost:8080/events".to_string(),
            max_reconnect_attempts: 5,
            reconnect_delay_seconds: 5,
            backpressure: BackpressureConfig::default(),
        }
    }
}

impl fmt::Debug for WebSocketConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketConfig")
            .field("url", &redact(&self.url))
            .field("max_reconnect_attempts", &self.max_reconnect_attempts)
            .field("reconnect_delay_seconds", &self.reconnect_delay_seconds)
            .field("backpressure", &self.backpressure)
            .finish()
    }
}

impl WebSocketConfig {
    /// A default config for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        WebSocketConfig {
            url: url.into(),
            ..Default::default()
        }
    }

    /// Checks every field; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), WatchtowerError> {
        self.parsed_url().map(|_| ())?;
        self.backpressure
            .validate()
            .map_err(|e| WatchtowerError::Config(format!("backpressure: {e}")))?;
        Ok(())
    }

    pub(crate) fn parsed_url(&self) -> Result<WsUrl, WatchtowerError> {
        WsUrl::parse(&self.url)
    }

    pub(crate) fn reconnect_delay(&self) -> Duration {
        Duration::from_secs(self.reconnect_delay_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_token() {
        let c = WebSocketConfig::new("wss://h/events?token=s3cret");
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("token=<redacted>"), "{text}");
    }

    #[test]
    fn partial_json_config_uses_defaults() {
        let c: WebSocketConfig = serde_json::from_str(r#"{"url":"ws://h:1/x"}"#).unwrap();
        assert_eq!(c.max_reconnect_attempts, 5);
        assert_eq!(c.backpressure, BackpressureConfig::default());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut c = WebSocketConfig::default();
        c.backpressure.max_queue_size = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("backpressure"), "{e}");
        let c = WebSocketConfig::new("http://x");
        assert!(matches!(c.validate(), Err(WatchtowerError::Config(_))));
    }
}
