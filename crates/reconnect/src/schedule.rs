use std::time::Duration;

use crate::policy::duration_from_nanos;
use crate::{Jitter, MaxAttempts, ReconnectPolicy};

/// The delays before each reconnect attempt, from
/// [`ReconnectPolicy::schedule`].
///
/// An iterator: the `n`th item is the delay to wait before attempt `n`, for
/// `n` in `1..=max_attempts`; then it returns `None`, meaning give up
/// ([`MaxAttempts::Unlimited`] never ends). Each delay is
/// [`ReconnectPolicy::base_delay_for`] with the policy's jitter applied after
/// the cap, so a jittered delay never exceeds the cap either.
///
/// Call [`reset`](Self::reset) once a connection has proved stable, so the
/// next outage starts again from attempt 1. A clone continues from the same
/// point with the same random state, so it yields the same delays.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: ReconnectPolicy,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Schedule {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        let rng = match policy.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Self {
            policy,
            attempt: 0,
            rng,
        }
    }

    /// The policy this schedule follows.
    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// Attempts yielded so far: the number of the attempt the last delay
    /// was for. Saturates at `u32::MAX` for an unlimited schedule.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts again at attempt 1, e.g. after a stable connection. The jitter
    /// keeps drawing from the same random stream rather than repeating it.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts left, or `None` when unlimited.
    pub fn remaining(&self) -> Option<u32> {
        match self.policy.max_attempts {
            MaxAttempts::Limited(max) => Some(max.saturating_sub(self.attempt)),
            MaxAttempts::Unlimited => None,
        }
    }

    /// Whether every attempt has been yielded: time to give up.
    pub fn is_exhausted(&self) -> bool {
        self.remaining() == Some(0)
    }

    fn jitter(&mut self, delay: Duration) -> Duration {
        let nanos = delay.as_nanos();
        match self.policy.jitter {
            Jitter::None => delay,
            Jitter::Full => duration_from_nanos(self.rng.u128(0..=nanos)),
            Jitter::Equal => {
                let half = nanos / 2;
                duration_from_nanos(half + self.rng.u128(0..=nanos - half))
            }
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.is_exhausted() {
            return None;
        }
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.policy.base_delay_for(self.attempt);
        Some(self.jitter(delay))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.remaining() {
            Some(left) => {
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                (left, Some(left))
            }
            None => (usize::MAX, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn linear_schedule_is_the_spec() {
        let delays: Vec<_> = ReconnectPolicy::default().schedule().collect();
        assert_eq!(delays, [5, 10, 15, 20, 25].map(Duration::from_secs));
    }

    #[test]
    fn yields_exactly_max_attempts() {
        for max in [0, 1, 3, 10] {
            let mut schedule = ReconnectPolicy::linear(SEC, max).schedule();
            assert_eq!(schedule.size_hint(), (max as usize, Some(max as usize)));
            assert_eq!(schedule.by_ref().count(), max as usize);
            assert!(schedule.is_exhausted());
            assert_eq!(schedule.attempt(), max);
            assert_eq!(schedule.remaining(), Some(0));
            assert_eq!(schedule.next(), None, "stays exhausted");
        }
    }

    #[test]
    fn zero_attempts_is_empty_and_exhausted_from_the_start() {
        let mut schedule = ReconnectPolicy::linear(SEC, 0).schedule();
        assert!(schedule.is_exhausted());
        assert_eq!(schedule.next(), None);
        assert_eq!(schedule.attempt(), 0);
    }

    #[test]
    fn counts_attempts_and_remaining() {
        let mut schedule = ReconnectPolicy::linear(SEC, 3).schedule();
        assert_eq!((schedule.attempt(), schedule.remaining()), (0, Some(3)));
        assert_eq!(schedule.next(), Some(SEC));
        assert_eq!((schedule.attempt(), schedule.remaining()), (1, Some(2)));
        assert!(!schedule.is_exhausted());
    }

    #[test]
    fn reset_starts_again_at_attempt_one() {
        let mut schedule = ReconnectPolicy::linear(SEC, 2).schedule();
        assert_eq!(schedule.by_ref().count(), 2);
        schedule.reset();
        assert_eq!(schedule.attempt(), 0);
        assert!(!schedule.is_exhausted());
        assert_eq!(schedule.collect::<Vec<_>>(), [SEC, 2 * SEC]);
    }

    #[test]
    fn unlimited_never_ends() {
        let mut schedule = ReconnectPolicy::fixed(SEC, MaxAttempts::Unlimited).schedule();
        assert_eq!(schedule.size_hint(), (usize::MAX, None));
        assert_eq!(schedule.by_ref().take(1000).count(), 1000);
        assert_eq!(schedule.remaining(), None);
        assert!(!schedule.is_exhausted());
    }

    #[test]
    fn unlimited_attempt_count_saturates() {
        let mut schedule = ReconnectPolicy::linear(SEC, 0)
            .with_max_attempts(MaxAttempts::Unlimited)
            .schedule();
        schedule.attempt = u32::MAX - 1;
        assert_eq!(schedule.next(), Some(crate::DELAY_CEILING));
        assert_eq!(schedule.next(), Some(crate::DELAY_CEILING));
        assert_eq!(schedule.attempt(), u32::MAX);
    }

    #[test]
    fn jitter_applies_after_the_cap() {
        let policy = ReconnectPolicy::linear(10 * SEC, 50)
            .with_max_delay(15 * SEC)
            .with_jitter(Jitter::Full)
            .with_seed(1);
        assert!(policy.schedule().all(|delay| delay <= 15 * SEC));
    }

    #[test]
    fn same_seed_same_delays_and_clones_agree() {
        let policy = ReconnectPolicy::exponential(SEC, 2.0, MaxAttempts::Limited(20))
            .with_jitter(Jitter::Full)
            .with_seed(42);
        let first: Vec<_> = policy.schedule().collect();
        assert_eq!(first, policy.schedule().collect::<Vec<_>>());
        let other: Vec<_> = policy.clone().with_seed(43).schedule().collect();
        assert_ne!(first, other);

        let mut schedule = policy.schedule();
        schedule.next();
        let clone = schedule.clone();
        assert!(schedule.eq(clone));
    }

    #[test]
    fn unseeded_jitter_still_stays_in_range() {
        let policy =
            ReconnectPolicy::fixed(SEC, MaxAttempts::Limited(100)).with_jitter(Jitter::Equal);
        assert!(
            policy
                .schedule()
                .all(|delay| (SEC / 2..=SEC).contains(&delay))
        );
    }
}
