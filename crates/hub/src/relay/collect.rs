//! The event frames of the burst being read, and their types, collected
//! for the fan-out with as few allocations as the burst allows.

use std::ops::Range;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};

use crate::relay::outbox::FrameSet;

/// The event frames of one read burst.
///
/// With history on, frames outlive their burst by minutes, and a frame
/// read from the socket is a slice of tungstenite's read buffer that keeps
/// the whole buffer alive (measured: 2.46x the payload bytes with slices,
/// 1.46x with one exact-size copy per frame, 100,000 events). So the
/// frames are copied — small ones into one buffer per burst that they then
/// share: one allocation per burst instead of two per frame (the copy, and
/// the shared handle its first clone creates), whose frees were a
/// twentieth of the hub's CPU per relayed event when the history let go of
/// old bursts.
pub(crate) enum Frames {
    /// History off: the frames as read, relayed at once.
    Slices(Vec<Utf8Bytes>),
    /// History on: the small frames' text, one after the other, and where
    /// each frame is.
    Packed { text: String, slots: Vec<Slot> },
}

/// Where a packed burst's frame is.
pub(crate) enum Slot {
    /// In the shared text.
    Span(Range<usize>),
    /// A large frame, copied on its own: sharing saves nothing on it, and
    /// growing the shared text around it would copy it again.
    Own(Utf8Bytes),
}

/// Frames from this size on get a copy of their own.
const OWN_COPY: usize = 16 * 1024;

impl Frames {
    /// `packed` when the frames will be kept (history on).
    pub(crate) fn new(packed: bool) -> Frames {
        if packed {
            Frames::Packed {
                text: String::new(),
                slots: Vec::new(),
            }
        } else {
            Frames::Slices(Vec::new())
        }
    }

    /// How many frames the burst holds so far.
    pub(crate) fn len(&self) -> usize {
        match self {
            Frames::Slices(frames) => frames.len(),
            Frames::Packed { slots, .. } => slots.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&mut self, frame: Utf8Bytes) {
        match self {
            Frames::Slices(frames) => frames.push(frame),
            Frames::Packed { slots, .. } if frame.len() >= OWN_COPY => {
                slots.push(Slot::Own(Utf8Bytes::from(String::from(frame.as_str()))));
            }
            Frames::Packed { text, slots } => {
                let start = text.len();
                text.push_str(frame.as_str());
                slots.push(Slot::Span(start..text.len()));
            }
        }
    }

    /// Takes out the frames at the indices in `set`.
    pub(crate) fn remove(&mut self, set: &FrameSet) {
        match self {
            Frames::Slices(frames) => remove_indices(frames, set),
            Frames::Packed { text, slots } => {
                remove_indices(slots, set);
                // The frames left are packed anew: the shared text would
                // otherwise keep the removed ones (an ack-mode client's
                // resent duplicates) alive for as long as the history
                // holds the burst, charged to nothing. Only a burst with
                // duplicates pays for this copy.
                let left = slots
                    .iter()
                    .map(|slot| match slot {
                        Slot::Span(span) => span.len(),
                        Slot::Own(_) => 0,
                    })
                    .sum();
                let mut packed = String::with_capacity(left);
                for slot in slots.iter_mut() {
                    if let Slot::Span(span) = slot {
                        let start = packed.len();
                        packed.push_str(text.get(span.clone()).unwrap_or_default());
                        *span = start..packed.len();
                    }
                }
                *text = packed;
            }
        }
    }

    /// The burst's frames, leaving this empty for the next burst.
    pub(crate) fn take(&mut self) -> Vec<Utf8Bytes> {
        match self {
            Frames::Slices(frames) => std::mem::take(frames),
            Frames::Packed { text, slots } => {
                let mut text = std::mem::take(text);
                // Grown by doubling; what the history keeps should be the
                // frames, not the spare room.
                text.shrink_to_fit();
                let all = Bytes::from(text.into_bytes());
                std::mem::take(slots)
                    .into_iter()
                    .map(|slot| match slot {
                        Slot::Own(frame) => frame,
                        Slot::Span(span) => {
                            let bytes = all.slice(span);
                            // Each span was pushed from a `str`, so this
                            // check cannot fail; should it, a copy loses
                            // nothing.
                            Utf8Bytes::try_from(bytes.clone()).unwrap_or_else(|_| {
                                Utf8Bytes::from(String::from_utf8_lossy(&bytes).into_owned())
                            })
                        }
                    })
                    .collect()
            }
        }
    }
}

/// The event types of a burst's frames.
///
/// Publishers tend to send runs of one type; consecutive frames of the
/// same type share one allocation.
#[derive(Default)]
pub(crate) struct Types {
    types: Vec<Arc<str>>,
}

impl Types {
    pub(crate) fn push(&mut self, event_type: &str) {
        let shared = match self.types.last() {
            Some(last) if **last == *event_type => Arc::clone(last),
            _ => Arc::from(event_type),
        };
        self.types.push(shared);
    }

    /// Takes out the types at the indices in `set`.
    pub(crate) fn remove(&mut self, set: &FrameSet) {
        remove_indices(&mut self.types, set);
    }

    /// The burst's types, leaving this empty for the next burst.
    pub(crate) fn take(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.types)
    }
}

fn remove_indices<T>(items: &mut Vec<T>, set: &FrameSet) {
    let mut index = 0;
    items.retain(|_| {
        let keep = !set.contains(index);
        index += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(packed: bool, frames: &[&str], remove: &[usize]) -> Vec<String> {
        let mut collected = Frames::new(packed);
        for f in frames {
            collected.push(Utf8Bytes::from(*f));
        }
        let mut set = FrameSet::default();
        for &i in remove {
            set.insert(i);
        }
        collected.remove(&set);
        let out = collected.take().iter().map(|f| f.to_string()).collect();
        assert!(collected.is_empty(), "take leaves it empty");
        out
    }

    #[test]
    fn packed_and_sliced_frames_come_out_the_same() {
        let large = "x".repeat(OWN_COPY);
        let frames = ["{\"a\":1}", "", &large, "{\"é\":\"ü\"}", "{\"b\":2}"];
        for packed in [false, true] {
            assert_eq!(collect(packed, &frames, &[]), frames);
            assert_eq!(
                collect(packed, &frames, &[0, 3]),
                ["", &large, "{\"b\":2}"],
                "packed {packed}"
            );
        }
    }

    #[test]
    fn frames_removed_from_a_packed_burst_are_not_kept_alive() {
        let mut collected = Frames::new(true);
        for f in ["{\"a\":1}", "{\"bb\":2}", "{\"ccc\":3}"] {
            collected.push(Utf8Bytes::from(f));
        }
        let mut duplicates = FrameSet::default();
        duplicates.insert(0);
        duplicates.insert(2);
        collected.remove(&duplicates);
        // What the burst's frames will share is the frame left, nothing
        // more: the bytes the history charges are the bytes it keeps.
        let Frames::Packed { text, .. } = &collected else {
            unreachable!("packed")
        };
        assert_eq!(text.as_str(), "{\"bb\":2}");
        assert_eq!(collected.take(), ["{\"bb\":2}"]);
    }

    #[test]
    fn runs_of_one_type_share_it() {
        let mut types = Types::default();
        for t in ["a", "a", "b", "a"] {
            types.push(t);
        }
        let taken = types.take();
        assert!(Arc::ptr_eq(&taken[0], &taken[1]));
        assert!(!Arc::ptr_eq(&taken[1], &taken[3]));
        assert_eq!(
            taken.iter().map(|t| &**t).collect::<Vec<_>>(),
            ["a", "a", "b", "a"]
        );
    }
}
