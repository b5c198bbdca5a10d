//! The event and its metadata, with their JSON wire shape.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decode::{self, DecodeError};
use crate::error::WatchtowerError;

/// One event: a typed JSON payload with an id and metadata.
///
/// On the wire an event is one JSON object, sent as one WebSocket text frame:
///
/// ```json
/// {"id":"evt_0193…","event_type":"notification.sent","payload":{"user_id":456},"metadata":{"timestamp":"2026-11-26T07:11:09.123Z"}}
/// ```
///
/// Decoding ([`Event::from_json`]) is tolerant of what other producers add:
/// unknown fields are ignored, a missing `payload` is `null` and missing
/// `metadata` is the default. A missing or empty `id` or `event_type` is a
/// typed [`DecodeError`], never a panic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id. [`Event::new`] makes `evt_` followed by a time-ordered UUIDv7.
    pub id: String,
    /// What happened, e.g. `"notification.sent"`. Subscriptions filter on it.
    pub event_type: String,
    /// The event's data: any JSON value.
    #[serde(default)]
    pub payload: Value,
    /// When, where from, and free-form attributes. `null` or absent decodes
    /// as the default.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: EventMetadata,
}

impl Event {
    /// Creates an event with a fresh `evt_…` id.
    ///
    /// If `metadata.timestamp` is `None` it is set to now, so every event
    /// records when it was created.
    ///
    /// ```
    /// use watchtower_core::{Event, EventMetadata};
    ///
    /// let event = Event::new("user.login", serde_json::json!({"user_id": 123}), EventMetadata::default());
    /// assert!(event.id.starts_with("evt_"));
    /// assert_eq!(event.event_type, "user.login");
    /// assert!(event.metadata.timestamp.is_some());
    /// ```
    pub fn new(event_type: impl Into<String>, payload: Value, mut metadata: EventMetadata) -> Self {
        if metadata.timestamp.is_none() {
            metadata.timestamp = Some(SystemTime::now());
        }
        Event {
            id: new_event_id(),
            event_type: event_type.into(),
            payload,
            metadata,
        }
    }

    /// Serialises the event to its JSON wire form.
    ///
    /// Fails only for a timestamp that RFC 3339 cannot represent (before
    /// year 0 or after year 9999).
    pub fn to_json(&self) -> Result<String, WatchtowerError> {
        serde_json::to_string(self).map_err(WatchtowerError::Serialization)
    }

    /// Checks that every receiver will decode this event: `id` and
    /// `event_type` are non-empty, `event_type` is at most
    /// [`MAX_EVENT_TYPE_LEN`](crate::MAX_EVENT_TYPE_LEN) bytes, and the payload nests at most
    /// [`MAX_PAYLOAD_DEPTH`] arrays and objects deep — the same rules
    /// [`Event::from_json`] applies on the other side. Publishers call it
    /// before sending, so an event no subscriber could read fails where it
    /// is made, not silently in every receiver.
    ///
    /// ```
    /// use watchtower_core::{DecodeError, Event, EventMetadata};
    ///
    /// let mut event = Event::new("t", serde_json::json!({"a": [1]}), EventMetadata::default());
    /// assert!(event.validate().is_ok());
    /// event.event_type.clear();
    /// assert_eq!(event.validate(), Err(DecodeError::EmptyField("event_type")));
    /// ```
    pub fn validate(&self) -> Result<(), DecodeError> {
        decode::check_not_empty(self)?;
        if decode::value_deeper_than(&self.payload, MAX_PAYLOAD_DEPTH) {
            return Err(DecodeError::TooDeep {
                limit: MAX_PAYLOAD_DEPTH,
            });
        }
        Ok(())
    }

    /// Decodes an event from the bytes of a text or binary frame.
    ///
    /// Valid events take the fast path (one serde pass). Only a frame that
    /// fails is examined again, to say exactly what is wrong with it.
    ///
    /// ```
    /// use watchtower_core::{DecodeError, Event};
    ///
    /// let event = Event::from_json(br#"{"id":"evt_1","event_type":"a.b","extra":true}"#)?;
    /// assert_eq!(event.payload, serde_json::Value::Null);
    ///
    /// let err = Event::from_json(br#"{"event_type":"a.b"}"#).unwrap_err();
    /// assert_eq!(err, DecodeError::MissingField("id"));
    /// # Ok::<(), DecodeError>(())
    /// ```
    pub fn from_json(bytes: &[u8]) -> Result<Event, DecodeError> {
        match serde_json::from_slice::<Event>(bytes) {
            Ok(event) => {
                decode::check_not_empty(&event)?;
                Ok(event)
            }
            Err(error) => Err(decode::explain(bytes, &error)),
        }
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// How deeply an event's payload may nest arrays and objects: the most
/// that [`Event::from_json`] (serde_json's recursion limit of 128, less the
/// event object around the payload) accepts, rounded down to leave room.
pub const MAX_PAYLOAD_DEPTH: usize = 120;

/// Makes a new event id: `evt_` and a UUIDv7 in simple (32 hex digit) form.
///
/// UUIDv7 ids sort by creation time, which keeps logs and stores ordered.
pub fn new_event_id() -> String {
    let mut id = String::with_capacity(36);
    id.push_str("evt_");
    id.push_str(
        uuid::Uuid::now_v7()
            .simple()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    id
}

/// When an event happened, where it came from, and anything else worth
/// carrying beside the payload.
///
/// `EventMetadata::default()` is empty; [`Event::new`] stamps the time.
/// Fields that are `None` or empty are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// When the event was created. Serialised as RFC 3339 in UTC at full
    /// precision; decoding accepts any RFC 3339 offset.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    pub timestamp: Option<SystemTime>,
    /// The producing service or component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Ties related events (and logs) together across services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Free-form string attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl EventMetadata {
    /// Sets the producing service or component.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds one attribute.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }
}

/// Serde adapter: `Option<SystemTime>` as an RFC 3339 string.
mod rfc3339_opt {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer, de, ser};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            None => serializer.serialize_none(),
            Some(t) => {
                let dt = to_offset(*t).ok_or_else(|| {
                    ser::Error::custom("timestamp is out of range (years 1601 to 9999)")
                })?;
                let text = dt.format(&Rfc3339).map_err(|e| {
                    ser::Error::custom(format!("timestamp cannot be written as RFC 3339: {e}"))
                })?;
                serializer.serialize_str(&text)
            }
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(deserializer)?;
        match text {
            None => Ok(None),
            Some(text) => OffsetDateTime::parse(&text, &Rfc3339)
                .ok()
                .and_then(from_offset)
                .map(Some)
                .ok_or_else(|| {
                    de::Error::custom(
                        "metadata.timestamp is not an RFC 3339 timestamp from year 1601 to 9999",
                    )
                }),
        }
    }

    /// The earliest timestamp accepted: 1601-01-01T00:00:00Z, the start of
    /// Windows' `SystemTime`, so that an event decodes alike everywhere
    /// (`SystemTime::from(OffsetDateTime)` panics below it on Windows).
    const EARLIEST_UNIX_SECONDS: i64 = -11_644_473_600;

    /// `SystemTime` from a parsed timestamp, without the panicking `From`.
    pub(super) fn from_offset(dt: OffsetDateTime) -> Option<SystemTime> {
        if dt.unix_timestamp() < EARLIEST_UNIX_SECONDS {
            return None;
        }
        let nanos = dt.unix_timestamp_nanos();
        let magnitude = Duration::from_nanos(u64::try_from(nanos.unsigned_abs()).ok()?);
        if nanos >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// A timestamp to write, without the panicking `From`: `None` outside
    /// the years RFC 3339 and every platform can represent.
    pub(super) fn to_offset(t: SystemTime) -> Option<OffsetDateTime> {
        let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
            Ok(after) => i128::try_from(after.as_nanos()).ok()?,
            Err(before) => -i128::try_from(before.duration().as_nanos()).ok()?,
        };
        let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
        (dt.unix_timestamp() >= EARLIEST_UNIX_SECONDS && dt.year() <= 9999).then_some(dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn new_stamps_time_and_makes_unique_ordered_ids() {
        let a = Event::new("a", json!(1), EventMetadata::default());
        let b = Event::new("a", json!(1), EventMetadata::default());
        assert_ne!(a.id, b.id);
        assert!(a.id.starts_with("evt_"));
        assert_eq!(a.id.len(), 36);
        assert!(a.id < b.id, "UUIDv7 ids sort by creation time");
        assert!(a.metadata.timestamp.is_some());
    }

    #[test]
    fn new_keeps_a_given_timestamp() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let e = Event::new("a", json!(null), EventMetadata::default().with_timestamp(t));
        assert_eq!(e.metadata.timestamp, Some(t));
    }

    #[test]
    fn wire_shape_matches_the_spec() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_140_669_123);
        let e = Event {
            id: "evt_123".into(),
            event_type: "notification.sent".into(),
            payload: json!({"user_id": 456}),
            metadata: EventMetadata::default()
                .with_timestamp(t)
                .with_source("billing"),
        };
        let text = e.to_json().unwrap();
        assert_eq!(
            text,
            r#"{"id":"evt_123","event_type":"notification.sent","payload":{"user_id":456},"metadata":{"timestamp":"2025-11-26T07:04:29.123Z","source":"billing"}}"#
        );
        assert_eq!(Event::from_json(text.as_bytes()).unwrap(), e);
    }

    #[test]
    fn timestamps_round_trip_exactly() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let e = Event::new("a", json!(1), EventMetadata::default().with_timestamp(t));
        let back = Event::from_json(e.to_json().unwrap().as_bytes()).unwrap();
        assert_eq!(back.metadata.timestamp, Some(t));
    }

    #[test]
    fn timestamps_with_offsets_and_before_1970_are_accepted() {
        let e = Event::from_json(
            br#"{"id":"x","event_type":"t","metadata":{"timestamp":"1969-12-31T23:00:00-01:00"}}"#,
        )
        .unwrap();
        assert_eq!(e.metadata.timestamp, Some(UNIX_EPOCH));
        let e = Event::from_json(
            br#"{"id":"x","event_type":"t","metadata":{"timestamp":"1960-01-01T00:00:00Z"}}"#,
        )
        .unwrap();
        // Writes back without panicking, as it would for any pre-1970 time.
        assert!(e.to_json().unwrap().contains("1960-01-01T00:00:00"));
    }

    #[test]
    fn metadata_fields_round_trip() {
        let m = EventMetadata::default()
            .with_source("s")
            .with_correlation_id("c")
            .with_attribute("k", "v");
        let e = Event::new("a", json!([1, 2]), m);
        assert_eq!(
            Event::from_json(e.to_json().unwrap().as_bytes()).unwrap(),
            e
        );
    }
}

/// The parts of an event a relay needs — `id` and `event_type` — read
/// without building the payload.
///
/// [`EventHeader::parse`] checks the whole frame as strictly as
/// [`Event::from_json`] (well-formed JSON, required fields, metadata
/// shape), but skips over the payload instead of building a
/// [`serde_json::Value`], which is most of the cost of decoding.
///
/// ```
/// use watchtower_core::EventHeader;
///
/// let frame = br#"{"id":"evt_1","event_type":"a.b","payload":{"big":[1,2,3]}}"#;
/// let header = EventHeader::parse(frame)?;
/// assert_eq!((&*header.id, &*header.event_type), ("evt_1", "a.b"));
/// # Ok::<(), watchtower_core::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventHeader<'a> {
    /// The event's id.
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
    /// The event's type.
    #[serde(borrow)]
    pub event_type: std::borrow::Cow<'a, str>,
}

impl<'a> EventHeader<'a> {
    /// Parses and checks a frame; borrows the strings from it where possible.
    pub fn parse(bytes: &'a [u8]) -> Result<EventHeader<'a>, DecodeError> {
        // serde_json skips ignored strings without checking their UTF-8, so
        // check the whole frame first: what we relay must decode.
        let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        Self::parse_text(text)
    }

    /// [`EventHeader::parse`] for text already known to be UTF-8 (a
    /// WebSocket text frame is checked when it is read), just as strict.
    pub fn parse_text(text: &'a str) -> Result<EventHeader<'a>, DecodeError> {
        // serde_json skips ignored values without its nesting limit, so a
        // payload nested deeper than the full decoder accepts would pass.
        // Deep frames are rare (and suspicious): give those the full decode.
        if decode::nests_deeper_than(text.as_bytes(), decode::SHALLOW) {
            Event::from_json(text.as_bytes())?;
        }
        Self::parse_shallow(text)
    }

    fn parse_shallow(text: &'a str) -> Result<EventHeader<'a>, DecodeError> {
        #[derive(Deserialize)]
        struct Checked<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            event_type: std::borrow::Cow<'a, str>,
            #[serde(default)]
            #[allow(dead_code)]
            payload: serde::de::IgnoredAny,
            #[serde(default, deserialize_with = "null_as_default")]
            #[allow(dead_code)]
            metadata: EventMetadata,
        }
        match serde_json::from_str::<Checked<'a>>(text) {
            Ok(c) => {
                decode::check_fields(&c.id, &c.event_type)?;
                Ok(EventHeader {
                    id: c.id,
                    event_type: c.event_type,
                })
            }
            Err(error) => Err(decode::explain(text.as_bytes(), &error)),
        }
    }
}

impl<'a> EventHeader<'a> {
    /// Reads `id` and `event_type` from text that is already known to be
    /// UTF-8, checking only what routing needs: well-formed JSON, and both
    /// fields present, strings and non-empty. Payload and metadata are
    /// skipped unchecked, so a frame that passes may still fail
    /// [`Event::from_json`]; [`EventHeader::parse`] is the strict form.
    ///
    /// This is the cheapest way to route a frame: no allocation (unless the
    /// fields hold escapes) and no timestamp parsing.
    pub fn peek(text: &'a str) -> Result<EventHeader<'a>, DecodeError> {
        #[derive(Deserialize)]
        struct Peeked<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            event_type: std::borrow::Cow<'a, str>,
        }
        match serde_json::from_str::<Peeked<'a>>(text) {
            Ok(p) => {
                decode::check_fields(&p.id, &p.event_type)?;
                Ok(EventHeader {
                    id: p.id,
                    event_type: p.event_type,
                })
            }
            Err(error) => Err(decode::explain(text.as_bytes(), &error)),
        }
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn an_event_type_over_the_limit_is_refused_by_every_decoder() {
        use crate::{DecodeErrorKind, MAX_EVENT_TYPE_LEN};
        let frame = |len: usize| format!(r#"{{"id":"e","event_type":"{}"}}"#, "a".repeat(len));
        let ok = frame(MAX_EVENT_TYPE_LEN);
        assert!(Event::from_json(ok.as_bytes()).is_ok());
        assert!(EventHeader::parse(ok.as_bytes()).is_ok());
        assert!(EventHeader::peek(&ok).is_ok());
        let long = frame(MAX_EVENT_TYPE_LEN + 1);
        let want = DecodeError::TooLong {
            field: "event_type",
            len: MAX_EVENT_TYPE_LEN + 1,
            limit: MAX_EVENT_TYPE_LEN,
        };
        assert_eq!(Event::from_json(long.as_bytes()), Err(want.clone()));
        assert_eq!(
            EventHeader::parse(long.as_bytes()).err(),
            Some(want.clone())
        );
        assert_eq!(EventHeader::peek(&long).err(), Some(want.clone()));
        assert_eq!(want.kind(), DecodeErrorKind::TooLong);
        assert!(want.to_string().contains("at most 256"), "{want}");
        // Escapes count as the bytes they stand for, and a deep payload
        // (the full decoder's path) is refused the same way.
        let escaped = format!(
            r#"{{"id":"e","event_type":"{}","payload":{}{}}}"#,
            "\\u0061".repeat(MAX_EVENT_TYPE_LEN + 1),
            "[".repeat(110),
            "]".repeat(110)
        );
        assert_eq!(
            EventHeader::parse(escaped.as_bytes())
                .map_err(|e| e.kind())
                .err(),
            Some(DecodeErrorKind::TooLong)
        );
        let mut event = Event::new("t", Value::Null, EventMetadata::default());
        event.event_type = "a".repeat(MAX_EVENT_TYPE_LEN + 1);
        assert_eq!(event.validate(), Err(want));
    }

    #[test]
    fn header_agrees_with_full_decoding() {
        let cases: &[&[u8]] = &[
            br#"{"id":"e","event_type":"t","payload":[1,{"x":null}]}"#,
            br#"{"id":"e\u0041","event_type":"t"}"#,
            br#"{"id":"e","event_type":""}"#,
            br#"{"event_type":"t"}"#,
            br#"{"id":"e","event_type":"t","payload":[1,"#,
            br#"{"id":"e","event_type":"t","metadata":{"timestamp":"nope"}}"#,
            br#"{"id":"e","event_type":"t","metadata":null}"#,
            b"{\"id\":\"e\",\"event_type\":\"t\",\"payload\":\"\xff\"}",
            b"[]",
            b"\xff",
        ];
        for case in cases {
            let full = Event::from_json(case);
            let header = EventHeader::parse(case);
            match (&full, &header) {
                (Ok(e), Ok(h)) => {
                    assert_eq!(e.id, h.id);
                    assert_eq!(e.event_type, h.event_type);
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{:?}", String::from_utf8_lossy(case))
                }
                _ => panic!(
                    "disagree on {:?}: {full:?} vs {header:?}",
                    String::from_utf8_lossy(case)
                ),
            }
        }
    }

    #[test]
    fn validate_accepts_exactly_what_every_decoder_accepts() {
        for depth in [
            0,
            1,
            100,
            MAX_PAYLOAD_DEPTH - 1,
            MAX_PAYLOAD_DEPTH,
            MAX_PAYLOAD_DEPTH + 1,
            200,
        ] {
            let mut payload = json!(1);
            for _ in 0..depth {
                payload = Value::Array(vec![payload]);
            }
            let event = Event::new("t", payload, EventMetadata::default());
            let valid = event.validate().is_ok();
            assert_eq!(valid, depth <= MAX_PAYLOAD_DEPTH, "depth {depth}");
            if valid {
                // What validate accepts, both decoders accept.
                let text = event.to_json().unwrap();
                Event::from_json(text.as_bytes()).unwrap();
                EventHeader::parse(text.as_bytes()).unwrap();
            }
        }
        let mut event = Event::new("t", json!(1), EventMetadata::default());
        event.id.clear();
        assert_eq!(event.validate(), Err(DecodeError::EmptyField("id")));
    }

    #[test]
    fn timestamps_before_1601_are_decode_errors_not_panics() {
        for stamp in [
            "1500-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "1600-12-31T23:59:59Z",
        ] {
            let text =
                format!(r#"{{"id":"a","event_type":"t","metadata":{{"timestamp":"{stamp}"}}}}"#);
            let error = Event::from_json(text.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    error,
                    DecodeError::WrongType { .. } | DecodeError::InvalidJson { .. }
                ),
                "{stamp}: {error:?}"
            );
        }
        let text = r#"{"id":"a","event_type":"t","metadata":{"timestamp":"1601-01-01T00:00:00Z"}}"#;
        let event = Event::from_json(text.as_bytes()).unwrap();
        assert_eq!(
            event.to_json().unwrap(),
            r#"{"id":"a","event_type":"t","payload":null,"metadata":{"timestamp":"1601-01-01T00:00:00Z"}}"#
        );
        // A time no RFC 3339 text can hold fails to serialise, typed.
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        let event = Event::new("t", json!(1), EventMetadata::default().with_timestamp(far));
        assert!(event.to_json().is_err());
    }

    #[test]
    fn header_and_full_decoding_agree_on_nesting_depth() {
        for depth in [1, 99, 100, 126, 127, 128, 129, 500] {
            let text = format!(
                r#"{{"id":"d","event_type":"t","payload":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let full = Event::from_json(text.as_bytes()).map(|_| ());
            let header = EventHeader::parse(text.as_bytes()).map(|_| ());
            assert_eq!(full.is_ok(), header.is_ok(), "depth {depth}");
        }
        // Brackets inside strings do not nest.
        let text = format!(
            r#"{{"id":"d","event_type":"t","payload":"{}"}}"#,
            "[".repeat(500)
        );
        assert!(!decode::nests_deeper_than(text.as_bytes(), 10));
    }

    #[test]
    fn peek_checks_only_what_routing_needs() {
        let h =
            EventHeader::peek(r#"{"payload":[1,{"a":"b"}],"event_type":"t","id":"e"}"#).unwrap();
        assert_eq!((&*h.id, &*h.event_type), ("e", "t"));
        // Metadata is skipped: routing does not need it.
        let odd = r#"{"id":"e","event_type":"t","metadata":{"timestamp":1}}"#;
        assert!(EventHeader::peek(odd).is_ok());
        for bad in [
            r#"{"id":"e","event_type":"t""#,
            r#"{"event_type":"t"}"#,
            r#"{"id":"e","event_type":""}"#,
            "[]",
            r#"{"type":"ack"}"#,
        ] {
            assert!(EventHeader::peek(bad).is_err(), "{bad}");
        }
    }
}
