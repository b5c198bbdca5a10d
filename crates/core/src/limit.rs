//! Rate-limited logging, shared by the transport and the hub.

use std::time::{Duration, Instant};

/// Allows one warning per second and counts the ones left out, so a peer
/// sending garbage (or a flood of refused connections) cannot flood the
/// logs too.
///
/// ```
/// use watchtower_core::WarnLimiter;
///
/// let mut limiter = WarnLimiter::default();
/// assert_eq!(limiter.allow(), Some(0)); // the first one is logged
/// assert_eq!(limiter.allow(), None); // within the second: counted
/// ```
#[derive(Debug, Default)]
pub struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// The least time between two warnings.
    pub const INTERVAL: Duration = Duration::from_secs(1);

    /// `Some(warnings left out since the last one)` if a warning may be
    /// logged now; `None` (and one more left out) otherwise.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Self::INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
