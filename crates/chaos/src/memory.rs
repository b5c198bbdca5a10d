//! Invariant 6's memory half: each hub's resident memory, sampled from
//! `/proc` while the campaign runs, against the budgets the campaign
//! configures the hubs with.
//!
//! The bound a hub's peak `VmRSS` is held to is
//!
//! ```text
//! baseline                       its VmRSS once it listened, before any client
//! + history_bytes                what its history may keep alive: frames and
//!                                their bookkeeping (HubConfig::history_bytes)
//! + dedup_events × 110 B         the de-duplication window, per key (its docs: ~100 B)
//! + PER_CONNECTION × sockets     the peak number of sockets it held at once
//! ```
//!
//! This is a memory bound, not a timing one: a hub that keeps frames the
//! history forgot, or grows per event without bound, exceeds it in a
//! campaign of minutes; one within its budgets never does.

use std::path::Path;

/// Bytes each open socket may cost a hub beyond the history: its read
/// buffer (4 KiB), the WebSocket writer's buffer, its outbox bookkeeping,
/// the two copies of its filter, its tasks, and the frames of its queue
/// that the history already forgot (a stalled or slow client, for the few
/// seconds a fault holds it). Stated, not fitted: the sockets counted
/// include the listener and the NATS connection, which makes the bound a
/// little looser, never tighter.
pub const PER_CONNECTION: u64 = 512 * 1024;

/// Memory per key of the hub's de-duplication window (about 100 bytes by
/// its docs, with growth slack).
pub const DEDUP_KEY: u64 = 110;

/// The budgets the campaign starts its hubs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `--history-bytes`: the history's frames and bookkeeping.
    pub history_bytes: u64,
    /// The hub's `dedup_window_events` (its default: the CLI has no flag).
    pub dedup_events: u64,
}

impl Budget {
    /// The most a hub that measured `baseline` bytes at start may hold
    /// resident while it has `sockets` sockets open.
    pub fn bound(&self, baseline: u64, sockets: u64) -> u64 {
        baseline
            .saturating_add(self.history_bytes)
            .saturating_add(self.dedup_events.saturating_mul(DEDUP_KEY))
            .saturating_add(sockets.saturating_mul(PER_CONNECTION))
    }
}

/// One reading of a process: resident bytes and open sockets, or `None`
/// when it is gone (or `/proc` cannot be read).
pub fn sample(pid: u32) -> Option<(u64, u64)> {
    let proc = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(proc.join("status")).ok()?;
    let rss = parse_vm_rss(&status)?;
    let mut sockets = 0;
    for entry in std::fs::read_dir(proc.join("fd")).ok()?.flatten() {
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1;
        }
    }
    Some((rss, sockets))
}

/// `VmRSS:     12345 kB` in `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\twatchtower\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12_345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let (rss, _) = sample(std::process::id()).unwrap_or_default();
        assert!(rss > 0);
    }

    #[test]
    fn the_bound_adds_every_budget() {
        let budget = Budget {
            history_bytes: 8 << 20,
            dedup_events: 100_000,
        };
        assert_eq!(
            budget.bound(5 << 20, 10),
            (5 << 20) + (8 << 20) + 11_000_000 + 10 * PER_CONNECTION
        );
    }
}
