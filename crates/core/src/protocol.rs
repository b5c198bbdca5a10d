//! Control frames: the small JSON protocol between a client and a hub.

use serde::{Deserialize, Serialize};

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
///
/// A client that never sends a control frame receives every event.
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
    }
}
