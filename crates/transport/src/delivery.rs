//! Delivery modes: plain WebSocket (at most once) or acknowledged (at least
//! once).

use std::time::Duration;

/// How events reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// Plain WebSocket, the default, for any server. An event written to a
    /// connection that then dies may be lost; the transport counts those in
    /// `frames_unconfirmed_lost`.
    #[default]
    AtMostOnce,
    /// Every event is kept until the server acknowledges it, and resent
    /// after a reconnect if it was not: nothing is lost across any number
    /// of disconnects. Needs a server that speaks the hub's ack protocol;
    /// duplicates (a resend the server had already received) are dropped
    /// by the hub and by subscribers' de-duplication window.
    AtLeastOnce(AtLeastOnce),
}

/// Settings of [`Delivery::AtLeastOnce`].
///
/// ```
/// use std::time::Duration;
/// use watchtower_websocket_transport::{AtLeastOnce, Delivery};
///
/// let delivery: Delivery = AtLeastOnce { ack_timeout: Duration::from_secs(5), max_in_flight: 256 }.into();
/// assert_ne!(delivery, Delivery::AtMostOnce);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtLeastOnce {
    /// How long an event may wait for its acknowledgement. When it passes,
    /// the connection is taken for stalled: it is closed and everything
    /// unacknowledged is resent, in order, on the next connection (TCP
    /// already retransmits on the old one). After `ack_attempts` such
    /// failures the event is dead-lettered with reason "ack timeout".
    /// Default 5 s.
    pub ack_timeout: Duration,
    /// Events sent and not yet acknowledged, at most; the writer waits for
    /// acknowledgements beyond that. Many in flight, not one: acks are
    /// cumulative, so this costs one small frame per burst. Default 256.
    pub max_in_flight: usize,
}

impl Default for AtLeastOnce {
    fn default() -> Self {
        AtLeastOnce {
            ack_timeout: Duration::from_secs(5),
            max_in_flight: 256,
        }
    }
}

impl From<AtLeastOnce> for Delivery {
    fn from(settings: AtLeastOnce) -> Self {
        Delivery::AtLeastOnce(settings)
    }
}

/// Default sends of one event before an ack timeout dead-letters it.
pub const DEFAULT_ACK_ATTEMPTS: u32 = 3;

/// Default size of the subscriber-side de-duplication window (event ids).
pub const DEFAULT_DEDUP_WINDOW: usize = 10_000;

/// Resolved at-least-once settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acks {
    pub(crate) ack_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) attempts: u32,
}
