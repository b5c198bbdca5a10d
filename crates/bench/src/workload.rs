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

/// A hub whose every client can hold a whole run of `events` events:
/// the sections that use it measure throughput, not the slow-client
/// policy. Both limits matter: a client past its byte budget is closed to
/// resume, and a run longer than the hub's history cannot be recovered,
/// so a subscriber that fell that far behind would never get the rest.
pub(crate) fn hub_with_room_for(events: usize) -> watchtower_hub::HubConfig {
    let mut config = watchtower_hub::HubConfig::default();
    config.client_queue_frames = events.max(config.client_queue_frames);
    // A frame is charged with its share of the read burst it came in;
    // 1 KiB per event covers the bench's events (224 bytes) many times.
    config.client_queue_bytes = events.saturating_mul(1024).max(config.client_queue_bytes);
    config
}
