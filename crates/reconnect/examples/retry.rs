//! Retrying a flaky async operation with a reconnect policy, no WebSocket in
//! sight: a "config service" that is still starting up answers "unavailable"
//! a few times, then works; a malformed request is never retried.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p watchtower-reconnect --features tokio --example retry
//! ```

use std::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use watchtower_reconnect::{Jitter, MaxAttempts, ReconnectPolicy, Retry, Retrying, retry};

/// What the service can answer instead of a config.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// Worth retrying: the service is starting up.
    #[error("service unavailable")]
    Unavailable,
    /// Not worth retrying: the same request fails the same way.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
}

/// A service that is unavailable for its first `startup` calls.
struct ConfigService {
    calls: AtomicU32,
    startup: u32,
}

impl ConfigService {
    async fn fetch(&self, key: &'static str) -> Result<String, FetchError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if key.is_empty() {
            return Err(FetchError::BadRequest("empty key"));
        }
        if call <= self.startup {
            return Err(FetchError::Unavailable);
        }
        Ok(format!("{key} = 42 (after {call} calls)"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    // Doubling from 10 ms, capped at 80 ms, half-jittered, at most 6 retries.
    let policy =
        ReconnectPolicy::exponential(Duration::from_millis(10), 2.0, MaxAttempts::Limited(6))
            .with_max_delay(Duration::from_millis(80))
            .with_jitter(Jitter::Equal);
    policy.validate()?;

    // The one-liner: retry every error on the policy's schedule.
    let service = ConfigService {
        calls: AtomicU32::new(0),
        startup: 2,
    };
    let value = retry(&policy, || service.fetch("timeout")).await?;
    println!("retry(): {value}");

    // Retry only what is worth it, and log each retry.
    let service = ConfigService {
        calls: AtomicU32::new(0),
        startup: 3,
    };
    let value = Retry::new(&policy)
        .when(|error: &FetchError| matches!(error, FetchError::Unavailable))
        .on_retry(|error: &FetchError, next: &Retrying| {
            println!("  {error}; retry {} in {:?}", next.retry, next.delay);
        })
        .run(|| service.fetch("replicas"))
        .await?;
    println!("Retry::when: {value}");

    // A bad request is returned at once: one call, no sleep.
    let service = ConfigService {
        calls: AtomicU32::new(0),
        startup: 0,
    };
    let error = Retry::new(&policy)
        .when(|error: &FetchError| matches!(error, FetchError::Unavailable))
        .run(|| service.fetch(""))
        .await
        .err()
        .ok_or("a bad request cannot succeed")?;
    println!(
        "not retried: {error} ({} call)",
        service.calls.load(Ordering::Relaxed)
    );

    // A service that never comes back: the policy gives up after 1 + 6 calls.
    let service = ConfigService {
        calls: AtomicU32::new(0),
        startup: u32::MAX,
    };
    let error = retry(&policy, || service.fetch("timeout"))
        .await
        .err()
        .ok_or("the service never starts")?;
    println!(
        "gave up: {error} after {} calls",
        service.calls.load(Ordering::Relaxed)
    );
    Ok(())
}
