//! `DeadEvent`: what the dead-letter queue holds — an event as the frame
//! it was written or received as, decoded only when someone asks.
//!
//! Dead-lettering happens on hot paths: a `DropOldest` queue evicting
//! under a flood, a full mailbox in the reader, a handler failing. Decoding
//! each frame back into an [`Event`] there (a full JSON parse, allocations)
//! would cost the most exactly when the transport is busiest, for entries
//! that are often only counted or drained in bulk. So the frame is kept
//! as is (a reference-counted buffer, no copy) and decoded on demand.

use std::borrow::Cow;
use std::fmt;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use watchtower_core::{DecodeError, Event, EventHeader};

/// An event in the dead-letter queue: the JSON frame it was written or
/// received as, or the event given to
/// [`publish_to_dlq`](crate::WebSocketTransport::publish_to_dlq).
///
/// ```
/// # async fn run(transport: watchtower_websocket_transport::WebSocketTransport)
/// #     -> watchtower_core::Result<()> {
/// for letter in transport.dead_letters().drain() {
///     let event = letter.item.event()?; // decoded here, not when it failed
///     transport.publish(event).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DeadEvent(Repr);

#[derive(Clone)]
enum Repr {
    Frame(Utf8Bytes),
    Event(Box<Event>),
}

impl DeadEvent {
    pub(crate) fn frame(frame: Utf8Bytes) -> DeadEvent {
        DeadEvent(Repr::Frame(frame))
    }

    /// The event, decoded from its frame (or cloned, if it was given as an
    /// event). A frame the transport wrote always decodes: `publish`
    /// checked it with the decoder's rules. A received frame that a
    /// subscription could not take may not (the server sent it); its
    /// JSON is still here, in [`json`](Self::json).
    pub fn event(&self) -> Result<Event, DecodeError> {
        match &self.0 {
            Repr::Frame(frame) => Event::from_json(frame.as_bytes()),
            Repr::Event(event) => Ok((**event).clone()),
        }
    }

    /// Like [`event`](Self::event), without a clone for a given event.
    pub fn into_event(self) -> Result<Event, DecodeError> {
        match self.0 {
            Repr::Frame(frame) => Event::from_json(frame.as_bytes()),
            Repr::Event(event) => Ok(*event),
        }
    }

    /// The event's JSON: the frame byte for byte, or a given event
    /// serialised (empty if it cannot be).
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Frame(frame) => Cow::Borrowed(frame.as_str()),
            Repr::Event(event) => Cow::Owned(event.to_json().unwrap_or_default()),
        }
    }

    /// The event's id, read from the frame's head without decoding the
    /// payload; `None` for a frame without a valid head.
    pub fn id(&self) -> Option<Cow<'_, str>> {
        match &self.0 {
            Repr::Frame(frame) => EventHeader::parse(frame.as_bytes()).ok().map(|h| h.id),
            Repr::Event(event) => Some(Cow::Borrowed(event.id.as_str())),
        }
    }

    /// The event's type, like [`id`](Self::id).
    pub fn event_type(&self) -> Option<Cow<'_, str>> {
        match &self.0 {
            Repr::Frame(frame) => EventHeader::parse(frame.as_bytes())
                .ok()
                .map(|h| h.event_type),
            Repr::Event(event) => Some(Cow::Borrowed(event.event_type.as_str())),
        }
    }
}

impl From<Event> for DeadEvent {
    fn from(event: Event) -> DeadEvent {
        DeadEvent(Repr::Event(Box::new(event)))
    }
}

/// Shows the id and type, never the payload (it may hold personal data).
impl fmt::Debug for DeadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadEvent")
            .field("id", &self.id())
            .field("event_type", &self.event_type())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_core::EventMetadata;

    fn event() -> Event {
        Event::new(
            "order.created",
            serde_json::json!({"secret": "s3cret", "n": 7}),
            EventMetadata::default(),
        )
    }

    #[test]
    fn a_frame_decodes_to_the_event_it_was_written_from() {
        let event = event();
        let json = event.to_json().unwrap();
        let dead = DeadEvent::frame(Utf8Bytes::from(json.clone()));
        assert_eq!(dead.event().unwrap(), event);
        assert_eq!(dead.id().as_deref(), Some(event.id.as_str()));
        assert_eq!(dead.event_type().as_deref(), Some("order.created"));
        assert_eq!(dead.json(), json);
        assert_eq!(dead.into_event().unwrap(), event);
    }

    #[test]
    fn a_given_event_is_kept_as_it_is() {
        let event = event();
        let dead = DeadEvent::from(event.clone());
        assert_eq!(dead.event().unwrap(), event);
        assert_eq!(dead.json(), event.to_json().unwrap());
        assert_eq!(dead.id().as_deref(), Some(event.id.as_str()));
    }

    #[test]
    fn an_undecodable_frame_keeps_its_json_and_debug_hides_payloads() {
        let dead = DeadEvent::frame(Utf8Bytes::from_static("{\"id\":1}"));
        assert!(dead.event().is_err());
        assert_eq!(dead.json(), "{\"id\":1}");
        assert_eq!(dead.id(), None);
        let shown = format!("{:?}", DeadEvent::from(event()));
        assert!(
            shown.contains("order.created") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
