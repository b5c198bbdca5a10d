use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::ReconnectPolicy;

/// How [`Retry`] waits between attempts: anything that turns a `Duration`
/// into a future that completes after it.
///
/// With the cargo feature `tokio`, `TokioSleep` is provided and is what
/// `retry` and `Retry::new` sleep with. Without it, pass
/// your runtime's timer to [`Retry::with_sleep`]: a closure
/// `Fn(Duration) -> impl Future<Output = ()>` is a `Sleep`.
pub trait Sleep {
    /// The future returned by [`sleep`](Self::sleep).
    type Future: Future<Output = ()>;

    /// A future that completes after `delay`.
    fn sleep(&self, delay: Duration) -> Self::Future;
}

/// Any `Fn(Duration) -> impl Future<Output = ()>` sleeps, for example
/// `|delay| async_io::Timer::after(delay)` mapped to `()`.
impl<F, Fut> Sleep for F
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    type Future = Fut;

    fn sleep(&self, delay: Duration) -> Fut {
        self(delay)
    }
}

/// Sleeps on tokio's timer (feature `tokio`). Tokio's clock, so a test
/// with a paused clock (`tokio::time::pause`) retries without waiting.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokioSleep;

#[cfg(feature = "tokio")]
impl Sleep for TokioSleep {
    type Future = tokio::time::Sleep;

    fn sleep(&self, delay: Duration) -> tokio::time::Sleep {
        tokio::time::sleep(delay)
    }
}

/// Decides whether an error is worth another attempt; see [`Retry::when`].
///
/// Any `FnMut(&E) -> bool` is one. The default, [`AnyError`], retries every
/// error.
pub trait RetryIf<E> {
    /// Whether to retry after `error` (`false` returns it at once).
    fn should_retry(&mut self, error: &E) -> bool;
}

/// The default [`RetryIf`]: every error is retried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyError;

impl<E> RetryIf<E> for AnyError {
    fn should_retry(&mut self, _: &E) -> bool {
        true
    }
}

impl<E, F: FnMut(&E) -> bool> RetryIf<E> for F {
    fn should_retry(&mut self, error: &E) -> bool {
        self(error)
    }
}

/// Called before each retry, to log or count it; see [`Retry::on_retry`].
///
/// Any `FnMut(&E, &Retrying)` is one. The default, [`NoHook`], does nothing.
pub trait OnRetry<E> {
    /// The attempt that just failed with `error` is about to be retried, as
    /// `next` describes.
    fn on_retry(&mut self, error: &E, next: &Retrying);
}

/// The default [`OnRetry`]: does nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoHook;

impl<E> OnRetry<E> for NoHook {
    fn on_retry(&mut self, _: &E, _: &Retrying) {}
}

impl<E, F: FnMut(&E, &Retrying)> OnRetry<E> for F {
    fn on_retry(&mut self, error: &E, next: &Retrying) {
        self(error, next);
    }
}

/// The retry about to happen, as told to an [`OnRetry`] hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retrying {
    /// Which retry this is: 1 for the first retry (the second call of the
    /// operation), up to the policy's `max_attempts`.
    pub retry: u32,
    /// How long [`Retry`] sleeps before it: the policy's delay for this
    /// retry, jitter included.
    pub delay: Duration,
}

/// Retries an async operation on the delays of a [`ReconnectPolicy`].
///
/// The operation is called at once; after each error that is retryable
/// ([`when`](Self::when), default: all), the next delay of the policy's
/// [`Schedule`](crate::Schedule) is slept and the operation called again.
/// `max_attempts` counts *retries*, as it counts reconnects after a lost
/// connection: the operation runs at most `1 + max_attempts` times, and
/// [`MaxAttempts::Unlimited`](crate::MaxAttempts::Unlimited) retries until
/// it succeeds. The result is the first `Ok`, or the last error: the one
/// that was not retryable, or the one after which the schedule ran out.
///
/// Cancel-safe: [`run`](Self::run) holds nothing but the operation's
/// current future and the current sleep, so dropping it (a `select!`, a
/// timeout, an aborted task) stops both at once; no attempt starts
/// afterwards.
///
/// The policy is used as it is; [`validate`](ReconnectPolicy::validate) it
/// first if it comes from a user's config.
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use std::time::Duration;
/// use watchtower_reconnect::{ReconnectPolicy, Retry};
///
/// #[derive(Debug)]
/// enum FetchError { Timeout, NotFound }
///
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # runtime.block_on(async {
/// let policy = ReconnectPolicy::linear(Duration::from_millis(100), 3);
/// let mut calls = 0;
/// let answer = Retry::new(&policy)
///     .when(|error: &FetchError| matches!(error, FetchError::Timeout))
///     .on_retry(|error: &FetchError, next: &watchtower_reconnect::Retrying| {
///         eprintln!("{error:?}; retry {} in {:?}", next.retry, next.delay);
///     })
///     .run(|| {
///         calls += 1;
///         let calls = calls;
///         async move { if calls < 3 { Err(FetchError::Timeout) } else { Ok("answer") } }
///     })
///     .await;
/// assert_eq!(answer.unwrap(), "answer");
/// assert_eq!(calls, 3);
/// # });
/// # }
/// ```
#[must_use = "a `Retry` does nothing until `run` is awaited"]
pub struct Retry<'p, S, W = AnyError, H = NoHook> {
    policy: &'p ReconnectPolicy,
    sleep: S,
    when: W,
    on_retry: H,
}

#[cfg(feature = "tokio")]
impl<'p> Retry<'p, TokioSleep> {
    /// A retry on `policy` that sleeps on tokio's timer, retries every
    /// error and has no hook (feature `tokio`).
    pub fn new(policy: &'p ReconnectPolicy) -> Self {
        Self::with_sleep(policy, TokioSleep)
    }
}

impl<'p, S: Sleep> Retry<'p, S> {
    /// A retry on `policy` that waits with `sleep`, retries every error and
    /// has no hook. Use it without tokio, or with a test clock.
    pub fn with_sleep(policy: &'p ReconnectPolicy, sleep: S) -> Self {
        Self {
            policy,
            sleep,
            when: AnyError,
            on_retry: NoHook,
        }
    }
}

impl<'p, S, W, H> Retry<'p, S, W, H> {
    /// Retries only the errors for which `when` returns `true`; any other
    /// error is returned at once, without sleeping.
    pub fn when<W2>(self, when: W2) -> Retry<'p, S, W2, H> {
        Retry {
            policy: self.policy,
            sleep: self.sleep,
            when,
            on_retry: self.on_retry,
        }
    }

    /// Calls `on_retry` with the error and the coming retry before each
    /// sleep: the place to log. It is not called for the final error.
    pub fn on_retry<H2>(self, on_retry: H2) -> Retry<'p, S, W, H2> {
        Retry {
            policy: self.policy,
            sleep: self.sleep,
            when: self.when,
            on_retry,
        }
    }

    /// Runs `operation` until it succeeds, its error is not retryable, or
    /// the policy runs out of attempts.
    ///
    /// # Errors
    ///
    /// The operation's last error: one [`when`](Self::when) rejected, or
    /// the one after the last attempt.
    pub async fn run<F, Fut, T, E>(mut self, mut operation: F) -> Result<T, E>
    where
        S: Sleep,
        W: RetryIf<E>,
        H: OnRetry<E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut schedule = self.policy.schedule();
        loop {
            let error = match operation().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !self.when.should_retry(&error) {
                return Err(error);
            }
            let Some(delay) = schedule.next() else {
                return Err(error);
            };
            let next = Retrying {
                retry: schedule.attempt(),
                delay,
            };
            self.on_retry.on_retry(&error, &next);
            drop(error);
            self.sleep.sleep(delay).await;
        }
    }
}

impl<S, W, H> fmt::Debug for Retry<'_, S, W, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("policy", self.policy)
            .finish_non_exhaustive()
    }
}

/// Retries `operation` on the delays of `policy`, sleeping on tokio's timer
/// (feature `tokio`): `retry(&policy, || async { fetch().await }).await`.
///
/// Shorthand for [`Retry::new(policy).run(operation)`](Retry::run); use
/// [`Retry`] to retry only some errors or to log each retry.
///
/// # Errors
///
/// The operation's last error, once the policy's attempts are used up.
#[cfg(feature = "tokio")]
pub async fn retry<F, Fut, T, E>(policy: &ReconnectPolicy, operation: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    Retry::new(policy).run(operation).await
}

#[cfg(test)]
mod tests;
