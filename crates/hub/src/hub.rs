//! `Hub`: the listener, the supervisor task that owns every connection
//! task, and graceful shutdown.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, timeout_at};
use tracing::Instrument;
use watchtower_core::WarnLimiter;

use crate::backplane::{self, Backplane};
use crate::builder::HubBuilder;
use crate::config::HubConfig;
use crate::connection;
use crate::error::HubError;
use crate::gates::auth::{Auth, Token};
use crate::gates::origin::Origins;
use crate::gates::tarpit::{self, Tarpit};
use crate::gates::throttle::Throttle;
use crate::relay::dedup::DedupWindow;
use crate::shared::{Admission, Lifecycle, Shared, draining};
use crate::stats::{Counters, HubStats, bump};
use crate::tls::{HubTls, TlsSlot};

/// After the shutdown deadline, how long connection tasks get to finish
/// their bookkeeping before they are aborted.
const FINISH_GRACE: Duration = Duration::from_millis(250);

/// After a failed `accept` (e.g. out of file descriptors), how long to wait
/// before the next, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

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
        let fanout = backplane::fanout(backplane, &mut config, &counters, &dedup).await?;
        let (listener, local_addr) = listen(addr).await?;
        let secure = tls.is_some();
        let client_certificates = tls
            .as_ref()
            .is_some_and(HubTls::requires_client_certificates);
        let token_auth = auth.is_enabled();
        let origins = Origins::new(&config.allowed_origins, local_addr.port());
        let throttle = Throttle::new(config.auth_failures_per_minute);
        let shared = Arc::new(Shared::new(
            config,
            tls.map(TlsSlot::new),
            auth,
            origins,
            throttle,
            counters,
            fanout,
            dedup,
        ));
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
    // Dropped with the supervisor: the task answers what it holds (for
    // at most a second) and ends.
    let answer = if shared.tls.is_some() {
        tarpit::Answer::Close
    } else {
        tarpit::Answer::TooManyRequests
    };
    let (tarpit, _) = Tarpit::start(answer);
    let deadline = loop {
        tokio::select! {
            biased;
            deadline = draining(&mut lifecycle) => break deadline,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => reap(done),
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if let Err(wait) = shared.budget.take(peer.ip()) {
                        pace(&shared, &tarpit, tcp, peer, wait);
                        continue;
                    }
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
                    let id = shared.next_client_id();
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

/// Refuses a connection whose address is over its handshake budget,
/// unread: into the tarpit for a delayed 429 (a delayed close on
/// `wss://`), or closed at once when the tarpit is full (`held` false in
/// the log line).
fn pace(
    shared: &Shared,
    tarpit: &Tarpit,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    wait: Duration,
) {
    bump(&shared.counters.connections_paced);
    let held = tarpit.hold(tcp, wait);
    if let Some(suppressed) = shared.log_refusal() {
        tracing::info!(
            %peer,
            suppressed,
            held,
            delay = ?tarpit::DELAY,
            per_second = shared.config.handshakes_per_second_per_peer,
            burst = shared.config.handshake_burst_per_peer,
            "connection refused: its address is over handshakes_per_second_per_peer"
        );
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
