//! Connection flags shared by `publish` and `subscribe`, and the transport
//! they build.

use std::time::Duration;

use clap::Args;
use watchtower_websocket::{
    BackpressureConfig, ReconnectPolicy, TransportBuilder, WebSocketConfig, WebSocketTransport,
};

/// Where and how to connect.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The hub (or any WebSocket server) to connect to.
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8080/events")]
    pub(crate) url: String,

    /// Give up one connection attempt after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub(crate) connect_timeout: Duration,

    /// The server does not speak the hub's control protocol: send no
    /// subscription filters (a plain server then sends every event, and
    /// they are filtered here).
    #[arg(long)]
    pub(crate) no_server_filters: bool,
}

impl ConnectArgs {
    /// A transport builder for these flags. The reconnect policy replaces
    /// the config's `max_reconnect_attempts` and `reconnect_delay_seconds`.
    pub(crate) fn builder(
        &self,
        policy: ReconnectPolicy,
        backpressure: BackpressureConfig,
    ) -> TransportBuilder {
        WebSocketTransport::builder(WebSocketConfig {
            url: self.url.clone(),
            backpressure,
            ..WebSocketConfig::default()
        })
        .connect_timeout(self.connect_timeout)
        .reconnect_policy(policy)
        .server_filters(!self.no_server_filters)
    }
}

/// Seconds as a decimal number: `5`, `0.5`.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    const MAX: f64 = 24.0 * 60.0 * 60.0;
    match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= MAX => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "expected a number of seconds above 0 and at most {MAX} (one day), such as 5 or 0.5"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "NaN", "inf", "soon", "", "1e9"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
