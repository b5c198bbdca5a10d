use std::time::Duration;

/// A [`ReconnectPolicy`](crate::ReconnectPolicy) that makes no sense, from
/// [`ReconnectPolicy::validate`](crate::ReconnectPolicy::validate).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The exponential factor is not finite, or below 1.0 (delays would
    /// shrink, or be meaningless).
    #[error(
        "exponential backoff factor is {factor}: use a finite factor of at least 1.0, such as 2.0 to double each delay"
    )]
    InvalidFactor {
        /// The rejected factor.
        factor: f64,
    },
    /// `max_delay` is below `base_delay`, so the cap would replace every
    /// delay.
    #[error(
        "max_delay ({max_delay:?}) is below base_delay ({base_delay:?}): raise max_delay or lower base_delay"
    )]
    MaxDelayBelowBase {
        /// The configured cap.
        max_delay: Duration,
        /// The configured base delay.
        base_delay: Duration,
    },
}
