use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{PolicyError, Schedule};

/// The longest delay when [`ReconnectPolicy::max_delay`] is `None`: one day.
///
/// Growing backoffs are unbounded in principle (a doubling delay passes a
/// year by attempt 40); a day is longer than any useful reconnect wait, yet
/// keeps an unlimited schedule retrying instead of saturating to an
/// effectively infinite sleep.
pub const DELAY_CEILING: Duration = Duration::from_secs(24 * 60 * 60);

/// How many reconnect attempts to make before giving up.
///
/// Serializes as `{ "limited": 5 }` or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxAttempts {
    /// At most this many attempts; 0 means never reconnect.
    Limited(u32),
    /// Retry forever.
    Unlimited,
}

/// How the delay grows from one attempt to the next, before the cap and
/// jitter.
///
/// Serializes as `"linear"`, `{ "exponential": { "factor": 2.0 } }` or
/// `"fixed"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// Attempt `n` waits `base_delay * n`: the transport spec's
    /// "`delay * attempt_number`".
    Linear,
    /// Attempt `n` waits `base_delay * factor^(n - 1)`.
    Exponential {
        /// Growth per attempt; must be finite and at least 1.0.
        factor: f64,
    },
    /// Every attempt waits `base_delay`.
    Fixed,
}

/// Randomisation of each delay, so that many clients cut off together do
/// not reconnect together.
///
/// Serializes as `"none"`, `"full"` or `"equal"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// The delay as computed.
    None,
    /// Uniform in `[0, d]`: spreads clients the most, but may retry at once.
    Full,
    /// `d / 2` plus uniform in `[0, d / 2]`: spread, yet never less than half.
    Equal,
}

/// When to try reconnecting, and when to give up.
///
/// A pure description: [`schedule`](Self::schedule) turns it into an
/// iterator of delays, and sleeping is the caller's job. Every field has a
/// default, so a partial policy deserializes (`#[serde(default)]`);
/// durations use serde's standard `{ "secs": 5, "nanos": 0 }` form.
///
/// Check a policy with [`validate`](Self::validate). An invalid policy never
/// panics, but its delays are unspecified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconnectPolicy {
    /// How many attempts before giving up. Default: `Limited(5)`, the
    /// transport spec's `max_reconnect_attempts`.
    pub max_attempts: MaxAttempts,
    /// The delay unit that [`backoff`](Self::backoff) grows. Default: 5 s,
    /// the spec's `reconnect_delay_seconds`. Zero retries at once.
    pub base_delay: Duration,
    /// How the delay grows per attempt. Default: [`Backoff::Linear`], the
    /// spec's `delay * attempt_number`.
    pub backoff: Backoff,
    /// The longest delay, applied before jitter. Default: `None`, which
    /// still caps at [`DELAY_CEILING`] (one day).
    pub max_delay: Option<Duration>,
    /// Randomisation of each delay. Default: [`Jitter::None`], so the
    /// schedule is exactly the spec's.
    pub jitter: Jitter,
    /// Seed for the jitter. Default: `None`, a random seed per schedule;
    /// set it to make jittered schedules reproducible (tests).
    pub seed: Option<u64>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            max_attempts: MaxAttempts::Limited(5),
            base_delay: Duration::from_secs(5),
            backoff: Backoff::Linear,
            max_delay: None,
            jitter: Jitter::None,
            seed: None,
        }
    }
}

impl ReconnectPolicy {
    /// The spec's behaviour: at most `max_attempts` attempts, attempt `n`
    /// waiting `base_delay * n`. Other fields are the defaults.
    #[must_use]
    pub fn linear(base_delay: Duration, max_attempts: u32) -> Self {
        Self {
            max_attempts: MaxAttempts::Limited(max_attempts),
            base_delay,
            backoff: Backoff::Linear,
            ..Self::default()
        }
    }

    /// Attempt `n` waits `base_delay * factor^(n - 1)`. Other fields are the
    /// defaults; consider [`with_max_delay`](Self::with_max_delay) and
    /// [`with_jitter`](Self::with_jitter).
    #[must_use]
    pub fn exponential(base_delay: Duration, factor: f64, max_attempts: MaxAttempts) -> Self {
        Self {
            max_attempts,
            base_delay,
            backoff: Backoff::Exponential { factor },
            ..Self::default()
        }
    }

    /// Every attempt waits `delay`. Other fields are the defaults.
    #[must_use]
    pub fn fixed(delay: Duration, max_attempts: MaxAttempts) -> Self {
        Self {
            max_attempts,
            base_delay: delay,
            backoff: Backoff::Fixed,
            ..Self::default()
        }
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: MaxAttempts) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`base_delay`](Self::base_delay).
    #[must_use]
    pub fn with_base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self
    }

    /// Sets [`backoff`](Self::backoff).
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Caps every delay at `max_delay` (before jitter).
    #[must_use]
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter, making schedules reproducible.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks that the policy makes sense.
    ///
    /// Zero delays and zero attempts are valid (retry at once; never retry).
    ///
    /// # Errors
    ///
    /// [`PolicyError::InvalidFactor`] when an exponential factor is not
    /// finite or is below 1.0; [`PolicyError::MaxDelayBelowBase`] when
    /// `max_delay` is below `base_delay`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if let Backoff::Exponential { factor } = self.backoff
            && !(factor.is_finite() && factor >= 1.0)
        {
            return Err(PolicyError::InvalidFactor { factor });
        }
        if let Some(max_delay) = self.max_delay
            && max_delay < self.base_delay
        {
            return Err(PolicyError::MaxDelayBelowBase {
                max_delay,
                base_delay: self.base_delay,
            });
        }
        Ok(())
    }

    /// The delay before attempt `attempt` (1-based), before jitter: the
    /// backoff, capped at `max_delay` or else at [`DELAY_CEILING`].
    /// Attempt 0 is `Duration::ZERO`.
    ///
    /// Saturates rather than overflows, for any attempt and factor.
    /// Exponential delays are computed in `f64` nanoseconds: exact while the
    /// result is a whole number of nanoseconds below 2^53 (about 104 days),
    /// otherwise rounded to the nearest nanosecond `f64` can express.
    pub fn base_delay_for(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let cap = self.max_delay.unwrap_or(DELAY_CEILING);
        let delay = match self.backoff {
            Backoff::Fixed => self.base_delay,
            Backoff::Linear => self.base_delay.checked_mul(attempt).unwrap_or(cap),
            Backoff::Exponential { factor } => {
                exponential(self.base_delay, factor, attempt - 1, cap)
            }
        };
        delay.min(cap)
    }

    /// The delays before each attempt, as an iterator; see [`Schedule`].
    pub fn schedule(&self) -> Schedule {
        Schedule::new(self.clone())
    }
}

/// `base * factor^exponent`, at most `cap`; never panics, whatever `factor`.
fn exponential(base: Duration, factor: f64, exponent: u32, cap: Duration) -> Duration {
    let exponent = i32::try_from(exponent).unwrap_or(i32::MAX);
    let nanos = base.as_nanos() as f64 * factor.powi(exponent);
    // `max` maps the NaN of an invalid factor to zero; infinity meets the cap.
    let nanos = nanos.max(0.0);
    if nanos >= cap.as_nanos() as f64 {
        return cap;
    }
    // Below the cap, so it fits a `Duration`; f64 rounding near a huge cap
    // is absorbed by the saturating conversion and the caller's `min(cap)`.
    duration_from_nanos(nanos.round() as u128)
}

/// `Duration::from_nanos` for `u128`, saturating.
pub(crate) fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn default_is_the_spec() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.max_attempts, MaxAttempts::Limited(5));
        assert_eq!(policy.base_delay, 5 * SEC);
        assert_eq!(policy.backoff, Backoff::Linear);
        assert_eq!(policy.max_delay, None);
        assert_eq!(policy.jitter, Jitter::None);
        assert_eq!(policy.seed, None);
        assert_eq!(policy, ReconnectPolicy::linear(5 * SEC, 5));
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn linear_is_base_times_attempt() {
        let policy = ReconnectPolicy::linear(5 * SEC, 5);
        for n in 1..=5 {
            assert_eq!(policy.base_delay_for(n), 5 * SEC * n);
        }
        assert_eq!(policy.base_delay_for(0), Duration::ZERO);
    }

    #[test]
    fn exponential_is_base_times_factor_to_the_attempt_minus_one() {
        let policy =
            ReconnectPolicy::exponential(Duration::from_millis(100), 2.0, MaxAttempts::Unlimited);
        let expected = [100, 200, 400, 800, 1600, 3200].map(Duration::from_millis);
        for (n, expected) in (1..).zip(expected) {
            assert_eq!(policy.base_delay_for(n), expected, "attempt {n}");
        }
        let policy = ReconnectPolicy::exponential(SEC, 1.5, MaxAttempts::Unlimited);
        assert_eq!(policy.base_delay_for(3), Duration::from_millis(2250));
    }

    #[test]
    fn fixed_never_grows() {
        let policy = ReconnectPolicy::fixed(3 * SEC, MaxAttempts::Limited(3));
        assert_eq!(policy.base_delay_for(1), 3 * SEC);
        assert_eq!(policy.base_delay_for(u32::MAX), 3 * SEC);
    }

    #[test]
    fn cap_is_respected() {
        let policy = ReconnectPolicy::linear(5 * SEC, 10).with_max_delay(12 * SEC);
        let delays: Vec<_> = (1..=4).map(|n| policy.base_delay_for(n)).collect();
        assert_eq!(delays, [5, 10, 12, 12].map(Duration::from_secs));
    }

    #[test]
    fn no_cap_means_the_ceiling() {
        let policy = ReconnectPolicy::exponential(SEC, 10.0, MaxAttempts::Unlimited);
        assert_eq!(policy.base_delay_for(5), 10_000 * SEC);
        assert_eq!(
            policy.base_delay_for(6),
            DELAY_CEILING,
            "100 000 s is above a day"
        );
        assert_eq!(policy.base_delay_for(u32::MAX), DELAY_CEILING);
    }

    #[test]
    fn extreme_values_saturate() {
        let huge = ReconnectPolicy::linear(Duration::MAX, u32::MAX);
        assert_eq!(huge.base_delay_for(u32::MAX), DELAY_CEILING);
        let huge = huge.with_max_delay(Duration::MAX);
        assert_eq!(huge.base_delay_for(u32::MAX), Duration::MAX);
        let steep = ReconnectPolicy::exponential(Duration::MAX, f64::MAX, MaxAttempts::Unlimited)
            .with_max_delay(Duration::MAX);
        assert_eq!(steep.base_delay_for(u32::MAX), Duration::MAX);
    }

    #[test]
    fn invalid_factors_are_reported_and_never_panic() {
        for factor in [0.5, 0.0, -2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let policy = ReconnectPolicy::exponential(SEC, factor, MaxAttempts::Limited(3));
            assert!(
                matches!(policy.validate(), Err(PolicyError::InvalidFactor { .. })),
                "{factor}"
            );
            for n in [0, 1, 2, 3, 1000, u32::MAX] {
                assert!(policy.base_delay_for(n) <= DELAY_CEILING);
            }
        }
        let error = ReconnectPolicy::exponential(SEC, 0.5, MaxAttempts::Unlimited)
            .validate()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("exponential backoff factor is 0.5")
        );
    }

    #[test]
    fn cap_below_base_is_reported() {
        let policy = ReconnectPolicy::linear(5 * SEC, 3).with_max_delay(SEC);
        assert_eq!(
            policy.validate(),
            Err(PolicyError::MaxDelayBelowBase {
                max_delay: SEC,
                base_delay: 5 * SEC
            })
        );
        assert_eq!(
            policy.base_delay_for(2),
            SEC,
            "still no panic: the cap wins"
        );
    }

    #[test]
    fn zero_delay_and_zero_attempts_are_valid() {
        assert_eq!(
            ReconnectPolicy::linear(Duration::ZERO, 0).validate(),
            Ok(())
        );
    }

    #[test]
    fn setters_set_their_field() {
        let policy = ReconnectPolicy::default()
            .with_max_attempts(MaxAttempts::Unlimited)
            .with_base_delay(SEC)
            .with_backoff(Backoff::Fixed)
            .with_max_delay(2 * SEC)
            .with_jitter(Jitter::Full)
            .with_seed(9);
        assert_eq!(
            policy,
            ReconnectPolicy {
                max_attempts: MaxAttempts::Unlimited,
                base_delay: SEC,
                backoff: Backoff::Fixed,
                max_delay: Some(2 * SEC),
                jitter: Jitter::Full,
                seed: Some(9),
            }
        );
    }

    #[test]
    fn partial_policy_deserializes_with_defaults() {
        let policy: ReconnectPolicy = serde_json::from_str(
            r#"{ "backoff": { "exponential": { "factor": 2.0 } }, "max_attempts": "unlimited", "jitter": "equal" }"#,
        )
        .unwrap();
        assert_eq!(
            policy,
            ReconnectPolicy::exponential(5 * SEC, 2.0, MaxAttempts::Unlimited)
                .with_jitter(Jitter::Equal)
        );
        let json = serde_json::to_string(&ReconnectPolicy::default()).unwrap();
        assert!(json.contains(r#""max_attempts":{"limited":5}"#), "{json}");
        let back: ReconnectPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ReconnectPolicy::default());
    }
}
