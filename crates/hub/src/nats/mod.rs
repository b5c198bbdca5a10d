//! Hubs that share one stream on NATS JetStream (feature `nats`).
//!
//! [`NatsFanout`] plugs into the [`Fanout`] seam. Events a node's clients
//! send are not delivered locally at once: they are published to the
//! stream (`publisher`), and every node, this one included, delivers what
//! one ordered consumer reads from the stream (`consumer`). So every node
//! delivers in the stream's order, the origin client is skipped by a
//! header, an ack-mode publisher is acknowledged only once JetStream
//! stored its events, and history and resume positions are stream
//! sequences, valid on every node.

mod consumer;
mod publisher;
mod subject;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use watchtower_core::{Position, WarnLimiter};

use crate::config::HubConfig;
use crate::dedup::DedupWindow;
use crate::error::HubError;
use crate::fanout::{Burst, ClientId, Cursor, Delivery, Fanout, Joined, LocalFanout};
use crate::history::History;
use crate::outbox::Outbox;
use crate::stats::{Counters, HubStats, add};

use subject::MessageIdKey;

/// The stream name used unless [`NatsConfig::stream`] says otherwise.
pub const DEFAULT_NATS_STREAM: &str = "watchtower";

/// Bytes left for headers (`Nats-Msg-Id`, origin) under the server's
/// `max_payload`: an event may be at most that much smaller.
const HEADER_ROOM: usize = 1024;

/// Bytes of events waiting for their store, at most, hub-wide: while NATS
/// is slow or away, what clients send beyond this is not stored (counted
/// as backplane failures; ack-mode senders are closed and resend), so an
/// outage cannot grow the hub's memory without bound. Each client is held
/// to its `client_queue_bytes` within it, and nothing else is counted per
/// hub: a bound on bursts (1,024 at f945df2) let one client's many small
/// bursts, far within its own budget, crowd every other client out.
const OUTGOING_BYTES: usize = 64 << 20;

/// What the publisher keeps beside each event's frame until it is stored
/// (subject, message id, bookkeeping), counted against the budgets with it.
pub(super) const EVENT_COST: usize = 256;

/// What one hand-off to the publisher costs beside its events (an ack
/// alone, when every event of a burst was a duplicate, costs only this).
pub(super) const OUTGOING_COST: usize = 64;

/// What `outgoing` counts against the budgets until it is settled.
fn cost(outgoing: &Outgoing) -> usize {
    OUTGOING_COST
        + outgoing
            .burst
            .as_ref()
            .map_or(0, |b| b.bytes + b.frames.len() * EVENT_COST)
}

/// Commands (publishes) the NATS client library queues while its
/// connection is busy or down; each holds one event, so this bounds what
/// it keeps beside [`OUTGOING_BYTES`].
const CLIENT_CAPACITY: usize = 256;

/// How long a hub waits at start for its consumer to read the stream's
/// recent past into the history before it listens anyway.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a hub's backplane is: a NATS server (or cluster) with JetStream,
/// and the stream the hubs share. Set with
/// [`HubBuilder::nats`](crate::HubBuilder::nats).
///
/// Every hub of a group must use the same server and stream name. The
/// first hub creates the stream (file storage, subjects `wt.<stream>.>`,
/// the limits below); later ones use it as it is.
#[derive(Clone)]
pub struct NatsConfig {
    url: String,
    stream: String,
    credentials: Option<PathBuf>,
    max_messages: i64,
    max_age: Duration,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL can carry a user and password: only its host part.
        let host = self.url.rsplit('@').next().unwrap_or_default();
        f.debug_struct("NatsConfig")
            .field("server", &host)
            .field("stream", &self.stream)
            .field("credentials", &self.credentials)
            .field("max_messages", &self.max_messages)
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl NatsConfig {
    /// The NATS server(s) to use: `nats://host:4222`, several separated by
    /// commas. A user and password or token may be in the URL.
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            stream: DEFAULT_NATS_STREAM.to_string(),
            credentials: None,
            max_messages: 1_000_000,
            max_age: Duration::from_secs(24 * 60 * 60),
        }
    }

    /// The JetStream stream the hubs share. Letters, digits, `_` and `-`
    /// only. Default: [`DEFAULT_NATS_STREAM`].
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// A NATS `.creds` file (user JWT and nkey seed) to connect with.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = Some(path.into());
        self
    }

    /// When this hub creates the stream: the most events it keeps
    /// (oldest evicted first). Default: 1,000,000.
    pub fn max_messages(mut self, n: i64) -> Self {
        self.max_messages = n;
        self
    }

    /// When this hub creates the stream: the oldest an event may get
    /// before it is evicted. Default: 24 hours.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    fn validate(&self) -> Result<(), HubError> {
        let valid = !self.stream.is_empty()
            && self.stream.len() <= 64
            && self
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(backplane(
                format!(
                    "stream name `{}` must be 1 to 64 letters, digits, `_` or `-`",
                    self.stream
                ),
                None,
            ));
        }
        if self.max_messages == 0 || self.max_messages < -1 {
            return Err(backplane("max_messages must be positive".into(), None));
        }
        Ok(())
    }
}

fn backplane(
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> HubError {
    HubError::Backplane { message, source }
}

/// What the tasks of a [`NatsFanout`] count, beside the hub's counters.
#[derive(Debug, Default)]
struct Tally {
    /// Events JetStream acknowledged as stored (duplicates included).
    stored: AtomicU64,
    /// Events not stored: the publish failed or timed out, or the
    /// publisher's queue was full.
    failures: AtomicU64,
    /// Events read from the stream and delivered to this node's clients.
    delivered: AtomicU64,
    /// Events the stream no longer held when this node came to read them.
    missed: AtomicU64,
    /// Messages on the stream that are not events (not from a hub).
    foreign: AtomicU64,
    /// Events queued for the publisher and not yet settled (stored or
    /// given up), for what a stop drops.
    unsettled: AtomicU64,
    /// Of those, handed to NATS and not yet answered.
    unconfirmed: AtomicU64,
    /// The connection to NATS is down now, or NATS stopped answering (see
    /// [`watch_connection`]).
    down: AtomicBool,
    /// Bytes of the events queued for the publisher or waiting for their
    /// store (see [`OUTGOING_BYTES`]).
    queued_bytes: AtomicUsize,
    /// When the time counters below count from.
    base: Option<tokio::time::Instant>,
    /// Milliseconds after `base`, plus one, since the oldest publish not
    /// yet answered waits (or events wait with no connection); 0: none.
    waiting_since: AtomicU64,
    /// Milliseconds after `base` when the stream last answered a request
    /// (the consumer asks for its state twice a second).
    answered_at: AtomicU64,
    /// The stream was made anew (a new epoch, see `consumer`) and this
    /// hub has not yet read it up to this seq, where it stood when the
    /// hub found it; 0: not reading a new stream.
    adopting: AtomicU64,
    /// Times this hub found the stream made anew and went on with it.
    new_streams: AtomicU64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            base: Some(tokio::time::Instant::now()),
            ..Tally::default()
        }
    }

    fn millis(&self, at: tokio::time::Instant) -> u64 {
        self.base.map_or(0, |base| {
            at.saturating_duration_since(base).as_millis() as u64
        })
    }

    fn since(&self, millis: u64) -> Duration {
        let now = self.millis(tokio::time::Instant::now());
        Duration::from_millis(now.saturating_sub(millis))
    }

    /// The publisher's oldest unanswered publish (see `waiting_since`).
    fn set_waiting_since(&self, at: Option<tokio::time::Instant>) {
        let value = at.map_or(0, |at| self.millis(at) + 1);
        self.waiting_since.store(value, Relaxed);
    }

    /// The stream answered a request now.
    fn answered(&self) {
        self.answered_at
            .store(self.millis(tokio::time::Instant::now()), Relaxed);
    }

    /// Why the backplane is not working now, if it is not.
    fn trouble(&self, connected: bool) -> Option<&'static str> {
        if self.adopting.load(Relaxed) > 0 {
            return Some("the stream was made anew; reading it");
        }
        if !connected {
            return Some("the connection to NATS is lost");
        }
        let waiting = self.waiting_since.load(Relaxed);
        if waiting > 0 && self.since(waiting - 1) >= UNANSWERED {
            return Some("publishes are not answered");
        }
        if self.since(self.answered_at.load(Relaxed)) >= UNANSWERED {
            return Some("the stream does not answer");
        }
        None
    }
}

/// How long a publish may wait for its ack, or the stream for an answer to
/// the consumer's state requests (asked twice a second), before the
/// backplane counts as down and `/healthz` says 503: NATS hanging with its
/// connections open is noticed in seconds, not after the client library's
/// two missed pings (minutes).
const UNANSWERED: Duration = Duration::from_secs(3);

/// While the stream does not answer, how long a resume that this hub
/// has not read as far as waits before asking it again (see
/// [`Fanout::catch_up`]).
const STREAM_ASKED_AGAIN: Duration = Duration::from_millis(250);

/// How often a stopping hub looks whether its publisher settled every
/// event (see [`Fanout::settle`]).
const SETTLE_POLL: Duration = Duration::from_millis(10);

/// One bursts' worth of work for the publisher task.
#[derive(Debug)]
struct Outgoing {
    burst: Option<Arc<Burst>>,
    /// The sender (`None` from [`Fanout::publish`]), whose backplane share
    /// the burst counts against until the publisher takes it.
    from: Option<Arc<Outbox>>,
    /// The ack due the sender once the burst (and all before) is stored;
    /// `None` for at-most-once senders.
    ack: Option<u64>,
}

/// The fan-out of a hub in a group sharing a JetStream stream.
pub(crate) struct NatsFanout {
    local: Arc<LocalFanout>,
    /// Bytes one client may have waiting for the publisher:
    /// `client_queue_bytes`, so one client flooding while NATS is slow
    /// cannot take the whole hub-wide budget.
    client_budget: usize,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    tally: Arc<Tally>,
    tasks: Vec<AbortHandle>,
    /// The hub's de-duplication window: an ack-mode event refused here
    /// is forgotten there, so its resend is relayed.
    dedup: Arc<DedupWindow>,
    /// The shared stream, for its last sequence when a resuming client is
    /// ahead of this node (see [`Fanout::catch_up`]).
    stream: jetstream::stream::Stream,
    /// The last stream sequence the consumer delivered here.
    reached: watch::Receiver<u64>,
}

impl fmt::Debug for NatsFanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsFanout")
            .field("tally", &self.tally)
            .finish_non_exhaustive()
    }
}

impl Drop for NatsFanout {
    fn drop(&mut self) {
        self.stop();
    }
}

impl NatsFanout {
    /// Connects, creates or opens the stream, starts the publisher and the
    /// consumer, and waits (bounded) until the consumer has read the
    /// stream's recent past into the history. Lowers
    /// `config.max_message_size` if an event of that size plus headers
    /// would not fit the server's `max_payload`.
    pub(crate) async fn start(
        nats: &NatsConfig,
        config: &mut HubConfig,
        counters: Arc<Counters>,
        dedup: Arc<DedupWindow>,
    ) -> Result<NatsFanout, HubError> {
        nats.validate()?;
        let mut options = async_nats::ConnectOptions::new()
            .name("watchtower-hub")
            // The client library's own command queue holds whole events
            // while NATS is away: bounded in count here (default 2,048).
            .client_capacity(CLIENT_CAPACITY)
            // Reconnect quickly: an outage of seconds should cost seconds.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64).saturating_mul(100).min(1_000))
            });
        if let Some(path) = &nats.credentials {
            options = options.credentials_file(path).await.map_err(|e| {
                backplane(
                    format!(
                        "could not read the NATS credentials file {}",
                        path.display()
                    ),
                    Some(Box::new(e)),
                )
            })?;
        }
        let client = options.connect(nats.url.as_str()).await.map_err(|e| {
            backplane(
                "could not connect to the NATS server; is it running, with JetStream (-js)?".into(),
                Some(Box::new(e)),
            )
        })?;
        let room = client.server_info().max_payload.saturating_sub(HEADER_ROOM);
        if config.max_message_size > room {
            // Info, not warn: with both defaults (1 MiB each) this is the
            // usual case, and by design.
            tracing::info!(
                max_message_size = config.max_message_size,
                max_payload = client.server_info().max_payload,
                capped = room,
                "max_message_size lowered to fit the NATS server's max_payload with headers; raise max_payload on the server for larger events"
            );
            config.max_message_size = room;
        }
        let js = jetstream::new(client.clone());
        let prefix = subject::prefix(&nats.stream);
        let (_, description) = MessageIdKey::generate()
            .ok_or_else(|| backplane("no random numbers for the message-id key".into(), None))?;
        // JetStream's duplicate window is the hub's: a resend on another
        // hub within `dedup_window_age` is dropped there too. It cannot be
        // longer than the stream keeps events.
        let duplicate_window = config.dedup_window_age.min(nats.max_age);
        let stream_config = jetstream::stream::Config {
            name: nats.stream.clone(),
            description: Some(description),
            subjects: vec![format!("{prefix}.>")],
            max_messages: nats.max_messages,
            max_age: nats.max_age,
            duplicate_window,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let mut stream = js
            .get_or_create_stream(stream_config.clone())
            .await
            .map_err(|e| {
                backplane(
                    format!(
                        "could not create or open the JetStream stream `{}`",
                        nats.stream
                    ),
                    Some(Box::new(e)),
                )
            })?;
        let info = stream.info().await.map_err(|e| {
            backplane(
                format!("could not read the JetStream stream `{}`", nats.stream),
                Some(Box::new(e)),
            )
        })?;
        let info = info.clone();
        if info.config.duplicate_window < config.dedup_window_age.min(info.config.max_age) {
            tracing::warn!(
                stream = %nats.stream,
                stream_duplicate_window = ?info.config.duplicate_window,
                dedup_window_age = ?config.dedup_window_age,
                "the stream drops resends for less long than this hub's de-duplication window: a resend to another hub after that is stored twice; raise the stream's duplicate window (nats stream edit --dupe-window) or recreate it"
            );
        }
        let key = match info
            .config
            .description
            .as_deref()
            .and_then(MessageIdKey::from_description)
        {
            Some(key) => key,
            None => {
                tracing::warn!(
                    stream = %nats.stream,
                    "the stream carries no message-id key (made before keyed message ids): message ids are predictable; recreate the stream to key them"
                );
                MessageIdKey::unkeyed(&nats.stream)
            }
        };
        let epoch = stream_epoch(&info);
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        // The history starts with the stream's recent past, so a client
        // resuming here after its node died finds what it missed.
        let start = if config.history_size == 0 {
            last + 1
        } else {
            first
                .max((last + 1).saturating_sub(config.history_size as u64))
                .max(1)
        };
        let history = History::numbered(config, epoch, start - 1);
        let local = Arc::new(LocalFanout::new(history));
        let tally = Arc::new(Tally::new());
        tally.answered();
        let node = node_id();
        let (key, key_in_use) = watch::channel(key);
        let (outgoing, queue) = mpsc::unbounded_channel();
        let publisher = tokio::spawn(publisher::run(publisher::Publisher {
            open: opener(nats),
            prefix,
            stream: nats.stream.clone(),
            epoch,
            node,
            key: key_in_use,
            queue,
            tally: Arc::clone(&tally),
            dedup: Arc::clone(&dedup),
        }));
        let (caught_up, mut reached) = watch::channel(start - 1);
        let consumer = tokio::spawn(consumer::run(consumer::Consumer {
            js,
            stream: nats.stream.clone(),
            next: start,
            node,
            local: Arc::clone(&local),
            tally: Arc::clone(&tally),
            counters,
            caught_up,
            // Made anew, the stream carries the key in use now, so every
            // running hub goes on with the same message ids.
            config: jetstream::stream::Config {
                description: info.config.description.clone(),
                ..stream_config
            },
            created_nanos: info.created.unix_timestamp_nanos(),
            key,
            last_seen: last,
            warn: WarnLimiter::default(),
            reopen: None,
            consumer_seq: 0,
            keyed: config.history_size > 0,
        }));
        let watch_state = tokio::spawn(watch_connection(client, Arc::clone(&tally)));
        let fanout = NatsFanout {
            local,
            client_budget: config.client_queue_bytes,
            outgoing,
            tally,
            tasks: vec![
                publisher.abort_handle(),
                consumer.abort_handle(),
                watch_state.abort_handle(),
            ],
            dedup,
            stream,
            reached: reached.clone(),
        };
        if last >= start {
            let warmed =
                tokio::time::timeout(WARM_UP_TIMEOUT, reached.wait_for(|seq| *seq >= last)).await;
            if warmed.is_err() {
                tracing::warn!(
                    last,
                    "the stream's recent past was not read within {WARM_UP_TIMEOUT:?}; listening anyway"
                );
            }
        }
        tracing::info!(stream = %nats.stream, first, last, epoch = format_args!("{epoch:016x}"), "backplane: NATS JetStream");
        Ok(fanout)
    }
}

impl Fanout for NatsFanout {
    fn join(&self, outbox: Arc<Outbox>, cursor: Option<Cursor>) -> Option<Joined> {
        self.local.join(outbox, cursor)
    }

    fn leave(&self, id: ClientId) {
        self.local.leave(id);
    }

    fn publish(&self, burst: Arc<Burst>) -> Delivery {
        self.send(Outgoing {
            burst: Some(burst),
            from: None,
            ack: None,
        });
        Delivery::default()
    }

    fn history_len(&self) -> usize {
        self.local.history_len()
    }

    fn catch_up(&self, from: Position) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut reached = self.reached.clone();
            loop {
                let Some(epoch) = self.local.epoch() else {
                    // History off: no resume is answered.
                    return;
                };
                let known = from.epoch() == epoch;
                if known && !self.local.behind(&from) {
                    return;
                }
                let Ok(info) = self.stream.get_info().await else {
                    // The stream cannot say how far it goes, nor what it
                    // is (NATS is away or hangs): this node cannot tell
                    // what the client missed, so it waits (the caller
                    // bounds it, then refuses the client) for its consumer
                    // to move on, then looks again; it never answers from
                    // a history that has not read as far.
                    let _ = tokio::time::timeout(STREAM_ASKED_AGAIN, reached.changed()).await;
                    continue;
                };
                if !known {
                    if stream_epoch(&info) != from.epoch() {
                        // Another history's position: answered so.
                        return;
                    }
                    // The stream's own, made anew, which this node has not
                    // found yet (its consumer looks twice a second): it
                    // answers once it goes on with it.
                    tokio::time::sleep(STREAM_ASKED_AGAIN).await;
                    continue;
                }
                // The client had events from another node that this one
                // has not read yet. Whatever it had, the stream held when
                // it asked here: once this node has read that far, its
                // history answers as the other node's would have.
                let last = info.state.last_sequence;
                if last >= from.seq() {
                    let _ = reached.wait_for(|seq| *seq >= last).await;
                }
                // Else past the stream itself: not a position any node
                // gave, answered as another epoch's.
                return;
            }
        })
    }

    fn relay(&self, burst: Option<Arc<Burst>>, from: &Arc<Outbox>, ack: Option<u64>) -> Delivery {
        self.send(Outgoing {
            burst,
            from: Some(Arc::clone(from)),
            ack,
        });
        // Delivered (and counted) when the consumer reads it back.
        Delivery::default()
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Polled: only a stopping hub waits here.
            while self.tally.unsettled.load(Relaxed) > 0 {
                tokio::time::sleep(SETTLE_POLL).await;
            }
        })
    }

    fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        // What the publisher still held is dropped: said, and what was
        // never handed to NATS counted as not stored (what was handed and
        // not yet answered may have been stored; it is said apart). Once,
        // though a hub stops its backplane on shutdown and on drop.
        let left = self.tally.unsettled.swap(0, Relaxed);
        if left > 0 && left < u64::MAX / 2 {
            let unconfirmed = self.tally.unconfirmed.load(Relaxed).min(left);
            add(&self.tally.failures, left - unconfirmed);
            tracing::warn!(
                not_stored = left - unconfirmed,
                unconfirmed,
                "backplane: stopped with events not yet stored; at-least-once senders resend theirs, at-most-once ones are lost"
            );
        }
    }

    fn backplane_stats(&self, stats: &mut HubStats) {
        stats.backplane_stored = self.tally.stored.load(Relaxed);
        stats.backplane_failures = self.tally.failures.load(Relaxed);
        stats.backplane_delivered = self.tally.delivered.load(Relaxed);
        stats.backplane_down = u64::from(self.tally.down.load(Relaxed));
        stats.backplane_missed = self.tally.missed.load(Relaxed);
        stats.backplane_foreign = self.tally.foreign.load(Relaxed);
        stats.backplane_new_streams = self.tally.new_streams.load(Relaxed);
    }
}

impl NatsFanout {
    /// Hands work to the publisher without waiting; past the budgets, the
    /// events are counted as failures and an ack-mode sender is closed, so
    /// it resends them.
    fn send(&self, outgoing: Outgoing) {
        let bytes = cost(&outgoing);
        let events = outgoing.burst.as_ref().map_or(0, |b| b.frames.len() as u64);
        // Counted before the hand-off: the publisher may settle them first.
        add(&self.tally.unsettled, events);
        // Both budgets are checked before the burst is queued: they bound
        // what waits, hub-wide and per client.
        let queued = self.tally.queued_bytes.fetch_add(bytes, Relaxed);
        let client_ok = outgoing
            .from
            .as_ref()
            .is_none_or(|from| from.reserve_backplane(bytes, self.client_budget));
        let refused = if queued + bytes > OUTGOING_BYTES || !client_ok {
            if client_ok && let Some(from) = &outgoing.from {
                from.release_backplane(bytes);
            }
            Some(outgoing)
        } else {
            self.outgoing.send(outgoing).err().map(|closed| {
                if let Some(from) = &closed.0.from {
                    from.release_backplane(bytes);
                }
                closed.0
            })
        };
        if let Some(outgoing) = refused {
            self.tally.queued_bytes.fetch_sub(bytes, Relaxed);
            self.tally.unsettled.fetch_sub(events, Relaxed);
            add(&self.tally.failures, events);
            if let (Some(from), Some(_)) = (&outgoing.from, outgoing.ack) {
                from.lose_backplane();
                for frame in outgoing.burst.iter().flat_map(|b| &b.frames) {
                    self.dedup.forget(frame.as_bytes());
                }
            }
        }
    }
}

/// Keeps [`Tally::down`] current: the connection is lost, or NATS stopped
/// answering publishes or the consumer's requests.
async fn watch_connection(client: async_nats::Client, tally: Arc<Tally>) {
    loop {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let trouble = tally.trouble(connected);
        if tally.down.swap(trouble.is_some(), Relaxed) != trouble.is_some() {
            match trouble {
                None => tracing::info!("backplane: NATS answers again"),
                Some(why) => tracing::warn!(why, "backplane: down; events are not stored"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How the publisher opens its connections: like the hub's own, but one
/// that never reconnects by itself (see `publisher`). After connecting,
/// its server pool is replaced by an address nothing listens on, and it
/// may try once: when the connection is lost, that one try fails and the
/// library drops whatever it still queued, instead of writing it to a new
/// connection after events lost with the old one.
fn opener(nats: &NatsConfig) -> publisher::Opener {
    let url = nats.url.clone();
    let credentials = nats.credentials.clone();
    Arc::new(move || {
        let url = url.clone();
        let credentials = credentials.clone();
        Box::pin(async move {
            // Until connected, the usual choice among the servers; after,
            // the one address left in the pool, at once (this path, unlike
            // the usual one, does not log an error when the tries run out).
            let connected = Arc::new(AtomicBool::new(false));
            let fenced = Arc::clone(&connected);
            let mut options = async_nats::ConnectOptions::new()
                .name("watchtower-hub-publisher")
                .client_capacity(CLIENT_CAPACITY)
                .connection_timeout(Duration::from_secs(2))
                .ignore_discovered_servers()
                .max_reconnects(1)
                .reconnect_delay_callback(|_| Duration::ZERO)
                .reconnect_to_server_callback(move |servers, _| {
                    let fenced = fenced.load(Relaxed);
                    async move {
                        let nowhere = servers.into_iter().next().filter(|_| fenced)?;
                        Some(async_nats::ReconnectToServer {
                            addr: nowhere.addr,
                            delay: Some(Duration::ZERO),
                        })
                    }
                });
            if let Some(path) = &credentials {
                options = options.credentials_file(path).await?;
            }
            let client = options.connect(url.as_str()).await?;
            let nowhere: async_nats::ServerAddr = "nats://127.0.0.1:0".parse()?;
            client.set_server_pool(vec![nowhere]).await?;
            connected.store(true, Relaxed);
            Ok(client)
        })
    })
}

/// The epoch of positions on the stream `info` describes.
fn stream_epoch(info: &jetstream::stream::Info) -> u64 {
    epoch(&info.config.name, info.created.unix_timestamp_nanos())
}

/// The epoch of positions on a stream: its name and creation time, so a
/// stream deleted and created again is another history.
fn epoch(stream: &str, created_nanos: i128) -> u64 {
    // FNV-1a: stable across processes and machines, unlike `RandomState`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.bytes().chain(created_nanos.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A random id for this node, told apart from others in the origin header.
fn node_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}
