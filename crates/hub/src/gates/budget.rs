//! The handshake budget per peer address: a token bucket of connections
//! (WebSocket upgrades and HTTP requests alike), checked right after
//! `accept`, before anything is read or allocated for the connection, so
//! a client looping upgrades costs the hub an `accept` and a close past
//! its budget, not a handshake each.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::pace::Pace;
use super::peers::{MAX_PEERS, PeerTable};

/// Connections per second per address, in bursts; see
/// `HubConfig::handshakes_per_second_per_peer`.
#[derive(Debug)]
pub(crate) struct HandshakeBudget {
    /// Connections a second per peer; 0: off.
    rate: u32,
    burst: u32,
    /// Each peer's bucket, for at most [`MAX_PEERS`] peers (about 5 MB):
    /// one that does not fit goes unpaced. A bucket back at its full
    /// burst is forgotten first, which changes nothing.
    peers: Mutex<PeerTable<Pace>>,
}

impl HandshakeBudget {
    pub(crate) fn new(rate: u32, burst: u32) -> HandshakeBudget {
        HandshakeBudget::with_cap(rate, burst, MAX_PEERS)
    }

    fn with_cap(rate: u32, burst: u32, cap: usize) -> HandshakeBudget {
        HandshakeBudget {
            rate,
            burst,
            peers: Mutex::new(PeerTable::new(cap)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PeerTable<Pace>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one connection from `peer`'s budget; `Err(wait)` when it is
    /// spent, `wait` being how long until one is back. A refusal costs
    /// nothing, so a peer that keeps trying is not pushed further back.
    pub(crate) fn take(&self, peer: IpAddr) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let (rate, burst) = (self.rate as usize, self.burst as usize);
        let mut peers = self.lock();
        match peers.entry(
            key(peer),
            now,
            |pace| pace.is_full(now),
            || Pace::with_burst(rate, burst),
        ) {
            Some(pace) => pace.try_take(1),
            None => Ok(()),
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// Whose budget a connection from `peer` spends: its IPv4 address (also
/// when it comes as an IPv4-mapped IPv6 one), or its IPv6 /64. A host is
/// usually given a whole /64, so a budget per IPv6 address would give one
/// attacker 2^64 budgets.
fn key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_gets_its_burst_then_the_rate_and_others_their_own() {
        let budget = HandshakeBudget::new(10, 3);
        let (a, b) = (v4(0xc000_0201), v4(0xc000_0202));
        for _ in 0..3 {
            assert_eq!(budget.take(a), Ok(()));
        }
        assert_eq!(budget.take(a), Err(Duration::from_millis(100)));
        assert_eq!(
            budget.take(a),
            Err(Duration::from_millis(100)),
            "refusals cost nothing"
        );
        assert_eq!(budget.take(b), Ok(()), "another address has its own");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(budget.take(a), Ok(()));
        assert!(budget.take(a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_it_off() {
        let budget = HandshakeBudget::new(0, 1);
        let a = v4(0xc000_0201);
        for _ in 0..1000 {
            assert_eq!(budget.take(a), Ok(()));
        }
        assert_eq!(budget.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_bounded_under_many_addresses() {
        let budget = HandshakeBudget::with_cap(1, 2, 1000);
        for n in 0..100_000 {
            // Spent buckets: none of them can be swept.
            let peer = v4(0x0a00_0000 + n);
            let _ = budget.take(peer);
            let _ = budget.take(peer);
            assert!(budget.tracked() <= 1000);
        }
        assert_eq!(budget.tracked(), 1000);
        let untracked = v4(0x0b00_0000);
        for _ in 0..10 {
            assert_eq!(budget.take(untracked), Ok(()), "untracked: unpaced");
        }
        // Once the buckets are full again, a sweep makes room.
        tokio::time::advance(Duration::from_secs(3)).await;
        let late = v4(0x0c00_0000);
        assert_eq!(budget.take(late), Ok(()));
        assert_eq!(budget.take(late), Ok(()));
        assert!(budget.take(late).is_err(), "tracked again");
        assert_eq!(budget.tracked(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ipv6_64_shares_one_budget_and_mapped_ipv4_is_ipv4() {
        let budget = HandshakeBudget::new(1, 2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(budget.take(a), Ok(()));
        assert_eq!(budget.take(b), Ok(()));
        assert!(budget.take(a).is_err(), "one /64, one budget");
        assert_eq!(budget.take(c), Ok(()), "another /64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let plain: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(budget.take(mapped), Ok(()));
        assert_eq!(budget.take(plain), Ok(()));
        assert!(budget.take(plain).is_err(), "the same address either way");
    }
}
