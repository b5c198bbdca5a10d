//! The limits a hub puts on one client's filter, and the upgrade-response
//! header in which it states them, so a client can refuse a subscription
//! the hub would refuse instead of having its connection closed.

use std::fmt;

use crate::protocol::{MAX_FILTER_BYTES, MAX_FILTER_TYPE_LEN, MAX_FILTER_TYPES};

/// Response header of the WebSocket upgrade in which a hub states its
/// [`FilterLimits`]: `Watchtower-Filter-Limits: types=4096, type-len=256,
/// bytes=65536`. A hub that does not send it is taken to have the
/// protocol's defaults.
pub const FILTER_LIMITS_HEADER: &str = "watchtower-filter-limits";

/// The bounds on one client's filter: a `subscribe` that would take the
/// filter past any of them is refused and its sender closed with 1008.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FilterLimits {
    /// Most event types the filter may hold.
    pub max_types: usize,
    /// Longest event type it may name, in bytes.
    pub max_type_len: usize,
    /// Most bytes of event types (summed) it may hold.
    pub max_bytes: usize,
}

impl Default for FilterLimits {
    /// The protocol's defaults ([`MAX_FILTER_TYPES`],
    /// [`MAX_FILTER_TYPE_LEN`], [`MAX_FILTER_BYTES`]): what a hub that
    /// states nothing is taken to accept.
    fn default() -> Self {
        FilterLimits {
            max_types: MAX_FILTER_TYPES,
            max_type_len: MAX_FILTER_TYPE_LEN,
            max_bytes: MAX_FILTER_BYTES,
        }
    }
}

impl FilterLimits {
    /// Limits of `max_types` types, each at most `max_type_len` bytes, at
    /// most `max_bytes` bytes in all.
    pub fn new(max_types: usize, max_type_len: usize, max_bytes: usize) -> Self {
        FilterLimits {
            max_types,
            max_type_len,
            max_bytes,
        }
    }

    /// The value of [`FILTER_LIMITS_HEADER`] stating these limits.
    pub fn header_value(&self) -> String {
        self.to_string()
    }

    /// Parses a [`FILTER_LIMITS_HEADER`] value: comma-separated
    /// `key=value` pairs. Keys it does not know are skipped (a later hub
    /// may state more), a key it knows but that is absent keeps the
    /// protocol's default; `None` if a known key's value is not a number.
    pub fn parse_header(value: &str) -> Option<FilterLimits> {
        let mut limits = FilterLimits::default();
        for pair in value.split(',') {
            let Some((key, number)) = pair.split_once('=') else {
                continue;
            };
            let field = match key.trim() {
                "types" => &mut limits.max_types,
                "type-len" => &mut limits.max_type_len,
                "bytes" => &mut limits.max_bytes,
                _ => continue,
            };
            *field = number.trim().parse().ok()?;
        }
        Some(limits)
    }
}

impl fmt::Display for FilterLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "types={}, type-len={}, bytes={}",
            self.max_types, self.max_type_len, self.max_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_and_tolerates_what_it_does_not_know() {
        let limits = FilterLimits::new(3, 16, 40);
        assert_eq!(limits.header_value(), "types=3, type-len=16, bytes=40");
        assert_eq!(
            FilterLimits::parse_header(&limits.header_value()),
            Some(limits)
        );
        // Unknown keys and stray parts are skipped; absent keys keep the default.
        assert_eq!(
            FilterLimits::parse_header("types=7,colour=blue, junk"),
            Some(FilterLimits {
                max_types: 7,
                ..FilterLimits::default()
            })
        );
        assert_eq!(FilterLimits::parse_header("types=lots"), None);
        assert_eq!(FilterLimits::parse_header("bytes=-1"), None);
    }
}
