/// Decides which outcomes of the inner service count as failures for the
/// breaker.
///
/// The default, [`ErrorsAreFailures`], counts every `Err`. Implement the
/// trait, or pass a closure `Fn(&Result<Response, Error>) -> bool`, to
/// count differently: an HTTP 503 response as a failure, say, or a "not
/// found" error as a success (the other side answered, so it is up).
///
/// The policy only sees outcomes of calls the inner service ran; a call the
/// breaker rejected is never classified. A call dropped before it finished
/// counts neither way.
pub trait FailurePolicy<Response, Error> {
    /// Whether `outcome` counts as a failure (`true`) or a success (`false`).
    fn is_failure(&self, outcome: &Result<Response, Error>) -> bool;
}

/// The default [`FailurePolicy`]: every `Err` is a failure, every `Ok` a
/// success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Response, Error> FailurePolicy<Response, Error> for ErrorsAreFailures {
    fn is_failure(&self, outcome: &Result<Response, Error>) -> bool {
        outcome.is_err()
    }
}

/// Any `Fn(&Result<Response, Error>) -> bool` is a policy: it returns whether
/// the outcome is a failure.
impl<Response, Error, F> FailurePolicy<Response, Error> for F
where
    F: Fn(&Result<Response, Error>) -> bool,
{
    fn is_failure(&self, outcome: &Result<Response, Error>) -> bool {
        self(outcome)
    }
}
