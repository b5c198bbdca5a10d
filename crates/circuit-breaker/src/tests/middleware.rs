//! The tower middleware (feature `tower`): fail fast while open, one trial
//! under concurrent callers, recovery, readiness, and composition with
//! tower's own layers. Every test runs on a paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{Instant, advance, sleep};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use super::TIMEOUT;
use crate::{
    CallError, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, WhenOpen,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend failed")]
struct BackendError;

/// A backend that fails on demand, takes `latency` per call and records
/// what it saw.
#[derive(Debug, Default)]
struct Backend {
    failing: AtomicBool,
    latency_ms: AtomicU64,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Backend {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// The backend as a tower service echoing its request.
    fn service(
        self: &Arc<Self>,
    ) -> impl Service<u32, Response = u32, Error = BackendError, Future: Send> + Clone + Send + 'static
    {
        let backend = Arc::clone(self);
        service_fn(move |request: u32| {
            let backend = Arc::clone(&backend);
            async move {
                backend.calls.fetch_add(1, Ordering::SeqCst);
                let now = backend.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                backend.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let latency = backend.latency_ms.load(Ordering::SeqCst);
                if latency > 0 {
                    sleep(Duration::from_millis(latency)).await;
                }
                backend.in_flight.fetch_sub(1, Ordering::SeqCst);
                if backend.failing.load(Ordering::SeqCst) {
                    Err(BackendError)
                } else {
                    Ok(request)
                }
            }
        })
    }
}

fn shared_breaker(failure_threshold: u32, success_threshold: u32) -> Arc<CircuitBreaker> {
    Arc::new(
        CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold,
            timeout: TIMEOUT,
            success_threshold,
        })
        .unwrap(),
    )
}

/// Sends one request per caller, all at once, and waits for every answer.
async fn wave<S>(service: &S, callers: u32) -> Vec<Result<u32, CallError<BackendError>>>
where
    S: Service<u32, Response = u32, Error = CallError<BackendError>> + Clone + Send + 'static,
    S::Future: Send,
{
    let tasks: Vec<_> = (0..callers)
        .map(|request| tokio::spawn(service.clone().oneshot(request)))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn count(results: &[Result<u32, CallError<BackendError>>]) -> (usize, usize, usize) {
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let rejected = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.is_rejected()))
        .count();
    let failed = results
        .iter()
        .filter(|r| matches!(r, Err(CallError::Inner(_))))
        .count();
    (ok, rejected, failed)
}

#[tokio::test(start_paused = true)]
async fn open_rejects_without_calling_the_inner_service() {
    let backend = Backend::new();
    let breaker = shared_breaker(3, 1);
    let mut service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(backend.service());

    backend.set_failing(true);
    for request in 0..3 {
        let error = service.ready().await.unwrap().call(request).await;
        assert_eq!(error, Err(CallError::Inner(BackendError)));
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(backend.calls(), 3);

    for request in 0..100 {
        let error = service
            .ready()
            .await
            .unwrap()
            .call(request)
            .await
            .unwrap_err();
        assert!(error.is_rejected());
        assert!(
            error.to_string().contains("Circuit breaker is open"),
            "{error}"
        );
    }
    assert_eq!(backend.calls(), 3, "no inner call while open");
    let stats = breaker.stats();
    assert_eq!((stats.total_requests, stats.rejected_requests), (103, 100));
}

#[tokio::test(start_paused = true)]
async fn many_callers_fail_then_recover_with_exactly_one_trial_at_a_time() {
    const CALLERS: u32 = 64;
    let backend = Backend::new();
    let breaker = shared_breaker(5, 2);
    let service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(backend.service());

    // Closed, healthy: everyone gets through, concurrently.
    backend.set_latency(Duration::from_millis(100));
    assert_eq!(count(&wave(&service, CALLERS).await), (64, 0, 0));
    assert_eq!(backend.max_in_flight(), 64);

    // The backend goes down: the admitted wave fails and opens the circuit.
    backend.set_failing(true);
    assert_eq!(count(&wave(&service, CALLERS).await), (0, 0, 64));
    assert_eq!(breaker.state(), CircuitState::Open);
    let calls = backend.calls();

    // Open: every caller is rejected at once, the backend sees nothing, and
    // no virtual time passes.
    let start = Instant::now();
    assert_eq!(count(&wave(&service, CALLERS).await), (0, 64, 0));
    advance(TIMEOUT - Duration::from_millis(1)).await;
    assert_eq!(count(&wave(&service, CALLERS).await), (0, 64, 0));
    assert_eq!(backend.calls(), calls, "no inner call while open");
    assert_eq!(start.elapsed(), TIMEOUT - Duration::from_millis(1));

    // Still down when the timeout elapses: exactly one trial goes through,
    // fails, and re-opens the circuit.
    advance(Duration::from_millis(1)).await;
    backend.set_latency(Duration::from_secs(1));
    assert_eq!(count(&wave(&service, CALLERS).await), (0, 63, 1));
    assert_eq!(backend.calls(), calls + 1);
    assert_eq!(breaker.state(), CircuitState::Open);

    // Recovered: after the (restarted) timeout, one trial per wave until
    // `success_threshold` trials succeeded...
    backend.set_failing(false);
    backend.in_flight.store(0, Ordering::SeqCst);
    backend.max_in_flight.store(0, Ordering::SeqCst);
    advance(TIMEOUT).await;
    assert_eq!(count(&wave(&service, CALLERS).await), (1, 63, 0));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(count(&wave(&service, CALLERS).await), (1, 63, 0));
    assert_eq!(backend.max_in_flight(), 1, "one trial at a time");
    assert_eq!(backend.calls(), calls + 3);

    // ...then the circuit is closed and everyone gets through again.
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(count(&wave(&service, CALLERS).await), (64, 0, 0));
    assert_eq!(backend.calls(), calls + 3 + 64);
    let stats = breaker.stats();
    assert_eq!(stats.times_opened, 2);
    assert_eq!(stats.rejected_requests, 64 * 2 + 63 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trial_among_callers_racing_on_many_threads() {
    // No paused clock: a multi-threaded runtime really races the callers. A
    // zero timeout makes the tripped circuit half-open at once, and the
    // trial holds until every other caller has had its answer.
    const CALLERS: usize = 32;
    let breaker = Arc::new(
        CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: 1,
            timeout: Duration::ZERO,
            success_threshold: 1,
        })
        .unwrap(),
    );
    breaker.trip();
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let inner = {
        let (calls, release) = (Arc::clone(&calls), Arc::clone(&release));
        service_fn(move |request: usize| {
            let (calls, release) = (Arc::clone(&calls), Arc::clone(&release));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                Ok::<_, BackendError>(request)
            }
        })
    };
    let service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(inner);

    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    for request in 0..CALLERS {
        let (service, answers) = (service.clone(), answers.clone());
        tokio::spawn(async move {
            answers.send(service.oneshot(request).await).unwrap();
        });
    }
    for _ in 1..CALLERS {
        let answer = answered.recv().await.unwrap();
        assert!(answer.unwrap_err().is_rejected());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one trial");
    release.notify_one();
    assert!(answered.recv().await.unwrap().is_ok());
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().rejected_requests, CALLERS as u64 - 1);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_is_pending_while_open_and_ready_when_the_trial_is_allowed() {
    let backend = Backend::new();
    let breaker = shared_breaker(1, 1);
    let layer = CircuitBreakerLayer::new(Arc::clone(&breaker)).when_open(WhenOpen::Wait);
    let mut service = layer.layer(backend.service());

    backend.set_failing(true);
    let _ = service.ready().await.unwrap().call(1).await;
    assert_eq!(breaker.state(), CircuitState::Open);

    // Not ready for as long as the circuit is open...
    let opened = Instant::now();
    let early = tokio::time::timeout(TIMEOUT - Duration::from_millis(1), service.ready()).await;
    assert!(early.is_err(), "ready before the timeout elapsed");
    // ...and ready, holding the trial, once it has elapsed.
    backend.set_failing(false);
    service.ready().await.unwrap();
    assert_eq!(opened.elapsed(), TIMEOUT);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(backend.calls(), 1, "readiness does not call the backend");

    // A second handle waits while the first holds the trial, and is woken
    // when the trial succeeds and closes the circuit.
    let mut other = service.clone();
    let waiting = tokio::spawn(async move {
        other.ready().await.unwrap();
        Instant::now()
    });
    backend.set_latency(Duration::from_secs(2));
    let trial_started = Instant::now();
    assert_eq!(service.call(7).await, Ok(7));
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        waiting.await.unwrap() - trial_started,
        Duration::from_secs(2)
    );
}

#[tokio::test(start_paused = true)]
async fn wait_mode_wakes_on_reset() {
    let backend = Backend::new();
    let breaker = shared_breaker(1, 1);
    let mut service = CircuitBreakerLayer::new(Arc::clone(&breaker))
        .when_open(WhenOpen::Wait)
        .layer(backend.service());
    breaker.trip();
    let resetter = {
        let breaker = Arc::clone(&breaker);
        tokio::spawn(async move {
            sleep(Duration::from_secs(1)).await;
            breaker.reset();
        })
    };
    let start = Instant::now();
    service.ready().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    resetter.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_permit_gone_stale_before_call_is_decided_again() {
    let backend = Backend::new();
    let breaker = shared_breaker(1, 1);
    let mut service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(backend.service());

    // Ready while closed, then the circuit opens before `call`.
    service.ready().await.unwrap();
    breaker.trip();
    let error = service.call(1).await.unwrap_err();
    assert!(error.is_rejected());
    assert_eq!(backend.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_trial_response_frees_the_trial() {
    let backend = Backend::new();
    let breaker = shared_breaker(1, 1);
    let mut service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(backend.service());
    breaker.trip();
    advance(TIMEOUT).await;

    backend.set_latency(Duration::from_secs(5));
    let trial = service.ready().await.unwrap().call(1);
    let cancelled = tokio::time::timeout(Duration::from_secs(1), trial).await;
    assert!(cancelled.is_err(), "the trial was cut short");
    assert_eq!(breaker.state(), CircuitState::HalfOpen);

    // The next caller gets the trial, and its success closes the circuit.
    backend.set_latency(Duration::ZERO);
    assert_eq!(service.ready().await.unwrap().call(2).await, Ok(2));
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(backend.calls(), 2);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Status(u16);

#[tokio::test(start_paused = true)]
async fn the_failure_policy_decides_what_counts() {
    let breaker = shared_breaker(2, 1);
    // An HTTP-like backend: 5xx responses are failures, though they are `Ok`;
    // a "not found" error means the backend is up, so it is a success.
    let inner = service_fn(|path: &'static str| async move {
        match path {
            "/missing" => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            "/broken" => Ok(Status(503)),
            _ => Ok(Status(200)),
        }
    });
    let mut service = CircuitBreakerLayer::new(Arc::clone(&breaker))
        .failure_policy(|outcome: &Result<Status, std::io::Error>| match outcome {
            Ok(Status(code)) => *code >= 500,
            Err(error) => error.kind() != std::io::ErrorKind::NotFound,
        })
        .layer(inner);

    for _ in 0..5 {
        let error = service.ready().await.unwrap().call("/missing").await;
        assert!(matches!(error, Err(CallError::Inner(_))));
    }
    assert_eq!(breaker.stats().total_failures, 0);
    assert_eq!(breaker.state(), CircuitState::Closed);

    for _ in 0..2 {
        let answer = service.ready().await.unwrap().call("/broken").await;
        assert_eq!(
            answer.unwrap(),
            Status(503),
            "the response still reaches the caller"
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let error = service.ready().await.unwrap().call("/").await.unwrap_err();
    assert!(error.is_rejected());
}

#[tokio::test(start_paused = true)]
async fn composes_with_buffer_concurrency_limit_and_timeout() {
    let backend = Backend::new();
    let breaker = shared_breaker(2, 1);
    let service = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .buffer(16)
        .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)))
        .concurrency_limit(4)
        .service(backend.service());

    backend.set_latency(Duration::from_millis(10));
    for request in 0..8 {
        assert_eq!(service.clone().oneshot(request).await.unwrap(), request);
    }

    backend.set_failing(true);
    for _ in 0..2 {
        let error: BoxError = service.clone().oneshot(0).await.unwrap_err();
        let error = error.downcast::<CallError<BackendError>>().unwrap();
        assert_eq!(*error, CallError::Inner(BackendError));
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    // Through tower's boxed errors the rejection is still typed and matchable.
    let error = service.clone().oneshot(0).await.unwrap_err();
    assert!(error.to_string().contains("Circuit breaker is open"));
    let error = error.downcast::<CallError<BackendError>>().unwrap();
    assert!(error.is_rejected());
    assert_eq!(backend.calls(), 10);

    backend.set_failing(false);
    advance(TIMEOUT).await;
    assert_eq!(service.clone().oneshot(9).await.unwrap(), 9);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn load_shed_sheds_while_a_waiting_breaker_is_open() {
    let backend = Backend::new();
    let breaker = shared_breaker(1, 1);
    let mut service = ServiceBuilder::new()
        .load_shed()
        .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)).when_open(WhenOpen::Wait))
        .service(backend.service());

    assert_eq!(service.ready().await.unwrap().call(1).await.unwrap(), 1);
    breaker.trip();
    let error = service.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(error.is::<tower::load_shed::error::Overloaded>(), "{error}");
    assert_eq!(backend.calls(), 1);

    advance(TIMEOUT).await;
    assert_eq!(service.ready().await.unwrap().call(3).await.unwrap(), 3);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn buffer_holds_requests_while_a_waiting_breaker_is_open() {
    let backend = Backend::new();
    let breaker = shared_breaker(1, 1);
    let service = ServiceBuilder::new()
        .buffer(8)
        .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)).when_open(WhenOpen::Wait))
        .service(backend.service());
    breaker.trip();
    let opened = Instant::now();

    let tasks: Vec<_> = (0..4)
        .map(|request| {
            let service = service.clone();
            tokio::spawn(async move {
                let answer = service.oneshot(request).await;
                (answer.map_err(|e| e.to_string()), Instant::now())
            })
        })
        .collect();
    for (request, task) in (0..).zip(tasks) {
        let (answer, answered) = task.await.unwrap();
        assert_eq!(answer, Ok(request));
        assert!(answered - opened >= TIMEOUT, "answered while open");
    }
    assert_eq!(backend.calls(), 4);
    assert_eq!(breaker.stats().rejected_requests, 0, "nobody was rejected");
}

#[tokio::test(start_paused = true)]
async fn wait_mode_wakes_when_a_trial_ends_without_a_transition() {
    // Two successes needed: the first trial's success frees the trial but
    // leaves the circuit half-open, and so does a cancelled trial.
    let backend = Backend::new();
    let breaker = shared_breaker(1, 2);
    let mut first = CircuitBreakerLayer::new(Arc::clone(&breaker))
        .when_open(WhenOpen::Wait)
        .layer(backend.service());
    breaker.trip();
    advance(TIMEOUT).await;
    backend.set_latency(Duration::from_secs(1));

    // `first` holds the trial; `second` waits for it.
    first.ready().await.unwrap();
    let mut second = first.clone();
    let waiting = tokio::spawn(async move {
        second.ready().await.unwrap();
        (Instant::now(), second)
    });
    let start = Instant::now();
    assert_eq!(first.call(1).await, Ok(1));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let (woken, mut second) = within_a_minute(waiting).await;
    assert_eq!(woken - start, Duration::from_secs(1));

    // Now `second` holds the trial; `first` waits, and is woken when the
    // trial is cancelled.
    let waiting = tokio::spawn(async move {
        first.ready().await.unwrap();
        Instant::now()
    });
    let start = Instant::now();
    let cut = tokio::time::timeout(Duration::from_millis(300), second.call(2)).await;
    assert!(cut.is_err());
    assert_eq!(
        within_a_minute(waiting).await - start,
        Duration::from_millis(300)
    );
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

/// A task's output, failing the test (rather than hanging it) if the task
/// is not done within a minute of virtual time.
async fn within_a_minute<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the waiting caller was never woken")
        .unwrap()
}
