//! What the supervisor and every connection task share ([`Shared`]),
//! the hub's lifecycle, and admission: a connection's places under the
//! connection caps ([`Admission`]) and among the readers ([`Reading`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use watchtower_core::WarnLimiter;

use crate::clients::ClientList;
use crate::config::HubConfig;
use crate::gates::auth::Auth;
use crate::gates::budget::HandshakeBudget;
use crate::gates::origin::Origins;
use crate::gates::pace::Pace;
use crate::gates::throttle::Throttle;
use crate::relay::dedup::DedupWindow;
use crate::relay::fanout::Fanout;
use crate::stats::{Counters, HubStats};
use crate::tls::TlsSlot;

/// Where the hub is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Running,
    /// Stop accepting; close every client with 1001 by `deadline`.
    Draining {
        deadline: Instant,
    },
}

/// What the supervisor and every connection task share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: HubConfig,
    /// `Some` for `wss://`.
    pub(crate) tls: Option<TlsSlot>,
    /// The bearer tokens clients must present; none: no auth.
    pub(crate) auth: Auth,
    /// The web origins whose pages may connect.
    pub(crate) origins: Origins,
    /// Failed token checks per peer address.
    pub(crate) throttle: Throttle,
    /// Connections a second per peer address.
    pub(crate) budget: HandshakeBudget,
    pub(crate) counters: Arc<Counters>,
    pub(crate) fanout: Box<dyn Fanout>,
    /// Keys of recent events from ack-mode clients, hub-wide, so a resend
    /// on a new connection is recognised too.
    pub(crate) dedup: Arc<DedupWindow>,
    pub(crate) lifecycle: watch::Sender<Lifecycle>,
    /// The clients connected now, for `/api/clients`.
    pub(crate) clients: ClientList,
    /// When the hub started, for the uptime.
    started: Instant,
    next_client: AtomicU64,
    /// TCP connections being served (handshaking, connected or closing).
    open: AtomicUsize,
    /// Of those, the ones whose TLS handshake or upgrade is not over.
    pending: AtomicUsize,
    /// The same, per peer address; an address leaves the map when its
    /// count is back to zero, so it holds at most `max_pending_handshakes`
    /// entries.
    pending_by_peer: Mutex<HashMap<IpAddr, usize>>,
    /// One log line a second, hub-wide, for refused clients (TLS, 401,
    /// 403): a flood of them must not become a flood of logs.
    refusal_log: Mutex<WarnLimiter>,
    /// Connections whose reader may still relay and acknowledge events;
    /// the top bit ([`READING_CLOSED`]) is set once the hub stops, and no
    /// reader starts after that. A stopping connection closes its queue
    /// only once the count is down to zero (see [`Shared::readers_stopped`]).
    readers: AtomicUsize,
    /// Wakes [`Shared::readers_stopped`].
    readers_stopped: Notify,
    /// `/api/clients` answers, hub-wide (see [`Shared::pace_clients_api`]).
    clients_api: Mutex<Pace>,
}

/// `/api/clients` answers a second, hub-wide, in bursts of as many: each
/// costs up to a thousand rows (a dashboard asks about once a second).
const CLIENTS_API_PER_SECOND: usize = 10;

/// The bit of [`Shared::readers`] set once no reader may start.
const READING_CLOSED: usize = 1 << (usize::BITS - 1);

/// One connection's place among the readers (see [`Shared::readers`]);
/// given back on drop, so an aborted task gives it back too.
#[derive(Debug)]
pub(crate) struct Reading<'a> {
    shared: &'a Shared,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if self.shared.readers.fetch_sub(1, SeqCst) == READING_CLOSED + 1 {
            self.shared.readers_stopped.notify_waiters();
        }
    }
}

/// One accepted connection's places under `max_connections` and, until
/// its upgrade is over, `max_pending_handshakes`; given back on drop, so
/// an aborted task gives them back too.
#[derive(Debug)]
pub(crate) struct Admission {
    shared: Arc<Shared>,
    peer: IpAddr,
    pending: bool,
}

impl Admission {
    /// Takes a place if both caps allow; `None` means refuse. Only the
    /// supervisor admits, so checking and taking cannot race each other
    /// (places given back meanwhile only make room).
    pub(crate) fn new(shared: &Arc<Shared>, peer: IpAddr) -> Option<Admission> {
        let config = &shared.config;
        if shared.open.load(Relaxed) >= config.max_connections
            || shared.pending.load(Relaxed) >= config.max_pending_handshakes
        {
            return None;
        }
        {
            let mut by_peer = shared.pending_by_peer();
            let count = by_peer.entry(peer).or_insert(0);
            if *count >= config.max_pending_handshakes_per_peer {
                return None;
            }
            *count += 1;
        }
        shared.open.fetch_add(1, Relaxed);
        shared.pending.fetch_add(1, Relaxed);
        Some(Admission {
            shared: Arc::clone(shared),
            peer,
            pending: true,
        })
    }

    /// The handshake is over (upgraded or refused): the place under
    /// `max_pending_handshakes` is free.
    pub(crate) fn handshake_done(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.shared.pending.fetch_sub(1, Relaxed);
            let mut by_peer = self.shared.pending_by_peer();
            if let Some(count) = by_peer.get_mut(&self.peer) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    by_peer.remove(&self.peer);
                }
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.handshake_done();
        self.shared.open.fetch_sub(1, Relaxed);
    }
}

impl Shared {
    /// The shared state of a hub about to listen, running.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: HubConfig,
        tls: Option<TlsSlot>,
        auth: Auth,
        origins: Origins,
        throttle: Throttle,
        counters: Arc<Counters>,
        fanout: Box<dyn Fanout>,
        dedup: Arc<DedupWindow>,
    ) -> Shared {
        let (lifecycle, _) = watch::channel(Lifecycle::Running);
        let budget = HandshakeBudget::new(
            config.handshakes_per_second_per_peer,
            config.handshake_burst_per_peer,
        );
        Shared {
            origins,
            throttle,
            budget,
            config,
            tls,
            auth,
            counters,
            fanout,
            dedup,
            lifecycle,
            clients: ClientList::default(),
            started: Instant::now(),
            next_client: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            pending_by_peer: Mutex::new(HashMap::new()),
            refusal_log: Mutex::new(WarnLimiter::default()),
            readers: AtomicUsize::new(0),
            readers_stopped: Notify::new(),
            clients_api: Mutex::new(Pace::per_second(CLIENTS_API_PER_SECOND)),
        }
    }

    /// The id of the next accepted connection.
    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Relaxed)
    }

    /// A place among the readers, for a connection about to read; `None`
    /// once the hub stops: it must not read (or acknowledge) anything.
    pub(crate) fn start_reading(&self) -> Option<Reading<'_>> {
        self.readers
            .fetch_update(SeqCst, SeqCst, |n| {
                (n & READING_CLOSED == 0).then_some(n + 1)
            })
            .ok()
            .map(|_| Reading { shared: self })
    }

    /// Whether an `/api/clients` answer may be made now; if not, how long
    /// until one may. A refused request costs nothing.
    pub(crate) fn pace_clients_api(&self) -> Result<(), Duration> {
        self.clients_api
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .try_take(1)
    }

    /// Resolves once the hub is stopping and every connection's reader
    /// has stopped: from then on nothing more is relayed or acknowledged,
    /// so a queue closed after this holds every acknowledged event meant
    /// for it.
    pub(crate) async fn readers_stopped(&self) {
        loop {
            let stopped = self.readers_stopped.notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            if self.readers.load(SeqCst) == READING_CLOSED {
                return;
            }
            stopped.await;
        }
    }

    /// `Some(lines left out since the last)` if a refused client may be
    /// logged now.
    pub(crate) fn log_refusal(&self) -> Option<u64> {
        self.refusal_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .allow()
    }

    /// The per-peer pending counts. A panic while the lock was held left
    /// the counts as they were, so a poisoned lock is used all the same.
    fn pending_by_peer(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.pending_by_peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The counters, and the de-duplication window's size, now.
    pub(crate) fn stats(&self) -> HubStats {
        let mut stats = self.counters.snapshot();
        stats.dedup_window_ids = self.dedup.len() as u64;
        stats.connections_open = self.open.load(Relaxed) as u64;
        stats.history_events = self.fanout.history_len() as u64;
        self.fanout.backplane_stats(&mut stats);
        stats
    }

    /// How long the hub has been running.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the hub accepts clients, for `/healthz`; if not, why, in
    /// one line.
    pub(crate) fn health(&self) -> Result<(), &'static str> {
        if let Lifecycle::Draining { .. } = *self.lifecycle.borrow() {
            return Err("shutting down\n");
        }
        let mut stats = HubStats::default();
        self.fanout.backplane_stats(&mut stats);
        if stats.backplane_down > 0 {
            return Err("backplane down: events are not stored or acknowledged\n");
        }
        Ok(())
    }

    /// Starts a graceful shutdown unless one is under way; returns its
    /// deadline.
    pub(crate) fn begin_shutdown(&self) -> Instant {
        let mut deadline = Instant::now() + self.config.shutdown_timeout;
        self.lifecycle.send_if_modified(|state| match *state {
            Lifecycle::Running => {
                *state = Lifecycle::Draining { deadline };
                true
            }
            Lifecycle::Draining { deadline: earlier } => {
                deadline = earlier;
                false
            }
        });
        // No reader starts from now on; the running ones stop as they see
        // the lifecycle change.
        if self.readers.fetch_or(READING_CLOSED, SeqCst) == 0 {
            self.readers_stopped.notify_waiters();
        }
        deadline
    }
}

/// Resolves with the deadline once the hub starts shutting down.
pub(crate) async fn draining(lifecycle: &mut watch::Receiver<Lifecycle>) -> Instant {
    match lifecycle
        .wait_for(|l| *l != Lifecycle::Running)
        .await
        .as_deref()
    {
        Ok(Lifecycle::Draining { deadline }) => *deadline,
        // The hub is gone; stop at once.
        _ => Instant::now(),
    }
}
