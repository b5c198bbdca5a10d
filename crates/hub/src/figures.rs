//! Every figure of [`HubStats`] as a row of one table: name, help, kind,
//! bounded label. The Prometheus text, the JSON of `/api/stats` and the
//! CLI's summary are all rendered from it, so a counter added to the table
//! shows up in each of them and none can forget one.

use crate::stats::HubStats;

/// Whether a [`Figure`] only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FigureKind {
    /// Only grows while the hub runs; its name ends in `_total`.
    Counter,
    /// A level now (clients connected, ids in the window, a high-water
    /// mark).
    Gauge,
}

impl FigureKind {
    /// The Prometheus `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            FigureKind::Counter => "counter",
            FigureKind::Gauge => "gauge",
        }
    }
}

/// One figure of a [`HubStats`] snapshot, from
/// [`HubStats::figures`].
///
/// Figures that share a `name` form one family and differ by `label`,
/// whose values come from a fixed list (reasons, results): never an event
/// type, a client or anything else a client chooses, so the number of
/// figures is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Figure {
    /// The family name, lowercase `[a-z0-9_]`, without a prefix; counters
    /// end in `_total` (e.g. `handshake_failures_total`).
    pub name: &'static str,
    /// One sentence saying what it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: FigureKind,
    /// The label that tells this figure from the rest of its family, as
    /// `(label, value)`, e.g. `("reason", "tls")`.
    pub label: Option<(&'static str, &'static str)>,
    /// The value in the snapshot.
    pub value: u64,
}

/// One row of the table.
struct Row {
    name: &'static str,
    help: &'static str,
    kind: FigureKind,
    label: Option<(&'static str, &'static str)>,
    value: fn(&HubStats) -> u64,
}

use FigureKind::{Counter, Gauge};

const HANDSHAKE_HELP: &str = "Connections refused or failed before becoming a client or getting an \
     HTTP answer, by reason.";
const CONTROL_HELP: &str = "Control frames (filter changes, hellos), by result; a rejected one \
     closed its sender with 1008.";
const MALFORMED_HELP: &str = "Frames that were neither an event nor a control frame, by reason.";
const BACKPLANE_HELP: &str = "With a NATS backplane: events stored in the stream, not stored (refused by JetStream or by the hub's queues), read from it and delivered to this hub's clients, missed (evicted before this hub read them), and foreign messages on the stream skipped.";
const RESUME_HELP: &str =
    "Clients that presented a history position, by whether every event after it could be replayed.";
const DISCONNECT_HELP: &str = "Clients closed by the hub, by reason (1008 and 1007 closes are \
     counted in control_frames_total and malformed_frames_total).";

/// Rows of one family are adjacent: renderers write `# HELP` and `# TYPE`
/// when the name changes.
const TABLE: &[Row] = &[
    Row {
        name: "clients",
        help: "Clients connected now.",
        kind: Gauge,
        label: None,
        value: |s| s.clients,
    },
    Row {
        name: "connections_open",
        help: "TCP connections served now: handshaking, connected or closing.",
        kind: Gauge,
        label: None,
        value: |s| s.connections_open,
    },
    Row {
        name: "connections_total",
        help: "WebSocket connections upgraded since start.",
        kind: Counter,
        label: None,
        value: |s| s.connections_total,
    },
    Row {
        name: "connections_refused_total",
        help: "TCP connections closed unread because the hub was at max_connections or \
               max_pending_handshakes.",
        kind: Counter,
        label: None,
        value: |s| s.connections_refused,
    },
    Row {
        name: "connections_paced_total",
        help: "TCP connections refused unread (a delayed 429) because their address went over \
               handshakes_per_second_per_peer.",
        kind: Counter,
        label: None,
        value: |s| s.connections_paced,
    },
    Row {
        name: "handshake_failures_total",
        help: HANDSHAKE_HELP,
        kind: Counter,
        label: Some(("reason", "tls")),
        value: |s| s.tls_failures,
    },
    Row {
        name: "handshake_failures_total",
        help: HANDSHAKE_HELP,
        kind: Counter,
        label: Some(("reason", "token")),
        value: |s| s.auth_rejected,
    },
    Row {
        name: "handshake_failures_total",
        help: HANDSHAKE_HELP,
        kind: Counter,
        label: Some(("reason", "throttled")),
        value: |s| s.auth_throttled,
    },
    Row {
        name: "handshake_failures_total",
        help: HANDSHAKE_HELP,
        kind: Counter,
        label: Some(("reason", "origin")),
        value: |s| s.origin_rejected,
    },
    Row {
        name: "handshake_failures_total",
        help: HANDSHAKE_HELP,
        kind: Counter,
        label: Some(("reason", "other")),
        value: |s| {
            s.handshake_failures
                .saturating_sub(s.tls_failures)
                .saturating_sub(s.auth_rejected)
                .saturating_sub(s.auth_throttled)
                .saturating_sub(s.origin_rejected)
        },
    },
    Row {
        name: "http_requests_total",
        help: "Plain HTTP requests (metrics, health, API, dashboard) answered, refused ones included.",
        kind: Counter,
        label: None,
        value: |s| s.http_requests,
    },
    Row {
        name: "frames_in_total",
        help: "Data frames received: events, duplicates, control frames and malformed ones.",
        kind: Counter,
        label: None,
        value: |s| s.frames_in,
    },
    Row {
        name: "bytes_in_total",
        help: "Payload bytes of the data frames received.",
        kind: Counter,
        label: None,
        value: |s| s.bytes_in,
    },
    Row {
        name: "events_in_total",
        help: "Valid events received and relayed; duplicates dropped not included.",
        kind: Counter,
        label: None,
        value: |s| s.events_in,
    },
    Row {
        name: "control_frames_total",
        help: CONTROL_HELP,
        kind: Counter,
        label: Some(("result", "applied")),
        value: |s| s.control_frames,
    },
    Row {
        name: "control_frames_total",
        help: CONTROL_HELP,
        kind: Counter,
        label: Some(("result", "rejected")),
        value: |s| s.control_rejected,
    },
    Row {
        name: "control_paced_total",
        help: "Times a client's reader paused because its control frames went over control_bytes_per_second.",
        kind: Counter,
        label: None,
        value: |s| s.control_paced,
    },
    Row {
        name: "malformed_frames_total",
        help: MALFORMED_HELP,
        kind: Counter,
        label: Some(("reason", "invalid_utf8")),
        value: |s| s.malformed.invalid_utf8,
    },
    Row {
        name: "malformed_frames_total",
        help: MALFORMED_HELP,
        kind: Counter,
        label: Some(("reason", "invalid_json")),
        value: |s| s.malformed.invalid_json,
    },
    Row {
        name: "malformed_frames_total",
        help: MALFORMED_HELP,
        kind: Counter,
        label: Some(("reason", "not_an_object")),
        value: |s| s.malformed.not_an_object,
    },
    Row {
        name: "malformed_frames_total",
        help: MALFORMED_HELP,
        kind: Counter,
        label: Some(("reason", "missing_field")),
        value: |s| s.malformed.missing_field,
    },
    Row {
        name: "malformed_frames_total",
        help: MALFORMED_HELP,
        kind: Counter,
        label: Some(("reason", "empty_field")),
        value: |s| s.malformed.empty_field,
    },
    Row {
        name: "malformed_frames_total",
        help: MALFORMED_HELP,
        kind: Counter,
        label: Some(("reason", "wrong_type")),
        value: |s| s.malformed.wrong_type,
    },
    Row {
        name: "malformed_frames_total",
        help: MALFORMED_HELP,
        kind: Counter,
        label: Some(("reason", "too_long")),
        value: |s| s.malformed.too_long,
    },
    Row {
        name: "frames_queued_total",
        help: "Frames queued for delivery to clients, one per event per recipient.",
        kind: Counter,
        label: None,
        value: |s| s.frames_queued,
    },
    Row {
        name: "frames_out_total",
        help: "Relayed frames written to clients (acks not included).",
        kind: Counter,
        label: None,
        value: |s| s.frames_out,
    },
    Row {
        name: "frames_dropped_total",
        help: "Queued frames dropped, oldest first, because a client's queue was full.",
        kind: Counter,
        label: None,
        value: |s| s.dropped_frames,
    },
    Row {
        name: "client_bytes_high_water_bytes",
        help: "The most bytes one client ever held queued, its writer's share included.",
        kind: Gauge,
        label: None,
        value: |s| s.client_bytes_high_water,
    },
    Row {
        name: "disconnects_total",
        help: DISCONNECT_HELP,
        kind: Counter,
        label: Some(("reason", "slow")),
        value: |s| s.disconnected_slow,
    },
    Row {
        name: "disconnects_total",
        help: DISCONNECT_HELP,
        kind: Counter,
        label: Some(("reason", "dead")),
        value: |s| s.disconnected_dead,
    },
    Row {
        name: "disconnects_total",
        help: DISCONNECT_HELP,
        kind: Counter,
        label: Some(("reason", "unfinished")),
        value: |s| s.disconnected_unfinished,
    },
    Row {
        name: "disconnects_total",
        help: DISCONNECT_HELP,
        kind: Counter,
        label: Some(("reason", "oversize")),
        value: |s| s.oversize_closed,
    },
    Row {
        name: "disconnects_total",
        help: DISCONNECT_HELP,
        kind: Counter,
        label: Some(("reason", "protocol")),
        value: |s| s.protocol_errors,
    },
    Row {
        name: "acks_sent_total",
        help: "Ack frames written to clients in ack mode.",
        kind: Counter,
        label: None,
        value: |s| s.acks_sent,
    },
    Row {
        name: "duplicates_dropped_total",
        help: "Events from ack-mode clients dropped as resends already relayed (still acknowledged).",
        kind: Counter,
        label: None,
        value: |s| s.duplicates_dropped,
    },
    Row {
        name: "resumes_total",
        help: RESUME_HELP,
        kind: Counter,
        label: Some(("result", "recovered")),
        value: |s| s.resumes_recovered,
    },
    Row {
        name: "resumes_total",
        help: RESUME_HELP,
        kind: Counter,
        label: Some(("result", "not_recovered")),
        value: |s| s.resumes_not_recovered,
    },
    Row {
        name: "events_replayed_total",
        help: "Events replayed from history to resuming clients.",
        kind: Counter,
        label: None,
        value: |s| s.events_replayed,
    },
    Row {
        name: "closed_to_resume_total",
        help: "Resuming clients closed with 1013 because the history forgot an event not yet written to them, so that they resume (expired) instead of missing it (also in disconnects_total{reason=\"slow\"}).",
        kind: Counter,
        label: None,
        value: |s| s.closed_to_resume,
    },
    Row {
        name: "history_events",
        help: "Events the history holds now.",
        kind: Gauge,
        label: None,
        value: |s| s.history_events,
    },
    Row {
        name: "backplane_events_total",
        help: BACKPLANE_HELP,
        kind: Counter,
        label: Some(("result", "stored")),
        value: |s| s.backplane_stored,
    },
    Row {
        name: "backplane_events_total",
        help: BACKPLANE_HELP,
        kind: Counter,
        label: Some(("result", "not_stored")),
        value: |s| s.backplane_failures,
    },
    Row {
        name: "backplane_events_total",
        help: BACKPLANE_HELP,
        kind: Counter,
        label: Some(("result", "delivered")),
        value: |s| s.backplane_delivered,
    },
    Row {
        name: "backplane_events_total",
        help: BACKPLANE_HELP,
        kind: Counter,
        label: Some(("result", "missed")),
        value: |s| s.backplane_missed,
    },
    Row {
        name: "backplane_events_total",
        help: BACKPLANE_HELP,
        kind: Counter,
        label: Some(("result", "foreign")),
        value: |s| s.backplane_foreign,
    },
    Row {
        name: "backplane_new_streams_total",
        help: "Times the backplane's stream (NATS) was found deleted and made anew, a new epoch: what the old one held that this hub had not read is in backplane_events_total{result=\"missed\"}.",
        kind: Counter,
        label: None,
        value: |s| s.backplane_new_streams,
    },
    Row {
        name: "backplane_down",
        help: "1 while the connection to the backplane (NATS) is down, else 0.",
        kind: Gauge,
        label: None,
        value: |s| s.backplane_down,
    },
    Row {
        name: "dedup_window_ids",
        help: "Events the de-duplication window remembers now.",
        kind: Gauge,
        label: None,
        value: |s| s.dedup_window_ids,
    },
];

impl HubStats {
    /// Every figure of this snapshot, families together, in a fixed order
    /// and number: what `/metrics`, `/api/stats` and the CLI's summary
    /// show.
    ///
    /// ```
    /// let stats = watchtower_hub::HubStats::default();
    /// let clients = stats.figures().find(|f| f.name == "clients");
    /// assert_eq!(clients.map(|f| f.value), Some(0));
    /// ```
    pub fn figures(&self) -> impl Iterator<Item = Figure> + '_ {
        TABLE.iter().map(move |row| Figure {
            name: row.name,
            help: row.help,
            kind: row.kind,
            label: row.label,
            value: (row.value)(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prometheus_safe_and_families_are_adjacent_and_consistent() {
        let mut seen: Vec<&str> = Vec::new();
        let mut last: Option<&Row> = None;
        for row in TABLE {
            assert!(
                row.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                row.name
            );
            assert_eq!(
                row.kind == Counter,
                row.name.ends_with("_total"),
                "{}",
                row.name
            );
            match last {
                Some(prev) if prev.name == row.name => {
                    assert_eq!(prev.help, row.help);
                    assert_eq!(prev.kind, row.kind);
                    assert!(row.label.is_some() && prev.label.is_some());
                }
                _ => {
                    assert!(!seen.contains(&row.name), "{} is split", row.name);
                    seen.push(row.name);
                }
            }
            last = Some(row);
        }
    }

    #[test]
    fn handshake_failures_by_reason_add_up_to_the_total() {
        let stats = HubStats {
            handshake_failures: 10,
            tls_failures: 1,
            auth_rejected: 2,
            auth_throttled: 3,
            origin_rejected: 1,
            ..HubStats::default()
        };
        let sum: u64 = stats
            .figures()
            .filter(|f| f.name == "handshake_failures_total")
            .map(|f| f.value)
            .sum();
        assert_eq!(sum, 10);
    }
}
