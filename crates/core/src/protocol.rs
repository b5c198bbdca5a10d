//! Control frames: the small JSON protocol between a client and a hub.

use serde::{Deserialize, Serialize};

/// Most event types one client's filter may hold, by default (a hub may be
/// configured otherwise). A transport refuses a subscription that would
/// exceed it instead of sending a filter the hub would refuse.
pub const MAX_FILTER_TYPES: usize = 4096;

/// Longest event type, in bytes, a filter may name by default.
pub const MAX_FILTER_TYPE_LEN: usize = 256;

/// Longest event type, in bytes, an event may have: every decoder
/// ([`Event::from_json`](crate::Event::from_json),
/// [`EventHeader::parse`](crate::EventHeader::parse), [`Event::validate`](crate::Event::validate))
/// refuses a longer one with [`DecodeError::TooLong`](crate::DecodeError::TooLong),
/// so a hub drops it when the frame is read. The same as a filter's
/// [`MAX_FILTER_TYPE_LEN`], so every type an event can have can be
/// subscribed to; it keeps the subject a NATS backplane derives from the
/// type well within the server's limits.
pub const MAX_EVENT_TYPE_LEN: usize = MAX_FILTER_TYPE_LEN;

/// Most bytes of event types (summed) one client's filter may hold by
/// default.
pub const MAX_FILTER_BYTES: usize = 64 * 1024;

/// A control frame, sent as a JSON text frame beside events.
///
/// Control frames carry a `"type"` field and never an `"event_type"`, so a
/// receiver tells them from events by shape.
///
/// | frame | direction | meaning |
/// |---|---|---|
/// | `{"type":"subscribe","event_types":["a","b"]}` | client → hub | add `a` and `b` to this client's filter; `[]` means every type |
/// | `{"type":"subscribe","event_types":["a"],"replace":true}` | client → hub | set the filter to exactly `a`, atomically |
/// | `{"type":"unsubscribe","event_types":["a"]}` | client → hub | remove `a`; `[]` removes everything (the client receives nothing) |
/// | `{"type":"hello","acks":true}` | client → hub | at-least-once delivery: acknowledge my events (sent first on each connection) |
/// | `{"type":"ack","upto":42}` | hub → client | the first 42 events this connection carried are received and relayed |
/// | `{"type":"resumed","position":"…","recovered":true,"replayed":3}` | hub → client | first frame to a client that presented a position: the answer (see [`Position`](crate::Position)) |
/// | `{"type":"position","seq":42}` | hub → client | every event up to history position 42 meant for this client came before this frame |
/// | `{"type":"skipped","events":7}` | hub → client | to a sampled client only (one that asked for at most N events a second, as the hub's dashboard does): 7 events meant for it were skipped since it connected |
///
/// A client that never sends a control frame receives every event and gets
/// no acknowledgements.
///
/// Acknowledgements are cumulative over the connection: `upto` counts the
/// event frames the hub has read on this connection, duplicates included,
/// and every one of them has been relayed (or recognised as a duplicate and
/// dropped). TCP keeps the order, so one number acknowledges a whole burst
/// and no event id travels back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlFrame {
    /// Receive these event types (`[]`: all of them).
    Subscribe {
        /// The event types.
        event_types: Vec<String>,
        /// Replace the filter instead of adding to it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replace: bool,
    },
    /// Stop receiving these event types (`[]`: all of them).
    Unsubscribe {
        /// The event types.
        event_types: Vec<String>,
    },
    /// What the client wants from this connection; sent before any event.
    Hello {
        /// Acknowledge every event (at-least-once delivery).
        #[serde(default)]
        acks: bool,
    },
    /// The hub has received and relayed the first `upto` events of this
    /// connection.
    Ack {
        /// Event frames read on this connection so far.
        upto: u64,
    },
    /// The hub's answer to a client that presented a position (or `new`)
    /// when it connected; the first frame it sends that client.
    Resumed {
        /// Where the hub's history stood when the client joined, as text
        /// (see [`Position`](crate::Position)).
        position: String,
        /// Whether every event after the client's position follows
        /// (replayed, then live); `false` also for `new`.
        recovered: bool,
        /// Events replayed.
        #[serde(default)]
        replayed: u64,
        /// Why not recovered; absent when recovered or for `new`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<crate::NotRecoveredReason>,
    },
    /// Every event up to history sequence `seq` that this client is to
    /// receive was written before this frame.
    Position {
        /// The sequence number.
        seq: u64,
    },
    /// To a sampled client: events meant for it that the hub skipped
    /// since it connected (a total, so a later frame replaces an earlier).
    Skipped {
        /// Events skipped so far.
        events: u64,
    },
}

impl ControlFrame {
    /// Parses a control frame; `None` if the bytes are not one.
    pub fn from_json(bytes: &[u8]) -> Option<ControlFrame> {
        serde_json::from_slice(bytes).ok()
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // A ControlFrame holds only strings and bools: it always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let f = ControlFrame::Subscribe {
            event_types: vec!["a".into()],
            replace: false,
        };
        assert_eq!(f.to_json(), r#"{"type":"subscribe","event_types":["a"]}"#);
        let f = ControlFrame::Subscribe {
            event_types: vec![],
            replace: true,
        };
        assert_eq!(
            f.to_json(),
            r#"{"type":"subscribe","event_types":[],"replace":true}"#
        );
        assert_eq!(
            ControlFrame::from_json(br#"{"type":"unsubscribe","event_types":["x"]}"#),
            Some(ControlFrame::Unsubscribe {
                event_types: vec!["x".into()]
            })
        );
        assert_eq!(
            ControlFrame::from_json(br#"{"id":"e","event_type":"t"}"#),
            None
        );
        assert_eq!(ControlFrame::from_json(br#"{"type":"nope"}"#), None);
        assert_eq!(
            ControlFrame::Hello { acks: true }.to_json(),
            r#"{"type":"hello","acks":true}"#
        );
        assert_eq!(
            ControlFrame::from_json(br#"{"type":"ack","upto":42}"#),
            Some(ControlFrame::Ack { upto: 42 })
        );
        assert_eq!(
            ControlFrame::Position { seq: 7 }.to_json(),
            r#"{"type":"position","seq":7}"#
        );
        assert_eq!(
            ControlFrame::Skipped { events: 7 }.to_json(),
            r#"{"type":"skipped","events":7}"#
        );
        let resumed = ControlFrame::Resumed {
            position: "00000000000000ff:3".into(),
            recovered: false,
            replayed: 0,
            reason: Some(crate::NotRecoveredReason::TooMany),
        };
        assert_eq!(
            resumed.to_json(),
            r#"{"type":"resumed","position":"00000000000000ff:3","recovered":false,"replayed":0,"reason":"too_many"}"#
        );
        assert_eq!(
            ControlFrame::from_json(resumed.to_json().as_bytes()),
            Some(resumed)
        );
    }
}
