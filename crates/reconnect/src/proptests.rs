//! Properties of schedules over arbitrary policies.

use std::time::Duration;

use proptest::prelude::*;

use crate::{Backoff, DELAY_CEILING, Jitter, MaxAttempts, ReconnectPolicy};

/// Attempts to draw from an unlimited schedule.
const TAKE: usize = 64;

fn valid_backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        Just(Backoff::Linear),
        Just(Backoff::Fixed),
        (1.0f64..=10.0).prop_map(|factor| Backoff::Exponential { factor }),
    ]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
}

fn max_attempts() -> impl Strategy<Value = MaxAttempts> {
    prop_oneof![
        (0u32..=100).prop_map(MaxAttempts::Limited),
        Just(MaxAttempts::Unlimited)
    ]
}

/// Valid policies with delays from nothing to a few days.
fn policy() -> impl Strategy<Value = ReconnectPolicy> {
    (
        max_attempts(),
        0u64..=100_000_000_000_000,
        valid_backoff(),
        proptest::option::of(0u64..=300_000_000_000_000),
        jitter(),
        any::<u64>(),
    )
        .prop_map(
            |(max_attempts, base, backoff, max_delay, jitter, seed)| ReconnectPolicy {
                max_attempts,
                base_delay: Duration::from_nanos(base),
                backoff,
                max_delay: max_delay.map(Duration::from_nanos),
                jitter,
                seed: Some(seed),
            },
        )
}

fn cap(policy: &ReconnectPolicy) -> Duration {
    policy.max_delay.unwrap_or(DELAY_CEILING)
}

proptest! {
    #[test]
    fn without_jitter_delays_never_shrink_and_respect_the_cap(policy in policy()) {
        let policy = policy.with_jitter(Jitter::None);
        let delays: Vec<_> = policy.schedule().take(TAKE).collect();
        for pair in delays.windows(2) {
            prop_assert!(pair[0] <= pair[1], "{:?}", pair);
        }
        for delay in &delays {
            prop_assert!(*delay <= cap(&policy));
        }
    }

    #[test]
    fn jitter_stays_within_the_unjittered_delay(policy in policy()) {
        for (n, delay) in (1..).zip(policy.schedule().take(TAKE)) {
            let unjittered = policy.base_delay_for(n);
            let low = match policy.jitter {
                Jitter::None => unjittered,
                Jitter::Full => Duration::ZERO,
                Jitter::Equal => unjittered / 2,
            };
            prop_assert!(
                (low..=unjittered).contains(&delay),
                "attempt {n}: {delay:?} outside [{low:?}, {unjittered:?}]"
            );
        }
    }

    #[test]
    fn same_seed_same_sequence(policy in policy()) {
        let first: Vec<_> = policy.schedule().take(TAKE).collect();
        let second: Vec<_> = policy.schedule().take(TAKE).collect();
        prop_assert_eq!(first, second);
    }

    #[test]
    fn yields_exactly_the_limited_attempts(max in 0u32..=300, policy in policy()) {
        let policy = policy.with_max_attempts(MaxAttempts::Limited(max));
        let mut schedule = policy.schedule();
        prop_assert_eq!(schedule.by_ref().count(), max as usize);
        prop_assert!(schedule.is_exhausted());
        schedule.reset();
        prop_assert_eq!(schedule.count(), max as usize);
    }

    #[test]
    fn integer_backoffs_are_exact(
        base_ms in 0u64..=10_000,
        factor in 1u32..=4,
        n in 1u32..=12,
    ) {
        let base = Duration::from_millis(base_ms);
        let linear = ReconnectPolicy::linear(base, 100);
        prop_assert_eq!(linear.base_delay_for(n), (base * n).min(DELAY_CEILING));

        let exponential =
            ReconnectPolicy::exponential(base, f64::from(factor), MaxAttempts::Unlimited);
        let expected = base * factor.pow(n - 1);
        prop_assert_eq!(exponential.base_delay_for(n), expected.min(DELAY_CEILING));
    }

    #[test]
    fn huge_or_invalid_values_never_panic(
        base_secs in any::<u64>(),
        base_nanos in 0u32..1_000_000_000,
        factor in any::<f64>(),
        max_delay in proptest::option::of((any::<u64>(), 0u32..1_000_000_000)),
        attempt in any::<u32>(),
        jitter in jitter(),
        seed in any::<u64>(),
    ) {
        let max_delay = max_delay.map(|(secs, nanos)| Duration::new(secs, nanos));
        for backoff in [Backoff::Linear, Backoff::Fixed, Backoff::Exponential { factor }] {
            let policy = ReconnectPolicy {
                max_attempts: MaxAttempts::Unlimited,
                base_delay: Duration::new(base_secs, base_nanos),
                backoff,
                max_delay,
                jitter,
                seed: Some(seed),
            };
            let _ = policy.validate();
            let limit = max_delay.unwrap_or(DELAY_CEILING);
            prop_assert!(policy.base_delay_for(attempt) <= limit);
            let mut schedule = policy.schedule();
            for delay in schedule.by_ref().take(8) {
                prop_assert!(delay <= limit);
            }
        }
    }
}
