//! Subjects and message ids for events on the stream.
//!
//! An event of type `notification.sent` goes to `wt.<stream>.notification.sent`:
//! each dot-separated part of the type becomes one subject token, so NATS
//! tools can filter by type prefix. A token may hold only `A-Z a-z 0-9 _ -`
//! as is; every other byte (`*`, `>`, spaces, `%`, non-ASCII) is written
//! `%XX`, and an empty part is `%`. The encoding is injective, never lets a
//! wildcard through, and never yields an empty token.

use std::fmt::Write;

/// The longest subject the publisher sends. The hub refuses event types
/// over [`MAX_EVENT_TYPE_LEN`](watchtower_core::MAX_EVENT_TYPE_LEN) bytes
/// when it reads them, so a subject here is at most `wt.` and a 64-byte
/// stream name and three bytes per byte of the type (836 bytes), far
/// within the server's control line (4,096 bytes by default; a publish
/// line longer than that makes the server drop the whole connection).
pub(crate) const MAX_SUBJECT_LEN: usize = 1024;

/// The subject for events of `event_type` on the stream whose subjects
/// start with `prefix` (`wt.<stream>`); `None` when it would be longer than
/// [`MAX_SUBJECT_LEN`] (never for a type the hub accepted).
pub(crate) fn subject(prefix: &str, event_type: &str) -> Option<String> {
    let subject = encode(prefix, event_type);
    (subject.len() <= MAX_SUBJECT_LEN).then_some(subject)
}

fn encode(prefix: &str, event_type: &str) -> String {
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

/// The secret the hubs of a group key `Nats-Msg-Id`s with: 32 random
/// bytes kept in the stream's description (hubs read it, their clients
/// cannot), so no client can predict another's message id.
#[derive(Clone)]
pub(crate) struct MessageIdKey(ring::hmac::Key);

/// Where the key is in a stream's description.
const KEY_TAG: &str = "msg-id-key:";

impl MessageIdKey {
    /// A new random key, and the stream description that carries it.
    pub(crate) fn generate() -> Option<(MessageIdKey, String)> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let description = format!("Watchtower hubs' events; {KEY_TAG}{hex}");
        Some((MessageIdKey::from_bytes(&bytes), description))
    }

    /// The key a stream's description carries, if it carries one.
    pub(crate) fn from_description(description: &str) -> Option<MessageIdKey> {
        let hex = description.split(KEY_TAG).nth(1)?.get(..64)?;
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(MessageIdKey::from_bytes(&bytes))
    }

    /// For a stream made before keys (no key in its description): derived
    /// from its name, so every hub still agrees, but predictable.
    pub(crate) fn unkeyed(stream: &str) -> MessageIdKey {
        MessageIdKey::from_bytes(stream.as_bytes())
    }

    fn from_bytes(bytes: &[u8]) -> MessageIdKey {
        MessageIdKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
    }

    /// The `Nats-Msg-Id` of an event: its id (when short, printable ASCII
    /// without spaces) and a keyed hash (HMAC-SHA-256, 128 bits) of its
    /// whole frame. A resend, on any hub of the group, is byte-for-byte
    /// the same frame and so the same id, which JetStream's duplicate
    /// window drops; another client's event reusing the id is a different
    /// frame and is stored, and without the key no client can make a frame
    /// whose message id is another's.
    pub(crate) fn message_id(&self, event_id: &str, frame: &[u8]) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = ring::hmac::sign(&self.0, frame);
        let printable = event_id.len() <= 128 && event_id.bytes().all(|b| b.is_ascii_graphic());
        let event_id = if printable { event_id } else { "~" };
        // Built in place: once per event, on the publisher's hot path.
        let mut id = String::with_capacity(event_id.len() + 33);
        id.push_str(event_id);
        id.push(':');
        for &byte in &tag.as_ref()[..16] {
            id.push(char::from(HEX[usize::from(byte >> 4)]));
            id.push(char::from(HEX[usize::from(byte & 15)]));
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_type_makes_a_subject_within_the_limit() {
        use watchtower_core::MAX_EVENT_TYPE_LEN;
        let prefix = prefix(&"s".repeat(64));
        for worst in [
            "é".repeat(MAX_EVENT_TYPE_LEN / 2),
            "*".repeat(MAX_EVENT_TYPE_LEN),
            ".".repeat(MAX_EVENT_TYPE_LEN),
        ] {
            assert!(worst.len() <= MAX_EVENT_TYPE_LEN);
            let s = subject(&prefix, &worst).unwrap();
            assert!(s.len() <= 836, "{}", s.len());
        }
        assert_eq!(subject(&prefix, &"*".repeat(400)), None);
    }

    fn subject(prefix: &str, event_type: &str) -> Option<String> {
        super::subject(prefix, event_type)
    }

    fn enc(prefix: &str, event_type: &str) -> String {
        super::subject(prefix, event_type).unwrap()
    }

    #[test]
    fn types_become_tokens_without_wildcards_or_empty_tokens() {
        assert_eq!(enc("wt.ev", "notification.sent"), "wt.ev.notification.sent");
        assert_eq!(enc("wt.ev", "a*b"), "wt.ev.a%2Ab");
        assert_eq!(enc("wt.ev", ">"), "wt.ev.%3E");
        assert_eq!(enc("wt.ev", "a..b."), "wt.ev.a.%.b.%");
        assert_eq!(enc("wt.ev", "x y%"), "wt.ev.x%20y%25");
        assert_eq!(enc("wt.ev", "é"), "wt.ev.%C3%A9");
        // Injective: the encoded `%` cannot be confused with an escape.
        assert_ne!(enc("wt.ev", "%2A"), enc("wt.ev", "*"));
        for t in ["*", ">", "a.*", "a.>", " ", ""] {
            let s = enc("wt.ev", t);
            assert!(
                s.split('.')
                    .all(|tok| !tok.is_empty() && tok != "*" && tok != ">")
            );
            assert!(!s.contains(' '));
        }
    }

    #[test]
    fn message_ids_carry_the_event_id_and_a_keyed_hash_of_the_frame() {
        let (key, description) = MessageIdKey::generate().unwrap();
        let again = MessageIdKey::from_description(&description).unwrap();
        let frame = br#"{"id":"e-1","event_type":"t"}"#;
        let a = key.message_id("e-1", frame);
        assert!(a.starts_with("e-1:"));
        assert_eq!(a.len(), "e-1:".len() + 32);
        // Every hub reading the same stream makes the same id.
        assert_eq!(a, again.message_id("e-1", frame));
        assert_ne!(
            a,
            key.message_id("e-1", br#"{"id":"e-1","event_type":"u"}"#)
        );
        // Another key (another group, or a guess) makes another id.
        let (other, _) = MessageIdKey::generate().unwrap();
        assert_ne!(a, other.message_id("e-1", frame));
        assert!(key.message_id("has space", b"{}").starts_with("~:"));
        assert!(MessageIdKey::from_description("made by hand").is_none());
        assert!(MessageIdKey::from_description("msg-id-key:12").is_none());
    }
}
