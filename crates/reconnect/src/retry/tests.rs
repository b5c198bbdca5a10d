//! The retry helper: attempt counts and delays follow the policy's schedule
//! exactly, non-retryable errors stop at once, cancellation stops sleeping.
//! Time is tokio's paused clock; the recording sleeper also checks the
//! exact delays asked for.

use std::future::{Future, ready};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, advance};

use crate::{Jitter, MaxAttempts, ReconnectPolicy, Retry, Retrying};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Transient(u32),
    Fatal,
}

/// A tokio sleeper that records each delay it is asked for.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<Duration>>>);

impl Recording {
    fn sleep(&self) -> impl Fn(Duration) -> tokio::time::Sleep + use<> {
        let asked = Arc::clone(&self.0);
        move |delay| {
            asked.lock().unwrap().push(delay);
            tokio::time::sleep(delay)
        }
    }

    fn delays(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

/// An operation that fails `failures` times, then succeeds, recording the
/// (virtual) time of every call.
fn flaky(
    failures: u32,
    calls: &Arc<Mutex<Vec<Instant>>>,
) -> impl FnMut() -> std::future::Ready<Result<u32, Failure>> + use<> {
    let calls = Arc::clone(calls);
    move || {
        let mut calls = calls.lock().unwrap();
        calls.push(Instant::now());
        let n = calls.len() as u32;
        ready(if n <= failures {
            Err(Failure::Transient(n))
        } else {
            Ok(n)
        })
    }
}

fn gaps(calls: &Mutex<Vec<Instant>>) -> Vec<Duration> {
    let calls = calls.lock().unwrap();
    calls.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn attempts_and_delays_follow_the_schedule_exactly() {
    let policy = ReconnectPolicy::linear(100 * MS, 4);
    let calls = Arc::default();
    let recording = Recording::default();
    let mut seen = Vec::new();
    let result = Retry::with_sleep(&policy, recording.sleep())
        .on_retry(|error: &Failure, next: &Retrying| seen.push((*error, *next)))
        .run(flaky(u32::MAX, &calls))
        .await;

    // One call, then one retry per attempt of the policy; the last error.
    assert_eq!(result, Err(Failure::Transient(5)));
    assert_eq!(calls.lock().unwrap().len(), 5);
    let schedule: Vec<_> = policy.schedule().collect();
    assert_eq!(schedule, [100, 200, 300, 400].map(Duration::from_millis));
    assert_eq!(recording.delays(), schedule);
    assert_eq!(gaps(&calls), schedule, "slept exactly the delays");
    let expected: Vec<_> = (1..=4)
        .map(|retry| {
            (
                Failure::Transient(retry),
                Retrying {
                    retry,
                    delay: schedule[retry as usize - 1],
                },
            )
        })
        .collect();
    assert_eq!(seen, expected, "the hook saw each error and its retry");
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_are_the_seeded_schedule() {
    let policy = ReconnectPolicy::exponential(10 * MS, 2.0, MaxAttempts::Limited(6))
        .with_max_delay(200 * MS)
        .with_jitter(Jitter::Full)
        .with_seed(7);
    let calls = Arc::default();
    let recording = Recording::default();
    let result = Retry::with_sleep(&policy, recording.sleep())
        .run(flaky(u32::MAX, &calls))
        .await;
    assert_eq!(result, Err(Failure::Transient(7)));
    assert_eq!(recording.delays(), policy.schedule().collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn stops_at_the_first_success() {
    let policy = ReconnectPolicy::fixed(MS * 250, MaxAttempts::Limited(10));
    let calls = Arc::default();
    let start = Instant::now();
    let result = Retry::with_sleep(&policy, tokio::time::sleep)
        .run(flaky(2, &calls))
        .await;
    assert_eq!(result, Ok(3));
    assert_eq!(start.elapsed(), 500 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_stops_at_once() {
    let policy = ReconnectPolicy::linear(Duration::from_secs(1), 10);
    let mut calls = 0;
    let mut hooked = 0;
    let start = Instant::now();
    let result = Retry::with_sleep(&policy, tokio::time::sleep)
        .when(|error: &Failure| matches!(error, Failure::Transient(_)))
        .on_retry(|_: &Failure, _: &Retrying| hooked += 1)
        .run(|| {
            calls += 1;
            ready(if calls == 1 {
                Err::<(), _>(Failure::Transient(1))
            } else {
                Err(Failure::Fatal)
            })
        })
        .await;
    assert_eq!(result, Err(Failure::Fatal));
    assert_eq!((calls, hooked), (2, 1));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "no sleep after the fatal error"
    );

    // Not retryable on the first call: no sleep at all.
    let start = Instant::now();
    let result = Retry::with_sleep(&policy, tokio::time::sleep)
        .when(|_: &Failure| false)
        .run(|| ready(Err::<(), _>(Failure::Transient(0))))
        .await;
    assert_eq!(result, Err(Failure::Transient(0)));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn zero_attempts_calls_once_and_never_sleeps() {
    let policy = ReconnectPolicy::linear(Duration::from_secs(1), 0);
    let calls = Arc::default();
    let recording = Recording::default();
    let result = Retry::with_sleep(&policy, recording.sleep())
        .run(flaky(u32::MAX, &calls))
        .await;
    assert_eq!(result, Err(Failure::Transient(1)));
    assert!(recording.delays().is_empty());
}

#[tokio::test(start_paused = true)]
async fn unlimited_retries_until_it_works() {
    let policy = ReconnectPolicy::fixed(Duration::from_secs(1), MaxAttempts::Unlimited);
    let calls = Arc::default();
    let start = Instant::now();
    let result = Retry::with_sleep(&policy, tokio::time::sleep)
        .run(flaky(99, &calls))
        .await;
    assert_eq!(result, Ok(100));
    assert_eq!(start.elapsed(), Duration::from_secs(99));
}

/// Sets its flag when dropped: shows that a sleep future was dropped.
struct DropFlag(Arc<Mutex<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = true;
    }
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_sleeping_and_retrying() {
    let policy = ReconnectPolicy::linear(Duration::from_secs(60), 5);
    let calls = Arc::default();
    let sleep_dropped = Arc::new(Mutex::new(false));
    let sleep = {
        let sleep_dropped = Arc::clone(&sleep_dropped);
        move |delay| {
            let flag = DropFlag(Arc::clone(&sleep_dropped));
            async move {
                let _flag = flag;
                tokio::time::sleep(delay).await;
            }
        }
    };

    // Cut short by a timeout in the middle of the second sleep.
    let cut = tokio::time::timeout(
        Duration::from_secs(90),
        Retry::with_sleep(&policy, sleep.clone()).run(flaky(u32::MAX, &calls)),
    )
    .await;
    assert!(cut.is_err());
    assert!(*sleep_dropped.lock().unwrap(), "the sleep was dropped");
    advance(Duration::from_secs(3600)).await;
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "no attempt after the cancel"
    );

    // Aborted as a task, in the middle of the first sleep.
    *sleep_dropped.lock().unwrap() = false;
    let aborted_calls = Arc::default();
    let task = tokio::spawn({
        let operation = flaky(u32::MAX, &aborted_calls);
        async move { Retry::with_sleep(&policy, sleep).run(operation).await }
    });
    advance(Duration::from_secs(30)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(*sleep_dropped.lock().unwrap(), "the sleep was dropped");
    advance(Duration::from_secs(3600)).await;
    assert_eq!(aborted_calls.lock().unwrap().len(), 1);
}

/// Everything above on tokio; this on no runtime at all: a sleeper that is
/// ready at once, polled by hand.
#[test]
fn runs_without_any_runtime() {
    let policy = ReconnectPolicy::linear(Duration::from_secs(3600), 3);
    let asked = Mutex::new(Vec::new());
    let mut calls = 0;
    let retry = Retry::with_sleep(&policy, |delay| {
        asked.lock().unwrap().push(delay);
        ready(())
    })
    .run(|| {
        calls += 1;
        ready(if calls < 4 { Err(calls) } else { Ok(calls) })
    });
    let mut retry = pin!(retry);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(retry.as_mut().poll(&mut cx), Poll::Ready(Ok(4)));
    assert_eq!(
        *asked.lock().unwrap(),
        [1, 2, 3].map(|hours| Duration::from_secs(3600 * hours))
    );
}

#[cfg(feature = "tokio")]
#[tokio::test(start_paused = true)]
async fn retry_shorthand_sleeps_on_tokio_time() {
    let policy = ReconnectPolicy::linear(Duration::from_secs(2), 3);
    let calls = Arc::default();
    let start = Instant::now();
    let result = crate::retry(&policy, flaky(3, &calls)).await;
    assert_eq!(result, Ok(4));
    assert_eq!(start.elapsed(), Duration::from_secs(2 + 4 + 6));
}
