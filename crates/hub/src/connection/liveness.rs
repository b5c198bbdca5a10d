//! Liveness: when the client last sent anything, and the timer that drops
//! a client that went silent.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::hub::Shared;

use super::End;

/// When the client last sent anything.
pub(super) struct Clock {
    epoch: Instant,
    /// Nanoseconds after `epoch`. Atomic only because the task must be
    /// `Send`; one task reads and writes it.
    last_rx: AtomicU64,
}

impl Clock {
    pub(super) fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            last_rx: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_rx.store(nanos, Relaxed);
    }

    pub(super) fn last_rx(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last_rx.load(Relaxed))
    }
}

/// Ends the connection when the client sent nothing at all for
/// `ping_interval + pong_timeout`. The writer pings every `ping_interval`,
/// so a live client always answers in time.
pub(super) async fn keepalive(shared: &Shared, clock: &Clock) -> End {
    let dead_after = shared.config.ping_interval + shared.config.pong_timeout;
    loop {
        let deadline = clock.last_rx() + dead_after;
        if Instant::now() >= deadline {
            return End::Dead(dead_after);
        }
        sleep_until(deadline).await;
    }
}
