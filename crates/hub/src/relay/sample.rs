//! A sampled subscription, such as the dashboard's live tail: at most
//! `per_second` events a second are queued for the client, and the rest
//! are counted instead of queued.
//!
//! A client asks for it at the upgrade (`?sample=N` or the
//! [`SAMPLE_HEADER`] header). A tail that received every event would cost
//! the hub's real subscribers what one more subscriber costs (a queue
//! entry, a writer wake-up and a socket write per event); a skipped event
//! costs a counter instead: no queue entry, no wake-up, no write. The
//! count reaches the client as `{"type":"skipped","events":N}` (the
//! total since it connected), written by its writer at most once a
//! second, and at once after the first skip since the last report.
//!
//! The budget: `per_second` is at most [`MAX_SAMPLE_PER_SECOND`]; the
//! state is fixed-size, allocated once when the client asks; frames kept
//! go through the client's ordinary bounded queue. Sampling gives a client
//! nothing it could not have otherwise (it receives a subset of what it
//! would), and a client that presented a resume position cannot ask for
//! it: position frames promise that every event before them was sent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::relay::outbox::FrameSet;

/// The header a client asks for a sample with (`?sample=N` in the URL
/// works too, for browsers).
pub(crate) const SAMPLE_HEADER: &str = "watchtower-sample";

/// The query parameter a client asks for a sample with.
pub(crate) const SAMPLE_QUERY: &str = "sample";

/// Most events a second a sampled client may ask for: a tail is for
/// eyes, and above this a client can just as well take every event.
pub(crate) const MAX_SAMPLE_PER_SECOND: u32 = 1000;

/// How often, at most, the skipped count is written to the client.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The sampling window: at most `per_second` events in each.
const WINDOW: Duration = Duration::from_secs(1);

/// One sampled client's allowance and counts.
#[derive(Debug)]
pub(crate) struct Sampler {
    per_second: u32,
    /// The current window; touched by offers only (which hold the
    /// client's queue lock anyway, so this lock is never contended).
    window: Mutex<Window>,
    /// Events skipped since the client connected.
    skipped: AtomicU64,
    /// A skip since the last report has woken the writer: later skips
    /// need not (it reports them within [`REPORT_EVERY`]).
    woken: AtomicBool,
    /// The writer's side: what it last reported, and when.
    report: Mutex<Report>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    left: u32,
}

#[derive(Debug, Default)]
struct Report {
    reported: u64,
    at: Option<Instant>,
}

/// Whether a skipped count is due to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Everything skipped has been reported.
    Nothing,
    /// Write this total now.
    Now(u64),
    /// Something is to report, but the last report was less than
    /// [`REPORT_EVERY`] ago: at this instant.
    At(Instant),
}

impl Sampler {
    /// A sampler passing `per_second` events a second; `None` unless
    /// `1..=`[`MAX_SAMPLE_PER_SECOND`].
    pub(crate) fn new(per_second: u32) -> Option<Sampler> {
        (1..=MAX_SAMPLE_PER_SECOND)
            .contains(&per_second)
            .then(|| Sampler {
                per_second,
                window: Mutex::default(),
                skipped: AtomicU64::new(0),
                woken: AtomicBool::new(false),
                report: Mutex::default(),
            })
    }

    pub(crate) fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Events skipped so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(SeqCst)
    }

    /// Keeps what the window still allows of `frames` (the newest ones of
    /// the burst) and counts the rest as skipped. The flag says the writer
    /// should be woken to report (once per report, not per skip).
    pub(crate) fn keep(&self, mut frames: FrameSet, now: Instant) -> (FrameSet, bool) {
        let offered = frames.len();
        let allowed = {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            if window.start.is_none_or(|start| now >= start + WINDOW) {
                *window = Window {
                    start: Some(now),
                    left: self.per_second,
                };
            }
            let allowed = offered.min(window.left as usize);
            // `allowed` is at most `left`, a u32.
            window.left -= allowed as u32;
            allowed
        };
        let skip = offered - allowed;
        if skip == 0 {
            return (frames, false);
        }
        frames.drop_first(skip);
        self.skipped.fetch_add(skip as u64, SeqCst);
        let wake = !self.woken.swap(true, SeqCst);
        (frames, wake)
    }

    /// Whether the writer owes the client a skipped count.
    pub(crate) fn due(&self, now: Instant) -> Due {
        let total = self.skipped.load(SeqCst);
        let report = self.report.lock().unwrap_or_else(PoisonError::into_inner);
        if total == report.reported {
            return Due::Nothing;
        }
        match report.at {
            Some(at) if now < at + REPORT_EVERY => Due::At(at + REPORT_EVERY),
            _ => Due::Now(total),
        }
    }

    /// The writer handed `total` to the socket. Skips after this wake it
    /// again.
    pub(crate) fn reported(&self, total: u64, now: Instant) {
        // Before the next `due`: a skip from here on either is seen by it
        // or wakes the writer.
        self.woken.store(false, SeqCst);
        let mut report = self.report.lock().unwrap_or_else(PoisonError::into_inner);
        report.reported = total;
        report.at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_the_budget_are_refused() {
        assert!(Sampler::new(0).is_none());
        assert!(Sampler::new(MAX_SAMPLE_PER_SECOND + 1).is_none());
        assert_eq!(Sampler::new(1).map(|s| s.per_second()), Some(1));
        assert!(Sampler::new(MAX_SAMPLE_PER_SECOND).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_per_second_events_a_window_the_rest_counted() {
        let sampler = Sampler::new(10).unwrap();
        let start = Instant::now();
        // 4 bursts of 6 in the first window: 10 kept, the newest of the
        // burst that crosses the limit.
        let mut kept = 0;
        let mut wakes = 0;
        for _ in 0..4 {
            let (frames, wake) = sampler.keep(FrameSet::first(6), start);
            kept += frames.len();
            wakes += usize::from(wake);
            if frames.len() == 4 {
                assert_eq!(frames.first_index(), Some(2), "the newest frames kept");
            }
        }
        assert_eq!((kept, sampler.skipped()), (10, 14));
        assert_eq!(wakes, 1, "one wake-up, not one per skip");
        assert_eq!(sampler.due(start), Due::Now(14));
        sampler.reported(14, start);
        assert_eq!(sampler.due(start), Due::Nothing);

        // Still the first window: everything skipped, reported a second
        // after the last report.
        let later = start + Duration::from_millis(500);
        let (frames, wake) = sampler.keep(FrameSet::first(3), later);
        assert!(frames.is_empty() && wake);
        assert_eq!(sampler.due(later), Due::At(start + REPORT_EVERY));
        let (_, wake) = sampler.keep(FrameSet::first(3), later);
        assert!(!wake, "already woken");
        assert_eq!(sampler.due(start + REPORT_EVERY), Due::Now(20));

        // A new window: 10 more.
        let next = start + WINDOW;
        let (frames, _) = sampler.keep(FrameSet::first(25), next);
        assert_eq!(frames.len(), 10);
        assert_eq!(sampler.skipped(), 35);
    }
}
