//! Plain-data statistics, and the atomic counters behind them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use watchtower_core::MalformedCounters;

/// Frames that were neither an event nor a control frame, by reason: each
/// is dropped, logged at warn (at most about once a second per client) and
/// answered with nothing; the sender stays connected, except for invalid
/// UTF-8 in a text frame, which RFC 6455 makes fatal (1007).
pub use watchtower_core::MalformedCounts;

/// What a hub has done since it started: plain data, read with
/// [`Hub::stats`](crate::Hub::stats) or
/// [`HubHandle::stats`](crate::HubHandle::stats).
///
/// Every field but the gauges `clients`, `connections_open` and
/// `dedup_window_ids` only grows. Stats of several hubs add up
/// (`+`) to the totals of the group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Clients connected now.
    pub clients: u64,
    /// TCP connections being served now: handshaking, connected or
    /// closing; at most `max_connections`. A gauge, like `clients`.
    pub connections_open: u64,
    /// WebSocket connections upgraded since start: counted once the 101
    /// answer is out, so a failed upgrade counts only in
    /// `handshake_failures`.
    pub connections_total: u64,
    /// Plain HTTP requests (metrics, health, API, dashboard) answered
    /// since start, refused ones included (those also count in
    /// `handshake_failures`).
    pub http_requests: u64,
    /// TCP connections closed at once, unread, because the hub was at
    /// `max_connections` or `max_pending_handshakes`. Not counted in
    /// `handshake_failures`.
    pub connections_refused: u64,
    /// TCP connections refused, unread, because their address had spent
    /// its `handshakes_per_second_per_peer` budget: held for a second and
    /// answered with HTTP 429 (closed, on `wss://`; closed at once while
    /// 256 were held). Not
    /// counted in `handshake_failures` or `connections_refused`.
    pub connections_paced: u64,
    /// TCP connections that neither became clients nor got an HTTP
    /// answer: their TLS handshake failed or timed out, their request head
    /// was malformed, too large or late, or their WebSocket upgrade or
    /// HTTP request was refused (the four below included). A connection
    /// counts here or in `connections_total`, never in both.
    pub handshake_failures: u64,
    /// Of those, connections whose TLS handshake failed or timed out (e.g.
    /// a client that does not trust the hub's certificate, or without the
    /// client certificate the hub requires).
    pub tls_failures: u64,
    /// Of those, upgrades refused with HTTP 401 for a missing or wrong
    /// bearer token, or 400 for more than one.
    pub auth_rejected: u64,
    /// Of those, upgrades refused with HTTP 429 because their peer
    /// address failed the token check too often in the last minute
    /// (`auth_failures_per_minute`); not counted in `auth_rejected`.
    pub auth_throttled: u64,
    /// Of those, upgrades refused with HTTP 403 because their `Origin`
    /// (a browser page's site) is not allowed.
    pub origin_rejected: u64,
    /// Data frames received (events, duplicates, control frames and
    /// malformed ones).
    pub frames_in: u64,
    /// Payload bytes of those frames.
    pub bytes_in: u64,
    /// Valid events received and relayed to every other matching client
    /// (with a NATS backplane: handed to it for publishing); duplicates
    /// dropped are not included.
    pub events_in: u64,
    /// Control frames received and applied: filter changes and hellos.
    pub control_frames: u64,
    /// Control frames refused for breaking a filter limit (an event type
    /// over `max_event_type_len`, a filter over `max_filter_types` or
    /// `max_filter_bytes`); each closed its sender with 1008.
    pub control_rejected: u64,
    /// Times a client's reader paused because its control frames went over
    /// `control_bytes_per_second`.
    pub control_paced: u64,
    /// Malformed frames, by reason.
    pub malformed: MalformedCounts,
    /// Frames queued for delivery to clients (one per event per recipient).
    pub frames_queued: u64,
    /// Relayed frames written to clients (acks are counted in `acks_sent`).
    pub frames_out: u64,
    /// Queued frames dropped because a client's queue was full (oldest
    /// first).
    pub dropped_frames: u64,
    /// Clients closed with 1013 because their queue stayed full for
    /// `slow_client_timeout`.
    pub disconnected_slow: u64,
    /// The most bytes one client ever held queued (its own queue plus what
    /// its writer had taken but not yet written), a high-water mark; at
    /// most about [`HubConfig::client_queue_bytes`](crate::HubConfig) plus
    /// one read burst. Stats of several hubs add up to the largest.
    pub client_bytes_high_water: u64,
    /// Clients dropped because they showed no sign of life — no data
    /// frame, no answer to the hub's ping, no bytes of a message arriving —
    /// for `ping_interval + pong_timeout`.
    pub disconnected_dead: u64,
    /// Clients closed with 1008 because a message kept arriving for longer
    /// than `message_timeout`.
    pub disconnected_unfinished: u64,
    /// Clients closed with 1009 for sending a message over
    /// `max_message_size`.
    pub oversize_closed: u64,
    /// Clients closed with 1002 for breaking the WebSocket protocol (other
    /// than oversize messages and invalid UTF-8, counted above).
    pub protocol_errors: u64,
    /// `{"type":"ack","upto":N}` frames written to clients that said
    /// `{"type":"hello","acks":true}`: at most one per read burst per such
    /// client, fewer when its writer is behind (acks are cumulative, so a
    /// newer one replaces one not yet sent).
    pub acks_sent: u64,
    /// Events from ack-mode clients dropped, not relayed, because their id
    /// was in the de-duplication window (a resend whose first copy got
    /// through). Each is still acknowledged.
    pub duplicates_dropped: u64,
    /// Event ids the de-duplication window remembers now: those of
    /// ack-mode clients' events first seen less than
    /// [`HubConfig::dedup_window_age`](crate::HubConfig::dedup_window_age)
    /// ago, at most
    /// [`HubConfig::dedup_window_events`](crate::HubConfig::dedup_window_events).
    /// Like `clients`, a gauge, not a total.
    pub dedup_window_ids: u64,
    /// Clients that presented a position and got every event after it
    /// (replayed, then live).
    pub resumes_recovered: u64,
    /// Clients that presented a position that could not be recovered
    /// (another epoch, or expired): nothing was replayed.
    pub resumes_not_recovered: u64,
    /// Events after the positions resuming clients presented, when they
    /// joined: what they read from the history (their filter and their
    /// own events aside).
    pub events_replayed: u64,
    /// Resuming clients closed with 1013 because the history forgot an
    /// event not yet written to them (they lagged past its tail): they
    /// resume and are told `expired`, instead of missing it silently
    /// (also counted in `disconnected_slow`).
    pub closed_to_resume: u64,
    /// Events the history holds now. A gauge, like `clients`.
    pub history_events: u64,
    /// With a NATS backplane (feature `nats`): events JetStream
    /// acknowledged as stored (duplicates it dropped included).
    pub backplane_stored: u64,
    /// With a NATS backplane: events that were not stored (JetStream
    /// refused them, or the publisher's queues were full). A publish that
    /// failed or timed out is not counted: the hub publishes it again, in
    /// order, until JetStream answers. An at-most-once event counted here
    /// is lost; an ack-mode sender was closed with 1013 and resends.
    pub backplane_failures: u64,
    /// With a NATS backplane: events read from the stream and delivered to
    /// this hub's clients.
    pub backplane_delivered: u64,
    /// With a NATS backplane: 1 while the connection to NATS is down
    /// (reconnecting), else 0. A gauge: summed, the hubs cut off now.
    pub backplane_down: u64,
    /// With a NATS backplane: events the stream evicted (or lost) before
    /// this hub read them: a gap it cannot fill, which none of its clients
    /// got (resuming ones are told; plain subscribers only through this).
    pub backplane_missed: u64,
    /// With a NATS backplane: messages on the stream's subjects that are
    /// not events (not sent by a hub), skipped.
    pub backplane_foreign: u64,
    /// With a NATS backplane: times this hub found the stream deleted and
    /// made anew (NATS lost its store, or someone deleted it) and went on
    /// with it as a new epoch (resuming clients told `epoch`).
    pub backplane_new_streams: u64,
}

impl std::ops::Add for HubStats {
    type Output = HubStats;

    fn add(self, o: HubStats) -> HubStats {
        HubStats {
            clients: self.clients + o.clients,
            connections_open: self.connections_open + o.connections_open,
            connections_total: self.connections_total + o.connections_total,
            http_requests: self.http_requests + o.http_requests,
            handshake_failures: self.handshake_failures + o.handshake_failures,
            tls_failures: self.tls_failures + o.tls_failures,
            connections_refused: self.connections_refused + o.connections_refused,
            connections_paced: self.connections_paced + o.connections_paced,
            auth_rejected: self.auth_rejected + o.auth_rejected,
            origin_rejected: self.origin_rejected + o.origin_rejected,
            auth_throttled: self.auth_throttled + o.auth_throttled,
            frames_in: self.frames_in + o.frames_in,
            bytes_in: self.bytes_in + o.bytes_in,
            events_in: self.events_in + o.events_in,
            control_frames: self.control_frames + o.control_frames,
            control_rejected: self.control_rejected + o.control_rejected,
            control_paced: self.control_paced + o.control_paced,
            malformed: self.malformed + o.malformed,
            frames_queued: self.frames_queued + o.frames_queued,
            frames_out: self.frames_out + o.frames_out,
            dropped_frames: self.dropped_frames + o.dropped_frames,
            disconnected_slow: self.disconnected_slow + o.disconnected_slow,
            client_bytes_high_water: self.client_bytes_high_water.max(o.client_bytes_high_water),
            disconnected_dead: self.disconnected_dead + o.disconnected_dead,
            disconnected_unfinished: self.disconnected_unfinished + o.disconnected_unfinished,
            oversize_closed: self.oversize_closed + o.oversize_closed,
            protocol_errors: self.protocol_errors + o.protocol_errors,
            acks_sent: self.acks_sent + o.acks_sent,
            duplicates_dropped: self.duplicates_dropped + o.duplicates_dropped,
            dedup_window_ids: self.dedup_window_ids + o.dedup_window_ids,
            resumes_recovered: self.resumes_recovered + o.resumes_recovered,
            resumes_not_recovered: self.resumes_not_recovered + o.resumes_not_recovered,
            events_replayed: self.events_replayed + o.events_replayed,
            closed_to_resume: self.closed_to_resume + o.closed_to_resume,
            history_events: self.history_events + o.history_events,
            backplane_stored: self.backplane_stored + o.backplane_stored,
            backplane_failures: self.backplane_failures + o.backplane_failures,
            backplane_delivered: self.backplane_delivered + o.backplane_delivered,
            backplane_down: self.backplane_down + o.backplane_down,
            backplane_missed: self.backplane_missed + o.backplane_missed,
            backplane_foreign: self.backplane_foreign + o.backplane_foreign,
            backplane_new_streams: self.backplane_new_streams + o.backplane_new_streams,
        }
    }
}

/// The live counters. Relaxed atomics: each is an independent tally, and a
/// snapshot need not be a consistent cut.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) clients: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) http_requests: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) tls_failures: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) connections_paced: AtomicU64,
    pub(crate) auth_rejected: AtomicU64,
    pub(crate) origin_rejected: AtomicU64,
    pub(crate) auth_throttled: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) events_in: AtomicU64,
    pub(crate) control_frames: AtomicU64,
    pub(crate) control_rejected: AtomicU64,
    pub(crate) control_paced: AtomicU64,
    pub(crate) malformed: MalformedCounters,
    pub(crate) frames_queued: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) dropped_frames: AtomicU64,
    pub(crate) disconnected_slow: AtomicU64,
    pub(crate) client_bytes_high_water: AtomicU64,
    pub(crate) disconnected_dead: AtomicU64,
    pub(crate) disconnected_unfinished: AtomicU64,
    pub(crate) oversize_closed: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) acks_sent: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
    pub(crate) resumes_recovered: AtomicU64,
    pub(crate) resumes_not_recovered: AtomicU64,
    pub(crate) events_replayed: AtomicU64,
    pub(crate) closed_to_resume: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Raises a high-water mark to `n` if it is higher; one relaxed load when
/// it is not.
pub(crate) fn high_water(mark: &AtomicU64, n: u64) {
    if n > mark.load(Relaxed) {
        mark.fetch_max(n, Relaxed);
    }
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Relaxed);
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> HubStats {
        let l = |c: &AtomicU64| c.load(Relaxed);
        HubStats {
            clients: l(&self.clients),
            // A gauge kept by the supervisor; see `Shared::stats`.
            connections_open: 0,
            connections_total: l(&self.connections_total),
            http_requests: l(&self.http_requests),
            handshake_failures: l(&self.handshake_failures),
            tls_failures: l(&self.tls_failures),
            connections_refused: l(&self.connections_refused),
            connections_paced: l(&self.connections_paced),
            auth_rejected: l(&self.auth_rejected),
            origin_rejected: l(&self.origin_rejected),
            auth_throttled: l(&self.auth_throttled),
            frames_in: l(&self.frames_in),
            bytes_in: l(&self.bytes_in),
            events_in: l(&self.events_in),
            control_frames: l(&self.control_frames),
            control_rejected: l(&self.control_rejected),
            control_paced: l(&self.control_paced),
            malformed: self.malformed.load(),
            frames_queued: l(&self.frames_queued),
            frames_out: l(&self.frames_out),
            dropped_frames: l(&self.dropped_frames),
            disconnected_slow: l(&self.disconnected_slow),
            client_bytes_high_water: l(&self.client_bytes_high_water),
            disconnected_dead: l(&self.disconnected_dead),
            disconnected_unfinished: l(&self.disconnected_unfinished),
            oversize_closed: l(&self.oversize_closed),
            protocol_errors: l(&self.protocol_errors),
            acks_sent: l(&self.acks_sent),
            duplicates_dropped: l(&self.duplicates_dropped),
            // A gauge kept by the window itself; see `Shared::stats`.
            dedup_window_ids: 0,
            resumes_recovered: l(&self.resumes_recovered),
            resumes_not_recovered: l(&self.resumes_not_recovered),
            events_replayed: l(&self.events_replayed),
            closed_to_resume: l(&self.closed_to_resume),
            // A gauge kept by the history; see `Shared::stats`.
            history_events: 0,
            // Kept by the backplane, if any; see `Shared::stats`.
            backplane_stored: 0,
            backplane_failures: 0,
            backplane_delivered: 0,
            backplane_down: 0,
            backplane_missed: 0,
            backplane_foreign: 0,
            backplane_new_streams: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtower_core::DecodeErrorKind;

    #[test]
    fn malformed_counts_by_reason() {
        let c = Counters::default();
        c.malformed.record(DecodeErrorKind::InvalidJson);
        c.malformed.record(DecodeErrorKind::InvalidJson);
        c.malformed.record(DecodeErrorKind::MissingField);
        let m = c.snapshot().malformed;
        assert_eq!(m.get(DecodeErrorKind::InvalidJson), 2);
        assert_eq!(m.get(DecodeErrorKind::MissingField), 1);
        assert_eq!(m.get(DecodeErrorKind::WrongType), 0);
        assert_eq!(m.total(), 3);
        let sum = c.snapshot() + c.snapshot();
        assert_eq!(sum.malformed.invalid_json, 4);
    }
}
