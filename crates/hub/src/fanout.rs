//! The fan-out seam: how a burst read from one client reaches the others.
//!
//! Connection handling talks only to [`Fanout`]. Today [`LocalFanout`]
//! delivers in-process. A backplane (NATS, with JetStream for history)
//! would implement the same trait: deliver locally as now, publish the
//! burst to the backplane, and feed bursts arriving from other hubs into
//! the local delivery, without touching the connection code.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::outbox::{Offered, Outbox};

/// Identifies one client connection within a hub.
pub(crate) type ClientId = u64;

/// Most frames one read burst collects before it is fanned out. Large
/// enough to amortise the per-recipient cost; the per-client frame bitmap
/// is sized by it.
pub(crate) const MAX_BURST: usize = 256;

/// Frames one client sent, read in one go, shared by every recipient.
///
/// Frames are relayed byte-for-byte; `Utf8Bytes` is reference-counted, so
/// recipients share one copy.
#[derive(Debug)]
pub(crate) struct Burst {
    /// Who sent it: never delivered back there.
    pub(crate) sender: ClientId,
    /// The event frames as received.
    pub(crate) frames: Vec<Utf8Bytes>,
    /// `types[i]` is the `event_type` of `frames[i]`.
    pub(crate) types: Vec<Box<str>>,
    /// The frames' bytes, summed: what a recipient keeps alive while any
    /// frame of the burst waits for it.
    pub(crate) bytes: usize,
}

impl Burst {
    pub(crate) fn new(sender: ClientId, frames: Vec<Utf8Bytes>, types: Vec<Box<str>>) -> Burst {
        let bytes = frames.iter().map(|f| f.len()).sum();
        Burst {
            sender,
            frames,
            types,
            bytes,
        }
    }
}

/// Totals of one fan-out, for the hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Frames queued, summed over recipients.
    pub(crate) queued: u64,
    /// Frames dropped from full queues to make room.
    pub(crate) dropped: u64,
    /// The most bytes any recipient held afterwards (queued and taken by
    /// its writer), for the high-water mark in the stats.
    pub(crate) max_held: usize,
}

/// Delivers bursts to the clients that joined.
pub(crate) trait Fanout: Send + Sync + fmt::Debug {
    /// `outbox` receives every later burst its filter matches.
    fn join(&self, outbox: Arc<Outbox>);
    /// The client stops receiving.
    fn leave(&self, id: ClientId);
    /// Offers `burst` to every member but its sender. Never waits: a full
    /// member drops its oldest frames instead.
    fn publish(&self, burst: Arc<Burst>) -> Delivery;
}

/// In-process fan-out.
///
/// The member list is copy-on-write: `publish` clones one `Arc` under the
/// lock and offers to members with no hub-wide lock held, so readers on
/// different cores do not serialise on it. `join` and `leave` copy the
/// list, which is cheap next to a WebSocket handshake.
#[derive(Debug, Default)]
pub(crate) struct LocalFanout {
    members: Mutex<Arc<Vec<Arc<Outbox>>>>,
}

impl LocalFanout {
    fn update(&self, change: impl FnOnce(&mut Vec<Arc<Outbox>>)) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Vec::clone(&members);
        change(&mut next);
        *members = Arc::new(next);
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Outbox>>> {
        Arc::clone(&self.members.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Fanout for LocalFanout {
    fn join(&self, outbox: Arc<Outbox>) {
        self.update(|members| members.push(outbox));
    }

    fn leave(&self, id: ClientId) {
        self.update(|members| members.retain(|m| m.id() != id));
    }

    fn publish(&self, burst: Arc<Burst>) -> Delivery {
        let mut delivery = Delivery::default();
        for member in self.snapshot().iter() {
            let Offered {
                queued,
                dropped,
                held,
            } = member.offer(&burst);
            delivery.queued += queued;
            delivery.dropped += dropped;
            delivery.max_held = delivery.max_held.max(held);
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn outbox(id: ClientId) -> Arc<Outbox> {
        let config = crate::HubConfig {
            client_queue_frames: 16,
            ..crate::HubConfig::default()
        };
        Arc::new(Outbox::new(id, &config))
    }

    #[test]
    fn publishes_to_every_member_but_the_sender_sharing_frames() {
        let fanout = LocalFanout::default();
        let (a, b, c) = (outbox(1), outbox(2), outbox(3));
        for o in [&a, &b, &c] {
            fanout.join(Arc::clone(o));
        }
        let frame = Utf8Bytes::from(r#"{"id":"1","event_type":"t"}"#);
        let burst = Arc::new(Burst::new(1, vec![frame.clone()], vec!["t".into()]));
        let d = fanout.publish(Arc::clone(&burst));
        assert_eq!(
            d,
            Delivery {
                queued: 2,
                dropped: 0,
                max_held: frame.len(),
            }
        );
        // Two recipients hold the same burst: nothing was copied per client.
        assert_eq!(Arc::strong_count(&burst), 3);

        fanout.leave(2);
        assert_eq!(fanout.publish(burst).queued, 1);
        let mut got = VecDeque::new();
        assert_eq!(b.take(&mut got), 1);
        assert_eq!(got[0].burst.frames[0], frame);
    }
}
