//! `Hub`: the listener, the supervisor task that owns every connection
//! task, and graceful shutdown.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout_at};
use tracing::Instrument;
use watchtower_core::WarnLimiter;

use crate::auth::{Auth, Token};
use crate::builder::HubBuilder;
use crate::clients::ClientList;
use crate::config::HubConfig;
use crate::connection;
use crate::dedup::DedupWindow;
use crate::error::HubError;
use crate::fanout::{Fanout, LocalFanout};
use crate::history::History;
use crate::origin::Origins;
use crate::pace::Pace;
use crate::stats::{Counters, HubStats, bump};
use crate::throttle::Throttle;
use crate::tls::{HubTls, TlsSlot};

/// After the shutdown deadline, how long connection tasks get to finish
/// their bookkeeping before they are aborted.
const FINISH_GRACE: Duration = Duration::from_millis(250);

/// After a failed `accept` (e.g. out of file descriptors), how long to wait
/// before the next, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What connects hubs into a group, if anything.
#[derive(Debug, Clone)]
pub(crate) enum Backplane {
    /// NATS JetStream: one shared stream.
    #[cfg(feature = "nats")]
    Nats(crate::nats::NatsConfig),
}

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
    fn new(shared: &Arc<Shared>, peer: IpAddr) -> Option<Admission> {
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
    fn begin_shutdown(&self) -> Instant {
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

/// A running relay hub.
///
/// Every valid event a client sends is relayed, byte-for-byte, to every
/// other connected client whose filter matches its `event_type`; never back
/// to the sender. Clients set their filter with
/// [`ControlFrame`](watchtower_core::ControlFrame)s; one that never sends
/// one receives everything. See the [crate docs](crate) for how slow, dead
/// and misbehaving clients are handled.
///
/// Any request path is accepted, so `ws://host:port/events` works as well
/// as `ws://host:port/`. [`Hub::builder`] adds `wss://` (with optional
/// client certificates) and bearer-token auth.
///
/// Call [`shutdown`](Self::shutdown) to stop gracefully. Dropping a `Hub`
/// stops it at once: the listener and every connection are dropped, with no
/// close frames, as soon as the runtime runs the cancelled tasks.
pub struct Hub {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    supervisor: Option<JoinHandle<()>>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("local_addr", &self.local_addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Listens on `addr` with the default [`HubConfig`].
    ///
    /// Port 0 lets the system pick a free port; read it back with
    /// [`local_addr`](Self::local_addr). Must run inside a tokio runtime.
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<Hub, HubError> {
        Hub::bind_with(addr, HubConfig::default()).await
    }

    /// Validates `config`, then listens on `addr`.
    ///
    /// Fails with [`HubError::Config`] before any I/O if a setting is out
    /// of range, and with [`HubError::Bind`] if no resolved address can be
    /// listened on (port taken, no permission).
    pub async fn bind_with(addr: impl ToSocketAddrs, config: HubConfig) -> Result<Hub, HubError> {
        Hub::builder().config(config).bind(addr).await
    }

    /// A builder for a hub with TLS (`wss://`, optionally requiring client
    /// certificates) or bearer-token auth.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// Listens with settings the builder has validated.
    pub(crate) async fn start(
        addr: impl ToSocketAddrs,
        #[cfg_attr(not(feature = "nats"), allow(unused_mut))] mut config: HubConfig,
        tls: Option<HubTls>,
        auth: Auth,
        backplane: Option<Backplane>,
    ) -> Result<Hub, HubError> {
        let counters = Arc::new(Counters::default());
        let dedup = Arc::new(DedupWindow::new(
            config.dedup_window_events,
            config.dedup_client_share,
            config.dedup_window_age,
        ));
        let fanout: Box<dyn Fanout> = match backplane {
            None => Box::new(LocalFanout::new(History::new(&config))),
            #[cfg(feature = "nats")]
            Some(Backplane::Nats(nats)) => Box::new(
                crate::nats::NatsFanout::start(
                    &nats,
                    &mut config,
                    Arc::clone(&counters),
                    Arc::clone(&dedup),
                )
                .await?,
            ),
        };
        let (listener, local_addr) = listen(addr).await?;
        let (lifecycle, _) = watch::channel(Lifecycle::Running);
        let secure = tls.is_some();
        let client_certificates = tls
            .as_ref()
            .is_some_and(HubTls::requires_client_certificates);
        let token_auth = auth.is_enabled();
        let origins = Origins::new(&config.allowed_origins, local_addr.port());
        let throttle = Throttle::new(config.auth_failures_per_minute);
        let shared = Arc::new(Shared {
            origins,
            throttle,
            config,
            tls: tls.map(TlsSlot::new),
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
        });
        let span = tracing::info_span!("watchtower_hub", addr = %local_addr);
        let supervisor = tokio::spawn(supervise(listener, Arc::clone(&shared)).instrument(span));
        tracing::info!(
            addr = %local_addr,
            tls = secure,
            client_certificates,
            token_auth,
            "hub listening"
        );
        Ok(Hub {
            shared,
            local_addr,
            supervisor: Some(supervisor),
        })
    }

    /// The address the hub listens on, with the real port when bound to 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients connect to: `ws://ADDR/events`, or `wss://ADDR/events`
    /// when serving TLS. (With TLS, clients must dial a name the
    /// certificate is valid for; `ADDR` is one only if the certificate
    /// lists that IP address.)
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/events", self.local_addr)
    }

    /// The base URL of the hub's HTTP side on the same port:
    /// `http://ADDR/` (or `https://`), where the dashboard is; `metrics`,
    /// `healthz`, `api/stats` and `api/clients` are below it.
    pub fn http_url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/", self.local_addr)
    }

    /// The counters now.
    pub fn stats(&self) -> HubStats {
        self.shared.stats()
    }

    /// A cheap, cloneable handle that reads the stats and can start a
    /// graceful shutdown from anywhere (a signal handler, an admin task).
    pub fn handle(&self) -> HubHandle {
        HubHandle {
            shared: Arc::clone(&self.shared),
            local_addr: self.local_addr,
        }
    }

    /// Resolves once a shutdown was started, by [`HubHandle::shutdown`] or
    /// otherwise; then call [`shutdown`](Self::shutdown) to wait for it.
    pub async fn shutdown_requested(&self) {
        let mut lifecycle = self.shared.lifecycle.subscribe();
        // The sender lives in `self.shared`, so this cannot fail while
        // `self` is borrowed.
        let _ = lifecycle.wait_for(|l| *l != Lifecycle::Running).await;
    }

    /// Stops gracefully and returns the final stats.
    ///
    /// Stops accepting (the port is free again when this returns), stops
    /// reading from every client (nothing more is relayed or
    /// acknowledged), and only then writes what is queued for each client,
    /// closes every client with 1001 (Going Away) and waits for their
    /// replies, all within [`HubConfig::shutdown_timeout`]; clients still
    /// open after that are dropped. With a backplane, the events it still
    /// holds get the same time to be stored; those that were not are
    /// counted in the returned stats (`backplane_failures`) and logged. So an event acknowledged to its
    /// publisher reaches every subscriber that stays connected and reading
    /// until its 1001.
    pub async fn shutdown(mut self) -> HubStats {
        let deadline = self.shared.begin_shutdown();
        tracing::info!(addr = %self.local_addr, clients = self.shared.counters.snapshot().clients, "hub shutting down");
        let supervisor = self.supervisor.take();
        let supervised = async {
            if let Some(supervisor) = supervisor {
                let abort = supervisor.abort_handle();
                // The supervisor enforces the deadline itself; this bound
                // only guards against a bug there.
                if timeout_at(deadline + 2 * FINISH_GRACE, supervisor)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
        };
        // Once nothing more is relayed, what a backplane still holds gets
        // until the deadline to be stored; `stop` counts what was not.
        let settled = timeout_at(deadline, async {
            self.shared.readers_stopped().await;
            self.shared.fanout.settle().await;
        });
        let ((), _) = tokio::join!(supervised, settled);
        self.shared.fanout.stop();
        let stats = self.stats();
        tracing::info!(addr = %self.local_addr, ?stats, "hub stopped");
        stats
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            // Dropping the supervisor drops its JoinSet, which aborts every
            // connection task.
            supervisor.abort();
        }
        // A `HubHandle` may keep `shared` alive: the backplane stops now.
        self.shared.fanout.stop();
    }
}

/// A cloneable handle to a running [`Hub`]: its stats, and a shutdown
/// trigger.
#[derive(Clone)]
pub struct HubHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl HubHandle {
    /// The counters now.
    pub fn stats(&self) -> HubStats {
        self.shared.stats()
    }

    /// The address the hub listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts a graceful shutdown (see [`Hub::shutdown`]) and returns at
    /// once. Calling it again does nothing. The [`Hub`]'s owner learns of it
    /// through [`Hub::shutdown_requested`].
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// True once a shutdown was started.
    pub fn is_shutting_down(&self) -> bool {
        *self.shared.lifecycle.borrow() != Lifecycle::Running
    }

    /// Replaces the bearer tokens new clients must present (e.g. on SIGHUP,
    /// to rotate a token); connected clients stay connected. The tokens
    /// are checked as at start (`min_token_len`, characters). A hub started
    /// without tokens cannot be given some, nor a hub with tokens be left
    /// with none: [`HubError::Config`], and the old tokens stay.
    pub fn reload_tokens<I, T>(&self, tokens: I) -> Result<(), HubError>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let tokens = tokens.into_iter().map(|t| Token::new(t.into())).collect();
        self.shared.auth.replace(tokens)
    }

    /// Replaces the certificate (and client CA) new `wss://` connections
    /// are served with, e.g. after a certificate was renewed; connected
    /// clients stay connected. [`HubError::Config`] for a hub started
    /// without TLS.
    pub fn reload_tls(&self, tls: HubTls) -> Result<(), HubError> {
        match &self.shared.tls {
            Some(slot) => {
                slot.replace(tls);
                Ok(())
            }
            None => Err(HubError::Config(
                "cannot reload TLS on a hub started without it".to_string(),
            )),
        }
    }
}

/// Resolves `addr` and listens on the first address that works; returns
/// the listener and its address (with the real port when asked for 0).
async fn listen(addr: impl ToSocketAddrs) -> Result<(TcpListener, SocketAddr), HubError> {
    let mut last = None;
    for candidate in tokio::net::lookup_host(addr)
        .await
        .map_err(HubError::Resolve)?
    {
        let bound = TcpListener::bind(candidate)
            .await
            .and_then(|listener| Ok((listener.local_addr()?, listener)));
        match bound {
            Ok((local, listener)) => return Ok((listener, local)),
            Err(source) => {
                last = Some(HubError::Bind {
                    addr: candidate,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(HubError::NoAddress))
}

/// Accepts connections and owns their tasks until shutdown, then closes
/// them within the deadline.
async fn supervise(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut lifecycle = shared.lifecycle.subscribe();
    let mut refused_warning = WarnLimiter::default();
    let mut accept_warning = WarnLimiter::default();
    let deadline = loop {
        tokio::select! {
            biased;
            deadline = draining(&mut lifecycle) => break deadline,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => reap(done),
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Some(admission) = Admission::new(&shared, peer.ip()) else {
                        // Refused as cheaply as it gets: closed before any
                        // read, task or allocation.
                        bump(&shared.counters.connections_refused);
                        drop(tcp);
                        if let Some(suppressed) = refused_warning.allow() {
                            tracing::warn!(
                                %peer,
                                suppressed,
                                max_connections = shared.config.max_connections,
                                max_pending_handshakes = shared.config.max_pending_handshakes,
                                max_pending_handshakes_per_peer = shared.config.max_pending_handshakes_per_peer,
                                "connection refused: over a connection cap"
                            );
                        }
                        continue;
                    };
                    // Writes are batched already; Nagle would only add latency.
                    if let Err(error) = tcp.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                    }
                    let id = shared.next_client.fetch_add(1, Relaxed);
                    let span = tracing::info_span!("client", id, %peer);
                    // The TLS handshake, if any, runs inside the client's
                    // own task, so a slow one never holds up `accept`.
                    tasks.spawn(connection::accept(tcp, peer, id, Arc::clone(&shared), admission).instrument(span));
                }
                Err(error) => {
                    if let Some(suppressed) = accept_warning.allow() {
                        tracing::warn!(%error, suppressed, "accept failed; retrying shortly");
                    }
                    sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    };
    // Free the port first, so a new hub can bind it as soon as we return.
    drop(listener);
    tracing::info!(clients = tasks.len(), "stopped accepting; closing clients");
    let drained = timeout_at(deadline + FINISH_GRACE, async {
        while let Some(done) = tasks.join_next().await {
            reap(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            clients = tasks.len(),
            "clients did not close in time; dropping them"
        );
        tasks.shutdown().await;
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

fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        tracing::error!(%error, "a connection task panicked; the hub carries on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task lives as long as the client stays connected, so
    /// its state is paid per idle client (README: idle memory per
    /// connection). The task's future holds its arguments and a box: the
    /// plain path's `serve` and the TLS path (a `TlsStream`, rustls's
    /// handshake, the linger buffer: 2.5 KiB) are boxed, so a plain client
    /// keeps no room for TLS.
    #[tokio::test]
    async fn a_connection_task_keeps_no_room_for_tls() {
        let hub = Hub::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(hub.local_addr())
            .await
            .unwrap();
        let peer = tcp.local_addr().unwrap();
        let admission = Admission::new(&hub.shared, peer.ip()).unwrap();
        let task = connection::accept(tcp, peer, 0, Arc::clone(&hub.shared), admission);
        let size = std::mem::size_of_val(&task);
        drop(task);
        assert!(
            size <= 256,
            "a connection task's state is {size} bytes (budget 256)"
        );
        hub.shutdown().await;
    }
}
