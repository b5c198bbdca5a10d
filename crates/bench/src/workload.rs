//! The one event every measurement sends, and the runtime they share.

use watchtower_core::{Event, EventMetadata};

/// The benchmark event: about 200 bytes of JSON, like a typical
/// notification.
pub(crate) fn event(n: u64) -> Event {
    Event::new(
        "notification.sent",
        serde_json::json!({
            "user_id": 456,
            "seq": n,
            "message": "Your order has shipped!",
            "channel": "email"
        }),
        EventMetadata::default(),
    )
}

/// `count` distinct events, built before the clock starts.
pub(crate) fn events(count: usize) -> Vec<Event> {
    (0..count as u64).map(event).collect()
}

/// The serialised size of the benchmark event.
pub(crate) fn event_size() -> usize {
    event(0).to_json().map(|t| t.len()).unwrap_or(0)
}

/// An event of about `bytes` bytes of JSON (at least the plain event's
/// size): the plain event with a padding string in its payload.
pub(crate) fn sized_event(n: u64, bytes: usize) -> Event {
    let mut event = event(n);
    let base = event.to_json().map(|t| t.len()).unwrap_or(0) + r#","pad":"""#.len();
    if let serde_json::Value::Object(payload) = &mut event.payload {
        payload.insert(
            "pad".into(),
            serde_json::Value::String("x".repeat(bytes.saturating_sub(base))),
        );
    }
    event
}
