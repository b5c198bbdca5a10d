//! A token bucket: how long a client must wait before more of a costly
//! kind of work is done for it.

use std::time::Duration;

use tokio::time::Instant;

/// Allows `rate` units a second, in bursts of up to `burst` (one
/// second's worth unless said otherwise). Work is charged after it is
/// done; when the balance goes below zero, the caller waits until it is
/// back at zero.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: f64,
    burst: f64,
    balance: f64,
    last: Instant,
}

impl Pace {
    pub(crate) fn per_second(rate: usize) -> Pace {
        Pace::with_burst(rate, rate)
    }

    /// `rate` units a second in bursts of up to `burst`, starting full.
    pub(crate) fn with_burst(rate: usize, burst: usize) -> Pace {
        let burst = burst.max(1) as f64;
        Pace {
            rate: rate.max(1) as f64,
            burst,
            balance: burst,
            last: Instant::now(),
        }
    }

    /// Whether the balance is back at its full burst by `now`: forgetting
    /// this pace then changes nothing, as a new one starts full.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        self.balance_at(now) >= self.burst
    }

    /// What the balance will be at `now`, refilled at the rate up to the
    /// burst.
    fn balance_at(&self, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        (self.balance + refill).min(self.burst)
    }

    /// Refills the balance up to now.
    fn refill(&mut self) {
        let now = Instant::now();
        self.balance = self.balance_at(now);
        self.last = now;
    }

    /// Takes `units` if the balance has them (the work may be done now);
    /// otherwise takes nothing and says how long until it would. Unlike
    /// [`Pace::charge`], a refused request costs nothing, so callers that
    /// keep asking do not push the next answer further away.
    pub(crate) fn try_take(&mut self, units: usize) -> Result<(), Duration> {
        self.refill();
        let units = units as f64;
        if self.balance >= units {
            self.balance -= units;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((units - self.balance) / self.rate))
        }
    }

    /// Charges `units`; returns how long to wait before the next piece of
    /// work, if any.
    pub(crate) fn charge(&mut self, units: usize) -> Option<Duration> {
        self.refill();
        self.balance -= units as f64;
        (self.balance < 0.0).then(|| Duration::from_secs_f64(-self.balance / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_second_then_the_rate() {
        let mut pace = Pace::per_second(1000);
        assert_eq!(pace.charge(600), None);
        assert_eq!(pace.charge(400), None);
        assert_eq!(pace.charge(500), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(pace.charge(0), None, "back at zero");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(pace.charge(1000), None, "the balance is capped at a second");
        assert!(pace.charge(1).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_take_costs_nothing() {
        let mut pace = Pace::per_second(2);
        assert_eq!(pace.try_take(1), Ok(()));
        assert_eq!(pace.try_take(1), Ok(()));
        for _ in 0..10 {
            assert_eq!(pace.try_take(1), Err(Duration::from_millis(500)));
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(pace.try_take(1), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_its_own_then_the_rate() {
        let mut pace = Pace::with_burst(10, 3);
        assert!(pace.is_full(Instant::now()));
        for _ in 0..3 {
            assert_eq!(pace.try_take(1), Ok(()));
        }
        assert_eq!(pace.try_take(1), Err(Duration::from_millis(100)));
        assert!(!pace.is_full(Instant::now()));
        assert!(
            pace.is_full(Instant::now() + Duration::from_millis(300)),
            "full again after three tenths of a second"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..3 {
            assert_eq!(pace.try_take(1), Ok(()));
        }
        assert!(
            pace.try_take(1).is_err(),
            "the balance is capped at the burst"
        );
    }
}
