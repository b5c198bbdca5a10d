//! Plain-data statistics and the connection state.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use watchtower_backpressure::BackpressureStats;
use watchtower_circuit_breaker::CircuitBreakerStats;
use watchtower_core::{MalformedCounters, MalformedCounts};
use watchtower_dlq::DlqStats;

use crate::settings::Confirmation;

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The first connection is being made.
    Connecting,
    /// Connected; events flow.
    Connected,
    /// The connection was lost; waiting for or making reconnect `attempt`.
    Reconnecting {
        /// 1-based attempt number within this outage.
        attempt: u32,
    },
    /// Reconnect attempts ran out; the circuit breaker is open and publish
    /// fails fast until a trial connect succeeds.
    CircuitOpen,
    /// Shut down or dropped; final.
    Closed,
}

impl ConnectionState {
    /// True only while connected.
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnectionState::Connected)
    }
}

/// Counters of one transport's connection and subscriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Successful connects, the first included.
    pub connects: u64,
    /// Successful connects after a lost connection.
    pub reconnects: u64,
    /// Connections lost (not counting shutdown).
    pub disconnects: u64,
    /// Connect attempts that failed.
    pub failed_connects: u64,
    /// Times the reconnect attempts ran out and the breaker opened.
    pub gave_up: u64,
    /// Event frames written to the socket, each counted once however often
    /// it was resent (resends are in `resent`): flushed, or handed to a
    /// connection that died before the flush completed (at most once, those
    /// are in `frames_unconfirmed_lost` too).
    pub frames_out: u64,
    /// Payload bytes of those frames.
    pub bytes_out: u64,
    /// Data frames received (events, control frames and malformed ones).
    pub frames_in: u64,
    /// Payload bytes of those frames.
    pub bytes_in: u64,
    /// Frames decoded as events.
    pub events_received: u64,
    /// Control frames received.
    pub control_frames_in: u64,
    /// Malformed frames by reason.
    pub malformed: MalformedCounts,
    /// Incoming messages over the maximum size (each closed the connection
    /// with 1009).
    pub oversize: u64,
    /// Events handed to subscription mailboxes.
    pub events_dispatched: u64,
    /// Events that matched no subscription.
    pub events_unmatched: u64,
    /// Events a full subscription mailbox could not take (dead-lettered).
    pub mailbox_overflow: u64,
    /// Events a subscription held but never handled because `unsubscribe`
    /// or `shutdown` stopped it at its timeout, or because its task had
    /// ended (dead-lettered with reason `Shutdown`).
    pub mailbox_abandoned: u64,
    /// Handler calls that finished with `Ok`.
    pub handler_ok: u64,
    /// Handler calls that returned an error (dead-lettered).
    pub handler_errors: u64,
    /// Handler calls that panicked (dead-lettered).
    pub handler_panics: u64,
    /// Frames taken from the queue but not yet written when their
    /// connection was lost: the next connection sends them first.
    pub frames_requeued: u64,
    /// Frames confirmed received by the server: a pong answered a ping sent
    /// after them on the same connection.
    pub frames_confirmed: u64,
    /// The at-most-once window: frames written to a connection that then
    /// died before the server confirmed them. Some or all of them may not
    /// have arrived.
    pub frames_unconfirmed_lost: u64,
    /// `publish` calls that failed fast because the circuit breaker was
    /// open. (Publishers never move the breaker; only connect attempts do,
    /// so its own `total_requests` and `rejected_requests` count those.)
    pub publishes_rejected: u64,
    /// Events evicted from the queue by `DropOldest` (dead-lettered).
    pub events_evicted: u64,
    /// Queued events dead-lettered because the breaker opened or the
    /// transport shut down before they could be written.
    pub events_abandoned: u64,
    /// Pings sent (keepalive and receipts).
    pub pings_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Connections declared dead because nothing arrived in time.
    pub keepalive_timeouts: u64,
    /// Connections replaced because a pending write made no progress for
    /// the write timeout (the server stopped reading).
    pub write_timeouts: u64,
    /// With server filters: filters sent as "every type" because the
    /// subscriptions' filter was over the connected hub's limits (it would
    /// have refused it); the subscriptions still filter for themselves.
    pub filters_widened: u64,
    /// At least once: events sent and not yet acknowledged, now.
    pub in_flight: u64,
    /// At least once: events the server acknowledged.
    pub acked: u64,
    /// At least once: events sent again (unacknowledged when their
    /// connection was lost, or after an ack timeout).
    pub resent: u64,
    /// At least once: events dead-lettered because their ack timed out on
    /// `ack_attempts` connections.
    pub ack_timeouts: u64,
    /// At least once: incoming events dropped as duplicates of one already
    /// delivered (a resend).
    pub duplicates_dropped: u64,
    /// Connects on which the hub recovered the position presented: every
    /// event after it was replayed, then live ones followed.
    pub resumes_recovered: u64,
    /// Connects on which it did not: nothing was replayed and events may
    /// be missing (the reason is in
    /// [`last_resume`](crate::WebSocketTransport::last_resume)).
    pub resumes_not_recovered: u64,
    /// Events the hub replayed on those recovered connects.
    pub events_replayed: u64,
    /// Connects to a server that keeps no history (resume not supported).
    pub resumes_not_supported: u64,
    /// Which URL the transport is on (or trying): 0 for the config's
    /// `url`, `i` for the `i`-th of the
    /// [`fallback_urls`](crate::TransportBuilder::fallback_urls).
    /// [`WebSocketTransport::url`](crate::WebSocketTransport::url) gives
    /// the URL itself. A gauge.
    pub url_index: u64,
    /// With a [checkpoint](crate::TransportBuilder::checkpoint): positions
    /// stored.
    pub checkpoints_saved: u64,
    /// With a checkpoint: saves that failed (logged; the next interval
    /// tries again, and `shutdown` once more).
    pub checkpoint_failures: u64,
}

/// Every statistic of a transport at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TransportStats {
    /// The connection state.
    pub state: ConnectionState,
    /// Connection and subscription counters.
    pub connection: ConnectionStats,
    /// The outgoing queue.
    pub backpressure: BackpressureStats,
    /// The circuit breaker.
    pub circuit_breaker: CircuitBreakerStats,
    /// The dead-letter queue.
    pub dlq: DlqStats,
}

/// The live counters. Fields are grouped by the task that writes them, with
/// a cache line of padding between groups: the reader, the writer, the
/// subscription tasks and publishing tasks run on different threads, and a
/// shared cache line would bounce between them on every event.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Counters {
    // Publishing tasks.
    /// Events `publish` began to enqueue (for `flush`): counted before the
    /// push, so a flush never overlooks an event queued ahead of its own.
    pub(crate) accepted: AtomicU64,
    /// Of those, the ones the queue refused (the caller got the error).
    pub(crate) refused: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) events_evicted: AtomicU64,
    pub(crate) events_abandoned: AtomicU64,
    _pad_publish: Padding,
    // The reader.
    pub(crate) frames_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) events_received: AtomicU64,
    pub(crate) events_dispatched: AtomicU64,
    pub(crate) events_unmatched: AtomicU64,
    pub(crate) control_frames_in: AtomicU64,
    pub(crate) pongs_received: AtomicU64,
    pub(crate) frames_confirmed: AtomicU64,
    pub(crate) mailbox_overflow: AtomicU64,
    pub(crate) malformed: MalformedCounters,
    pub(crate) oversize: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
    _pad_reader: Padding,
    // The writer.
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) pings_sent: AtomicU64,
    pub(crate) frames_requeued: AtomicU64,
    pub(crate) frames_unconfirmed_lost: AtomicU64,
    /// At most once: frames fed to a connection that ended before its flush.
    pub(crate) lost_unflushed: AtomicU64,
    /// Event frames whose flush completed, first sends only.
    pub(crate) frames_flushed: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    pub(crate) filters_widened: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) ack_timeouts: AtomicU64,
    _pad_writer: Padding,
    // Subscription tasks.
    pub(crate) handler_ok: AtomicU64,
    pub(crate) handler_errors: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    pub(crate) mailbox_abandoned: AtomicU64,
    _pad_handlers: Padding,
    // Connection events: rare.
    pub(crate) connects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) failed_connects: AtomicU64,
    pub(crate) gave_up: AtomicU64,
    pub(crate) keepalive_timeouts: AtomicU64,
    pub(crate) resumes_recovered: AtomicU64,
    pub(crate) resumes_not_recovered: AtomicU64,
    pub(crate) events_replayed: AtomicU64,
    pub(crate) resumes_not_supported: AtomicU64,
}

/// One cache line.
#[derive(Debug, Default)]
struct Padding(#[allow(dead_code)] [u64; 8]);

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Counters {
    /// Events published that will never count as written: evicted,
    /// abandoned, refused by the queue, timed out, or lost with a
    /// connection before `confirmation` proved them written. `flush`
    /// counts them as settled.
    pub(crate) fn settled_unwritten(&self, confirmation: Confirmation) -> u64 {
        let lost = match confirmation {
            Confirmation::Acks => 0,
            Confirmation::Pongs => self.frames_unconfirmed_lost.load(Relaxed),
            Confirmation::Flushes => self.lost_unflushed.load(Relaxed),
        };
        self.events_evicted.load(Relaxed)
            + self.events_abandoned.load(Relaxed)
            + self.ack_timeouts.load(Relaxed)
            + self.refused.load(Relaxed)
            + lost
    }

    /// Events published that count as written by `confirmation`'s measure.
    pub(crate) fn written(&self, confirmation: Confirmation) -> u64 {
        match confirmation {
            Confirmation::Acks => self.acked.load(Relaxed),
            Confirmation::Pongs => self.frames_confirmed.load(Relaxed),
            Confirmation::Flushes => self.frames_flushed.load(Relaxed),
        }
    }

    pub(crate) fn snapshot(&self) -> ConnectionStats {
        let l = |c: &AtomicU64| c.load(Relaxed);
        ConnectionStats {
            connects: l(&self.connects),
            reconnects: l(&self.reconnects),
            disconnects: l(&self.disconnects),
            failed_connects: l(&self.failed_connects),
            gave_up: l(&self.gave_up),
            frames_out: l(&self.frames_out),
            bytes_out: l(&self.bytes_out),
            frames_in: l(&self.frames_in),
            bytes_in: l(&self.bytes_in),
            events_received: l(&self.events_received),
            control_frames_in: l(&self.control_frames_in),
            malformed: self.malformed.load(),
            oversize: l(&self.oversize),
            events_dispatched: l(&self.events_dispatched),
            events_unmatched: l(&self.events_unmatched),
            mailbox_overflow: l(&self.mailbox_overflow),
            mailbox_abandoned: l(&self.mailbox_abandoned),
            handler_ok: l(&self.handler_ok),
            handler_errors: l(&self.handler_errors),
            handler_panics: l(&self.handler_panics),
            frames_requeued: l(&self.frames_requeued),
            frames_confirmed: l(&self.frames_confirmed),
            frames_unconfirmed_lost: l(&self.frames_unconfirmed_lost),
            publishes_rejected: l(&self.rejected),
            events_evicted: l(&self.events_evicted),
            events_abandoned: l(&self.events_abandoned),
            pings_sent: l(&self.pings_sent),
            pongs_received: l(&self.pongs_received),
            keepalive_timeouts: l(&self.keepalive_timeouts),
            write_timeouts: l(&self.write_timeouts),
            filters_widened: l(&self.filters_widened),
            in_flight: l(&self.in_flight),
            acked: l(&self.acked),
            resent: l(&self.resent),
            ack_timeouts: l(&self.ack_timeouts),
            duplicates_dropped: l(&self.duplicates_dropped),
            resumes_recovered: l(&self.resumes_recovered),
            resumes_not_recovered: l(&self.resumes_not_recovered),
            events_replayed: l(&self.events_replayed),
            resumes_not_supported: l(&self.resumes_not_supported),
            // Kept by `Shared`; see `WebSocketTransport::connection_stats`.
            url_index: 0,
            checkpoints_saved: 0,
            checkpoint_failures: 0,
        }
    }
}
