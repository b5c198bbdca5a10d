use serde::{Deserialize, Serialize};

/// The state of a circuit.
///
/// Serializes as `"closed"`, `"open"` or `"half_open"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Healthy: every request is let through and failures are counted.
    #[default]
    Closed,
    /// Failing: requests are rejected until the timeout elapses.
    Open,
    /// Probing: one trial request at a time decides between Closed and Open,
    /// while unrecorded [`check`](crate::CircuitBreaker::check)s pass.
    HalfOpen,
}

/// A snapshot of a breaker's state and counters, from
/// [`CircuitBreaker::stats`](crate::CircuitBreaker::stats).
///
/// Plain data: the `total_*` and `times_opened` counters only grow for the
/// breaker's lifetime ([`reset`](crate::CircuitBreaker::reset) keeps them),
/// while `failure_count` and `success_count` describe the current state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CircuitBreakerStats {
    /// The state when the snapshot was taken (an elapsed Open timeout shows
    /// as [`CircuitState::HalfOpen`]).
    pub state: CircuitState,
    /// Consecutive failures not yet undone by a success. Counts toward
    /// `failure_threshold` while Closed; kept while Open so that it shows
    /// what opened the circuit; grows on a half-open failure. Zero again
    /// when the circuit closes or is reset.
    pub failure_count: u32,
    /// Consecutive successful trials in the current HalfOpen period; zero in
    /// any other state.
    pub success_count: u32,
    /// Requests gated by [`try_acquire`](crate::CircuitBreaker::try_acquire)
    /// or [`check`](crate::CircuitBreaker::check), rejected ones included.
    pub total_requests: u64,
    /// Requests rejected because the circuit was not closed. Never more than
    /// `total_requests`.
    pub rejected_requests: u64,
    /// Successes recorded on permits.
    pub total_successes: u64,
    /// Failures recorded on permits.
    pub total_failures: u64,
    /// Times the circuit went to Open, from Closed or HalfOpen, by failures
    /// or by [`trip`](crate::CircuitBreaker::trip).
    pub times_opened: u64,
}

impl CircuitBreakerStats {
    /// Requests that were let through: `total_requests - rejected_requests`.
    pub fn admitted_requests(&self) -> u64 {
        self.total_requests.saturating_sub(self.rejected_requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_closed_and_zero() {
        let stats = CircuitBreakerStats::default();
        assert_eq!(stats.state, CircuitState::Closed);
        assert_eq!(stats.total_requests, 0);
        assert_eq!(stats.admitted_requests(), 0);
    }

    #[test]
    fn state_serializes_in_snake_case() {
        let json = serde_json::to_string(&CircuitState::HalfOpen).unwrap();
        assert_eq!(json, r#""half_open""#);
        let back: CircuitState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, CircuitState::HalfOpen);
    }
}
