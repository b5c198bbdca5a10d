//! The limits on a subscription filter, checked before a filter is sent: a
//! hub refuses a larger one (closing the connection with 1008), and a
//! refused filter would leave `subscribe` returning `Ok` for events that
//! never come. The limits are the connected hub's, as it states them in
//! its upgrade answer ([`FILTER_LIMITS_HEADER`]); the protocol's defaults
//! before the first connect and for a hub that states none.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use tokio_tungstenite::tungstenite::http::HeaderMap;
use watchtower_core::{ControlFrame, FILTER_LIMITS_HEADER, FilterLimits};

/// The filter limits of the hub the transport is on (or was on last).
pub(crate) struct HubLimits {
    now: Mutex<FilterLimits>,
    /// Whether the subscriptions' filter is over them, so the writer asks
    /// for every type instead: said once when it starts, not on every
    /// connect.
    over: AtomicBool,
}

impl HubLimits {
    pub(crate) fn new() -> HubLimits {
        HubLimits {
            now: Mutex::new(FilterLimits::default()),
            over: AtomicBool::new(false),
        }
    }

    /// The limits to check a filter against now.
    pub(crate) fn get(&self) -> FilterLimits {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the limits a hub stated in its upgrade answer; a hub that
    /// states none (or states them unreadably) has the defaults.
    pub(crate) fn learn(&self, headers: &HeaderMap, url: &str) {
        let stated = headers
            .get(FILTER_LIMITS_HEADER)
            .map(|v| v.to_str().ok().and_then(FilterLimits::parse_header));
        let limits = match stated {
            None => FilterLimits::default(),
            Some(Some(limits)) => limits,
            Some(None) => {
                tracing::warn!(%url, "the hub's filter limits header is malformed; \
                    assuming the protocol's defaults");
                FilterLimits::default()
            }
        };
        let before = std::mem::replace(
            &mut *self.now.lock().unwrap_or_else(PoisonError::into_inner),
            limits,
        );
        if before != limits {
            tracing::debug!(%url, %limits, "the hub's filter limits");
        }
    }

    /// Notes whether the subscriptions' filter is over the limits now;
    /// true only when it has just become so, so it is reported once, not
    /// on every connect to the same hub.
    pub(crate) fn note_over(&self, over: bool) -> bool {
        let was = self.over.swap(over, Relaxed);
        over && !was
    }
}

/// Checks a filter frame against `limits` and the transport's own message
/// size; the error says which limit and by how much.
pub(crate) fn check(
    frame: &ControlFrame,
    limits: &FilterLimits,
    max_message_size: usize,
) -> Result<(), String> {
    let types = match frame {
        ControlFrame::Subscribe { event_types, .. } | ControlFrame::Unsubscribe { event_types } => {
            event_types
        }
        _ => return Ok(()),
    };
    let FilterLimits {
        max_types,
        max_type_len,
        max_bytes,
        ..
    } = *limits;
    if types.len() > max_types {
        return Err(format!(
            "the subscriptions would filter on {} event types; the hub accepts at most \
             {max_types} (subscribe to every type with an empty list instead)",
            types.len()
        ));
    }
    if let Some(long) = types.iter().find(|t| t.len() > max_type_len) {
        return Err(format!(
            "an event type of {} bytes is longer than the {max_type_len} the hub's filter accepts",
            long.len()
        ));
    }
    let bytes: usize = types.iter().map(String::len).sum();
    if bytes > max_bytes {
        return Err(format!(
            "the subscriptions' event types add up to {bytes} bytes; the hub's filter holds at \
             most {max_bytes}"
        ));
    }
    let json = frame.to_json().len();
    if json > max_message_size {
        return Err(format!(
            "the filter frame would be {json} bytes, over max_message_size ({max_message_size})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use watchtower_core::{MAX_FILTER_TYPE_LEN, MAX_FILTER_TYPES};

    fn subscribe(types: Vec<String>) -> ControlFrame {
        ControlFrame::Subscribe {
            event_types: types,
            replace: true,
        }
    }

    #[test]
    fn limits_are_checked_with_a_reason() {
        assert!(
            check(
                &subscribe(vec!["a".into()]),
                &FilterLimits::default(),
                1 << 20
            )
            .is_ok()
        );
        let many = (0..=MAX_FILTER_TYPES).map(|i| i.to_string()).collect();
        assert!(
            check(&subscribe(many), &FilterLimits::default(), 1 << 20)
                .unwrap_err()
                .contains("4096")
        );
        let long = vec!["x".repeat(MAX_FILTER_TYPE_LEN + 1)];
        assert!(
            check(&subscribe(long), &FilterLimits::default(), 1 << 20)
                .unwrap_err()
                .contains("longer")
        );
        let heavy = (0..300).map(|i| format!("{i:0>250}")).collect();
        assert!(
            check(&subscribe(heavy), &FilterLimits::default(), 1 << 20)
                .unwrap_err()
                .contains("add up")
        );
        let fits = (0..10).map(|i| format!("{i:0>100}")).collect();
        assert!(
            check(&subscribe(fits), &FilterLimits::default(), 500)
                .unwrap_err()
                .contains("max_message_size")
        );
    }

    /// The limits are the hub's own on every connect: a hub that states
    /// none (an older hub, a plain server) has the protocol's defaults,
    /// not what the previous hub stated.
    #[test]
    fn each_connect_learns_its_hubs_limits_and_none_means_the_defaults() {
        let limits = HubLimits::new();
        assert_eq!(limits.get(), FilterLimits::default());
        let mut headers = HeaderMap::new();
        headers.insert(
            FILTER_LIMITS_HEADER,
            HeaderValue::from_static("types=2, type-len=8, bytes=16"),
        );
        limits.learn(&headers, "ws://a");
        assert_eq!(limits.get(), FilterLimits::new(2, 8, 16));
        limits.learn(&HeaderMap::new(), "ws://b");
        assert_eq!(limits.get(), FilterLimits::default());
        // Reported once when the filter goes over, again only after it fit.
        assert!(limits.note_over(true));
        assert!(!limits.note_over(true));
        assert!(!limits.note_over(false));
        assert!(limits.note_over(true));
    }
}
