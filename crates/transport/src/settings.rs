//! Resolved, validated settings of one transport.

use std::sync::Arc;
use std::time::Duration;

use watchtower_dlq::DlqConfig;
use watchtower_reconnect::ReconnectPolicy;

use crate::checkpoint::CheckpointSettings;
use crate::config::WebSocketConfig;
use crate::credentials::{CredentialProvider, Credentials};
use crate::delivery::Acks;
use crate::subscription::MailboxOverflow;
use crate::url::WsUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) interval: Duration,
    pub(crate) pong_timeout: Duration,
}

impl Keepalive {
    /// Silence for this long means the connection is dead.
    pub(crate) fn dead_after(&self) -> Duration {
        self.interval + self.pong_timeout
    }
}

pub(crate) struct Settings {
    pub(crate) config: WebSocketConfig,
    pub(crate) url: WsUrl,
    /// Where to go when `url` cannot be reached, in order (then `url`
    /// again): other hubs of a group sharing one stream.
    pub(crate) fallbacks: Vec<WsUrl>,
    pub(crate) policy: ReconnectPolicy,
    pub(crate) breaker_timeout: Duration,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) read_buffer_size: usize,
    pub(crate) headers: Credentials,
    pub(crate) credential_provider: Option<CredentialProvider>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) mailbox_size: usize,
    pub(crate) mailbox_overflow: MailboxOverflow,
    pub(crate) dlq: DlqConfig,
    pub(crate) server_filters: bool,
    pub(crate) write_batch: usize,
    pub(crate) shutdown_timeout: Duration,
    /// Longest a write (feed or flush) may stay pending before the
    /// connection is declared stalled and replaced.
    pub(crate) write_timeout: Duration,
    pub(crate) lazy: bool,
    /// `Some` in at-least-once mode.
    pub(crate) acks: Option<Acks>,
    /// Event ids remembered to drop duplicates (at-least-once mode; 0: off).
    pub(crate) dedup_window: usize,
    /// Present a position on every connect.
    pub(crate) resume: bool,
    /// The position to present on the first connect.
    pub(crate) resume_from: Option<watchtower_core::Position>,
    /// Where to store the handled position, and how often.
    pub(crate) checkpoint: Option<CheckpointSettings>,
}

impl Settings {
    /// URL `index` of the list `url`, then the fallbacks, going round.
    pub(crate) fn url_at(&self, index: usize) -> &WsUrl {
        match index % (1 + self.fallbacks.len()) {
            0 => &self.url,
            i => &self.fallbacks[i - 1],
        }
    }

    /// How `flush` judges an event written: acknowledged (at least once),
    /// confirmed by a pong (at most once with keepalive), or flushed to the
    /// socket (no pings to confirm with).
    pub(crate) fn confirmation(&self) -> Confirmation {
        if self.acks.is_some() {
            Confirmation::Acks
        } else if self.keepalive.is_some() {
            Confirmation::Pongs
        } else {
            Confirmation::Flushes
        }
    }
}

/// What proves that the server has an event, by delivery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// At least once: the server's cumulative ack.
    Acks,
    /// At most once: a pong to a ping written after the event.
    Pongs,
    /// At most once without keepalive: only the socket's flush.
    Flushes,
}
