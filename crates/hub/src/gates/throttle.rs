//! Failed-token throttling per peer address: after too many refusals in a
//! minute, a peer's upgrades are answered with 429 before its token is
//! even looked at, so guessing runs at a few tries a minute, not millions.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::peers::{MAX_PEERS, PeerTable};

/// How long failures count against a peer.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// Counts failed token checks per peer address, for at most
/// [`MAX_PEERS`] peers at once (about 3 MB).
#[derive(Debug)]
pub(crate) struct Throttle {
    /// Failures per peer per [`WINDOW`] before it is refused; 0: off.
    limit: u32,
    /// When each peer's window started, and its failures in it.
    peers: Mutex<PeerTable<(Instant, u32)>>,
}

impl Throttle {
    pub(crate) fn new(limit: u32) -> Throttle {
        Throttle {
            limit,
            peers: Mutex::new(PeerTable::new(MAX_PEERS)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PeerTable<(Instant, u32)>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(time left)` while `peer` has used up its failures.
    pub(crate) fn blocked(&self, peer: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let now = Instant::now();
        let peers = self.lock();
        let &(since, failures) = peers.get(&peer)?;
        let left = WINDOW.checked_sub(now.saturating_duration_since(since))?;
        (failures >= self.limit && !left.is_zero()).then_some(left)
    }

    /// `peer` presented a missing, wrong or ambiguous token.
    pub(crate) fn failed(&self, peer: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let now = Instant::now();
        let mut peers = self.lock();
        let over = |&(since, _): &(Instant, u32)| now.saturating_duration_since(since) >= WINDOW;
        let Some(entry) = peers.entry(peer, now, over, || (now, 0)) else {
            return;
        };
        if over(entry) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_is_blocked_after_the_limit_until_its_window_ends() {
        let t = Throttle::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        t.failed(a);
        assert_eq!(t.blocked(a), None);
        t.failed(a);
        assert_eq!(t.blocked(a), Some(WINDOW));
        assert_eq!(t.blocked(b), None, "other peers are not affected");
        tokio::time::advance(WINDOW).await;
        assert_eq!(t.blocked(a), None);
        t.failed(a);
        assert_eq!(t.blocked(a), None, "a new window");
    }

    #[test]
    fn zero_turns_it_off() {
        let t = Throttle::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            t.failed(a);
        }
        assert_eq!(t.blocked(a), None);
        assert_eq!(t.lock().len(), 0);
    }
}
