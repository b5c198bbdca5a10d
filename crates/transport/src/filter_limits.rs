//! The protocol's limits on a subscription filter, checked before a filter
//! is sent: a hub refuses a larger one, and a refused filter would leave
//! `subscribe` returning `Ok` for events that never come.

use watchtower_core::{ControlFrame, MAX_FILTER_BYTES, MAX_FILTER_TYPE_LEN, MAX_FILTER_TYPES};

/// Checks a filter frame against the protocol's default limits and the
/// transport's own message size; the error says which limit and by how much.
pub(crate) fn check(frame: &ControlFrame, max_message_size: usize) -> Result<(), String> {
    let types = match frame {
        ControlFrame::Subscribe { event_types, .. } | ControlFrame::Unsubscribe { event_types } => {
            event_types
        }
        _ => return Ok(()),
    };
    if types.len() > MAX_FILTER_TYPES {
        return Err(format!(
            "the subscriptions would filter on {} event types; a hub accepts at most \
             {MAX_FILTER_TYPES} (subscribe to every type with an empty list instead)",
            types.len()
        ));
    }
    if let Some(long) = types.iter().find(|t| t.len() > MAX_FILTER_TYPE_LEN) {
        return Err(format!(
            "an event type of {} bytes is longer than the {MAX_FILTER_TYPE_LEN} a hub filter accepts",
            long.len()
        ));
    }
    let bytes: usize = types.iter().map(String::len).sum();
    if bytes > MAX_FILTER_BYTES {
        return Err(format!(
            "the subscriptions' event types add up to {bytes} bytes; a hub filter holds at most \
             {MAX_FILTER_BYTES}"
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

    fn subscribe(types: Vec<String>) -> ControlFrame {
        ControlFrame::Subscribe {
            event_types: types,
            replace: true,
        }
    }

    #[test]
    fn limits_are_checked_with_a_reason() {
        assert!(check(&subscribe(vec!["a".into()]), 1 << 20).is_ok());
        let many = (0..=MAX_FILTER_TYPES).map(|i| i.to_string()).collect();
        assert!(
            check(&subscribe(many), 1 << 20)
                .unwrap_err()
                .contains("4096")
        );
        let long = vec!["x".repeat(MAX_FILTER_TYPE_LEN + 1)];
        assert!(
            check(&subscribe(long), 1 << 20)
                .unwrap_err()
                .contains("longer")
        );
        let heavy = (0..300).map(|i| format!("{i:0>250}")).collect();
        assert!(
            check(&subscribe(heavy), 1 << 20)
                .unwrap_err()
                .contains("add up")
        );
        let fits = (0..10).map(|i| format!("{i:0>100}")).collect();
        assert!(
            check(&subscribe(fits), 500)
                .unwrap_err()
                .contains("max_message_size")
        );
    }
}
