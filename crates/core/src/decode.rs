//! Why a frame is not an event: typed decode errors.

use serde_json::Value;

use crate::event::Event;
use crate::protocol::MAX_EVENT_TYPE_LEN;

/// Why a frame could not be decoded as an [`Event`].
///
/// Each variant is one reason; [`DecodeError::kind`] gives a `Copy` tag for
/// counting them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A binary frame that is not UTF-8, so it cannot hold JSON.
    #[error(
        "frame is not valid UTF-8 (invalid byte at offset {valid_up_to}); events are UTF-8 JSON"
    )]
    InvalidUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// Not JSON at all, or JSON cut short.
    #[error("frame is not valid JSON (line {line}, column {column}): {message}")]
    InvalidJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// JSON, but not an object.
    #[error(
        "frame is JSON but not an object; an event is an object with \"id\" and \"event_type\""
    )]
    NotAnObject,
    /// A required field is absent.
    #[error("event has no \"{0}\" field")]
    MissingField(&'static str),
    /// A required field is present but empty.
    #[error("event field \"{0}\" is empty")]
    EmptyField(&'static str),
    /// The payload nests arrays and objects deeper than decoders accept.
    #[error("event payload nests deeper than {limit} levels")]
    TooDeep {
        /// The deepest nesting accepted.
        limit: usize,
    },
    /// A field has the wrong JSON type or format.
    #[error("event field \"{field}\" has the wrong type: expected {expected}")]
    WrongType {
        /// The field, dotted for nested ones (`metadata.timestamp`).
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// A field is longer than every receiver accepts: an `event_type`
    /// over [`MAX_EVENT_TYPE_LEN`](crate::MAX_EVENT_TYPE_LEN) bytes.
    #[error("event field \"{field}\" is {len} bytes long; at most {limit} are accepted")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes (after JSON unescaping).
        len: usize,
        /// The longest accepted.
        limit: usize,
    },
}

/// A `Copy` tag for each [`DecodeError`] variant, for counting by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// [`DecodeError::InvalidUtf8`].
    InvalidUtf8,
    /// [`DecodeError::InvalidJson`].
    InvalidJson,
    /// [`DecodeError::NotAnObject`].
    NotAnObject,
    /// [`DecodeError::MissingField`].
    MissingField,
    /// [`DecodeError::EmptyField`].
    EmptyField,
    /// [`DecodeError::WrongType`].
    WrongType,
    /// [`DecodeError::TooLong`].
    TooLong,
}

/// Malformed frames counted by reason: what transports and the hub report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MalformedCounts {
    /// Not UTF-8.
    pub invalid_utf8: u64,
    /// Not JSON, or JSON cut short (or nested too deep).
    pub invalid_json: u64,
    /// JSON that is not an object.
    pub not_an_object: u64,
    /// Objects without `id` or `event_type` (and not control frames).
    pub missing_field: u64,
    /// Objects with an empty `id` or `event_type`.
    pub empty_field: u64,
    /// Fields of the wrong type or format.
    pub wrong_type: u64,
    /// Fields longer than accepted (an `event_type` over
    /// [`MAX_EVENT_TYPE_LEN`](crate::MAX_EVENT_TYPE_LEN) bytes).
    pub too_long: u64,
}

impl MalformedCounts {
    /// Every malformed frame.
    pub fn total(&self) -> u64 {
        self.invalid_utf8
            + self.invalid_json
            + self.not_an_object
            + self.missing_field
            + self.empty_field
            + self.wrong_type
            + self.too_long
    }

    /// The counter for one reason.
    pub fn get_mut(&mut self, kind: DecodeErrorKind) -> &mut u64 {
        match kind {
            DecodeErrorKind::InvalidUtf8 => &mut self.invalid_utf8,
            DecodeErrorKind::InvalidJson => &mut self.invalid_json,
            DecodeErrorKind::NotAnObject => &mut self.not_an_object,
            DecodeErrorKind::MissingField => &mut self.missing_field,
            DecodeErrorKind::EmptyField => &mut self.empty_field,
            DecodeErrorKind::WrongType => &mut self.wrong_type,
            DecodeErrorKind::TooLong => &mut self.too_long,
        }
    }

    /// The count for one reason.
    pub fn get(&self, kind: DecodeErrorKind) -> u64 {
        let mut copy = *self;
        *copy.get_mut(kind)
    }

    /// Counts one frame of reason `kind`.
    pub fn record(&mut self, kind: DecodeErrorKind) {
        *self.get_mut(kind) += 1;
    }

    /// Every reason, for building counts from other counters.
    pub const KINDS: [DecodeErrorKind; 7] = [
        DecodeErrorKind::InvalidUtf8,
        DecodeErrorKind::InvalidJson,
        DecodeErrorKind::NotAnObject,
        DecodeErrorKind::MissingField,
        DecodeErrorKind::EmptyField,
        DecodeErrorKind::WrongType,
        DecodeErrorKind::TooLong,
    ];
}

impl std::ops::Add for MalformedCounts {
    type Output = MalformedCounts;

    fn add(mut self, other: MalformedCounts) -> MalformedCounts {
        for kind in MalformedCounts::KINDS {
            *self.get_mut(kind) += other.get(kind);
        }
        self
    }
}

/// [`MalformedCounts`] that many tasks can bump at once: what a transport or
/// hub keeps live, and reads with [`MalformedCounters::load`].
#[derive(Debug, Default)]
pub struct MalformedCounters {
    counts: [std::sync::atomic::AtomicU64; MalformedCounts::KINDS.len()],
}

impl MalformedCounters {
    /// Counts one frame of reason `kind`.
    pub fn record(&self, kind: DecodeErrorKind) {
        let index = MalformedCounts::KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(1); // InvalidJson: a reason added later lands there
        self.counts[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts now.
    pub fn load(&self) -> MalformedCounts {
        let mut counts = MalformedCounts::default();
        for (kind, count) in MalformedCounts::KINDS.iter().zip(&self.counts) {
            *counts.get_mut(*kind) = count.load(std::sync::atomic::Ordering::Relaxed);
        }
        counts
    }
}

impl DecodeError {
    /// The reason as a `Copy` tag.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            DecodeError::InvalidUtf8 { .. } => DecodeErrorKind::InvalidUtf8,
            DecodeError::InvalidJson { .. } => DecodeErrorKind::InvalidJson,
            DecodeError::NotAnObject => DecodeErrorKind::NotAnObject,
            DecodeError::MissingField(_) => DecodeErrorKind::MissingField,
            DecodeError::EmptyField(_) => DecodeErrorKind::EmptyField,
            // Decoders report depth as invalid JSON (serde_json's recursion
            // limit); only `Event::validate` names it.
            DecodeError::TooDeep { .. } => DecodeErrorKind::InvalidJson,
            DecodeError::WrongType { .. } => DecodeErrorKind::WrongType,
            DecodeError::TooLong { .. } => DecodeErrorKind::TooLong,
        }
    }
}

/// A nesting depth every decoder here accepts (serde_json's limit is 128).
pub(crate) const SHALLOW: usize = 100;

/// Whether JSON text nests arrays and objects deeper than `limit`, counting
/// brackets outside strings. One pass over the bytes, no allocation; for
/// malformed input the answer is only a hint, which is all callers need.
pub(crate) fn nests_deeper_than(bytes: &[u8], limit: usize) -> bool {
    // Depth never exceeds the number of opening brackets. Counting them is
    // branch-free and vectorises; the exact scan below, a branch per byte,
    // was an eighth of the hub's CPU per relayed event. Typical events
    // hold a handful of brackets and stop here.
    // Byte-sized counters per 128-byte chunk (they cannot overflow) let the
    // compiler compare 16 or 32 bytes at a time.
    let openings: usize = bytes
        .chunks(128)
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from(b == b'[' || b == b'{'));
            usize::from(n)
        })
        .sum();
    openings > limit && nesting_exceeds(bytes, limit)
}

/// The exact scan behind [`nests_deeper_than`].
fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether a JSON value nests arrays and objects deeper than `limit`.
/// Recursion stops at `limit`, so the stack stays bounded whatever the
/// value, and nothing is allocated (it runs on every publish).
pub(crate) fn value_deeper_than(value: &Value, limit: usize) -> bool {
    match value {
        Value::Array(items) => limit == 0 || items.iter().any(|v| value_deeper_than(v, limit - 1)),
        Value::Object(map) => limit == 0 || map.values().any(|v| value_deeper_than(v, limit - 1)),
        _ => false,
    }
}

pub(crate) fn check_not_empty(event: &Event) -> Result<(), DecodeError> {
    check_fields(&event.id, &event.event_type)
}

/// The rules every decoder applies to `id` and `event_type`: both
/// non-empty, and the type at most [`MAX_EVENT_TYPE_LEN`] bytes.
pub(crate) fn check_fields(id: &str, event_type: &str) -> Result<(), DecodeError> {
    if id.is_empty() {
        return Err(DecodeError::EmptyField("id"));
    }
    if event_type.is_empty() {
        return Err(DecodeError::EmptyField("event_type"));
    }
    if event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(DecodeError::TooLong {
            field: "event_type",
            len: event_type.len(),
            limit: MAX_EVENT_TYPE_LEN,
        });
    }
    Ok(())
}

/// Works out why `bytes` failed the fast path. Runs only for bad frames, so
/// it can afford a second parse.
pub(crate) fn explain(bytes: &[u8], fast_path_error: &serde_json::Error) -> DecodeError {
    if let Err(e) = std::str::from_utf8(bytes) {
        return DecodeError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        };
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            return DecodeError::InvalidJson {
                line: e.line(),
                column: e.column(),
                message: strip_position(&e),
            };
        }
    };
    let Value::Object(map) = &value else {
        return DecodeError::NotAnObject;
    };
    for field in ["id", "event_type"] {
        match map.get(field) {
            None => return DecodeError::MissingField(field),
            Some(Value::String(_)) => {}
            Some(_) => {
                return DecodeError::WrongType {
                    field,
                    expected: "a string",
                };
            }
        }
    }
    match map.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            if let Some(error) = explain_metadata(meta) {
                return error;
            }
        }
        Some(_) => {
            return DecodeError::WrongType {
                field: "metadata",
                expected: "an object",
            };
        }
    }
    // The checks above mirror every way the typed decode can fail; should
    // serde's rules ever differ, still say something true.
    DecodeError::InvalidJson {
        line: fast_path_error.line(),
        column: fast_path_error.column(),
        message: strip_position(fast_path_error),
    }
}

fn explain_metadata(meta: &serde_json::Map<String, Value>) -> Option<DecodeError> {
    let string_or_null = |field: &'static str, key: &str| match meta.get(key) {
        None | Some(Value::Null) | Some(Value::String(_)) => None,
        Some(_) => Some(DecodeError::WrongType {
            field,
            expected: "a string",
        }),
    };
    if let Some(error) = string_or_null("metadata.source", "source")
        .or_else(|| string_or_null("metadata.correlation_id", "correlation_id"))
    {
        return Some(error);
    }
    match meta.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            let format = &time::format_description::well_known::Rfc3339;
            if time::OffsetDateTime::parse(text, format).is_err() {
                return Some(DecodeError::WrongType {
                    field: "metadata.timestamp",
                    expected: "an RFC 3339 timestamp string",
                });
            }
        }
        Some(_) => {
            return Some(DecodeError::WrongType {
                field: "metadata.timestamp",
                expected: "an RFC 3339 timestamp string",
            });
        }
    }
    match meta.get("attributes") {
        None | Some(Value::Null) => None,
        Some(Value::Object(attrs)) if attrs.values().all(Value::is_string) => None,
        Some(_) => Some(DecodeError::WrongType {
            field: "metadata.attributes",
            expected: "an object of strings",
        }),
    }
}

/// serde_json appends " at line L column C"; we report those as fields.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_bracket_count_shortcut_agrees_with_the_exact_scan(
            text in "[\\[\\]{}\"\\\\a]{0,40}",
            limit in 0usize..8,
        ) {
            prop_assert_eq!(
                nests_deeper_than(text.as_bytes(), limit),
                nesting_exceeds(text.as_bytes(), limit)
            );
        }
    }

    fn err(text: &[u8]) -> DecodeError {
        Event::from_json(text).unwrap_err()
    }

    #[test]
    fn each_malformed_shape_has_its_own_error() {
        assert!(matches!(
            err(b"\xff\xfe{}"),
            DecodeError::InvalidUtf8 { valid_up_to: 0 }
        ));
        assert!(matches!(
            err(br#"{"id":"a","event_type":"#),
            DecodeError::InvalidJson { .. }
        ));
        assert!(matches!(err(b"not json"), DecodeError::InvalidJson { .. }));
        assert!(matches!(err(b""), DecodeError::InvalidJson { .. }));
        assert_eq!(err(b"[1,2]"), DecodeError::NotAnObject);
        assert_eq!(err(b"\"evt\""), DecodeError::NotAnObject);
        assert_eq!(err(b"null"), DecodeError::NotAnObject);
        assert_eq!(
            err(br#"{"event_type":"t"}"#),
            DecodeError::MissingField("id")
        );
        assert_eq!(
            err(br#"{"id":"x"}"#),
            DecodeError::MissingField("event_type")
        );
        assert_eq!(
            err(br#"{"id":"","event_type":"t"}"#),
            DecodeError::EmptyField("id")
        );
        assert_eq!(
            err(br#"{"id":"x","event_type":""}"#),
            DecodeError::EmptyField("event_type")
        );
        assert_eq!(
            err(br#"{"id":7,"event_type":"t"}"#),
            DecodeError::WrongType {
                field: "id",
                expected: "a string"
            }
        );
        assert_eq!(
            err(br#"{"id":"x","event_type":["t"]}"#),
            DecodeError::WrongType {
                field: "event_type",
                expected: "a string"
            }
        );
        assert_eq!(
            err(br#"{"id":"x","event_type":"t","metadata":5}"#),
            DecodeError::WrongType {
                field: "metadata",
                expected: "an object"
            }
        );
        assert_eq!(
            err(br#"{"id":"x","event_type":"t","metadata":{"timestamp":"yesterday"}}"#),
            DecodeError::WrongType {
                field: "metadata.timestamp",
                expected: "an RFC 3339 timestamp string"
            }
        );
        assert_eq!(
            err(br#"{"id":"x","event_type":"t","metadata":{"timestamp":12}}"#).kind(),
            DecodeErrorKind::WrongType
        );
        assert_eq!(
            err(br#"{"id":"x","event_type":"t","metadata":{"source":{}}}"#),
            DecodeError::WrongType {
                field: "metadata.source",
                expected: "a string"
            }
        );
        assert_eq!(
            err(br#"{"id":"x","event_type":"t","metadata":{"attributes":{"a":1}}}"#),
            DecodeError::WrongType {
                field: "metadata.attributes",
                expected: "an object of strings"
            }
        );
    }

    #[test]
    fn malformed_counts_record_load_and_add() {
        let live = MalformedCounters::default();
        for kind in MalformedCounts::KINDS {
            live.record(kind);
        }
        live.record(DecodeErrorKind::WrongType);
        let counts = live.load();
        assert_eq!(counts.total(), MalformedCounts::KINDS.len() as u64 + 1);
        assert_eq!(counts.get(DecodeErrorKind::WrongType), 2);
        assert_eq!(counts.invalid_utf8, 1);
        let mut other = MalformedCounts::default();
        other.record(DecodeErrorKind::InvalidJson);
        assert_eq!((counts + other).invalid_json, 2);
    }

    #[test]
    fn tolerant_decoding() {
        let e = Event::from_json(
            br#"{"id":"x","event_type":"t","unknown":{"deep":[1]},"metadata":{"other":1}}"#,
        )
        .unwrap();
        assert_eq!(e.payload, Value::Null);
        assert_eq!(e.metadata, crate::EventMetadata::default());
        let e = Event::from_json(br#"{"id":"x","event_type":"t","metadata":null}"#);
        assert!(e.is_ok(), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut text = String::from(r#"{"id":"x","event_type":"t","payload":"#);
        text.push_str(&"[".repeat(100_000));
        text.push_str(&"]".repeat(100_000));
        text.push('}');
        assert!(matches!(
            err(text.as_bytes()),
            DecodeError::InvalidJson { .. }
        ));
    }

    #[test]
    fn messages_say_where() {
        let e = err(b"{\n  \"id\": ");
        assert_eq!(e.kind(), DecodeErrorKind::InvalidJson);
        let text = e.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(
            !text.contains(" at line "),
            "position printed twice: {text}"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Event::from_json(&bytes);
        }

        #[test]
        fn truncated_events_are_errors(cut in 0usize..120) {
            let event = Event::new("a.b", serde_json::json!({"k": [1, 2, 3], "s": "text"}), crate::EventMetadata::default());
            let text = event.to_json().unwrap();
            let cut = cut.min(text.len() - 1);
            prop_assert!(Event::from_json(&text.as_bytes()[..cut]).is_err());
        }

        #[test]
        fn round_trip(event_type in "[a-z.]{1,20}", n in any::<i64>(), s in ".*", source in proptest::option::of("[ -~]{0,10}")) {
            let meta = crate::EventMetadata { source, ..Default::default() };
            let event = Event::new(event_type, serde_json::json!({"n": n, "s": s}), meta);
            let back = Event::from_json(event.to_json().unwrap().as_bytes()).unwrap();
            prop_assert_eq!(back.id, event.id);
            prop_assert_eq!(back.payload, event.payload);
            prop_assert_eq!(back.metadata.source, event.metadata.source);
        }
    }
}
