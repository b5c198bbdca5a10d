//! Subjects and message ids for events on the stream.
//!
//! An event of type `notification.sent` goes to `wt.<stream>.notification.sent`:
//! each dot-separated part of the type becomes one subject token, so NATS
//! tools can filter by type prefix. A token may hold only `A-Z a-z 0-9 _ -`
//! as is; every other byte (`*`, `>`, spaces, `%`, non-ASCII) is written
//! `%XX`, and an empty part is `%`. The encoding is injective, never lets a
//! wildcard through, and never yields an empty token.

use std::fmt::Write;

use watchtower_core::frame_key;

/// The subject for events of `event_type` on the stream whose subjects
/// start with `prefix` (`wt.<stream>`).
pub(crate) fn subject(prefix: &str, event_type: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + event_type.len());
    out.push_str(prefix);
    for part in event_type.split('.') {
        out.push('.');
        if part.is_empty() {
            out.push('%');
        }
        for byte in part.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// The subjects of every event on the stream named `stream`.
pub(crate) fn prefix(stream: &str) -> String {
    format!("wt.{stream}")
}

/// The `Nats-Msg-Id` of an event: its id (when short, printable ASCII
/// without spaces) and the key of its whole frame. A resend, on any node,
/// is byte-for-byte the same frame and so the same id, which JetStream's
/// duplicate window drops; another client's event reusing the id is a
/// different frame and is stored, so no client can have another's event
/// dropped (as with the hub's own de-duplication window).
pub(crate) fn message_id(event_id: &str, frame: &[u8]) -> String {
    let key = frame_key(frame);
    let printable = event_id.len() <= 128 && event_id.bytes().all(|b| b.is_ascii_graphic());
    if printable {
        format!("{event_id}:{key:016x}")
    } else {
        format!("~:{key:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_become_tokens_without_wildcards_or_empty_tokens() {
        assert_eq!(
            subject("wt.ev", "notification.sent"),
            "wt.ev.notification.sent"
        );
        assert_eq!(subject("wt.ev", "a*b"), "wt.ev.a%2Ab");
        assert_eq!(subject("wt.ev", ">"), "wt.ev.%3E");
        assert_eq!(subject("wt.ev", "a..b."), "wt.ev.a.%.b.%");
        assert_eq!(subject("wt.ev", "x y%"), "wt.ev.x%20y%25");
        assert_eq!(subject("wt.ev", "é"), "wt.ev.%C3%A9");
        // Injective: the encoded `%` cannot be confused with an escape.
        assert_ne!(subject("wt.ev", "%2A"), subject("wt.ev", "*"));
        for t in ["*", ">", "a.*", "a.>", " ", ""] {
            let s = subject("wt.ev", t);
            assert!(
                s.split('.')
                    .all(|tok| !tok.is_empty() && tok != "*" && tok != ">")
            );
            assert!(!s.contains(' '));
        }
    }

    #[test]
    fn message_ids_carry_the_event_id_and_the_frame() {
        let a = message_id("e-1", br#"{"id":"e-1","event_type":"t"}"#);
        assert!(a.starts_with("e-1:"));
        assert_eq!(a, message_id("e-1", br#"{"id":"e-1","event_type":"t"}"#));
        assert_ne!(a, message_id("e-1", br#"{"id":"e-1","event_type":"u"}"#));
        assert!(message_id("has space", b"{}").starts_with("~:"));
    }
}
