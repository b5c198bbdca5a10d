//! A token bucket: how long a client must wait before more of a costly
//! kind of work is done for it.

use std::time::Duration;

use tokio::time::Instant;

/// Allows `rate` units a second, in bursts of up to one second's worth.
/// Work is charged after it is done; when the balance goes below zero,
/// the caller waits until it is back at zero.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: f64,
    balance: f64,
    last: Instant,
}

impl Pace {
    pub(crate) fn per_second(rate: usize) -> Pace {
        let rate = rate.max(1) as f64;
        Pace {
            rate,
            balance: rate,
            last: Instant::now(),
        }
    }

    /// Takes `units` if the balance has them (the work may be done now);
    /// otherwise takes nothing and says how long until it would. Unlike
    /// [`Pace::charge`], a refused request costs nothing, so callers that
    /// keep asking do not push the next answer further away.
    pub(crate) fn try_take(&mut self, units: usize) -> Result<(), Duration> {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.last = now;
        self.balance = (self.balance + refill).min(self.rate);
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
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.last = now;
        self.balance = (self.balance + refill).min(self.rate) - units as f64;
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
}
