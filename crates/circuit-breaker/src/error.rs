use std::fmt;
use std::time::Duration;

use crate::CircuitState;

/// A [`CircuitBreakerConfig`](crate::CircuitBreakerConfig) that cannot drive
/// a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `failure_threshold` is 0, so the circuit could never stay closed.
    #[error(
        "failure_threshold is 0: set it to at least 1, the number of consecutive failures that opens the circuit"
    )]
    ZeroFailureThreshold,
    /// `success_threshold` is 0, so the circuit would close without any
    /// successful trial.
    #[error(
        "success_threshold is 0: set it to at least 1, the number of successful half-open trials that closes the circuit"
    )]
    ZeroSuccessThreshold,
}

/// The breaker refused a request because the circuit is not closed.
///
/// Its message always contains `Circuit breaker is open`, the text callers
/// match on (capitalised, unlike our other messages, because that text is the
/// contract). That holds for a half-open circuit whose single trial is taken
/// too: to every other caller the circuit is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Circuit breaker is open: {}", RetryHint(*.state, *.retry_after))]
#[non_exhaustive]
pub struct Rejected {
    /// The state that caused the rejection: [`CircuitState::Open`], or
    /// [`CircuitState::HalfOpen`] when the trial request is taken.
    pub state: CircuitState,
    /// While Open, the time left until a half-open trial is allowed. `None`
    /// while HalfOpen: the trial in flight decides, and when is unknown.
    pub retry_after: Option<Duration>,
}

impl Rejected {
    pub(crate) fn new(state: CircuitState, retry_after: Option<Duration>) -> Self {
        Self { state, retry_after }
    }
}

/// The advice half of [`Rejected`]'s message.
struct RetryHint(CircuitState, Option<Duration>);

impl fmt::Display for RetryHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (CircuitState::HalfOpen, _) => {
                f.write_str("a half-open trial request is in flight; retry once it completes")
            }
            (_, Some(after)) => write!(f, "retry in {after:?}"),
            (_, None) => f.write_str("retry later"),
        }
    }
}

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call): the
/// breaker refused the call, or the call ran and failed.
///
/// Both variants are transparent: `Display` and `source()` are those of the
/// wrapped error. It is deliberately not `#[non_exhaustive]`: a guarded call
/// can only be refused or fail, so callers may match both arms exhaustively.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker refused the call; the future was not polled.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The call ran and returned this error, which was recorded as a failure.
    #[error(transparent)]
    Inner(E),
}

impl<E> CallError<E> {
    /// Whether the breaker refused the call (as opposed to the call failing).
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Rejected(_))
    }

    /// The call's own error, or `None` if the breaker refused the call.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Rejected(_) => None,
            Self::Inner(error) => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_message_contains_the_contract_text() {
        for rejected in [
            Rejected::new(CircuitState::Open, Some(Duration::from_secs(3))),
            Rejected::new(CircuitState::Open, None),
            Rejected::new(CircuitState::HalfOpen, None),
        ] {
            let message = rejected.to_string();
            assert!(message.contains("Circuit breaker is open"), "{message}");
        }
        assert_eq!(
            Rejected::new(CircuitState::Open, Some(Duration::from_millis(1500))).to_string(),
            "Circuit breaker is open: retry in 1.5s"
        );
    }

    #[test]
    fn call_error_is_transparent() {
        let rejected: CallError<std::io::Error> = Rejected::new(CircuitState::Open, None).into();
        assert!(rejected.is_rejected());
        assert!(rejected.to_string().contains("Circuit breaker is open"));

        let inner = CallError::Inner(std::io::Error::other("refused"));
        assert!(!inner.is_rejected());
        assert_eq!(inner.to_string(), "refused");
        assert_eq!(
            inner.into_inner().map(|e| e.to_string()).as_deref(),
            Some("refused")
        );
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<ConfigError>();
        assert_error::<Rejected>();
        assert_error::<CallError<std::io::Error>>();
    }
}
