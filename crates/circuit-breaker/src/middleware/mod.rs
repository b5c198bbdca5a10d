//! The breaker as tower middleware (feature `tower`): [`CircuitBreakerLayer`]
//! wraps any [`tower::Service`] in a [`CircuitBreakerService`].

mod future;
mod policy;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

pub use self::future::ResponseFuture;
pub use self::policy::{ErrorsAreFailures, FailurePolicy};
use crate::breaker::Admission;
use crate::{CallError, CircuitBreaker, CircuitObserver, OwnedPermit, Rejected};

/// What [`poll_ready`](tower::Service::poll_ready) does while the breaker
/// would reject a request (Open, or HalfOpen with its trial taken).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WhenOpen {
    /// `poll_ready` returns ready without polling the inner service, and the
    /// next `call` fails at once with [`CallError::Rejected`], whose message
    /// contains `Circuit breaker is open`. The inner service is neither
    /// polled nor called. The default: a breaker exists to fail fast, and a
    /// caller awaiting readiness should not wait out the Open timeout.
    #[default]
    Reject,
    /// `poll_ready` returns `Pending` until the breaker admits a request:
    /// it wakes when the Open timeout elapses, when the half-open trial
    /// completes, or on [`trip`](CircuitBreaker::trip) /
    /// [`reset`](CircuitBreaker::reset). This is tower's own way of saying
    /// "not ready now", so tower's layers act on it: `load_shed` in front
    /// fails the excess at once (with its `Overloaded` error), and `buffer`
    /// holds requests until the trial.
    Wait,
}

/// A [`tower::Layer`] that puts a [`CircuitBreaker`] in front of a service.
///
/// Every service the layer wraps shares the one breaker (it is behind an
/// `Arc`), so its state and [`stats`](CircuitBreaker::stats) cover all of
/// them, and all clones of a service. Build it with [`new`](Self::new), then
/// set the [`FailurePolicy`] and [`WhenOpen`] if the defaults do not fit.
///
/// # Example
///
/// ```
/// use std::{error::Error, io, sync::Arc};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use watchtower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
///
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// # runtime.block_on(async {
/// let breaker = Arc::new(CircuitBreaker::new(CircuitBreakerConfig {
///     failure_threshold: 1,
///     ..Default::default()
/// })?);
/// let backend = service_fn(|_: &str| async { Err::<String, _>(io::Error::other("down")) });
/// let service = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)))
///     .service(backend);
///
/// // The first failure opens the circuit; the next call fails fast.
/// let failed = service.clone().oneshot("/").await.unwrap_err();
/// assert!(!failed.is_rejected());
/// let rejected = service.oneshot("/").await.unwrap_err();
/// assert!(rejected.to_string().contains("Circuit breaker is open"));
/// # Ok::<_, Box<dyn Error>>(())
/// # })?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct CircuitBreakerLayer<P = ErrorsAreFailures, O: CircuitObserver = ()> {
    breaker: Arc<CircuitBreaker<O>>,
    policy: Arc<P>,
    when_open: WhenOpen,
}

impl<O: CircuitObserver> CircuitBreakerLayer<ErrorsAreFailures, O> {
    /// A layer around `breaker` that counts every `Err` as a failure and
    /// rejects at once while the circuit is open ([`WhenOpen::Reject`]).
    pub fn new(breaker: Arc<CircuitBreaker<O>>) -> Self {
        Self {
            breaker,
            policy: Arc::new(ErrorsAreFailures),
            when_open: WhenOpen::Reject,
        }
    }
}

impl<P, O: CircuitObserver> CircuitBreakerLayer<P, O> {
    /// Replaces the [`FailurePolicy`]: which outcomes count as failures.
    /// A closure `Fn(&Result<Response, Error>) -> bool` works.
    #[must_use]
    pub fn failure_policy<Q>(self, policy: Q) -> CircuitBreakerLayer<Q, O> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            policy: Arc::new(policy),
            when_open: self.when_open,
        }
    }

    /// Sets what `poll_ready` does while the breaker would reject; see
    /// [`WhenOpen`]. Default: [`WhenOpen::Reject`].
    #[must_use]
    pub fn when_open(mut self, when_open: WhenOpen) -> Self {
        self.when_open = when_open;
        self
    }

    /// The shared breaker, to read its state and stats or to
    /// [`trip`](CircuitBreaker::trip) it.
    pub fn breaker(&self) -> &Arc<CircuitBreaker<O>> {
        &self.breaker
    }
}

impl<P, O: CircuitObserver> Clone for CircuitBreakerLayer<P, O> {
    fn clone(&self) -> Self {
        Self {
            breaker: Arc::clone(&self.breaker),
            policy: Arc::clone(&self.policy),
            when_open: self.when_open,
        }
    }
}

impl<P, O: CircuitObserver> fmt::Debug for CircuitBreakerLayer<P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker)
            .field("when_open", &self.when_open)
            .finish_non_exhaustive()
    }
}

impl<S, P, O: CircuitObserver> tower::Layer<S> for CircuitBreakerLayer<P, O> {
    type Service = CircuitBreakerService<S, P, O>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: Arc::clone(&self.breaker),
            policy: Arc::clone(&self.policy),
            when_open: self.when_open,
            slot: None,
            wait: Waiting::default(),
        }
    }
}

/// A [`tower::Service`] guarded by a [`CircuitBreaker`], from
/// [`CircuitBreakerLayer`].
///
/// - **Readiness.** `poll_ready` takes a permit from the breaker and holds
///   it until `call`, the way tower's `ConcurrencyLimit` holds a semaphore
///   permit, so under many concurrent callers exactly one holds the
///   half-open trial. Then it polls the inner service. While the breaker
///   would reject, it does what [`WhenOpen`] says: answer ready and reject
///   in `call` (the default), or stay `Pending` until the breaker admits.
///   Either way the inner service is not polled while the circuit is open.
///   The decision `poll_ready` took stands for the `call` that follows it
///   (as a permit counts as a request in [`stats`](CircuitBreaker::stats)
///   when it is taken).
/// - **Calls.** A rejected call resolves at once to
///   [`CallError::Rejected`] without calling the inner service. An admitted
///   call runs the inner service, and its outcome is recorded on the
///   breaker as the [`FailurePolicy`] classifies it. A permit that went
///   stale between `poll_ready` and `call` (the circuit opened meanwhile) is
///   swapped for a fresh decision, so the inner service is never called
///   while the circuit is open.
/// - **Errors** are [`CallError<S::Error>`]: matchable, never boxed. It
///   converts into tower's `BoxError` when `S::Error` is an
///   `std::error::Error + Send + Sync`, so tower's own layers can sit
///   outside this one. To put a layer whose error is already a `BoxError`
///   (such as `timeout`) inside, map its error to a concrete type first.
/// - **Clones** share the breaker and the policy; a clone starts without a
///   permit.
///
/// Cancellation is safe: dropping the service or a response future drops
/// its permit unrecorded, which frees the half-open trial.
pub struct CircuitBreakerService<S, P = ErrorsAreFailures, O: CircuitObserver = ()> {
    inner: S,
    breaker: Arc<CircuitBreaker<O>>,
    policy: Arc<P>,
    when_open: WhenOpen,
    /// The breaker's decision, taken by `poll_ready` and used by `call`.
    slot: Option<Slot<O>>,
    /// What a [`WhenOpen::Wait`] service waits on while not admitted.
    wait: Waiting,
}

/// A decision of the breaker held between `poll_ready` and `call`.
enum Slot<O: CircuitObserver> {
    Admitted(OwnedPermit<O>),
    Rejected(Rejected),
}

/// The wake-ups of a waiting `poll_ready`: the end of the Open timeout, and
/// the breaker's "released" signal (a transition or a freed trial).
#[derive(Default)]
struct Waiting {
    timer: Option<Pin<Box<Sleep>>>,
    released: Option<Pin<Box<OwnedNotified>>>,
}

impl<S, P, O: CircuitObserver> CircuitBreakerService<S, P, O> {
    /// The shared breaker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker<O>> {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, dropping the breaker's hold on it.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// [`WhenOpen::Wait`]: polls until the breaker grants a permit.
    fn poll_admitted(&mut self, cx: &mut Context<'_>) -> Poll<OwnedPermit<O>> {
        loop {
            // Register for the release signal before looking at the state, so
            // that a release between the two is not missed.
            let released = self.wait.released.get_or_insert_with(|| {
                Box::pin(Arc::clone(self.breaker.released()).notified_owned())
            });
            released.as_mut().enable();
            match self.breaker.admission() {
                Admission::Admit => match self.breaker.try_acquire_owned() {
                    Ok(permit) => {
                        self.wait = Waiting::default();
                        return Poll::Ready(permit);
                    }
                    // Another caller took the trial in between: wait for it.
                    Err(_) => continue,
                },
                Admission::OpenFor(left) => {
                    let deadline = Instant::now() + left;
                    let timer = match &mut self.wait.timer {
                        Some(timer) => {
                            timer.as_mut().reset(deadline);
                            timer
                        }
                        None => self
                            .wait
                            .timer
                            .insert(Box::pin(tokio::time::sleep_until(deadline))),
                    };
                    if timer.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                }
                Admission::TrialInFlight => {}
            }
            if let Some(released) = &mut self.wait.released
                && released.as_mut().poll(cx).is_ready()
            {
                self.wait.released = None;
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl<S: Clone, P, O: CircuitObserver> Clone for CircuitBreakerService<S, P, O> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: Arc::clone(&self.breaker),
            policy: Arc::clone(&self.policy),
            when_open: self.when_open,
            slot: None,
            wait: Waiting::default(),
        }
    }
}

impl<S: fmt::Debug, P, O: CircuitObserver> fmt::Debug for CircuitBreakerService<S, P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = match &self.slot {
            None => "none",
            Some(Slot::Admitted(_)) => "admitted",
            Some(Slot::Rejected(_)) => "rejected",
        };
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field("when_open", &self.when_open)
            .field("slot", &slot)
            .finish_non_exhaustive()
    }
}

impl<S, P, O, Request> tower::Service<Request> for CircuitBreakerService<S, P, O>
where
    S: tower::Service<Request>,
    P: FailurePolicy<S::Response, S::Error>,
    O: CircuitObserver,
{
    type Response = S::Response;
    type Error = CallError<S::Error>;
    type Future = ResponseFuture<S::Future, P, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.slot.is_none() {
            let slot = match self.when_open {
                WhenOpen::Reject => match self.breaker.try_acquire_owned() {
                    Ok(permit) => Slot::Admitted(permit),
                    Err(rejected) => Slot::Rejected(rejected),
                },
                WhenOpen::Wait => Slot::Admitted(ready!(self.poll_admitted(cx))),
            };
            self.slot = Some(slot);
        }
        if let Some(Slot::Rejected(_)) = self.slot {
            // Ready to answer at once, with the rejection.
            return Poll::Ready(Ok(()));
        }
        match ready!(self.inner.poll_ready(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(error) => {
                // A broken inner service: give the permit back unrecorded.
                self.slot = None;
                Poll::Ready(Err(CallError::Inner(error)))
            }
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let permit = match self.slot.take() {
            Some(Slot::Admitted(permit)) if permit.is_current() => Ok(permit),
            Some(Slot::Rejected(rejected)) => Err(rejected),
            // Stale (the circuit changed state since `poll_ready`), or
            // `call` without `poll_ready`: decide now.
            Some(Slot::Admitted(_)) | None => self.breaker.try_acquire_owned(),
        };
        match permit {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(request), permit, Arc::clone(&self.policy))
            }
            Err(rejected) => ResponseFuture::rejected(rejected, Arc::clone(&self.policy)),
        }
    }
}
