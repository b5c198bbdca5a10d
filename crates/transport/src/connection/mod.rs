//! The connection task: the one owner of the socket.
//!
//! It connects (with the reconnect policy and the circuit breaker), then runs
//! a session ([`session`]): a writer that drains the queue in batches and
//! flushes once per batch, a reader that routes frames to subscriptions, and
//! a keepalive watch, all polled by this one task. When a session ends it
//! accounts for every frame — written, acknowledged, carried over to the
//! next connection, or dead-lettered — and reconnects.

mod acks;
mod reader;
mod session;
mod writer;

pub(crate) use acks::{DedupWindow, Outgoing};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use watchtower_core::WatchtowerError;
use watchtower_dlq::DeadLetterReason;

use crate::connect::{Ws, connect_once};
use crate::shared::{Lifecycle, Shared};
use crate::stats::{ConnectionState, bump};
use session::{SessionEnd, session};

/// Frames taken from the queue on one connection but not settled when it
/// ended: at least once, those awaiting acknowledgement; always, those not
/// yet handed to the socket. The next connection sends them first, in
/// order. Kept beside the queue (in `Shared`), so putting them back can
/// never overflow it and a shutdown can always dead-letter them; bounded by
/// the write batch plus `max_in_flight`.
pub(crate) type Carry = VecDeque<Outgoing>;

/// Dead-letters what the carry holds.
fn abandon_carry(shared: &Shared, reason: DeadLetterReason, error: &str) -> u64 {
    let frames: Vec<_> = shared.carry().drain(..).map(|o| o.frame).collect();
    let n = frames.len() as u64;
    shared.dead_letter_frames(frames, reason, error);
    n
}

/// How the first connection is made.
pub(crate) enum First {
    /// `connect()` already made it.
    Connected(Box<Ws>),
    /// Make it in the background (`connect_lazily`).
    Connect,
}

/// Why connecting stopped.
pub(crate) enum Failed {
    /// The attempts ran out; the last error.
    GaveUp(WatchtowerError),
    /// The transport is shutting down.
    Stopped,
}

/// The connection task.
pub(crate) async fn run(shared: Arc<Shared>, first: First) {
    let mut next = first;
    let mut sessions = 0u64;
    loop {
        let ws = match std::mem::replace(&mut next, First::Connect) {
            First::Connected(ws) => *ws,
            First::Connect => match connect_with_retries(&shared, sessions == 0).await {
                Ok(ws) => ws,
                Err(Failed::Stopped) => break,
                Err(Failed::GaveUp(error)) => match circuit_open(&shared, &error).await {
                    Some(ws) => ws,
                    None => break,
                },
            },
        };
        let reconnect = sessions > 0;
        sessions += 1;
        if let SessionEnd::Finished = session(&shared, ws, reconnect).await {
            break;
        }
    }
    finish(&shared);
}

/// Final accounting once the task stops: nothing queued is lost silently.
pub(crate) fn finish(shared: &Shared) {
    const UNSENT: &str = "not sent: the transport shut down before the event could be written";
    let n = abandon_carry(shared, DeadLetterReason::Shutdown, UNSENT)
        + shared.abandon_queue(DeadLetterReason::Shutdown, UNSENT);
    if n > 0 {
        tracing::warn!(
            events = n,
            "shut down with events unsent; they are in the dead-letter queue"
        );
    }
    shared.set_state(ConnectionState::Closed);
    shared.gave_up.notify_waiters();
    shared.progress.notify_waiters();
}

/// Connects, retrying on the policy's schedule.
///
/// The first connect of a transport tries at once and then retries
/// `max_attempts` times; a reconnect waits before each of its
/// `max_attempts` tries (the spec's `delay * attempt`).
pub(crate) async fn connect_with_retries(shared: &Shared, initial: bool) -> Result<Ws, Failed> {
    let mut schedule = shared.settings.policy.schedule();
    let mut immediate = initial;
    let mut auth_rejected = false;
    let mut last_error = None;
    loop {
        if !shared.is_running() {
            return Err(Failed::Stopped);
        }
        if immediate {
            immediate = false;
            shared.set_state(ConnectionState::Connecting);
        } else {
            let Some(delay) = schedule.next() else {
                return Err(Failed::GaveUp(last_error.unwrap_or_else(|| {
                    WatchtowerError::connection(
                        "the connection was lost and reconnecting is disabled (max_reconnect_attempts is 0)",
                    )
                })));
            };
            shared.set_state(ConnectionState::Reconnecting {
                attempt: schedule.attempt(),
            });
            tracing::debug!(attempt = schedule.attempt(), ?delay, "waiting to reconnect");
            if !sleep_unless_stopped(shared, delay).await {
                return Err(Failed::Stopped);
            }
        }
        match attempt_connect(shared).await {
            Ok(ws) => return Ok(ws),
            Err(error) => {
                bump(&shared.counters.failed_connects);
                if initial {
                    // `connect()` returns the final error to its caller.
                    tracing::debug!(url = %shared.settings.url, %error, "connect failed");
                } else {
                    tracing::warn!(url = %shared.settings.url, %error, "reconnect failed");
                }
                if let WatchtowerError::Auth { .. } = error {
                    // Rejected credentials: ask the provider for fresh ones
                    // once, at once; a second rejection stops the retries
                    // rather than hammering the server with a bad token.
                    if auth_rejected || shared.settings.credential_provider.is_none() {
                        return Err(Failed::GaveUp(error));
                    }
                    auth_rejected = true;
                    immediate = true;
                }
                last_error = Some(error);
            }
        }
    }
}

/// One attempt through the circuit breaker.
async fn attempt_connect(shared: &Shared) -> Result<Ws, WatchtowerError> {
    let permit = shared
        .breaker
        .try_acquire()
        .map_err(|rejected| WatchtowerError::CircuitOpen {
            retry_after: rejected.retry_after,
        })?;
    match connect_once(&shared.settings).await {
        Ok(ws) => {
            permit.success();
            Ok(ws)
        }
        Err(error) => {
            permit.failure();
            Err(error)
        }
    }
}

/// The attempts ran out: open the breaker, dead-letter what is queued (it
/// cannot be sent), release blocked publishers, then make one trial connect
/// each time the breaker's timeout passes, until one succeeds.
async fn circuit_open(shared: &Shared, error: &WatchtowerError) -> Option<Ws> {
    shared.breaker.trip();
    bump(&shared.counters.gave_up);
    shared.set_state(ConnectionState::CircuitOpen);
    shared.gave_up.notify_waiters();
    let why = format!(
        "not sent: reconnect attempts ran out and the circuit breaker opened; last error: {error}"
    );
    let abandoned = abandon_carry(shared, DeadLetterReason::SendFailed, &why)
        + shared.abandon_queue(DeadLetterReason::SendFailed, &why);
    tracing::error!(url = %shared.settings.url, %error, dead_lettered = abandoned,
        "giving up: the circuit breaker is open; publish fails fast until a trial connect succeeds");
    loop {
        // At least a millisecond, so a breaker that is not open yet cannot spin us.
        let wait = shared
            .breaker
            .retry_after()
            .unwrap_or_default()
            .max(Duration::from_millis(1));
        if !sleep_unless_stopped(shared, wait).await {
            return None;
        }
        match attempt_connect(shared).await {
            Ok(ws) => {
                tracing::info!(url = %shared.settings.url, "trial connect succeeded; the circuit breaker is closed");
                return Some(ws);
            }
            Err(WatchtowerError::CircuitOpen { .. }) => {}
            Err(error) => {
                bump(&shared.counters.failed_connects);
                tracing::warn!(url = %shared.settings.url, %error, "trial connect failed; the circuit breaker stays open");
            }
        }
    }
}

/// Sleeps for `delay`; false if the transport began to stop meanwhile.
pub(crate) async fn sleep_unless_stopped(shared: &Shared, delay: Duration) -> bool {
    let mut lifecycle = shared.lifecycle.subscribe();
    tokio::select! {
        _ = sleep(delay) => shared.is_running(),
        _ = lifecycle.wait_for(|l| *l != Lifecycle::Running) => false,
    }
}
