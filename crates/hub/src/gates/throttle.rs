//! Failed-token throttling per peer address: after too many refusals in a
//! minute, a peer's upgrades are answered with 429 before its token is
//! even looked at, so guessing runs at a few tries a minute, not millions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long failures count against a peer.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// Most peers tracked at once (about 3 MB). Past it, expired entries are
/// swept (at most once a second); peers that still do not fit go
/// untracked rather than costing the hub memory or time.
const MAX_PEERS: usize = 65_536;

/// Counts failed token checks per peer address.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// Failures per peer per [`WINDOW`] before it is refused; 0: off.
    limit: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the peer's window started, and its failures in it.
    peers: HashMap<IpAddr, (Instant, u32)>,
    last_sweep: Option<Instant>,
}

impl Throttle {
    pub(crate) fn new(limit: u32) -> Throttle {
        Throttle {
            limit,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(time left)` while `peer` has used up its failures.
    pub(crate) fn blocked(&self, peer: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let now = Instant::now();
        let state = self.lock();
        let &(since, failures) = state.peers.get(&peer)?;
        let left = WINDOW.checked_sub(now.saturating_duration_since(since))?;
        (failures >= self.limit && !left.is_zero()).then_some(left)
    }

    /// `peer` presented a missing, wrong or ambiguous token.
    pub(crate) fn failed(&self, peer: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        if state.peers.len() >= MAX_PEERS && !state.peers.contains_key(&peer) {
            let due = state
                .last_sweep
                .is_none_or(|last| now.saturating_duration_since(last) >= Duration::from_secs(1));
            if !due {
                return;
            }
            state.last_sweep = Some(now);
            state
                .peers
                .retain(|_, (since, _)| now.saturating_duration_since(*since) < WINDOW);
            if state.peers.len() >= MAX_PEERS {
                return;
            }
        }
        let entry = state.peers.entry(peer).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
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
        assert!(t.lock().peers.is_empty());
    }
}
