//! `TransportBuilder`: every setting beyond the spec's four.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use watchtower_core::{BoxError, Position, WatchtowerError};
use watchtower_dlq::DlqConfig;
use watchtower_reconnect::ReconnectPolicy;

use crate::checkpoint::{
    CheckpointSettings, CheckpointStore, DEFAULT_CHECKPOINT_INTERVAL, FileCheckpoint,
};
use crate::config::WebSocketConfig;
use crate::connect::header_pair;
use crate::credentials::{self, CredentialProvider, Credentials};
use crate::delivery::{Acks, DEFAULT_ACK_ATTEMPTS, DEFAULT_DEDUP_WINDOW, Delivery};
use crate::settings::{Keepalive, Settings};
use crate::subscription::MailboxOverflow;
use crate::tls::{Pem, TlsOptions};
use crate::transport::WebSocketTransport;

/// Default keepalive ping interval.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default time to wait for any frame after a ping before the connection is
/// declared dead.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit for TCP connect + TLS + WebSocket handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default maximum size of one message, either direction: 1 MiB. Events are
/// small; a low limit bounds what a bad peer can make us buffer.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default read buffer: 4 KiB. tungstenite's 128 KiB default costs ~130 KiB
/// per idle connection once touched; 4 KiB measured no slower here.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 4 * 1024;
/// Default per-subscription mailbox capacity.
pub const DEFAULT_MAILBOX_SIZE: usize = 1024;
/// Default most frames written per flush.
pub const DEFAULT_WRITE_BATCH: usize = 256;
/// Default time `shutdown` spends flushing and closing.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time the circuit breaker stays open before a trial connect.
pub const DEFAULT_BREAKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest a pending write may go without the socket taking a
/// byte: a server that stops reading (while it keeps sending, so keepalive
/// sees a live peer) is replaced after this long.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest any duration setting may be. Far beyond any sane value, and
/// small enough that `Instant + duration` can never overflow (a panic
/// inside the connection task otherwise).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Upper bounds for sizes: far above any sane setting, they turn a typo
/// (or `usize::MAX`) into a clear error instead of an allocation failure or
/// a panic deep inside a channel.
const MAX_QUEUE: usize = 1 << 26;
const MAX_MAILBOX: usize = 1 << 24;
const MAX_BATCH: usize = 1 << 16;
const MAX_IN_FLIGHT: usize = 1 << 20;
const MAX_DEDUP_WINDOW: usize = 1 << 24;

/// Builds a [`WebSocketTransport`] with settings beyond [`WebSocketConfig`].
///
/// ```no_run
/// use std::time::Duration;
/// use watchtower_websocket_transport::{WebSocketConfig, WebSocketTransport};
///
/// # async fn run() -> Result<(), watchtower_core::WatchtowerError> {
/// let transport = WebSocketTransport::builder(WebSocketConfig::new("wss://events.example.com/ws"))
///     .keepalive(Duration::from_secs(15), Duration::from_secs(5))
///     .bearer_token("abc123")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct TransportBuilder {
    config: WebSocketConfig,
    policy: Option<ReconnectPolicy>,
    breaker_timeout: Duration,
    keepalive: Option<Keepalive>,
    connect_timeout: Duration,
    max_message_size: usize,
    max_frame_size: Option<usize>,
    read_buffer_size: usize,
    headers: Credentials,
    credential_provider: Option<CredentialProvider>,
    tls: TlsOptions,
    mailbox_size: usize,
    mailbox_overflow: MailboxOverflow,
    dlq: DlqConfig,
    server_filters: bool,
    write_batch: usize,
    shutdown_timeout: Duration,
    write_timeout: Duration,
    lazy: bool,
    delivery: Delivery,
    ack_attempts: u32,
    dedup_window: usize,
    resume: bool,
    resume_from: Option<Position>,
    fallback_urls: Vec<String>,
    checkpoint: Option<Arc<dyn CheckpointStore>>,
    checkpoint_interval: Duration,
}

impl fmt::Debug for TransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportBuilder")
            .field("config", &self.config)
            .field("headers", &self.headers)
            .field("keepalive", &self.keepalive)
            .field("server_filters", &self.server_filters)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl TransportBuilder {
    pub(crate) fn new(config: WebSocketConfig) -> Self {
        TransportBuilder {
            config,
            policy: None,
            breaker_timeout: DEFAULT_BREAKER_TIMEOUT,
            keepalive: Some(Keepalive {
                interval: DEFAULT_KEEPALIVE_INTERVAL,
                pong_timeout: DEFAULT_PONG_TIMEOUT,
            }),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: None,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            headers: Credentials::new(),
            credential_provider: None,
            tls: TlsOptions::default(),
            mailbox_size: DEFAULT_MAILBOX_SIZE,
            mailbox_overflow: MailboxOverflow::DeadLetter,
            dlq: DlqConfig::default(),
            server_filters: false,
            write_batch: DEFAULT_WRITE_BATCH,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            lazy: false,
            delivery: Delivery::AtMostOnce,
            ack_attempts: DEFAULT_ACK_ATTEMPTS,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            resume: true,
            resume_from: None,
            fallback_urls: Vec::new(),
            checkpoint: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }

    /// Ping after `interval` of silence; declare the connection dead when
    /// nothing (pong or any frame) arrives within `interval + pong_timeout`.
    /// Defaults 30 s and 10 s. Half-open TCP connections are found this way.
    pub fn keepalive(mut self, interval: Duration, pong_timeout: Duration) -> Self {
        self.keepalive = Some(Keepalive {
            interval,
            pong_timeout,
        });
        self
    }

    /// Sends no pings at all and never declares a silent connection dead.
    /// Only for servers that mishandle pings: half-open connections then go
    /// unnoticed until a write fails.
    pub fn disable_keepalive(mut self) -> Self {
        self.keepalive = None;
        self
    }

    /// Limit for TCP connect, TLS and the WebSocket handshake together,
    /// per attempt. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Largest message accepted in either direction. Default 1 MiB. A larger
    /// incoming message closes the connection with 1009 (then reconnects); a
    /// larger outgoing event fails `publish` with `MessageTooLarge`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Largest single incoming frame. Default: the max message size.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = Some(bytes);
        self
    }

    /// Socket read buffer. Default 4 KiB.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes;
        self
    }

    /// Adds a header to every upgrade request, e.g. `Sec-WebSocket-Protocol`.
    /// Values never appear in logs, errors or `Debug` output.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers = self.headers.header(name, value);
        self
    }

    /// Sends `Authorization: Bearer <token>` with every upgrade request.
    pub fn bearer_token(self, token: impl AsRef<str>) -> Self {
        self.header("Authorization", format!("Bearer {}", token.as_ref()))
    }

    /// Calls `provider` before every connect and reconnect and sends the
    /// headers it returns (after the static ones), so short-lived tokens are
    /// refreshed. Its error fails that attempt with a `Credentials` error.
    ///
    /// ```no_run
    /// use watchtower_websocket_transport::{Credentials, WebSocketConfig, WebSocketTransport};
    /// # async fn fetch_token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # async fn run() -> Result<(), watchtower_core::WatchtowerError> {
    /// let transport = WebSocketTransport::builder(WebSocketConfig::default())
    ///     .credential_provider(|| async { Ok::<_, std::io::Error>(Credentials::bearer(fetch_token().await?)) })
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn credential_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Credentials, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.credential_provider = Some(credentials::provider(provider));
        self
    }

    /// Trusts an extra root CA (PEM, one or more certificates) for `wss://`,
    /// as a self-signed or private deployment needs.
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.extra_roots.push(Pem::Bytes(pem.into()));
        self
    }

    /// Trusts an extra root CA read from a PEM file when the transport is
    /// built.
    pub fn add_root_certificate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.extra_roots.push(Pem::File(path.into()));
        self
    }

    /// Whether to trust the Mozilla roots bundled through `webpki-roots`.
    /// Default true.
    pub fn use_webpki_roots(mut self, enabled: bool) -> Self {
        self.tls.webpki_roots = enabled;
        self
    }

    /// Whether to trust the platform's certificate store. Default false.
    pub fn use_native_roots(mut self, enabled: bool) -> Self {
        self.tls.native_roots = enabled;
        self
    }

    /// Presents a client certificate (PEM chain) and its private key (PEM)
    /// for mutual TLS.
    pub fn client_certificate_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client_identity = Some((
            Pem::Bytes(cert_chain.into()),
            Pem::Bytes(private_key.into()),
        ));
        self
    }

    /// Presents a client certificate and key read from PEM files.
    pub fn client_certificate_files(
        mut self,
        cert_chain: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> Self {
        self.tls.client_identity =
            Some((Pem::File(cert_chain.into()), Pem::File(private_key.into())));
        self
    }

    /// Replaces the spec's linear `delay * attempt` schedule built from
    /// `max_reconnect_attempts` and `reconnect_delay_seconds`: exponential
    /// or fixed backoff, a cap, jitter, sub-second delays, or unlimited
    /// attempts (the breaker then never opens).
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// How long the circuit breaker stays open before one trial connect.
    /// Default 60 s.
    pub fn breaker_timeout(mut self, timeout: Duration) -> Self {
        self.breaker_timeout = timeout;
        self
    }

    /// How many events each subscription may hold — queued for its handler
    /// or being handled — at most 2²⁴. Default 1024. When a slow handler
    /// lets it fill, further events for it are dead-lettered and counted;
    /// other subscriptions are not slowed.
    pub fn mailbox_size(mut self, events: usize) -> Self {
        self.mailbox_size = events;
        self
    }

    /// What a full subscription mailbox does. Default
    /// [`MailboxOverflow::DeadLetter`]: the event goes to the dead-letter
    /// queue, counted, and nothing else slows down.
    /// [`MailboxOverflow::Block`]: the transport stops reading from the
    /// socket until the mailbox has room, so TCP pushes back to the server
    /// and its slow-client policy takes over. That stalls every other
    /// subscription of this transport too: use it for one consumer that
    /// must see every event, such as a command-line subscriber.
    pub fn mailbox_overflow(mut self, overflow: MailboxOverflow) -> Self {
        self.mailbox_overflow = overflow;
        self
    }

    /// Capacity of the dead-letter queue. Default 10,000; the oldest entry
    /// is dropped (and counted) when full.
    pub fn dlq_capacity(mut self, entries: usize) -> Self {
        self.dlq.capacity = entries;
        self
    }

    /// Every dead-letter queue setting (capacity, retries of `consume_dlq`).
    pub fn dlq_config(mut self, config: DlqConfig) -> Self {
        self.dlq = config;
        self
    }

    /// Whether the server speaks the hub's control protocol. When true, the
    /// transport tells the server which event types its subscriptions want,
    /// on connect, on every reconnect and whenever they change, so the
    /// server filters before sending; `connect` returns once the server
    /// has applied the first filter (one round trip more), so a
    /// publish-only client is sent nothing. Default false: plain servers
    /// work.
    pub fn server_filters(mut self, enabled: bool) -> Self {
        self.server_filters = enabled;
        self
    }

    /// Most frames written before one flush (at most 65,536). Default 256. The writer also
    /// flushes whenever the queue runs empty, so this bounds latency under
    /// load, not at rest.
    pub fn write_batch_size(mut self, frames: usize) -> Self {
        self.write_batch = frames;
        self
    }

    /// How long `shutdown` may spend flushing the queue and closing.
    /// Default 5 s; what is not written by then is dead-lettered.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Longest a pending write may go without the socket taking a byte
    /// before the connection is declared stalled, dropped and replaced
    /// (what it held is resent at least once, or counted as unconfirmed at
    /// most once). It is on progress, not on the write's size: a large
    /// batch over a slow link that keeps moving is not stalled. Keepalive
    /// only notices a server that stops sending; this notices one that
    /// stops reading. Default 30 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Return from `connect` at once and connect in the background. Events
    /// published meanwhile are queued. Default false: `connect` returns
    /// once connected, or fails after the reconnect attempts.
    pub fn connect_lazily(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// The delivery mode. Default [`Delivery::AtMostOnce`], which works with
    /// any server. [`AtLeastOnce`](crate::AtLeastOnce) keeps every event
    /// until the server acknowledges it and resends what was not
    /// acknowledged after a reconnect; it needs a server that speaks the
    /// hub's ack protocol (a plain server's silence makes every event time
    /// out into the dead-letter queue).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use watchtower_websocket_transport::{AtLeastOnce, WebSocketConfig, WebSocketTransport};
    /// # async fn run() -> Result<(), watchtower_core::WatchtowerError> {
    /// let transport = WebSocketTransport::builder(WebSocketConfig::new("ws://hub:8080/events"))
    ///     .delivery(AtLeastOnce { ack_timeout: Duration::from_secs(5), max_in_flight: 256 })
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn delivery(mut self, delivery: impl Into<Delivery>) -> Self {
        self.delivery = delivery.into();
        self
    }

    /// At least once: how many connections one event may fail on before it
    /// is dead-lettered. A connection fails an event when its ack does not
    /// come within `ack_timeout` (the connection is then replaced and the
    /// event resent on the next one, in order), or when the server closes
    /// the connection as a refusal (codes 1002, 1003, 1007, 1008, 1009)
    /// while the event is the oldest it has not acknowledged — a frame the
    /// server will never take is not resent forever. Plain connection
    /// losses never count. Default 3.
    pub fn ack_attempts(mut self, attempts: u32) -> Self {
        self.ack_attempts = attempts;
        self
    }

    /// At least once: how many recent events the transport remembers to
    /// drop duplicates before they reach a handler (a resend can deliver an
    /// event twice). An event is remembered by its whole frame, so a resend
    /// (the same bytes) is dropped but another publisher's event that
    /// reuses its id is not. Default 10,000; 0 turns it off.
    pub fn dedup_window(mut self, events: usize) -> Self {
        self.dedup_window = events;
        self
    }

    /// Whether to present this transport's position in the hub's history
    /// on every connect, so that a reconnect gets every event published
    /// meanwhile (while the hub's history holds them). A server without
    /// history ignores it; the outcome is in
    /// [`last_resume`](WebSocketTransport::last_resume) and the stats.
    /// Default: on.
    pub fn resume(mut self, enabled: bool) -> Self {
        self.resume = enabled;
        self
    }

    /// Other hubs to try, in order, when the one at hand cannot be reached:
    /// every failed connect attempt moves on to the next URL (after the
    /// last, the config's `url` again). Meant for hubs sharing one stream
    /// (`watchtower hub --nats`), where a position is valid on every hub:
    /// the transport resumes on whichever it reaches.
    /// [`WebSocketTransport::url`] and
    /// [`ConnectionStats::url_index`](crate::ConnectionStats::url_index)
    /// say which one it is on. The same headers, token and TLS settings
    /// are used for all; whether a connection uses TLS is decided by each
    /// URL's own scheme, so `ws://` and `wss://` hubs can be mixed.
    /// Default: none.
    pub fn fallback_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fallback_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Continue from `position` (as read from
    /// [`WebSocketTransport::position`] by an earlier process: what its
    /// handlers had handled): the first connect asks the hub for every
    /// event after it. `flush` fails until the first subscribe (nothing is
    /// written before it). See also [`checkpoint`](Self::checkpoint).
    /// Turns
    /// [`resume`](Self::resume) on. `connect` then returns at once (as with
    /// [`connect_lazily`](Self::connect_lazily)) and the first connection
    /// is made once the first `subscribe` is called, so the replay has a
    /// subscription to go to.
    pub fn resume_from(mut self, position: Position) -> Self {
        self.resume = true;
        self.resume_from = Some(position);
        self
    }

    /// Stores the handled position ([`WebSocketTransport::position`]) in
    /// the file at `path`, and continues from it at start: see
    /// [`checkpoint`](Self::checkpoint). The file is replaced atomically
    /// (a temporary file beside it, `fsync`, rename); its directory must
    /// exist.
    ///
    /// ```no_run
    /// use watchtower_websocket_transport::{WebSocketConfig, WebSocketTransport};
    /// # async fn run() -> Result<(), watchtower_core::WatchtowerError> {
    /// let transport = WebSocketTransport::builder(WebSocketConfig::new("ws://hub:8080/events"))
    ///     .checkpoint_file("/var/lib/myapp/events.position")
    ///     .connect()
    ///     .await?;
    /// // The first connect is made by the first subscribe, which gets every
    /// // event after the stored position first.
    /// # Ok(()) }
    /// ```
    pub fn checkpoint_file(self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint(FileCheckpoint::new(path))
    }

    /// Stores the handled position in `store` at most every
    /// [`checkpoint_interval`](Self::checkpoint_interval) (when it moved)
    /// and once more at `shutdown`, and continues from the stored one at
    /// start: `connect` loads it and, if there is one, behaves as
    /// [`resume_from`](Self::resume_from) it (a stored position wins over
    /// `resume_from`, which then only says where a first run starts).
    /// Turns [`resume`](Self::resume) on.
    ///
    /// The promise, with a hub whose history still holds the events: kill
    /// the process at any moment (`kill -9` included), start it again with
    /// the same store, and every event its handlers had not finished is
    /// delivered; at most the events they finished in the last interval
    /// before the kill are delivered again. A `shutdown` stores the
    /// position after the subscriptions have stopped, so a clean restart
    /// gets nothing twice.
    pub fn checkpoint(mut self, store: impl CheckpointStore) -> Self {
        self.resume = true;
        self.checkpoint = Some(Arc::new(store));
        self
    }

    /// How often the checkpoint is stored at most. Default 1 s
    /// ([`DEFAULT_CHECKPOINT_INTERVAL`]); between 1 ms and 24 hours.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Validates every setting, then connects. Must be called inside a
    /// tokio runtime.
    ///
    /// Fails with a `Config` error before any I/O when a setting is wrong
    /// or a checkpoint cannot be loaded, and with the last connection
    /// error when the first connect fails after `max_reconnect_attempts`
    /// retries.
    pub async fn connect(self) -> Result<WebSocketTransport, WatchtowerError> {
        let mut settings = self.into_settings()?;
        if let Some(checkpoint) = &settings.checkpoint
            && let Some(position) = checkpoint.load().await?
        {
            tracing::debug!(%position, "continuing from the checkpoint");
            settings.resume = true;
            settings.resume_from = Some(position);
        }
        WebSocketTransport::start(settings).await
    }

    pub(crate) fn into_settings(self) -> Result<Settings, WatchtowerError> {
        let config_error = |m: &str| Err(WatchtowerError::Config(m.to_string()));
        self.config.validate()?;
        let url = self.config.parsed_url()?;
        let policy = match self.policy {
            Some(policy) => policy,
            None => ReconnectPolicy::linear(
                self.config.reconnect_delay(),
                self.config.max_reconnect_attempts,
            ),
        };
        policy
            .validate()
            .map_err(|e| WatchtowerError::Config(format!("reconnect policy: {e}")))?;
        if let Some(k) = self.keepalive
            && (k.interval.is_zero() || k.pong_timeout.is_zero())
        {
            return config_error(
                "keepalive interval and pong timeout must be above zero; use disable_keepalive to turn pings off",
            );
        }
        if self.connect_timeout.is_zero() {
            return config_error("connect_timeout must be above zero");
        }
        if self.write_timeout.is_zero() {
            return config_error("write_timeout must be above zero");
        }
        if self.checkpoint.is_some() && !self.resume {
            return config_error(
                "a checkpoint stores the position in the hub's history: it needs resume on",
            );
        }
        if self.checkpoint_interval < Duration::from_millis(1) {
            return config_error("checkpoint_interval must be at least 1 ms");
        }
        let mut durations = vec![
            ("connect_timeout", self.connect_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("write_timeout", self.write_timeout),
            ("breaker_timeout", self.breaker_timeout),
            ("checkpoint_interval", self.checkpoint_interval),
        ];
        if let Some(k) = self.keepalive {
            durations.push(("keepalive interval", k.interval));
            durations.push(("keepalive pong timeout", k.pong_timeout));
        }
        if let Delivery::AtLeastOnce(a) = self.delivery {
            durations.push(("ack_timeout", a.ack_timeout));
        }
        for (name, value) in durations {
            if value > MAX_DURATION {
                return Err(WatchtowerError::Config(format!(
                    "{name} must be at most 24 hours, not {value:?}"
                )));
            }
        }
        if self.max_message_size < 64 {
            return config_error("max_message_size must be at least 64 bytes");
        }
        let max_frame_size = self.max_frame_size.unwrap_or(self.max_message_size);
        if max_frame_size == 0 || max_frame_size > self.max_message_size {
            return config_error("max_frame_size must be above zero and at most max_message_size");
        }
        if !(256..=(64 << 20)).contains(&self.read_buffer_size) {
            return config_error("read_buffer_size must be between 256 bytes and 64 MiB");
        }
        if self.config.backpressure.max_queue_size > MAX_QUEUE {
            return Err(WatchtowerError::Config(format!(
                "backpressure.max_queue_size must be at most {MAX_QUEUE}"
            )));
        }
        if !(1..=MAX_MAILBOX).contains(&self.mailbox_size) {
            return Err(WatchtowerError::Config(format!(
                "mailbox_size must be between 1 and {MAX_MAILBOX}"
            )));
        }
        if !(1..=MAX_BATCH).contains(&self.write_batch) {
            return Err(WatchtowerError::Config(format!(
                "write_batch_size must be between 1 and {MAX_BATCH}"
            )));
        }
        if self.dlq.capacity > MAX_QUEUE {
            return Err(WatchtowerError::Config(format!(
                "the dead-letter queue's capacity must be at most {MAX_QUEUE}"
            )));
        }
        if self.dedup_window > MAX_DEDUP_WINDOW {
            return Err(WatchtowerError::Config(format!(
                "dedup_window must be at most {MAX_DEDUP_WINDOW}"
            )));
        }
        self.dlq
            .validate()
            .map_err(|e| WatchtowerError::Config(format!("dead-letter queue: {e}")))?;
        let acks = match self.delivery {
            Delivery::AtMostOnce => None,
            Delivery::AtLeastOnce(a) => {
                if a.ack_timeout.is_zero()
                    || !(1..=MAX_IN_FLIGHT).contains(&a.max_in_flight)
                    || self.ack_attempts == 0
                {
                    return Err(WatchtowerError::Config(format!(
                        "at-least-once delivery needs an ack_timeout above zero, max_in_flight \
                         between 1 and {MAX_IN_FLIGHT}, and ack_attempts of at least 1"
                    )));
                }
                Some(Acks {
                    ack_timeout: a.ack_timeout,
                    max_in_flight: a.max_in_flight,
                    attempts: self.ack_attempts,
                })
            }
        };
        for (name, value) in &self.headers.headers {
            header_pair(name, value)?;
        }
        let fallbacks = self
            .fallback_urls
            .iter()
            .map(|u| crate::url::WsUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if url.is_secure() || fallbacks.iter().any(|u| u.is_secure()) {
            Some(self.tls.client_config()?)
        } else {
            None
        };
        Ok(Settings {
            config: self.config,
            url,
            fallbacks,
            policy,
            breaker_timeout: self.breaker_timeout,
            keepalive: self.keepalive,
            connect_timeout: self.connect_timeout,
            max_message_size: self.max_message_size,
            max_frame_size,
            read_buffer_size: self.read_buffer_size,
            headers: self.headers,
            credential_provider: self.credential_provider,
            tls,
            mailbox_size: self.mailbox_size,
            mailbox_overflow: self.mailbox_overflow,
            dlq: self.dlq,
            server_filters: self.server_filters,
            write_batch: self.write_batch,
            shutdown_timeout: self.shutdown_timeout,
            write_timeout: self.write_timeout,
            lazy: self.lazy,
            acks,
            dedup_window: self.dedup_window,
            resume: self.resume,
            resume_from: self.resume_from,
            checkpoint: self.checkpoint.map(|store| CheckpointSettings {
                store,
                interval: self.checkpoint_interval,
            }),
        })
    }
}
