//! Waiting on conditions instead of sleeping, and addresses to wait on.

use std::future::Future;
use std::time::Duration;

/// Polls `condition` every few milliseconds until it holds; panics with
/// `what` after `limit`. Tests use generous limits (seconds): the limit only
/// decides how long a broken test takes to fail.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Like [`wait_until`] with an async condition.
pub async fn wait_until_async<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An address on 127.0.0.1 that nothing listens on: a port the kernel just
/// handed out and that was closed at once. Connecting to it is refused.
pub fn unused_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port on 127.0.0.1")
}
