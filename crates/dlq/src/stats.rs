use std::ops::{Add, AddAssign};

use serde::Serialize;

use crate::DeadLetterReason;

/// Entries pushed, per [`DeadLetterReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReasonCounts {
    /// Pushed with [`DeadLetterReason::Overflow`].
    pub overflow: u64,
    /// Pushed with [`DeadLetterReason::SendFailed`].
    pub send_failed: u64,
    /// Pushed with [`DeadLetterReason::HandlerFailed`].
    pub handler_failed: u64,
    /// Pushed with [`DeadLetterReason::Shutdown`].
    pub shutdown: u64,
    /// Pushed with [`DeadLetterReason::AckTimeout`].
    pub ack_timeout: u64,
    /// Pushed with [`DeadLetterReason::Manual`].
    pub manual: u64,
}

impl ReasonCounts {
    /// The count for one reason.
    pub fn get(&self, reason: DeadLetterReason) -> u64 {
        match reason {
            DeadLetterReason::Overflow => self.overflow,
            DeadLetterReason::SendFailed => self.send_failed,
            DeadLetterReason::HandlerFailed => self.handler_failed,
            DeadLetterReason::Shutdown => self.shutdown,
            DeadLetterReason::AckTimeout => self.ack_timeout,
            DeadLetterReason::Manual => self.manual,
        }
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        [
            self.overflow,
            self.send_failed,
            self.handler_failed,
            self.shutdown,
            self.ack_timeout,
            self.manual,
        ]
        .iter()
        .fold(0, |sum, count| sum.saturating_add(*count))
    }

    pub(crate) fn count(&mut self, reason: DeadLetterReason) {
        let count = match reason {
            DeadLetterReason::Overflow => &mut self.overflow,
            DeadLetterReason::SendFailed => &mut self.send_failed,
            DeadLetterReason::HandlerFailed => &mut self.handler_failed,
            DeadLetterReason::Shutdown => &mut self.shutdown,
            DeadLetterReason::AckTimeout => &mut self.ack_timeout,
            DeadLetterReason::Manual => &mut self.manual,
        };
        *count = count.saturating_add(1);
    }
}

impl Add for ReasonCounts {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            overflow: self.overflow.saturating_add(other.overflow),
            send_failed: self.send_failed.saturating_add(other.send_failed),
            handler_failed: self.handler_failed.saturating_add(other.handler_failed),
            shutdown: self.shutdown.saturating_add(other.shutdown),
            ack_timeout: self.ack_timeout.saturating_add(other.ack_timeout),
            manual: self.manual.saturating_add(other.manual),
        }
    }
}

impl AddAssign for ReasonCounts {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

/// A snapshot of a dead-letter queue's contents and counters, from
/// [`DeadLetterQueue::stats`](crate::DeadLetterQueue::stats).
///
/// Plain data; the `u64` counters only grow. Every pushed entry is in exactly
/// one place, so `total_pushed` equals `len + parked + in_flight + dropped +
/// consumed` plus the entries taken out with
/// [`drain`](crate::DeadLetterQueue::drain) and
/// [`drain_parked`](crate::DeadLetterQueue::drain_parked).
///
/// Stats of several queues merge with `+`: every field is summed
/// (saturating).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DlqStats {
    /// Entries waiting for a consumer.
    pub len: usize,
    /// The queue's capacity, from its config. `len + parked + in_flight`
    /// never exceeds it.
    pub capacity: usize,
    /// Entries a consumer gave up on after `max_attempts` handler calls.
    pub parked: usize,
    /// Entries a consumer has taken and is calling its handler for, or
    /// waiting to retry.
    pub in_flight: usize,
    /// Entries ever pushed, evicted ones included.
    pub total_pushed: u64,
    /// Entries evicted because the queue was full.
    pub dropped: u64,
    /// Entries a consumer's handler succeeded for.
    pub consumed: u64,
    /// Handler calls made by consumers, successful or not; each one retries
    /// an item that had already failed.
    pub retries: u64,
    /// `total_pushed`, per reason.
    pub by_reason: ReasonCounts,
}

impl Add for DlqStats {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            len: self.len.saturating_add(other.len),
            capacity: self.capacity.saturating_add(other.capacity),
            parked: self.parked.saturating_add(other.parked),
            in_flight: self.in_flight.saturating_add(other.in_flight),
            total_pushed: self.total_pushed.saturating_add(other.total_pushed),
            dropped: self.dropped.saturating_add(other.dropped),
            consumed: self.consumed.saturating_add(other.consumed),
            retries: self.retries.saturating_add(other.retries),
            by_reason: self.by_reason + other.by_reason,
        }
    }
}

impl AddAssign for DlqStats {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_counts_count_get_and_total() {
        let mut counts = ReasonCounts::default();
        counts.count(DeadLetterReason::SendFailed);
        counts.count(DeadLetterReason::SendFailed);
        counts.count(DeadLetterReason::Manual);
        assert_eq!(counts.get(DeadLetterReason::SendFailed), 2);
        assert_eq!(counts.get(DeadLetterReason::Manual), 1);
        assert_eq!(counts.get(DeadLetterReason::Overflow), 0);
        assert_eq!(counts.total(), 3);
    }

    #[test]
    fn stats_add_field_by_field() {
        let one = DlqStats {
            len: 1,
            capacity: 10,
            parked: 2,
            in_flight: 1,
            total_pushed: 7,
            dropped: 1,
            consumed: 2,
            retries: 5,
            by_reason: ReasonCounts {
                overflow: 3,
                manual: 4,
                ..ReasonCounts::default()
            },
        };
        let mut sum = one + one;
        assert_eq!(
            sum,
            DlqStats {
                len: 2,
                capacity: 20,
                parked: 4,
                in_flight: 2,
                total_pushed: 14,
                dropped: 2,
                consumed: 4,
                retries: 10,
                by_reason: ReasonCounts {
                    overflow: 6,
                    manual: 8,
                    ..ReasonCounts::default()
                },
            }
        );
        sum += DlqStats {
            retries: u64::MAX,
            ..DlqStats::default()
        };
        assert_eq!(sum.retries, u64::MAX, "saturates instead of overflowing");
    }
}
