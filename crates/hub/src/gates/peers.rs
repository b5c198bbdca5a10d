//! What a gate keeps per peer address, in a table of bounded size: past
//! its cap, stale entries are swept (at most once a second), and a peer
//! that still does not fit goes untracked rather than cost the hub memory
//! or time. Shared by the failed-token throttle and the handshake budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Most peers one table tracks by default: 65,536, a few MB whatever the
/// entries (an address and a few dozen bytes each).
pub(crate) const MAX_PEERS: usize = 65_536;

/// Shortest time between two sweeps of a full table, so a flood of new
/// addresses cannot make every connection pay for a sweep.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Per-peer entries, at most `cap` of them.
#[derive(Debug)]
pub(crate) struct PeerTable<V> {
    peers: HashMap<IpAddr, V>,
    cap: usize,
    last_sweep: Option<Instant>,
}

impl<V> PeerTable<V> {
    pub(crate) fn new(cap: usize) -> PeerTable<V> {
        PeerTable {
            peers: HashMap::new(),
            cap,
            last_sweep: None,
        }
    }

    pub(crate) fn get(&self, peer: &IpAddr) -> Option<&V> {
        self.peers.get(peer)
    }

    /// Peers tracked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// `peer`'s entry, made with `new` if it has none. When the table is
    /// full, the entries `stale` says forgetting changes nothing about are
    /// swept first, if a second has passed since the last sweep; `None`
    /// if there is still no room.
    pub(crate) fn entry(
        &mut self,
        peer: IpAddr,
        now: Instant,
        stale: impl Fn(&V) -> bool,
        new: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        if self.peers.len() >= self.cap && !self.peers.contains_key(&peer) {
            let due = self
                .last_sweep
                .is_none_or(|last| now.saturating_duration_since(last) >= SWEEP_EVERY);
            if !due {
                return None;
            }
            self.last_sweep = Some(now);
            self.peers.retain(|_, v| !stale(v));
            if self.peers.len() >= self.cap {
                return None;
            }
        }
        Some(self.peers.entry(peer).or_insert_with(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + n))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_sweeps_stale_entries_at_most_once_a_second() {
        let mut table = PeerTable::new(2);
        let now = Instant::now();
        // The value says whether the entry is stale.
        *table.entry(addr(1), now, |s| *s, || false).unwrap() = true;
        table.entry(addr(2), now, |s| *s, || false).unwrap();
        assert!(
            table.entry(addr(3), now, |s| *s, || false).is_some(),
            "the first sweep is due: the stale entry goes"
        );
        assert_eq!(table.len(), 2);
        assert!(table.get(&addr(1)).is_none());
        *table.get_mut_for_test(&addr(3)) = true;
        assert!(
            table.entry(addr(4), now, |s| *s, || false).is_none(),
            "no second sweep within the second: untracked"
        );
        assert!(
            table.entry(addr(2), now, |s| *s, || false).is_some(),
            "a tracked peer is found whatever"
        );
        let later = now + SWEEP_EVERY;
        assert!(table.entry(addr(4), later, |s| *s, || false).is_some());
        assert_eq!(table.len(), 2);
        assert!(
            table
                .entry(addr(5), later + SWEEP_EVERY, |s| *s, || false)
                .is_none(),
            "nothing stale: no room"
        );
        assert_eq!(table.len(), 2);
    }

    impl<V> PeerTable<V> {
        fn get_mut_for_test(&mut self, peer: &IpAddr) -> &mut V {
            self.peers.get_mut(peer).unwrap()
        }
    }
}
