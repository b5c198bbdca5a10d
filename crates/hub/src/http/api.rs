//! `/api/stats` and `/api/clients`: JSON for the dashboard and for scripts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::clients::ClientList;
use crate::stats::HubStats;

/// `{"version", "uptime_seconds", "stats": {name: value, or {label value:
/// value} for a family}}`, names as in `/metrics` without the prefix.
pub(super) fn stats(stats: &HubStats, uptime: Duration) -> String {
    let mut figures = Map::new();
    for figure in stats.figures() {
        match figure.label {
            None => {
                figures.insert(figure.name.into(), figure.value.into());
            }
            Some((_, label)) => {
                let family = figures
                    .entry(figure.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(family) = family {
                    family.insert(label.into(), figure.value.into());
                }
            }
        }
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": uptime.as_secs_f64(),
        "stats": figures,
    })
    .to_string()
}

/// `{"total", "clients": [...]}`: one row per connected client, at most
/// [`MAX_CLIENT_ROWS`](crate::clients::MAX_CLIENT_ROWS) of them.
pub(super) fn clients(list: &ClientList) -> String {
    let (rows, total) = list.rows();
    let now = SystemTime::now();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            let since_ms = row
                .since
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let connected = now.duration_since(row.since).unwrap_or_default();
            let view = row.outbox;
            json!({
                "id": row.id,
                "peer": row.peer.to_string(),
                "since_unix_ms": since_ms,
                "connected_seconds": connected.as_secs_f64(),
                "filter": {
                    "mode": view.filter.mode,
                    "count": view.filter.count,
                    "types": view.filter.sample,
                },
                "queued_frames": view.queued_frames,
                "held_bytes": view.held_bytes,
                "frames_out": view.frames_out,
                "dropped": view.dropped,
                "acks": view.acks,
                "sample": view.sample.map(|(per_second, skipped)| json!({
                    "per_second": per_second,
                    "skipped": skipped,
                })),
            })
        })
        .collect();
    json!({ "total": total, "clients": rows }).to_string()
}
