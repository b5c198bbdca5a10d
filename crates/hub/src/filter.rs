//! A client's filter: which event types it receives, as set by control
//! frames.

use std::collections::HashSet;

use watchtower_core::ControlFrame;

/// Most event types one filter may hold. Control frames are bounded by the
/// message size, but a client could keep adding types; this bounds the
/// memory one client can pin.
pub(crate) const MAX_FILTER_TYPES: usize = 4096;

/// Which event types a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Every type except these. A client that never sent a control frame
    /// has `AllExcept(∅)`: it receives everything.
    AllExcept(HashSet<Box<str>>),
    /// Only these types; empty means nothing.
    Only(HashSet<Box<str>>),
}

/// What a filter can answer for a whole burst without looking at types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coverage {
    Everything,
    Nothing,
    Some,
}

/// The control frame would make the filter hold more than
/// [`MAX_FILTER_TYPES`] types; the filter is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyTypes;

impl Default for Filter {
    fn default() -> Self {
        Filter::AllExcept(HashSet::new())
    }
}

impl Filter {
    pub(crate) fn matches(&self, event_type: &str) -> bool {
        match self {
            Filter::AllExcept(except) => !except.contains(event_type),
            Filter::Only(only) => only.contains(event_type),
        }
    }

    pub(crate) fn coverage(&self) -> Coverage {
        match self {
            Filter::AllExcept(except) if except.is_empty() => Coverage::Everything,
            Filter::Only(only) if only.is_empty() => Coverage::Nothing,
            _ => Coverage::Some,
        }
    }

    /// Applies a control frame: `subscribe` adds types (`[]`: everything),
    /// with `replace` it sets them; `unsubscribe` removes types (`[]`:
    /// everything, leaving nothing).
    pub(crate) fn apply(&mut self, frame: &ControlFrame) -> Result<(), TooManyTypes> {
        let types = |list: &[String]| list.iter().map(|t| Box::from(t.as_str())).collect();
        let next = match (frame, &*self) {
            (ControlFrame::Subscribe { event_types, .. }, _) if event_types.is_empty() => {
                Filter::default()
            }
            (
                ControlFrame::Subscribe {
                    event_types,
                    replace: true,
                },
                _,
            ) => Filter::Only(types(event_types)),
            (ControlFrame::Subscribe { event_types, .. }, Filter::Only(only)) => {
                let mut only = only.clone();
                only.extend(event_types.iter().map(|t| Box::from(t.as_str())));
                Filter::Only(only)
            }
            (ControlFrame::Subscribe { event_types, .. }, Filter::AllExcept(except)) => {
                let mut except = except.clone();
                for t in event_types {
                    except.remove(t.as_str());
                }
                Filter::AllExcept(except)
            }
            (ControlFrame::Unsubscribe { event_types }, _) if event_types.is_empty() => {
                Filter::Only(HashSet::new())
            }
            (ControlFrame::Unsubscribe { event_types }, Filter::Only(only)) => {
                let mut only = only.clone();
                for t in event_types {
                    only.remove(t.as_str());
                }
                Filter::Only(only)
            }
            (ControlFrame::Unsubscribe { event_types }, Filter::AllExcept(except)) => {
                let mut except = except.clone();
                except.extend(event_types.iter().map(|t| Box::from(t.as_str())));
                Filter::AllExcept(except)
            }
            // A kind of control frame this hub does not know yet: ignore it
            // rather than guess.
            _ => return Ok(()),
        };
        if next.len() > MAX_FILTER_TYPES {
            return Err(TooManyTypes);
        }
        *self = next;
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Filter::AllExcept(set) | Filter::Only(set) => set.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(types: &[&str], replace: bool) -> ControlFrame {
        ControlFrame::Subscribe {
            event_types: types.iter().map(|t| t.to_string()).collect(),
            replace,
        }
    }

    fn unsub(types: &[&str]) -> ControlFrame {
        ControlFrame::Unsubscribe {
            event_types: types.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn applied(frames: &[ControlFrame]) -> Filter {
        let mut f = Filter::default();
        for frame in frames {
            f.apply(frame).unwrap();
        }
        f
    }

    #[test]
    fn a_new_client_receives_everything() {
        let f = Filter::default();
        assert_eq!(f.coverage(), Coverage::Everything);
        assert!(f.matches("anything"));
    }

    #[test]
    fn subscribe_replace_unsubscribe() {
        let f = applied(&[sub(&["a"], true), sub(&["b"], false)]);
        assert!(f.matches("a") && f.matches("b") && !f.matches("c"));

        let f = applied(&[sub(&["a", "b"], true), sub(&["c"], true)]);
        assert!(!f.matches("a") && f.matches("c"));

        let f = applied(&[sub(&["a", "b"], true), unsub(&["a"])]);
        assert!(!f.matches("a") && f.matches("b"));

        let f = applied(&[sub(&["a"], true), unsub(&[])]);
        assert_eq!(f.coverage(), Coverage::Nothing);
        assert!(!f.matches("a"));

        let f = applied(&[unsub(&[]), sub(&[], false)]);
        assert_eq!(f.coverage(), Coverage::Everything);

        let f = applied(&[unsub(&[]), sub(&["x"], false)]);
        assert!(f.matches("x") && !f.matches("y"));
    }

    #[test]
    fn unsubscribing_from_everything_keeps_the_rest() {
        let f = applied(&[unsub(&["noisy"])]);
        assert_eq!(f.coverage(), Coverage::Some);
        assert!(!f.matches("noisy") && f.matches("other"));
        let f = applied(&[unsub(&["noisy"]), sub(&["noisy"], false)]);
        assert_eq!(f.coverage(), Coverage::Everything);
    }

    #[test]
    fn too_many_types_leave_the_filter_unchanged() {
        let mut f = applied(&[sub(&["a"], true)]);
        let many: Vec<String> = (0..=MAX_FILTER_TYPES).map(|i| i.to_string()).collect();
        let frame = ControlFrame::Subscribe {
            event_types: many,
            replace: false,
        };
        assert_eq!(f.apply(&frame), Err(TooManyTypes));
        assert!(f.matches("a") && !f.matches("1"));
    }
}
