//! When to reconnect, and when to give up: a [`ReconnectPolicy`] describes
//! attempts, backoff, cap and jitter, and its [`Schedule`] is an iterator of
//! the delays to wait before each attempt.
//!
//! It is one of Watchtower's resilience crates and knows nothing of
//! WebSockets: the policy computes delays and leaves the sleeping and
//! connecting to the caller. The WebSocket transport sleeps for each delay
//! before a reconnect attempt, resets the schedule once a connection is
//! stable, and opens its circuit breaker when the schedule runs out.
//!
//! # Retrying any async operation
//!
//! [`Retry`] drives an async operation with a policy: call, and on a
//! retryable error sleep the next delay and call again, with an
//! [`on_retry`](Retry::on_retry) hook for logging. It needs no runtime:
//! sleeping is the small [`Sleep`] trait (a closure will do). With the cargo
//! feature `tokio`, `TokioSleep` is provided and `retry(&policy, || async {
//! fetch().await })` is the one-line form; the crate's only other
//! dependencies stay as they are without it. See `examples/retry.rs`.
//!
//! The default is the transport spec's "`delay * attempt_number`" (which the
//! spec calls exponential but is linear): five attempts waiting 5 s, 10 s,
//! 15 s, 20 s and 25 s. Exponential and fixed backoff, a cap and seedable
//! jitter are options.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use watchtower_reconnect::{Jitter, MaxAttempts, PolicyError, ReconnectPolicy};
//!
//! // The spec's behaviour: attempt n waits `base_delay * n`.
//! let policy = ReconnectPolicy::linear(Duration::from_secs(2), 3);
//! policy.validate()?;
//! let delays: Vec<Duration> = policy.schedule().collect();
//! assert_eq!(delays, [2, 4, 6].map(Duration::from_secs));
//!
//! // Doubling from 100 ms, capped at 30 s, jittered reproducibly.
//! let policy = ReconnectPolicy::exponential(Duration::from_millis(100), 2.0, MaxAttempts::Unlimited)
//!     .with_max_delay(Duration::from_secs(30))
//!     .with_jitter(Jitter::Equal)
//!     .with_seed(7);
//! policy.validate()?;
//! let mut schedule = policy.schedule();
//! for delay in schedule.by_ref().take(20) {
//!     // Sleep for `delay`, then try to connect...
//!     assert!(delay <= Duration::from_secs(30));
//! }
//! // ...and once a connection is stable, start over for the next outage.
//! schedule.reset();
//! assert_eq!(schedule.attempt(), 0);
//! # Ok::<(), PolicyError>(())
//! ```

mod error;
mod policy;
mod retry;
mod schedule;

#[cfg(feature = "tokio")]
pub use crate::retry::{TokioSleep, retry};
pub use crate::{
    error::PolicyError,
    policy::{Backoff, DELAY_CEILING, Jitter, MaxAttempts, ReconnectPolicy},
    retry::{AnyError, NoHook, OnRetry, Retry, RetryIf, Retrying, Sleep},
    schedule::Schedule,
};

#[cfg(test)]
mod proptests;

/// The README's examples, compiled and run as doctests so that they cannot
/// rot.
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
