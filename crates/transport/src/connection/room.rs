//! Buffers give back the room a burst grew once the writer is idle: an
//! idle connection holds a few frames' worth, not its largest burst's
//! (20 KiB per connection after one burst of a full batch, before).

use std::collections::VecDeque;

/// Items of room a buffer keeps while idle. Growing back from it costs a
/// burst of a full batch 4 reallocations: nothing beside writing it.
pub(super) const IDLE_ROOM: usize = 16;

/// A buffer whose room can be given back.
pub(super) trait Room {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn shrink_to(&mut self, capacity: usize);
}

impl<T> Room for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn shrink_to(&mut self, capacity: usize) {
        Vec::shrink_to(self, capacity);
    }
}

impl<T> Room for VecDeque<T> {
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
    fn capacity(&self) -> usize {
        VecDeque::capacity(self)
    }
    fn shrink_to(&mut self, capacity: usize) {
        VecDeque::shrink_to(self, capacity);
    }
}

/// Gives back room past twice what `buffer` needs (its items, or
/// [`IDLE_ROOM`]): only after a burst, so a buffer whose use goes up and
/// down a little is not reallocated each time.
pub(super) fn give_back(buffer: &mut impl Room) {
    let keep = buffer.len().max(IDLE_ROOM);
    if buffer.capacity() > 2 * keep {
        buffer.shrink_to(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_grows_a_buffer_and_idle_gives_the_room_back() {
        let mut frames: Vec<[u8; 48]> = Vec::new();
        frames.extend(std::iter::repeat_n([0; 48], 256));
        frames.clear();
        assert!(frames.capacity() >= 256);
        give_back(&mut frames);
        assert!(frames.capacity() <= 2 * IDLE_ROOM, "{}", frames.capacity());
        // Room in use is kept, and a little slack is not worth a move.
        let mut pending: VecDeque<u64> = (0..100).collect();
        pending.drain(..40);
        give_back(&mut pending);
        assert!(pending.capacity() >= 100, "{}", pending.capacity());
        pending.drain(..50);
        give_back(&mut pending);
        assert!(
            pending.capacity() <= 2 * IDLE_ROOM,
            "{}",
            pending.capacity()
        );
        assert_eq!(pending.len(), 10);
    }
}
