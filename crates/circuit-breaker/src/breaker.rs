use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::{
    CallError, CircuitBreakerConfig, CircuitBreakerStats, CircuitObserver, CircuitState,
    ConfigError, Rejected,
};

/// A circuit breaker: lets requests through while the protected thing works,
/// fails them fast while it does not, and probes for recovery.
///
/// `Send + Sync`; share it behind an `Arc`. See the [crate docs](crate) for
/// the state machine. Reads tokio's clock, so a paused tokio clock drives it
/// in tests; create and use a breaker under the same clock.
pub struct CircuitBreaker<O = ()> {
    config: CircuitBreakerConfig,
    observer: O,
    /// `config.timeout` in nanoseconds, saturated.
    timeout_nanos: u64,
    /// The origin of the nanosecond timestamps below.
    epoch: Instant,
    /// The state (low bits) and the generation, bumped on every transition so
    /// that permits from an earlier period cannot move the current one (it
    /// wraps after 2^62 transitions, which no permit outlives). Written only with `counters` locked; read lock-free on the hot path.
    packed: AtomicU64,
    /// While Open: when a trial is allowed, in nanoseconds since `epoch`.
    /// Written only with `counters` locked.
    open_until: AtomicU64,
    /// Atomics rather than `counters` so that `check` takes no lock while
    /// Closed. `rejected_requests` is incremented (Release) after
    /// `total_requests` and loaded (Acquire) before it, so a snapshot never
    /// shows more rejections than requests.
    total_requests: AtomicU64,
    rejected_requests: AtomicU64,
    counters: Mutex<Counters>,
    /// Wakes tower services waiting for the circuit to admit a request: signalled
    /// on every transition and whenever the half-open trial is released.
    #[cfg(feature = "tower")]
    released: Arc<tokio::sync::Notify>,
}

/// Whether the breaker would admit a request now, without taking a permit or
/// counting a request; see [`CircuitBreaker::admission`].
#[cfg(feature = "tower")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed, or HalfOpen with the trial free.
    Admit,
    /// Open, with this long until a trial is allowed.
    OpenFor(Duration),
    /// HalfOpen, and the trial is taken.
    TrialInFlight,
}

/// The slow-path state, guarded by the mutex.
#[derive(Debug, Default)]
struct Counters {
    failure_count: u32,
    success_count: u32,
    /// Whether the single half-open trial permit is out.
    trial_in_flight: bool,
    total_successes: u64,
    total_failures: u64,
    times_opened: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    state: CircuitState,
    generation: u64,
}

const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

impl Snapshot {
    fn pack(self) -> u64 {
        let state = match self.state {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        };
        (self.generation << STATE_BITS) | state
    }

    fn unpack(packed: u64) -> Self {
        let state = match packed & STATE_MASK {
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        };
        Self {
            state,
            generation: packed >> STATE_BITS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// The permit was dropped without recording.
    Abandoned,
}

impl CircuitBreaker<()> {
    /// Creates a Closed breaker with no observer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when [`CircuitBreakerConfig::validate`] fails.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Self::with_observer(config, ())
    }
}

impl<O: CircuitObserver> CircuitBreaker<O> {
    /// Creates a Closed breaker that reports transitions and rejections to
    /// `observer`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when [`CircuitBreakerConfig::validate`] fails.
    pub fn with_observer(config: CircuitBreakerConfig, observer: O) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            timeout_nanos: saturating_nanos(config.timeout),
            config,
            observer,
            epoch: Instant::now(),
            packed: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            rejected_requests: AtomicU64::new(0),
            counters: Mutex::new(Counters::default()),
            #[cfg(feature = "tower")]
            released: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The config the breaker was built with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// The observer the breaker reports to.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// Asks to run one request whose outcome will be recorded, such as a
    /// connection attempt.
    ///
    /// Counts a request. Closed: always granted, without taking a lock.
    /// Open: rejected, unless the timeout has elapsed, in which case the
    /// circuit moves to HalfOpen and this caller gets the trial permit.
    /// HalfOpen: one trial permit at a time; others are rejected until it is
    /// recorded or dropped.
    ///
    /// Record the outcome with [`Permit::success`] or [`Permit::failure`].
    ///
    /// # Errors
    ///
    /// [`Rejected`] (counted, and reported to the observer) when the circuit
    /// is Open or the half-open trial is taken.
    pub fn try_acquire(&self) -> Result<Permit<'_, O>, Rejected> {
        let grant = self.grant()?;
        Ok(Permit {
            breaker: self,
            grant,
        })
    }

    /// [`try_acquire`](Self::try_acquire) for a breaker behind an `Arc`: the
    /// permit holds a clone of the `Arc`, so it can move into a spawned task
    /// or a `'static` future (the tower middleware uses it).
    ///
    /// # Errors
    ///
    /// [`Rejected`] (counted, and reported to the observer) when the circuit
    /// is Open or the half-open trial is taken.
    pub fn try_acquire_owned(self: &Arc<Self>) -> Result<OwnedPermit<O>, Rejected> {
        let grant = self.grant()?;
        Ok(OwnedPermit {
            breaker: Arc::clone(self),
            grant,
        })
    }

    /// The decision behind both `try_acquire`s.
    fn grant(&self) -> Result<Grant, Rejected> {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        let snapshot = self.load();
        if snapshot.state == CircuitState::Closed {
            return Ok(Grant::new(snapshot.generation, false));
        }
        let now = self.now_nanos();
        if let Some(rejected) = self.reject_while_open(snapshot, now) {
            return Err(self.reject(rejected));
        }

        let (granted, half_opened) = {
            let mut counters = self.lock();
            let half_opened = self.refresh_locked(&mut counters, now);
            let snapshot = self.load();
            let granted = match snapshot.state {
                CircuitState::Closed => Ok(Grant::new(snapshot.generation, false)),
                CircuitState::HalfOpen if !counters.trial_in_flight => {
                    counters.trial_in_flight = true;
                    Ok(Grant::new(snapshot.generation, true))
                }
                CircuitState::HalfOpen => Err(Rejected::new(CircuitState::HalfOpen, None)),
                CircuitState::Open => Err(Rejected::new(CircuitState::Open, self.time_left(now))),
            };
            (granted, half_opened)
        };
        self.notify(half_opened);
        granted.map_err(|rejected| self.reject(rejected))
    }

    /// Whether a request would be admitted now, without counting one or
    /// taking a permit. Applies an elapsed Open timeout, as
    /// [`state`](Self::state) does.
    #[cfg(feature = "tower")]
    pub(crate) fn admission(&self) -> Admission {
        let now = self.now_nanos();
        let (admission, half_opened) = {
            let mut counters = self.lock();
            let half_opened = self.refresh_locked(&mut counters, now);
            let admission = match self.load().state {
                CircuitState::Closed => Admission::Admit,
                CircuitState::HalfOpen if !counters.trial_in_flight => Admission::Admit,
                CircuitState::HalfOpen => Admission::TrialInFlight,
                CircuitState::Open => {
                    Admission::OpenFor(self.time_left(now).unwrap_or(Duration::ZERO))
                }
            };
            (admission, half_opened)
        };
        self.notify(half_opened);
        admission
    }

    /// The `Notify` signalled on every transition and whenever the half-open
    /// trial is released.
    #[cfg(feature = "tower")]
    pub(crate) fn released(&self) -> &Arc<tokio::sync::Notify> {
        &self.released
    }

    /// Whether a permit granted in `generation` still belongs to the current
    /// period (no transition, trip or reset since).
    #[cfg(feature = "tower")]
    fn is_current(&self, generation: u64) -> bool {
        self.load().generation == generation
    }

    /// Gates one request whose outcome is not recorded, such as a publish
    /// into a queue. This is the hot path: while Closed it is two atomic
    /// operations and takes no lock.
    ///
    /// Counts a request. `Ok` while Closed or HalfOpen; it never takes the
    /// half-open trial permit, so unrecorded requests flow while one trial
    /// decides. While Open it fails fast, until the timeout has elapsed:
    /// then it moves the circuit to HalfOpen (as [`state`](Self::state)
    /// would) and returns `Ok`.
    ///
    /// # Errors
    ///
    /// [`Rejected`] (counted, and reported to the observer) while Open.
    pub fn check(&self) -> Result<(), Rejected> {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        let snapshot = self.load();
        if snapshot.state != CircuitState::Open {
            return Ok(());
        }
        let now = self.now_nanos();
        if let Some(rejected) = self.reject_while_open(snapshot, now) {
            return Err(self.reject(rejected));
        }
        match self.refresh_at(now).state {
            CircuitState::Open => {
                Err(self.reject(Rejected::new(CircuitState::Open, self.time_left(now))))
            }
            CircuitState::Closed | CircuitState::HalfOpen => Ok(()),
        }
    }

    /// Runs `fut` under a permit: acquires one, awaits the future and
    /// records `Ok` as a success and `Err` as a failure.
    ///
    /// No lock is held across the `.await`. If the returned future is
    /// dropped before `fut` completes, the permit is dropped unrecorded (see
    /// [`Permit`]), so cancellation frees the half-open trial.
    ///
    /// # Errors
    ///
    /// [`CallError::Rejected`] without polling `fut` when
    /// [`try_acquire`](Self::try_acquire) is rejected;
    /// [`CallError::Inner`] with `fut`'s error when it fails.
    pub async fn call<F, T, E>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire()?;
        match fut.await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(error) => {
                permit.failure();
                Err(CallError::Inner(error))
            }
        }
    }

    /// The current state.
    ///
    /// An Open circuit whose timeout has elapsed is moved to HalfOpen here
    /// (firing `on_half_open`) and reported as such: the Open to HalfOpen
    /// transition happens lazily, when the breaker is first used or
    /// observed after the timeout, as no timer task runs in the background.
    pub fn state(&self) -> CircuitState {
        self.refresh().state
    }

    /// A snapshot of the state and counters, after applying an elapsed Open
    /// timeout as [`state`](Self::state) does.
    pub fn stats(&self) -> CircuitBreakerStats {
        let now = self.now_nanos();
        let (stats, half_opened) = {
            let mut counters = self.lock();
            let half_opened = self.refresh_locked(&mut counters, now);
            let rejected_requests = self.rejected_requests.load(Ordering::Acquire);
            let stats = CircuitBreakerStats {
                state: self.load().state,
                failure_count: counters.failure_count,
                success_count: counters.success_count,
                total_requests: self.total_requests.load(Ordering::Relaxed),
                rejected_requests,
                total_successes: counters.total_successes,
                total_failures: counters.total_failures,
                times_opened: counters.times_opened,
            };
            (stats, half_opened)
        };
        self.notify(half_opened);
        stats
    }

    /// Forces the circuit Open now, e.g. when a caller's own retries are
    /// exhausted.
    ///
    /// From Closed or HalfOpen this is a transition: `times_opened` grows and
    /// `on_open` fires. If already Open it only restarts the timeout (an Open
    /// circuit whose timeout has elapsed counts as HalfOpen, so it re-opens).
    /// Outcomes of permits granted before the trip are then ignored.
    pub fn trip(&self) {
        let now = self.now_nanos();
        let transitions = {
            let mut counters = self.lock();
            let half_opened = self.refresh_locked(&mut counters, now);
            let opened = if self.load().state == CircuitState::Open {
                self.open_until
                    .store(now.saturating_add(self.timeout_nanos), Ordering::Relaxed);
                None
            } else {
                Some(self.transition(&mut counters, CircuitState::Open, now))
            };
            [half_opened, opened]
        };
        for transition in transitions {
            self.notify(transition);
        }
    }

    /// Forces the circuit Closed and clears `failure_count` and
    /// `success_count`; the lifetime totals are kept. `on_close` fires unless
    /// it was already Closed. Outcomes of permits granted before the reset
    /// are then ignored.
    pub fn reset(&self) {
        let now = self.now_nanos();
        let closed = {
            let mut counters = self.lock();
            let was_closed = self.load().state == CircuitState::Closed;
            let closed = self.transition(&mut counters, CircuitState::Closed, now);
            (!was_closed).then_some(closed)
        };
        self.notify(closed);
    }

    /// While Open, the time left until a half-open trial is allowed; `None`
    /// in any other state.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.refresh().state {
            CircuitState::Open => self.time_left(self.now_nanos()),
            CircuitState::Closed | CircuitState::HalfOpen => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // Nothing panics while the lock is held (observers run outside it),
        // so a poisoned lock still guards consistent data.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn load(&self) -> Snapshot {
        Snapshot::unpack(self.packed.load(Ordering::Acquire))
    }

    fn now_nanos(&self) -> u64 {
        saturating_nanos(Instant::now().saturating_duration_since(self.epoch))
    }

    /// Time left on the Open timeout, or `None` once it has elapsed.
    fn time_left(&self, now: u64) -> Option<Duration> {
        let until = self.open_until.load(Ordering::Relaxed);
        (now < until).then(|| Duration::from_nanos(until - now))
    }

    /// The lock-free rejection: Open and the timeout has not elapsed.
    fn reject_while_open(&self, snapshot: Snapshot, now: u64) -> Option<Rejected> {
        if snapshot.state != CircuitState::Open {
            return None;
        }
        let left = self.time_left(now)?;
        Some(Rejected::new(CircuitState::Open, Some(left)))
    }

    fn reject(&self, rejected: Rejected) -> Rejected {
        self.rejected_requests.fetch_add(1, Ordering::Release);
        self.observer.on_reject();
        rejected
    }

    /// Applies an elapsed Open timeout; lock-free unless it has elapsed.
    fn refresh(&self) -> Snapshot {
        let snapshot = self.load();
        if snapshot.state != CircuitState::Open {
            return snapshot;
        }
        let now = self.now_nanos();
        if self.time_left(now).is_some() {
            return snapshot;
        }
        self.refresh_at(now)
    }

    fn refresh_at(&self, now: u64) -> Snapshot {
        let (snapshot, half_opened) = {
            let mut counters = self.lock();
            let half_opened = self.refresh_locked(&mut counters, now);
            (self.load(), half_opened)
        };
        self.notify(half_opened);
        snapshot
    }

    /// Moves an Open circuit whose timeout has elapsed to HalfOpen.
    fn refresh_locked(&self, counters: &mut Counters, now: u64) -> Option<CircuitState> {
        let open = self.load().state == CircuitState::Open;
        (open && self.time_left(now).is_none())
            .then(|| self.transition(counters, CircuitState::HalfOpen, now))
    }

    /// Enters `to`, starting a new generation. Call with the lock held; the
    /// caller passes the returned state to [`notify`](Self::notify) after
    /// releasing it.
    fn transition(&self, counters: &mut Counters, to: CircuitState, now: u64) -> CircuitState {
        counters.success_count = 0;
        counters.trial_in_flight = false;
        match to {
            CircuitState::Open => {
                counters.times_opened = counters.times_opened.saturating_add(1);
                self.open_until
                    .store(now.saturating_add(self.timeout_nanos), Ordering::Relaxed);
            }
            CircuitState::Closed => counters.failure_count = 0,
            CircuitState::HalfOpen => {}
        }
        let generation = self.load().generation.wrapping_add(1);
        let packed = Snapshot {
            state: to,
            generation,
        }
        .pack();
        // Release: a reader that sees the new state also sees `open_until`.
        self.packed.store(packed, Ordering::Release);
        to
    }

    fn notify(&self, entered: Option<CircuitState>) {
        let Some(state) = entered else { return };
        tracing::debug!(?state, "circuit breaker state changed");
        #[cfg(feature = "tower")]
        self.released.notify_waiters();
        match state {
            CircuitState::Open => self.observer.on_open(),
            CircuitState::HalfOpen => self.observer.on_half_open(),
            CircuitState::Closed => self.observer.on_close(),
        }
    }

    fn record(&self, generation: u64, trial: bool, outcome: Outcome) {
        let entered = {
            let mut counters = self.lock();
            match outcome {
                Outcome::Success => {
                    counters.total_successes = counters.total_successes.saturating_add(1);
                }
                Outcome::Failure => {
                    counters.total_failures = counters.total_failures.saturating_add(1);
                }
                Outcome::Abandoned => {}
            }
            let snapshot = self.load();
            if snapshot.generation == generation {
                self.apply(&mut counters, snapshot.state, trial, outcome)
            } else {
                // Granted in an earlier period (before a transition, trip or
                // reset): it says nothing about the current one.
                None
            }
        };
        // A released trial that moved nothing still frees the next one.
        #[cfg(feature = "tower")]
        if trial && entered.is_none() {
            self.released.notify_waiters();
        }
        self.notify(entered);
    }

    /// Applies a current-generation outcome. Permits are only granted while
    /// Closed or HalfOpen, and while HalfOpen only the trial is granted.
    fn apply(
        &self,
        counters: &mut Counters,
        state: CircuitState,
        trial: bool,
        outcome: Outcome,
    ) -> Option<CircuitState> {
        match (state, outcome) {
            (CircuitState::HalfOpen, Outcome::Abandoned) if trial => {
                counters.trial_in_flight = false;
                None
            }
            (CircuitState::Closed, Outcome::Success) => {
                counters.failure_count = 0;
                None
            }
            (CircuitState::Closed, Outcome::Failure) => {
                counters.failure_count = counters.failure_count.saturating_add(1);
                (counters.failure_count >= self.config.failure_threshold)
                    .then(|| self.transition(counters, CircuitState::Open, self.now_nanos()))
            }
            (CircuitState::HalfOpen, Outcome::Success) => {
                counters.trial_in_flight = false;
                counters.failure_count = 0;
                counters.success_count = counters.success_count.saturating_add(1);
                (counters.success_count >= self.config.success_threshold)
                    .then(|| self.transition(counters, CircuitState::Closed, self.now_nanos()))
            }
            (CircuitState::HalfOpen, Outcome::Failure) => {
                counters.failure_count = counters.failure_count.saturating_add(1);
                Some(self.transition(counters, CircuitState::Open, self.now_nanos()))
            }
            (_, Outcome::Abandoned) | (CircuitState::Open, _) => None,
        }
    }
}

impl<O> fmt::Debug for CircuitBreaker<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Reads the stored state without applying an elapsed timeout:
        // formatting must not fire observer hooks.
        let snapshot = Snapshot::unpack(self.packed.load(Ordering::Acquire));
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("state", &snapshot.state)
            .finish_non_exhaustive()
    }
}

/// Permission to run one request, from
/// [`CircuitBreaker::try_acquire`]; record how it went with
/// [`success`](Self::success) or [`failure`](Self::failure).
///
/// Dropping a permit without recording counts neither a success nor a
/// failure, and frees the half-open trial if this permit held it. That makes
/// cancellation safe: an attempt abandoned halfway (a dropped future, a
/// timeout) neither blocks the trial forever nor is blamed on the other side.
///
/// An outcome recorded after the circuit has changed state (by a transition,
/// [`trip`](CircuitBreaker::trip) or [`reset`](CircuitBreaker::reset))
/// since the permit was granted is counted in the totals but does not move
/// the circuit: a request that started before an outage says nothing about
/// recovery.
#[must_use = "record the outcome with `success()` or `failure()`; dropping the permit records neither"]
pub struct Permit<'a, O: CircuitObserver = ()> {
    breaker: &'a CircuitBreaker<O>,
    grant: Grant,
}

impl<O: CircuitObserver> Permit<'_, O> {
    /// Whether this is the half-open trial, whose outcome decides whether the
    /// circuit closes.
    pub fn is_trial(&self) -> bool {
        self.grant.trial
    }

    /// Records a success: while Closed it clears the consecutive failures;
    /// as the half-open trial it counts toward `success_threshold`.
    pub fn success(mut self) {
        self.grant.finish(self.breaker, Outcome::Success);
    }

    /// Records a failure: while Closed it counts toward `failure_threshold`;
    /// as the half-open trial it re-opens the circuit.
    pub fn failure(mut self) {
        self.grant.finish(self.breaker, Outcome::Failure);
    }
}

impl<O: CircuitObserver> Drop for Permit<'_, O> {
    fn drop(&mut self) {
        self.grant.finish(self.breaker, Outcome::Abandoned);
    }
}

impl<O: CircuitObserver> fmt::Debug for Permit<'_, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("trial", &self.grant.trial)
            .finish_non_exhaustive()
    }
}

/// A [`Permit`] that owns an `Arc` of its breaker instead of borrowing it,
/// from [`CircuitBreaker::try_acquire_owned`]: it is `'static`, so it can
/// travel with a spawned task or a boxed future.
///
/// It behaves exactly like [`Permit`]: record the outcome with
/// [`success`](Self::success) or [`failure`](Self::failure); dropping it
/// records neither and frees the half-open trial if it held it.
#[must_use = "record the outcome with `success()` or `failure()`; dropping the permit records neither"]
pub struct OwnedPermit<O: CircuitObserver = ()> {
    breaker: Arc<CircuitBreaker<O>>,
    grant: Grant,
}

impl<O: CircuitObserver> OwnedPermit<O> {
    /// Whether this is the half-open trial, whose outcome decides whether the
    /// circuit closes.
    pub fn is_trial(&self) -> bool {
        self.grant.trial
    }

    /// The breaker this permit came from.
    pub fn breaker(&self) -> &Arc<CircuitBreaker<O>> {
        &self.breaker
    }

    /// Records a success, as [`Permit::success`] does.
    pub fn success(mut self) {
        self.grant.finish(&self.breaker, Outcome::Success);
    }

    /// Records a failure, as [`Permit::failure`] does.
    pub fn failure(mut self) {
        self.grant.finish(&self.breaker, Outcome::Failure);
    }

    /// Whether the circuit is still in the period this permit was granted
    /// in: no transition, trip or reset since. A stale permit's outcome would
    /// be ignored.
    #[cfg(feature = "tower")]
    pub(crate) fn is_current(&self) -> bool {
        self.breaker.is_current(self.grant.generation)
    }
}

impl<O: CircuitObserver> Drop for OwnedPermit<O> {
    fn drop(&mut self) {
        self.grant.finish(&self.breaker, Outcome::Abandoned);
    }
}

impl<O: CircuitObserver> fmt::Debug for OwnedPermit<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("trial", &self.grant.trial)
            .finish_non_exhaustive()
    }
}

/// What both permit types hold: the period they were granted in, whether
/// they are the trial, and whether an outcome was recorded.
#[derive(Debug)]
struct Grant {
    generation: u64,
    trial: bool,
    recorded: bool,
}

impl Grant {
    fn new(generation: u64, trial: bool) -> Self {
        Self {
            generation,
            trial,
            recorded: false,
        }
    }

    fn finish<O: CircuitObserver>(&mut self, breaker: &CircuitBreaker<O>, outcome: Outcome) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        // Dropping an ordinary permit changes nothing: skip the lock.
        if outcome == Outcome::Abandoned && !self.trial {
            return;
        }
        breaker.record(self.generation, self.trial, outcome);
    }
}

fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
