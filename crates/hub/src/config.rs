//! `HubConfig`: every tunable of the hub, with its default and why.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as WireConfig;

use crate::error::HubError;

/// Default largest incoming message: 1 MiB. Events are small; a low limit
/// bounds what one bad client can make the hub buffer.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default per-client outbound queue: 8192 frames, about 1.6 MiB of
/// 200-byte events, and the frames themselves are shared between clients.
pub const DEFAULT_CLIENT_QUEUE_FRAMES: usize = 8192;
/// Default time a client may keep losing frames before it is closed: 5 s.
pub const DEFAULT_SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default ping interval: 30 s, the same as the client transport's.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default extra time a client gets to answer after a ping: 10 s.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit for the TLS handshake and WebSocket upgrade after TCP
/// accept: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a graceful shutdown may take: 5 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default read buffer: 4 KiB. tungstenite's 128 KiB default is zero-filled
/// on first read and costs ~130 KiB per idle connection; 4 KiB measured no
/// slower on this workload.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 4 * 1024;

/// Default size of the de-duplication window: the last 100,000 event ids
/// from ack-mode clients, about 6.5 MB when full.
pub const DEFAULT_DEDUP_WINDOW_EVENTS: usize = 100_000;
/// Default age of the de-duplication window: 10 minutes, longer than a
/// client typically takes to notice a lost ack, reconnect and resend.
pub const DEFAULT_DEDUP_WINDOW_AGE: Duration = Duration::from_secs(10 * 60);

/// The most ids the de-duplication window may hold (about 650 MB).
const MAX_DEDUP_WINDOW_EVENTS: usize = 10_000_000;

/// The longest any duration setting may be.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Bytes buffered per client before tungstenite writes to the socket. Its
/// 128 KiB default keeps that much capacity per client after one burst; 16
/// KiB already makes each write syscall carry ~80 typical events.
const WRITE_BUFFER_SIZE: usize = 16 * 1024;

/// How the hub treats its clients.
///
/// Durations must be at most 24 hours, and all but `shutdown_timeout`
/// above zero; [`validate`](Self::validate) says which field is wrong.
///
/// Build one from [`Default`] and change the fields you need; every field
/// has a default, so a partial JSON or TOML file deserialises too
/// (durations use serde's `{ "secs": 5, "nanos": 0 }` form).
///
/// ```
/// use std::time::Duration;
/// use watchtower_hub::HubConfig;
///
/// let mut config = HubConfig::default();
/// config.client_queue_frames = 1024;
/// config.slow_client_timeout = Duration::from_secs(2);
/// config.validate()?;
/// # Ok::<(), watchtower_hub::HubError>(())
/// ```
///
/// The struct is `#[non_exhaustive]` so that settings can be added without
/// breaking code that builds it this way. TLS and bearer-token auth are not
/// here but on [`Hub::builder`](crate::Hub::builder): they hold secrets,
/// which a config that is `Debug` and serialisable should not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HubConfig {
    /// Largest message (and frame) a client may send, in bytes. A larger
    /// one closes that client with 1009 (Message Too Big); other clients are
    /// unaffected. Default [`DEFAULT_MAX_MESSAGE_SIZE`] (1 MiB).
    pub max_message_size: usize,
    /// Frames that may wait for one client before the oldest are dropped
    /// (and counted in [`HubStats::dropped_frames`](crate::HubStats)). A
    /// slow client never slows the sender or other clients. Default
    /// [`DEFAULT_CLIENT_QUEUE_FRAMES`] (8192).
    pub client_queue_frames: usize,
    /// How long a client may keep losing frames because its queue stays
    /// full before it is closed with 1013 (Try Again Later). Default
    /// [`DEFAULT_SLOW_CLIENT_TIMEOUT`] (5 s).
    pub slow_client_timeout: Duration,
    /// How often the hub pings each client. Default
    /// [`DEFAULT_PING_INTERVAL`] (30 s).
    pub ping_interval: Duration,
    /// A client that sent nothing at all (no pong, no frame) for
    /// `ping_interval + pong_timeout` is dead and is dropped, so half-open
    /// TCP connections do not pile up. Also how long a closing client gets
    /// to take its close frame. Default [`DEFAULT_PONG_TIMEOUT`] (10 s).
    pub pong_timeout: Duration,
    /// Limit for a new connection's TLS handshake (for `wss://`) and
    /// WebSocket upgrade together, so a peer that opens TCP and says
    /// nothing cannot hold a task. Default [`DEFAULT_HANDSHAKE_TIMEOUT`]
    /// (10 s).
    pub handshake_timeout: Duration,
    /// How long [`Hub::shutdown`](crate::Hub::shutdown) waits for clients to
    /// take their queued frames and answer the 1001 close before it drops
    /// them; zero drops them at once. Default [`DEFAULT_SHUTDOWN_TIMEOUT`]
    /// (5 s).
    pub shutdown_timeout: Duration,
    /// Socket read buffer per client, in bytes. Default
    /// [`DEFAULT_READ_BUFFER_SIZE`] (4 KiB), which keeps an idle
    /// connection under ~16 KiB hub-side.
    pub read_buffer_size: usize,
    /// How many event ids the hub remembers to drop resent events, hub-wide,
    /// counting only events from clients that said
    /// `{"type":"hello","acks":true}`. When full, the oldest id is
    /// forgotten. A resend older than the window is relayed again, so size
    /// it for the events all ack-mode clients send in the time they may
    /// take to resend. Between 1 and 10,000,000. Default
    /// [`DEFAULT_DEDUP_WINDOW_EVENTS`] (100,000; about 6.5 MB when full).
    pub dedup_window_events: usize,
    /// How long after its first sight an event id is remembered to drop
    /// resent events; must cover a client's ack timeout plus a reconnect.
    /// Default [`DEFAULT_DEDUP_WINDOW_AGE`] (10 min).
    pub dedup_window_age: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            client_queue_frames: DEFAULT_CLIENT_QUEUE_FRAMES,
            slow_client_timeout: DEFAULT_SLOW_CLIENT_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            dedup_window_events: DEFAULT_DEDUP_WINDOW_EVENTS,
            dedup_window_age: DEFAULT_DEDUP_WINDOW_AGE,
        }
    }
}

impl HubConfig {
    /// Checks every field; the error names the field, the rule and the
    /// value.
    pub fn validate(&self) -> Result<(), HubError> {
        let fail = |message: String| Err(HubError::Config(message));
        if !(64..=(1 << 30)).contains(&self.max_message_size) {
            return fail(format!(
                "max_message_size must be between 64 bytes and 1 GiB, not {}",
                self.max_message_size
            ));
        }
        if self.client_queue_frames == 0 {
            return fail("client_queue_frames must be at least 1".to_string());
        }
        if !(256..=(64 << 20)).contains(&self.read_buffer_size) {
            return fail(format!(
                "read_buffer_size must be between 256 bytes and 64 MiB, not {}",
                self.read_buffer_size
            ));
        }
        if !(1..=MAX_DEDUP_WINDOW_EVENTS).contains(&self.dedup_window_events) {
            return fail(format!(
                "dedup_window_events must be between 1 and {MAX_DEDUP_WINDOW_EVENTS}, not {}",
                self.dedup_window_events
            ));
        }
        for (name, value, zero_ok) in [
            ("slow_client_timeout", self.slow_client_timeout, false),
            ("ping_interval", self.ping_interval, false),
            ("pong_timeout", self.pong_timeout, false),
            ("handshake_timeout", self.handshake_timeout, false),
            ("shutdown_timeout", self.shutdown_timeout, true),
            ("dedup_window_age", self.dedup_window_age, false),
        ] {
            if value.is_zero() && !zero_ok {
                return fail(format!("{name} must be above zero"));
            }
            // Longer is never useful, and keeps deadline arithmetic far
            // from overflowing.
            if value > MAX_DURATION {
                return fail(format!("{name} must be at most 24 hours, not {value:?}"));
            }
        }
        Ok(())
    }

    /// The tungstenite settings these values imply.
    pub(crate) fn wire_config(&self) -> WireConfig {
        WireConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(WRITE_BUFFER_SIZE)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_partial_json_uses_them() {
        HubConfig::default().validate().unwrap();
        let c: HubConfig = serde_json::from_str(r#"{"client_queue_frames": 16}"#).unwrap();
        assert_eq!(c.client_queue_frames, 16);
        assert_eq!(c.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn validate_names_the_field() {
        let c = HubConfig {
            client_queue_frames: 0,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("client_queue_frames"), "{e}");

        let c = HubConfig {
            ping_interval: Duration::ZERO,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("ping_interval"), "{e}");

        let c = HubConfig {
            max_message_size: 10,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_message_size") && e.contains("10"), "{e}");

        let c = HubConfig {
            pong_timeout: Duration::MAX,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("pong_timeout") && e.contains("24 hours"), "{e}");

        let c = HubConfig {
            dedup_window_events: 0,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("dedup_window_events") && e.contains(" 0"), "{e}");

        let c = HubConfig {
            dedup_window_age: Duration::ZERO,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("dedup_window_age"), "{e}");
    }

    #[test]
    fn wire_config_carries_the_limits() {
        let c = HubConfig {
            max_message_size: 4096,
            ..Default::default()
        };
        let wire = c.wire_config();
        assert_eq!(wire.max_message_size, Some(4096));
        assert_eq!(wire.max_frame_size, Some(4096));
        assert_eq!(wire.read_buffer_size, DEFAULT_READ_BUFFER_SIZE);
        // tungstenite asserts this; a panic there would be ours.
        assert!(wire.max_write_buffer_size > wire.write_buffer_size);
    }
}
