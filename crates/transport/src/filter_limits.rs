//! The limits on a subscription filter, checked before a filter is sent: a
//! hub refuses a larger one (closing the connection with 1008), and a
//! refused filter would leave `subscribe` returning `Ok` for events that
//! never come. The limits are the connected hub's, as it states them in
//! its upgrade answer ([`FILTER_LIMITS_HEADER`]); the protocol's defaults
//! before the first connect and for a hub that states none.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tokio_tungstenite::tungstenite::http::HeaderMap;
use watchtower_core::{ControlFrame, FILTER_LIMITS_HEADER, FilterLimits};

/// The filter limits of the hub the transport is on (or was on last).
///
/// Packed into one atomic (see [`pack`]): read by every `subscribe`,
/// written by every connect, and a lock would cost every connection 24
/// bytes more.
pub(crate) struct HubLimits {
    now: AtomicU64,
    /// Whether the subscriptions' filter is over them, so the writer asks
    /// for every type instead: said once when it starts, not on every
    /// connect.
    over: AtomicBool,
}

/// Bits of each limit in the packed form: types, type length, bytes.
/// They hold the widest a hub of ours can be configured with (1,000,000
/// types, 65,536 bytes a type, 64 MiB); a wider one is taken as this
/// wide, which only refuses more.
const BITS: [u32; 3] = [20, 17, 27];

/// `limits` in 64 bits, each field capped to its width.
fn pack(limits: &FilterLimits) -> u64 {
    let fields = [limits.max_types, limits.max_type_len, limits.max_bytes];
    fields.iter().zip(BITS).fold(0, |packed, (&field, bits)| {
        let max = (1u64 << bits) - 1;
        (packed << bits) | (field as u64).min(max)
    })
}

fn unpack(packed: u64) -> FilterLimits {
    let mut fields = [0usize; 3];
    let mut rest = packed;
    for (field, bits) in fields.iter_mut().zip(BITS).rev() {
        *field = usize::try_from(rest & ((1u64 << bits) - 1)).unwrap_or(usize::MAX);
        rest >>= bits;
    }
    FilterLimits::new(fields[0], fields[1], fields[2])
}

impl HubLimits {
    pub(crate) fn new() -> HubLimits {
        HubLimits {
            now: AtomicU64::new(pack(&FilterLimits::default())),
            over: AtomicBool::new(false),
        }
    }

    /// The limits to check a filter against now.
    pub(crate) fn get(&self) -> FilterLimits {
        unpack(self.now.load(Relaxed))
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
        let packed = pack(&limits);
        if self.now.swap(packed, Relaxed) != packed {
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
        // One it cannot read counts as none, not as the previous hub's.
        limits.learn(&headers, "ws://a");
        headers.insert(FILTER_LIMITS_HEADER, HeaderValue::from_static("types=many"));
        limits.learn(&headers, "ws://c");
        assert_eq!(limits.get(), FilterLimits::default());
        // Reported once when the filter goes over, again only after it fit.
        assert!(limits.note_over(true));
        assert!(!limits.note_over(true));
        assert!(!limits.note_over(false));
        assert!(limits.note_over(true));
    }

    /// The packed form holds every limit a hub of ours can be configured
    /// with exactly, and caps a wider one (which only refuses more).
    #[test]
    fn packed_limits_round_trip_and_wider_ones_are_capped() {
        for limits in [
            FilterLimits::default(),
            FilterLimits::new(1, 1, 1),
            FilterLimits::new(1_000_000, 65_536, 64 << 20),
        ] {
            assert_eq!(unpack(pack(&limits)), limits);
        }
        assert_eq!(
            unpack(pack(&FilterLimits::new(usize::MAX, usize::MAX, usize::MAX))),
            FilterLimits::new((1 << 20) - 1, (1 << 17) - 1, (1 << 27) - 1)
        );
    }
}
