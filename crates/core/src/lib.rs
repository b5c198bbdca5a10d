//! The Watchtower event model: [`Event`], [`EventMetadata`], the one error
//! type [`WatchtowerError`], and the [`Subscriber`] / [`Transport`] traits.
//!
//! Every other Watchtower crate speaks these types. Transports (such as
//! `watchtower-websocket`) implement the traits; the hub and the CLI move
//! [`Event`]s in the JSON shape defined here. The backpressure settings that
//! a transport's config carries are re-exported from
//! `watchtower-backpressure`, so users import them from here.
//!
//! ```
//! use watchtower_core::{Event, EventMetadata};
//!
//! let event = Event::new(
//!     "notification.sent",
//!     serde_json::json!({"user_id": 456, "channel": "email"}),
//!     EventMetadata::default().with_source("billing"),
//! );
//! let wire = event.to_json()?;
//! assert_eq!(Event::from_json(wire.as_bytes())?, event);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Dependencies: `serde`/`serde_json` for the wire format, `thiserror` for
//! the error types, `uuid` for time-ordered (v7) event ids, `time` to read
//! and write RFC 3339 timestamps with any offset without panicking.

#![deny(missing_docs)]

mod decode;
mod error;
mod event;
mod filter_limits;
mod limit;
mod protocol;
mod resume;
mod traits;

pub use decode::{DecodeError, DecodeErrorKind, MalformedCounters, MalformedCounts};
pub use error::{BoxError, Result, TlsErrorKind, WatchtowerError};
pub use event::{Event, EventHeader, EventMetadata, MAX_PAYLOAD_DEPTH, new_event_id};
pub use filter_limits::{FILTER_LIMITS_HEADER, FilterLimits};
pub use limit::WarnLimiter;
pub use protocol::{
    ControlFrame, MAX_EVENT_TYPE_LEN, MAX_FILTER_BYTES, MAX_FILTER_TYPE_LEN, MAX_FILTER_TYPES,
};
pub use resume::{
    NotRecoveredReason, POSITION_HEADER, Position, PositionParseError, RECOVERED_HEADER,
    RESUME_HEADER, RESUME_NEW, RESUME_QUERY, frame_key, parse_recovered_header, recovered_header,
};
pub use traits::{
    BoxFuture, EventHandler, HandlerFuture, Subscriber, SubscriptionHandle, Transport,
};
pub use watchtower_backpressure::{BackpressureConfig, BackpressureStrategy};
