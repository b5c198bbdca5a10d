//! Unit tests for the state machine; `model` checks it against a reference
//! model with proptest.

#[cfg(feature = "tower")]
mod middleware;
mod model;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock, Weak};
use std::time::Duration;

use tokio::time::advance;

use crate::{
    CallError, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerStats, CircuitObserver,
    CircuitState, ConfigError,
};

const TIMEOUT: Duration = Duration::from_secs(10);

fn config(failure_threshold: u32, success_threshold: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        failure_threshold,
        timeout: TIMEOUT,
        success_threshold,
    }
}

fn breaker(failure_threshold: u32, success_threshold: u32) -> CircuitBreaker {
    CircuitBreaker::new(config(failure_threshold, success_threshold)).unwrap()
}

fn fail_n<O: CircuitObserver>(breaker: &CircuitBreaker<O>, n: u32) {
    for _ in 0..n {
        breaker.try_acquire().unwrap().failure();
    }
}

#[derive(Debug, Default)]
struct Counting {
    opened: AtomicUsize,
    half_opened: AtomicUsize,
    closed: AtomicUsize,
    rejected: AtomicUsize,
}

impl Counting {
    /// (opened, half-opened, closed, rejected)
    fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.opened.load(Ordering::Relaxed),
            self.half_opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

impl CircuitObserver for Counting {
    fn on_open(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
    fn on_half_open(&self) {
        self.half_opened.fetch_add(1, Ordering::Relaxed);
    }
    fn on_close(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
    fn on_reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn invalid_config_is_an_error_not_a_panic() {
    let error = CircuitBreaker::new(config(0, 1)).unwrap_err();
    assert_eq!(error, ConfigError::ZeroFailureThreshold);
    assert!(error.to_string().starts_with("failure_threshold is 0"));
    let error = CircuitBreaker::new(config(1, 0)).unwrap_err();
    assert_eq!(error, ConfigError::ZeroSuccessThreshold);
}

#[test]
fn breaker_is_send_sync_and_call_future_is_send() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let breaker = breaker(1, 1);
    assert_send_sync(&breaker);
    let call = breaker.call(async { Ok::<_, io::Error>(()) });
    assert_send(&call);
}

#[tokio::test(start_paused = true)]
async fn closed_admits_everything_and_counts_requests() {
    let breaker = breaker(3, 1);
    breaker.check().unwrap();
    breaker.try_acquire().unwrap().success();
    assert_eq!(
        breaker.stats(),
        CircuitBreakerStats {
            total_requests: 2,
            total_successes: 1,
            ..Default::default()
        }
    );
    assert_eq!(breaker.retry_after(), None);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_the_circuit_and_a_success_resets_them() {
    let breaker = breaker(3, 1);
    fail_n(&breaker, 2);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.stats().failure_count, 0);

    fail_n(&breaker, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().failure_count, 2);
    fail_n(&breaker, 1);
    let stats = breaker.stats();
    assert_eq!(stats.state, CircuitState::Open);
    assert_eq!(
        stats.failure_count, 3,
        "kept while Open: it shows what opened it"
    );
    assert_eq!(stats.times_opened, 1);
    assert_eq!(stats.total_failures, 5);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_the_time_left() {
    let breaker = breaker(1, 1);
    fail_n(&breaker, 1);
    advance(Duration::from_secs(4)).await;

    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state, CircuitState::Open);
    assert_eq!(rejected.retry_after, Some(Duration::from_secs(6)));
    assert!(rejected.to_string().contains("Circuit breaker is open"));

    let rejected = breaker.check().unwrap_err();
    assert_eq!(rejected.retry_after, Some(Duration::from_secs(6)));
    assert_eq!(breaker.retry_after(), Some(Duration::from_secs(6)));

    let stats = breaker.stats();
    assert_eq!(stats.total_requests, 3);
    assert_eq!(stats.rejected_requests, 2);
    assert_eq!(stats.admitted_requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn elapsed_timeout_reads_as_half_open() {
    let breaker = CircuitBreaker::with_observer(config(1, 1), Counting::default()).unwrap();
    fail_n(&breaker, 1);
    advance(TIMEOUT - Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.stats().state, CircuitState::HalfOpen);
    assert_eq!(breaker.retry_after(), None);
    assert_eq!(
        breaker.observer().counts(),
        (1, 1, 0, 0),
        "on_half_open fires once"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_one_trial_at_a_time() {
    let breaker = breaker(1, 2);
    fail_n(&breaker, 1);
    advance(TIMEOUT).await;

    let trial = breaker.try_acquire().unwrap();
    assert!(trial.is_trial());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state, CircuitState::HalfOpen);
    assert_eq!(rejected.retry_after, None);
    assert!(rejected.to_string().contains("Circuit breaker is open"));

    // Dropping the trial frees the slot and records nothing.
    drop(trial);
    let stats = breaker.stats();
    assert_eq!(
        (
            stats.success_count,
            stats.total_successes,
            stats.total_failures
        ),
        (0, 0, 1)
    );
    let trial = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err());

    // A recorded success frees it too; the next trial may follow.
    trial.success();
    assert_eq!(breaker.stats().success_count, 1);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().success_count, 0);
}

#[test]
fn half_open_trial_is_granted_to_exactly_one_of_many_threads() {
    // Outside a runtime the breaker reads the real clock; a zero timeout
    // keeps the test free of waiting.
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        timeout: Duration::ZERO,
        ..config(1, 1)
    })
    .unwrap();
    breaker.trip();
    let threads = 8;
    let barrier = Barrier::new(threads);
    let granted = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let permit = breaker.try_acquire();
                if permit.is_ok() {
                    granted.fetch_add(1, Ordering::Relaxed);
                }
                // Every thread holds its result until all have tried.
                barrier.wait();
                drop(permit);
            });
        }
    });
    assert_eq!(granted.load(Ordering::Relaxed), 1);
    let stats = breaker.stats();
    assert_eq!(stats.rejected_requests, 7);
    assert_eq!(stats.state, CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_failure_reopens_and_restarts_the_timeout() {
    let breaker = breaker(2, 2);
    fail_n(&breaker, 2);
    advance(TIMEOUT).await;
    breaker.try_acquire().unwrap().success();
    advance(Duration::from_secs(3)).await;
    breaker.try_acquire().unwrap().failure();

    let stats = breaker.stats();
    assert_eq!(stats.state, CircuitState::Open);
    assert_eq!(stats.failure_count, 1);
    assert_eq!(stats.success_count, 0);
    assert_eq!(stats.times_opened, 2);
    assert_eq!(breaker.retry_after(), Some(TIMEOUT));
}

#[tokio::test(start_paused = true)]
async fn check_passes_in_half_open_without_taking_the_trial() {
    let breaker = breaker(1, 1);
    fail_n(&breaker, 1);
    advance(TIMEOUT).await;
    // `check` itself moves the elapsed circuit to HalfOpen.
    breaker.check().unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let trial = breaker.try_acquire().unwrap();
    breaker.check().unwrap();
    trial.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn trip_forces_open_and_restarts_the_timeout() {
    let breaker = CircuitBreaker::with_observer(config(5, 1), Counting::default()).unwrap();
    breaker.trip();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.retry_after(), Some(TIMEOUT));

    advance(Duration::from_secs(4)).await;
    breaker.trip();
    assert_eq!(breaker.retry_after(), Some(TIMEOUT));
    assert_eq!(
        breaker.stats().times_opened,
        1,
        "already Open: not a transition"
    );
    assert_eq!(breaker.observer().counts(), (1, 0, 0, 0));

    // Once the timeout has elapsed the circuit counts as HalfOpen, so a trip
    // re-opens it.
    advance(TIMEOUT).await;
    breaker.trip();
    assert_eq!(breaker.stats().times_opened, 2);
    assert_eq!(breaker.observer().counts(), (2, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn reset_closes_and_clears_the_current_counters_only() {
    let breaker = CircuitBreaker::with_observer(config(2, 1), Counting::default()).unwrap();
    fail_n(&breaker, 2);
    assert!(breaker.check().is_err());
    breaker.reset();
    let stats = breaker.stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.failure_count, stats.success_count), (0, 0));
    assert_eq!(
        (
            stats.total_failures,
            stats.rejected_requests,
            stats.times_opened
        ),
        (2, 1, 1)
    );
    assert_eq!(breaker.retry_after(), None);

    breaker.reset();
    assert_eq!(
        breaker.observer().counts(),
        (1, 0, 1, 1),
        "closing a Closed circuit is silent"
    );
}

#[tokio::test(start_paused = true)]
async fn outcomes_from_an_earlier_period_do_not_move_the_circuit() {
    let breaker = breaker(1, 1);
    let before_trip = breaker.try_acquire().unwrap();
    let before_trip_2 = breaker.try_acquire().unwrap();
    breaker.trip();
    advance(TIMEOUT).await;
    let trial = breaker.try_acquire().unwrap();
    // A straggler's success must not close the circuit...
    before_trip.success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    // ...nor its failure re-open it.
    before_trip_2.failure();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert!(breaker.try_acquire().is_err(), "the trial is still out");

    let stats = breaker.stats();
    assert_eq!((stats.total_successes, stats.total_failures), (1, 1));
    assert_eq!((stats.success_count, stats.failure_count), (0, 0));

    breaker.reset();
    // Dropping a trial from before the reset must not touch the new period.
    drop(trial);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn observer_sees_each_transition_and_rejection_once() {
    let observer = Arc::new(Counting::default());
    let breaker = CircuitBreaker::with_observer(config(1, 2), Arc::clone(&observer)).unwrap();

    fail_n(&breaker, 1); // open
    assert!(breaker.check().is_err()); // reject
    assert!(breaker.try_acquire().is_err()); // reject
    advance(TIMEOUT).await;
    let trial = breaker.try_acquire().unwrap(); // half-open
    assert!(breaker.try_acquire().is_err()); // reject
    trial.success();
    breaker.try_acquire().unwrap().success(); // close
    assert_eq!(observer.counts(), (1, 1, 1, 3));
    assert_eq!(breaker.stats().rejected_requests, 3);
}

/// Calls back into its breaker from every hook; that deadlocks or panics if
/// a hook runs with the breaker's lock held.
#[derive(Debug, Default)]
struct Reentrant {
    breaker: OnceLock<Weak<CircuitBreaker<Reentrant>>>,
    seen: AtomicUsize,
}

impl Reentrant {
    fn poke(&self) {
        if let Some(breaker) = self.breaker.get().and_then(Weak::upgrade) {
            let _ = breaker.stats();
            let _ = breaker.state();
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl CircuitObserver for Reentrant {
    fn on_open(&self) {
        self.poke();
    }
    fn on_half_open(&self) {
        self.poke();
    }
    fn on_close(&self) {
        self.poke();
    }
    fn on_reject(&self) {
        self.poke();
    }
}

#[tokio::test(start_paused = true)]
async fn observer_may_call_back_into_the_breaker() {
    let breaker =
        Arc::new(CircuitBreaker::with_observer(config(1, 1), Reentrant::default()).unwrap());
    breaker
        .observer()
        .breaker
        .set(Arc::downgrade(&breaker))
        .unwrap();

    fail_n(&breaker, 1); // open
    assert!(breaker.check().is_err()); // reject
    advance(TIMEOUT).await;
    breaker.try_acquire().unwrap().success(); // half-open, close
    breaker.trip(); // open
    breaker.reset(); // close
    assert_eq!(breaker.observer().seen.load(Ordering::Relaxed), 6);
}

#[tokio::test(start_paused = true)]
async fn call_records_the_outcome() {
    let breaker = breaker(2, 1);
    let value = breaker.call(async { Ok::<_, io::Error>(7) }).await.unwrap();
    assert_eq!(value, 7);

    let error = breaker
        .call(async { Err::<(), _>(io::Error::other("refused")) })
        .await
        .unwrap_err();
    assert!(matches!(&error, CallError::Inner(e) if e.to_string() == "refused"));
    let stats = breaker.stats();
    assert_eq!(
        (
            stats.total_successes,
            stats.total_failures,
            stats.failure_count
        ),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn rejected_call_does_not_poll_the_future() {
    let breaker = breaker(1, 1);
    breaker.trip();
    let polled = AtomicUsize::new(0);
    let error = breaker
        .call(async {
            polled.fetch_add(1, Ordering::Relaxed);
            Ok::<_, io::Error>(())
        })
        .await
        .unwrap_err();
    assert!(error.is_rejected());
    assert!(error.to_string().contains("Circuit breaker is open"));
    assert_eq!(polled.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelled_call_frees_the_half_open_trial() {
    let breaker = breaker(1, 1);
    breaker.trip();
    advance(TIMEOUT).await;

    let never = breaker.call(std::future::pending::<Result<(), io::Error>>());
    let timed_out = tokio::time::timeout(Duration::from_secs(1), never).await;
    assert!(timed_out.is_err());

    let stats = breaker.stats();
    assert_eq!(stats.state, CircuitState::HalfOpen);
    assert_eq!((stats.total_successes, stats.total_failures), (0, 0));
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn zero_timeout_allows_a_trial_at_once() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        timeout: Duration::ZERO,
        ..config(1, 1)
    })
    .unwrap();
    fail_n(&breaker, 1);
    assert_eq!(breaker.stats().times_opened, 1);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.retry_after(), None);
}

#[tokio::test(start_paused = true)]
async fn huge_timeout_saturates_instead_of_overflowing() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        timeout: Duration::MAX,
        ..config(1, 1)
    })
    .unwrap();
    breaker.trip();
    let year = Duration::from_secs(365 * 24 * 3600);
    advance(year).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    // Saturated at u64::MAX nanoseconds, about 584 years.
    assert!(breaker.retry_after().is_some_and(|left| left > year * 500));
    assert!(breaker.check().is_err());
}

#[test]
fn debug_output_does_not_require_a_debug_observer() {
    struct Opaque;
    impl CircuitObserver for Opaque {}
    let breaker = CircuitBreaker::with_observer(config(1, 1), Opaque).unwrap();
    let debug = format!("{breaker:?}");
    assert!(debug.contains("Closed"), "{debug}");
    let permit = breaker.try_acquire().unwrap();
    assert!(format!("{permit:?}").contains("trial: false"));
    permit.success();
}

#[tokio::test(start_paused = true)]
async fn owned_permits_travel_into_tasks_and_behave_like_permits() {
    let breaker = Arc::new(breaker(1, 1));
    let permit = breaker.try_acquire_owned().unwrap();
    assert!(!permit.is_trial());
    assert!(Arc::ptr_eq(permit.breaker(), &breaker));
    tokio::spawn(async move { permit.failure() }).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(
        breaker
            .try_acquire_owned()
            .unwrap_err()
            .retry_after
            .is_some()
    );

    advance(TIMEOUT).await;
    let trial = breaker.try_acquire_owned().unwrap();
    assert!(trial.is_trial());
    assert!(breaker.try_acquire_owned().is_err(), "one trial at a time");
    drop(trial);
    let trial = breaker.try_acquire_owned().unwrap();
    assert!(trial.is_trial(), "a dropped trial frees the trial");
    tokio::spawn(async move { trial.success() }).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}
