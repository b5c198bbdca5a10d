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
mod room;
mod session;
mod writer;

pub(crate) use acks::{DedupWindow, Outgoing};

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::{Instant, sleep};
use watchtower_core::WatchtowerError;
use watchtower_dlq::DeadLetterReason;
use watchtower_reconnect::Schedule;

use crate::connect::{Ws, connect_once};
use crate::shared::{Lifecycle, Shared};
use crate::stats::{ConnectionState, bump};
use crate::subscription::panic_message;
use session::{Batch, SessionEnd, SessionState, session};

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

/// A connection that stays up this long ends an outage: the reconnect
/// schedule starts again from its first delay. One that drops sooner (a
/// server that accepts and closes, or crashes in a loop) continues the
/// schedule, so backoff escalates and the breaker opens against a flapping
/// server instead of retrying it at the first delay forever.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(2);

/// The shortest wait before any reconnect attempt or breaker trial,
/// whatever the policy or breaker timeout says: a zero delay must not turn
/// into hundreds of connections a second.
pub(crate) const MIN_RECONNECT_WAIT: Duration = Duration::from_millis(50);

/// The connection task, supervised: if it panics, the transport does not
/// go on looking connected. The panic is recorded (`publish` and `flush`
/// fail with it), the queue is closed and everything in it and in the
/// carry is dead-lettered.
pub(crate) async fn supervised(shared: Arc<Shared>, first: First) {
    // Built here, not passed to a helper: a future passed as an argument
    // to an `async fn` is stored twice in its state (as the argument and
    // as the local it becomes), which doubled every connection's task.
    let outcome = AssertUnwindSafe(run(Arc::clone(&shared), first))
        .catch_unwind()
        .await;
    if let Err(panic) = outcome {
        stopped_by_panic(&shared, panic.as_ref());
    }
}

/// The connection task panicked: record it, close the queue and settle
/// everything in it and in the carry.
fn stopped_by_panic(shared: &Shared, panic: &(dyn std::any::Any + Send)) {
    let message = panic_message(panic);
    tracing::error!(url = %shared.current_url(), panic = %message,
        "the connection task panicked; the transport is stopped");
    shared.set_crashed(message);
    shared.queue.close();
    shared.lifecycle.set(Lifecycle::Stopped);
    settle(
        shared,
        DeadLetterReason::SendFailed,
        "not sent (or sent and not acknowledged): the transport's connection task panicked",
    );
}

/// The connection task.
async fn run(shared: Arc<Shared>, first: First) {
    if shared.settings.resume_from.is_some() && matches!(first, First::Connect) {
        tokio::select! {
            () = shared.resume.wait_for_subscription() => {}
            _ = shared.lifecycle.stopping() => {
                finish(&shared);
                return;
            }
        }
    }
    let mut next = first;
    let mut sessions = 0u64;
    // One schedule per outage, kept across connections that drop at once.
    let mut schedule = shared.settings.policy.schedule();
    loop {
        let ws = match std::mem::replace(&mut next, First::Connect) {
            First::Connected(ws) => ws,
            First::Connect => {
                match connect_with_retries(&shared, &mut schedule, sessions == 0).await {
                    Ok(ws) => ws,
                    Err(Failed::Stopped) => break,
                    Err(Failed::GaveUp(error)) => match circuit_open(&shared, &error).await {
                        Some(ws) => ws,
                        None => break,
                    },
                }
            }
        };
        let reconnect = sessions > 0;
        sessions += 1;
        let began = Instant::now();
        // Held here, not in the session, so that a panic inside it still
        // finds what the connection held (see `session::rescue`).
        let conn = SessionState::new(ws.get_ref().written());
        let mut batch = Batch::default();
        let ended = AssertUnwindSafe(session(&shared, ws, reconnect, &conn, &mut batch))
            .catch_unwind()
            .await;
        let move_on = match ended {
            Ok(SessionEnd::Finished) => break,
            Ok(SessionEnd::Lost { move_on }) => move_on,
            Err(panic) => {
                session::rescue(&shared, &conn, &mut batch);
                std::panic::resume_unwind(panic)
            }
        };
        let lasted = began.elapsed();
        let stable = lasted >= STABLE_AFTER;
        if stable {
            schedule.reset();
        } else {
            tracing::debug!(
                url = %shared.current_url(),
                ?lasted,
                attempt = schedule.attempt(),
                "the connection dropped soon after it was made; backoff continues"
            );
        }
        // A hub that accepts and drops us, or says it is going away or too
        // busy, is left for the next URL (with fallbacks), as a failed
        // connect is: another hub of the group may be healthy.
        if move_on || !stable {
            shared.next_url();
        }
    }
    finish(&shared);
}

/// Final accounting once the task stops: nothing queued is lost silently.
/// Idempotent: `shutdown` calls it again once the task has ended.
pub(crate) fn finish(shared: &Shared) {
    settle(
        shared,
        DeadLetterReason::Shutdown,
        "not sent: the transport shut down before the event could be written",
    );
}

/// Dead-letters the carry and the queue, marks the transport closed and
/// wakes everyone who waits on it.
fn settle(shared: &Shared, reason: DeadLetterReason, why: &str) {
    let n = abandon_carry(shared, reason, why) + shared.abandon_queue(reason, why);
    if n > 0 {
        tracing::warn!(
            events = n,
            "stopped with events unsent; they are in the dead-letter queue"
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
pub(crate) async fn connect_with_retries(
    shared: &Shared,
    schedule: &mut Schedule,
    initial: bool,
) -> Result<Box<Ws>, Failed> {
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
                    if schedule.attempt() == 0 {
                        WatchtowerError::connection(
                            "the connection was lost and reconnecting is disabled (max_reconnect_attempts is 0)",
                        )
                    } else {
                        WatchtowerError::connection(format!(
                            "the server kept closing connections soon after accepting them \
                             ({} reconnects, each lasting less than {STABLE_AFTER:?})",
                            schedule.attempt()
                        ))
                    }
                })));
            };
            shared.set_state(ConnectionState::Reconnecting {
                attempt: schedule.attempt(),
            });
            tracing::debug!(attempt = schedule.attempt(), ?delay, "waiting to reconnect");
            // A server that paced the last attempt said when to come back.
            let asked_to_wait = match &last_error {
                Some(WatchtowerError::RateLimited {
                    retry_after: Some(wait),
                    ..
                }) => *wait,
                _ => Duration::ZERO,
            };
            let delay = delay.max(MIN_RECONNECT_WAIT).max(asked_to_wait);
            if !sleep_unless_stopped(shared, delay).await {
                return Err(Failed::Stopped);
            }
        }
        // Noted before the attempt: a failed one moves on to the next URL.
        let index = shared.url_index.load(std::sync::atomic::Ordering::Relaxed);
        match attempt_connect(shared).await {
            Ok(ws) => return Ok(ws),
            Err(error) => {
                bump(&shared.counters.failed_connects);
                let url = shared.settings.url_at(index);
                if initial {
                    // `connect()` returns the final error to its caller.
                    tracing::debug!(%url, %error, "connect failed");
                } else {
                    tracing::warn!(%url, %error, "reconnect failed");
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
async fn attempt_connect(shared: &Shared) -> Result<Box<Ws>, WatchtowerError> {
    let permit = shared
        .breaker
        .try_acquire()
        .map_err(|rejected| WatchtowerError::CircuitOpen {
            retry_after: rejected.retry_after,
        })?;
    let url = shared.current_url();
    // Both boxed, so that neither sizes the connection task's state for
    // as long as a connection lives: a connect (TCP, TLS, the upgrade) is
    // the largest future the task awaits (2.5 KiB), and a stream is 300
    // bytes that every future it passes through would keep room for.
    // Two allocations per attempt instead, of which the stream's lives
    // only until the session splits it.
    let connecting = connect_once(
        &shared.settings,
        url,
        &shared.resume,
        &shared.counters,
        &shared.client_id,
        &shared.hub_limits,
    );
    match Box::pin(connecting).await.map(Box::new) {
        Ok(ws) => {
            permit.success();
            Ok(ws)
        }
        Err(error) => {
            permit.failure();
            // Another hub of the group may be up: the next attempt goes
            // there.
            shared.next_url();
            Err(error)
        }
    }
}

/// The attempts ran out: open the breaker, dead-letter what is queued (it
/// cannot be sent), release blocked publishers, then make one trial connect
/// each time the breaker's timeout passes, until one succeeds.
async fn circuit_open(shared: &Shared, error: &WatchtowerError) -> Option<Box<Ws>> {
    shared.breaker.trip();
    bump(&shared.counters.gave_up);
    shared.set_state(ConnectionState::CircuitOpen);
    shared.gave_up.notify_waiters();
    let why = format!(
        "not sent: reconnect attempts ran out and the circuit breaker opened; last error: {error}"
    );
    let abandoned = abandon_carry(shared, DeadLetterReason::SendFailed, &why)
        + shared.abandon_queue(DeadLetterReason::SendFailed, &why);
    tracing::error!(url = %shared.current_url(), %error, dead_lettered = abandoned,
        "giving up: the circuit breaker is open; publish fails fast until a trial connect succeeds");
    loop {
        // A floor, so a zero timeout (or a breaker not open yet) cannot spin us.
        let wait = shared
            .breaker
            .retry_after()
            .unwrap_or_default()
            .max(MIN_RECONNECT_WAIT);
        if !sleep_unless_stopped(shared, wait).await {
            return None;
        }
        // Noted before the attempt: a failed one moves on to the next URL.
        let url = shared
            .settings
            .url_at(shared.url_index.load(std::sync::atomic::Ordering::Relaxed));
        match attempt_connect(shared).await {
            Ok(ws) => {
                tracing::info!(%url, "trial connect succeeded; the circuit breaker is closed");
                return Some(ws);
            }
            Err(WatchtowerError::CircuitOpen { .. }) => {}
            Err(error) => {
                bump(&shared.counters.failed_connects);
                tracing::warn!(%url, %error, "trial connect failed; the circuit breaker stays open");
            }
        }
    }
}

/// Sleeps for `delay`; false if the transport began to stop meanwhile.
pub(crate) async fn sleep_unless_stopped(shared: &Shared, delay: Duration) -> bool {
    tokio::select! {
        _ = sleep(delay) => shared.is_running(),
        _ = shared.lifecycle.stopping() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WebSocketConfig;
    use crate::transport::WebSocketTransport;
    use watchtower_core::{Event, EventMetadata};

    /// A transport's shared state, for a server nobody listens on.
    fn unconnected_shared() -> Arc<Shared> {
        let settings = WebSocketTransport::builder(WebSocketConfig::new("ws://127.0.0.1:9/x"))
            .into_settings()
            .unwrap();
        Arc::new(Shared::new(settings).unwrap())
    }

    /// Whatever makes the connection task panic — a bug of ours, a
    /// dependency's — the transport must not go on looking connected: it
    /// says it is closed, `publish` and `flush` fail with the panic, and
    /// what was queued is in the dead-letter queue.
    #[tokio::test]
    async fn a_panicked_connection_task_stops_the_transport_loudly() {
        let shared = unconnected_shared();
        shared.set_state(ConnectionState::Connected);
        let transport = WebSocketTransport::from_parts(Arc::clone(&shared));
        for n in 0..3 {
            let event = Event::new("t", serde_json::json!(n), EventMetadata::default());
            transport.publish(event).await.unwrap();
        }
        // What `supervised` does around `run`, around a task that panics.
        let task = tokio::spawn(
            AssertUnwindSafe(async { panic!("a bug in the connection task") }).catch_unwind(),
        );
        let panic = task.await.unwrap().expect_err("it panicked");
        stopped_by_panic(&shared, panic.as_ref());

        assert_eq!(transport.state(), ConnectionState::Closed);
        let event = Event::new("t", serde_json::json!(9), EventMetadata::default());
        let error = transport.publish(event).await.unwrap_err();
        assert!(error.to_string().contains("panicked"), "{error}");
        let error = transport.flush().await.unwrap_err();
        assert!(error.to_string().contains("panicked"), "{error}");
        assert_eq!(transport.dlq_stats().total_pushed, 3);
        assert_eq!(transport.connection_stats().events_abandoned, 3);
    }

    /// Every transport's connection task lives as long as the transport,
    /// so its state is paid per idle connection (README: idle memory per
    /// connection). Its largest stages — the connect (2.5 KiB of TCP, TLS
    /// and upgrade state), the stream before the split, the wait for a
    /// full mailbox — are boxed for just as long as they run; inline, any
    /// one of them would put this over budget for the connection's life.
    #[tokio::test]
    async fn the_connection_task_keeps_no_room_for_connecting() {
        let shared = unconnected_shared();
        let task = supervised(Arc::clone(&shared), First::Connect);
        let size = std::mem::size_of_val(&task);
        drop(task);
        assert!(
            size <= 2048,
            "the connection task's state is {size} bytes (budget 2048)"
        );
    }
}
