use std::ops::{Add, AddAssign};

use serde::Serialize;

/// A snapshot of a queue's size and counters, from
/// [`BackpressureQueue::stats`](crate::BackpressureQueue::stats).
///
/// Plain data. The counters only grow for the queue's lifetime. Items are
/// conserved: `total_enqueued == total_dequeued + evicted_events +
/// current_queue_size`. Items put back with
/// [`push_front`](crate::BackpressureQueue::push_front) were dequeued once
/// and count again in both totals when they are dequeued anew.
///
/// Stats of several queues merge with `+`: every field is summed (saturating).
/// A summed `peak_queue_size` is an upper bound of the combined peak, since
/// the queues need not have peaked at the same time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BackpressureStats {
    /// Items queued when the snapshot was taken.
    pub current_queue_size: usize,
    /// The queue's capacity, `max_queue_size` from its config.
    pub max_queue_size: usize,
    /// Items the queue did not keep, each handed back to its caller:
    /// `evicted_events + rejected_events` plus the items
    /// [`push_front`](crate::BackpressureQueue::push_front) had no room for.
    /// Pushes refused because the queue was closed are not counted: that is
    /// shutdown, not backpressure.
    pub dropped_events: u64,
    /// Queued items evicted by the
    /// [`DropOldest`](crate::BackpressureStrategy::DropOldest) strategy.
    pub evicted_events: u64,
    /// New items refused with [`PushError::Full`](crate::PushError::Full).
    pub rejected_events: u64,
    /// Items accepted into the queue, by pushes and by `push_front`.
    pub total_enqueued: u64,
    /// Items taken out by pops, batch pops and
    /// [`drain`](crate::BackpressureQueue::drain).
    pub total_dequeued: u64,
    /// The most items the queue has held at once.
    pub peak_queue_size: usize,
    /// Pushes that found the queue full under the
    /// [`Block`](crate::BackpressureStrategy::Block) strategy and had to wait,
    /// each counted once however long it waited.
    pub blocked_pushes: u64,
}

impl BackpressureStats {
    /// How full the queue was: `current_queue_size / max_queue_size`, from
    /// 0.0 to 1.0; 0.0 when `max_queue_size` is 0.
    pub fn fill_ratio(&self) -> f64 {
        if self.max_queue_size == 0 {
            0.0
        } else {
            self.current_queue_size as f64 / self.max_queue_size as f64
        }
    }
}

impl Add for BackpressureStats {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            current_queue_size: self
                .current_queue_size
                .saturating_add(other.current_queue_size),
            max_queue_size: self.max_queue_size.saturating_add(other.max_queue_size),
            dropped_events: self.dropped_events.saturating_add(other.dropped_events),
            evicted_events: self.evicted_events.saturating_add(other.evicted_events),
            rejected_events: self.rejected_events.saturating_add(other.rejected_events),
            total_enqueued: self.total_enqueued.saturating_add(other.total_enqueued),
            total_dequeued: self.total_dequeued.saturating_add(other.total_dequeued),
            peak_queue_size: self.peak_queue_size.saturating_add(other.peak_queue_size),
            blocked_pushes: self.blocked_pushes.saturating_add(other.blocked_pushes),
        }
    }
}

impl AddAssign for BackpressureStats {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_ratio_is_len_over_capacity() {
        let stats = BackpressureStats {
            current_queue_size: 250,
            max_queue_size: 1000,
            ..BackpressureStats::default()
        };
        assert_eq!(stats.fill_ratio(), 0.25);
        assert_eq!(BackpressureStats::default().fill_ratio(), 0.0);
    }

    #[test]
    fn stats_add_field_by_field() {
        let one = BackpressureStats {
            current_queue_size: 1,
            max_queue_size: 10,
            dropped_events: 2,
            evicted_events: 1,
            rejected_events: 1,
            total_enqueued: 5,
            total_dequeued: 3,
            peak_queue_size: 4,
            blocked_pushes: 1,
        };
        let mut sum = one + one;
        assert_eq!(
            sum,
            BackpressureStats {
                current_queue_size: 2,
                max_queue_size: 20,
                dropped_events: 4,
                evicted_events: 2,
                rejected_events: 2,
                total_enqueued: 10,
                total_dequeued: 6,
                peak_queue_size: 8,
                blocked_pushes: 2,
            }
        );
        sum += BackpressureStats {
            total_enqueued: u64::MAX,
            ..BackpressureStats::default()
        };
        assert_eq!(
            sum.total_enqueued,
            u64::MAX,
            "saturates instead of overflowing"
        );
    }
}
