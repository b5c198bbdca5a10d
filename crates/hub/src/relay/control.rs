//! Control frames from clients, parsed once, with the filter limits
//! enforced while parsing.
//!
//! The wire format is `watchtower_core::ControlFrame`'s. Parsing it
//! through serde's internally tagged enum buffers the whole frame first
//! and builds every `event_types` string before anything can be checked;
//! this parser reads the object key by key, refuses a type longer than
//! the limit before copying it, and stops at the first limit broken, so a
//! 1 MiB list of long types costs one scan of its first bytes at most.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::relay::filter::{Change, FilterLimits, OverLimit};

/// A control frame a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// `subscribe` or `unsubscribe`.
    Filter(Change),
    /// `{"type":"hello","acks":B}`.
    Hello { acks: bool },
    /// `{"type":"ack",...}` from a client: valid, and meaningless.
    Ack,
}

/// What a frame turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Control(Control),
    /// Its `event_types` broke a limit; parsing stopped there.
    OverLimit(OverLimit),
    /// Not a control frame (perhaps an event, perhaps garbage).
    NotControl,
}

/// False when the frame is an object whose first key is `"id"` or
/// `"event_type"`, as in every event the transport writes: such a frame is
/// never a control frame, so it goes straight to the event parse. Anything
/// else is tried as a control frame first (an event with another first
/// key costs one more, partial, parse; a control frame is parsed once).
pub(crate) fn may_be_control(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.trim_ascii_start().strip_prefix(b"{") else {
        // Not an object: the control parse fails on its first byte.
        return true;
    };
    let rest = rest.trim_ascii_start();
    !(rest.starts_with(b"\"id\"") || rest.starts_with(b"\"event_type\""))
}

/// Parses `bytes` as a control frame in one pass, holding `event_types`
/// to `limits`. A frame with an `id` or `event_type` key is never a
/// control frame (events win, as in the core protocol).
pub(crate) fn parse(bytes: &[u8], limits: &FilterLimits) -> Parsed {
    let broke = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = de
        .deserialize_map(FrameVisitor {
            limits,
            broke: &broke,
        })
        .and_then(|control| de.end().map(|()| control));
    match (parsed, broke.get()) {
        (_, Some(over)) => Parsed::OverLimit(over),
        (Ok(control), None) => Parsed::Control(control),
        (Err(_), None) => Parsed::NotControl,
    }
}

struct FrameVisitor<'a> {
    limits: &'a FilterLimits,
    broke: &'a Cell<Option<OverLimit>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subscribe,
    Unsubscribe,
    Hello,
    Ack,
}

impl<'de> Visitor<'de> for FrameVisitor<'_> {
    type Value = Control;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a control frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Control, A::Error> {
        let mut kind = None;
        let mut types: Option<Vec<Box<str>>> = None;
        let mut replace = None;
        let mut acks = None;
        let mut upto: Option<u64> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => set(&mut kind, map.next_value::<KindValue>()?.0)?,
                Key::EventTypes => {
                    let seed = TypesSeed {
                        limits: self.limits,
                        broke: self.broke,
                    };
                    set(&mut types, map.next_value_seed(seed)?)?;
                }
                Key::Replace => set(&mut replace, map.next_value::<bool>()?)?,
                Key::Acks => set(&mut acks, map.next_value::<bool>()?)?,
                Key::Upto => set(&mut upto, map.next_value::<u64>()?)?,
                Key::EventField => return Err(de::Error::custom("an event, not a control frame")),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |field| de::Error::missing_field(field);
        match kind.ok_or_else(|| missing("type"))? {
            Kind::Subscribe => Ok(Control::Filter(Change::Subscribe {
                types: types.ok_or_else(|| missing("event_types"))?,
                replace: replace.unwrap_or(false),
            })),
            Kind::Unsubscribe => Ok(Control::Filter(Change::Unsubscribe {
                types: types.ok_or_else(|| missing("event_types"))?,
            })),
            Kind::Hello => Ok(Control::Hello {
                acks: acks.unwrap_or(false),
            }),
            Kind::Ack => upto.map(|_| Control::Ack).ok_or_else(|| missing("upto")),
        }
    }
}

/// Sets a field once; a repeated key is an error, as with serde's derive.
fn set<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate field"));
    }
    *slot = Some(value);
    Ok(())
}

/// The keys this parser knows; others are skipped without being built.
enum Key {
    Type,
    EventTypes,
    Replace,
    Acks,
    Upto,
    /// `id` or `event_type`: the frame is an event.
    EventField,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "type" => Key::Type,
                    "event_types" => Key::EventTypes,
                    "replace" => Key::Replace,
                    "acks" => Key::Acks,
                    "upto" => Key::Upto,
                    "id" | "event_type" => Key::EventField,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// The value of `"type"`: a known kind, or an error.
struct KindValue(Kind);

impl<'de> de::Deserialize<'de> for KindValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KindValue, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = KindValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a control frame type")
            }
            fn visit_str<E: de::Error>(self, kind: &str) -> Result<KindValue, E> {
                Ok(KindValue(match kind {
                    "subscribe" => Kind::Subscribe,
                    "unsubscribe" => Kind::Unsubscribe,
                    "hello" => Kind::Hello,
                    "ack" => Kind::Ack,
                    _ => return Err(E::custom("unknown control frame type")),
                }))
            }
        }
        deserializer.deserialize_str(KindVisitor)
    }
}

/// `event_types`: a list held to the limits while it is read. The result
/// is sorted and without repeats.
struct TypesSeed<'a> {
    limits: &'a FilterLimits,
    broke: &'a Cell<Option<OverLimit>>,
}

impl<'de> DeserializeSeed<'de> for TypesSeed<'_> {
    type Value = Vec<Box<str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TypesSeed<'_> {
    type Value = Vec<Box<str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of event types")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut types: Vec<Box<str>> = Vec::new();
        let mut bytes = 0;
        loop {
            let seed = TypeSeed {
                full: types.len() >= self.limits.max_types,
                max_len: self.limits.max_type_len,
                bytes_left: self.limits.max_bytes.saturating_sub(bytes),
                broke: self.broke,
            };
            let Some(t) = seq.next_element_seed(seed)? else {
                break;
            };
            bytes += t.len();
            types.push(t);
        }
        types.sort_unstable();
        types.dedup();
        Ok(types)
    }
}

/// One event type, refused before it is copied if the list is full, or
/// the type is too long or would overrun the list's byte budget.
struct TypeSeed<'a> {
    /// The list already holds the most types allowed: one more is over.
    full: bool,
    max_len: usize,
    bytes_left: usize,
    broke: &'a Cell<Option<OverLimit>>,
}

impl<'de> DeserializeSeed<'de> for TypeSeed<'_> {
    type Value = Box<str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Box<str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for TypeSeed<'_> {
    type Value = Box<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event type")
    }

    fn visit_str<E: de::Error>(self, t: &str) -> Result<Box<str>, E> {
        let over = if self.full {
            OverLimit::TooManyTypes
        } else if t.len() > self.max_len {
            OverLimit::TypeTooLong
        } else if t.len() > self.bytes_left {
            OverLimit::TooManyBytes
        } else {
            return Ok(Box::from(t));
        };
        self.broke.set(Some(over));
        Err(E::custom("event type over the limit"))
    }
}

#[cfg(test)]
mod tests {
    use watchtower_core::ControlFrame;

    use super::*;

    const LIMITS: FilterLimits = FilterLimits {
        max_type_len: 8,
        max_types: 3,
        max_bytes: 12,
    };

    fn types(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|t| Box::from(*t)).collect()
    }

    #[test]
    fn agrees_with_the_core_protocol_on_what_it_writes() {
        let frames = [
            ControlFrame::Subscribe {
                event_types: vec!["b".into(), "a".into(), "b".into()],
                replace: true,
            },
            ControlFrame::Subscribe {
                event_types: vec![],
                replace: false,
            },
            ControlFrame::Unsubscribe {
                event_types: vec!["x".into()],
            },
            ControlFrame::Hello { acks: true },
            ControlFrame::Ack { upto: 3 },
        ];
        let expected = [
            Control::Filter(Change::Subscribe {
                types: types(&["a", "b"]),
                replace: true,
            }),
            Control::Filter(Change::Subscribe {
                types: vec![],
                replace: false,
            }),
            Control::Filter(Change::Unsubscribe {
                types: types(&["x"]),
            }),
            Control::Hello { acks: true },
            Control::Ack,
        ];
        for (frame, want) in frames.iter().zip(expected) {
            let json = frame.to_json();
            assert!(may_be_control(json.as_bytes()), "{json}");
            assert_eq!(parse(json.as_bytes(), &LIMITS), Parsed::Control(want));
        }
    }

    #[test]
    fn key_order_whitespace_and_unknown_keys() {
        let text = br#" { "event_types" : ["a"], "x": {"deep":[1,2]}, "type": "unsubscribe" } "#;
        assert!(may_be_control(text));
        assert!(!may_be_control(br#" { "id": "e", "type": "hello"}"#));
        assert!(!may_be_control(br#"{"event_type":"t"}"#));
        assert_eq!(
            parse(text, &LIMITS),
            Parsed::Control(Control::Filter(Change::Unsubscribe {
                types: types(&["a"])
            }))
        );
        assert_eq!(
            parse(br#"{"type":"hello"}"#, &LIMITS),
            Parsed::Control(Control::Hello { acks: false })
        );
    }

    #[test]
    fn not_control_frames() {
        for text in [
            &br#"{"type":"nope","event_types":[]}"#[..],
            br#"{"type":"subscribe"}"#,
            br#"{"type":"subscribe","event_types":["a"],"id":"e","event_type":"t"}"#,
            br#"{"type":"subscribe","event_types":[],"event_types":[]}"#,
            br#"{"type":"subscribe","event_types":[1]}"#,
            br#"{"type":"ack"}"#,
            br#"{"type":"hello"} x"#,
            br#"[]"#,
            b"\xff",
            b"",
        ] {
            assert_eq!(
                parse(text, &LIMITS),
                Parsed::NotControl,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn limits_are_enforced_while_parsing() {
        let cases: [(&[u8], OverLimit); 3] = [
            (
                br#"{"type":"subscribe","event_types":["123456789"]}"#,
                OverLimit::TypeTooLong,
            ),
            (
                br#"{"type":"subscribe","event_types":["a","b","c","d"]}"#,
                OverLimit::TooManyTypes,
            ),
            (
                br#"{"type":"subscribe","event_types":["1234567","1234567"]}"#,
                OverLimit::TooManyBytes,
            ),
        ];
        for (text, over) in cases {
            assert_eq!(parse(text, &LIMITS), Parsed::OverLimit(over));
        }
        // Parsing stops at the first type over the limit: what follows is
        // never read, so not even its syntax matters.
        let text = br#"{"type":"subscribe","event_types":["123456789", garbage"#;
        assert_eq!(
            parse(text, &LIMITS),
            Parsed::OverLimit(OverLimit::TypeTooLong)
        );
        // An escaped type is measured decoded.
        let text = br#"{"type":"subscribe","event_types":["\u0061bcdefgh"]}"#;
        assert!(matches!(parse(text, &LIMITS), Parsed::Control(_)));
    }
}
