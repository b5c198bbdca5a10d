//! A generic async circuit breaker: [`CircuitBreaker`] stops calling
//! something that keeps failing, fails fast meanwhile, and probes for
//! recovery.
//!
//! It is one of Watchtower's resilience crates and knows nothing of
//! WebSockets: it guards any fallible operation. The WebSocket transport puts
//! each connection attempt through [`CircuitBreaker::try_acquire`], calls
//! [`CircuitBreaker::check`] on every publish, and [`trip`]s the breaker when
//! its reconnect attempts are exhausted.
//!
//! # States
//!
//! - **Closed**: requests pass. `failure_threshold` consecutive failures
//!   (a success resets the count) open the circuit.
//! - **Open**: requests are rejected with [`Rejected`], whose message
//!   contains `Circuit breaker is open`, until `timeout` has elapsed.
//! - **HalfOpen**: one trial request at a time. `success_threshold`
//!   consecutive trial successes close the circuit; any trial failure opens
//!   it again and restarts the timeout.
//!
//! No background task runs: an Open circuit whose timeout has elapsed becomes
//! HalfOpen when it is next used or observed. The breaker reads tokio's
//! clock ([`tokio::time::Instant`]), so tests drive it with a paused clock.
//!
//! # Tower middleware (feature `tower`)
//!
//! With the cargo feature `tower`, `CircuitBreakerLayer` puts a breaker in
//! front of any `tower::Service` (an HTTP client, a database pool, a gRPC
//! channel): calls are rejected at once while the circuit is open, without
//! reaching the inner service; a `FailurePolicy` (a closure will do)
//! decides which outcomes count as failures, by default every `Err`; and
//! `WhenOpen` chooses whether `poll_ready` answers ready-to-reject or stays
//! `Pending` until a trial is allowed, for tower's `load_shed` and `buffer`
//! to act on. Without the feature the crate does not depend on tower. See
//! `examples/tower_service.rs`.
//!
//! [`check`](CircuitBreaker::check) is the hot path: while Closed it is an
//! atomic load and an increment. Slow paths take a short `std` mutex, never
//! held across an `.await` or while calling the [`CircuitObserver`].
//! Transitions are also logged with `tracing` at debug level.
//!
//! # Example
//!
//! ```
//! use std::{error::Error, io, time::Duration};
//! use watchtower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
//!
//! // A paused clock (tokio's `test-util`) makes the 30 s sleep below instant.
//! let runtime = tokio::runtime::Builder::new_current_thread()
//!     .enable_time()
//!     .start_paused(true)
//!     .build()?;
//! runtime.block_on(async {
//!     let breaker = CircuitBreaker::new(CircuitBreakerConfig {
//!         failure_threshold: 2,
//!         timeout: Duration::from_secs(30),
//!         success_threshold: 1,
//!     })?;
//!
//!     // Two failed connection attempts open the circuit...
//!     for _ in 0..2 {
//!         let permit = breaker.try_acquire()?;
//!         permit.failure();
//!     }
//!     assert_eq!(breaker.state(), CircuitState::Open);
//!
//!     // ...and the hot path then fails fast.
//!     let rejected = breaker.check().err().ok_or("expected a rejection")?;
//!     assert!(rejected.to_string().contains("Circuit breaker is open"));
//!
//!     // After the timeout one trial is allowed; its success closes the circuit.
//!     tokio::time::sleep(Duration::from_secs(30)).await;
//!     let answer = breaker.call(async { Ok::<_, io::Error>(42) }).await?;
//!     assert_eq!(answer, 42);
//!     assert_eq!(breaker.state(), CircuitState::Closed);
//!     assert_eq!(breaker.stats().times_opened, 1);
//!     Ok::<_, Box<dyn Error>>(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! [`trip`]: CircuitBreaker::trip

mod breaker;
mod config;
mod error;
#[cfg(feature = "tower")]
mod middleware;
mod observer;
mod stats;

#[cfg(feature = "tower")]
pub use crate::middleware::{
    CircuitBreakerLayer, CircuitBreakerService, ErrorsAreFailures, FailurePolicy, ResponseFuture,
    WhenOpen,
};
pub use crate::{
    breaker::{CircuitBreaker, OwnedPermit, Permit},
    config::CircuitBreakerConfig,
    error::{CallError, ConfigError, Rejected},
    observer::CircuitObserver,
    stats::{CircuitBreakerStats, CircuitState},
};

#[cfg(test)]
mod tests;

/// The README's examples, compiled and run as doctests so that they cannot
/// rot.
#[cfg(all(doctest, feature = "tower"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
