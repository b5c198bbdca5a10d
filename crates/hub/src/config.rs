//! `HubConfig`: every tunable of the hub, with its default and why.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as WireConfig;

use crate::error::HubError;

/// Default largest incoming message: 1 MiB. Events are small; a low limit
/// bounds what one bad client can make the hub buffer.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default per-client outbound queue: 8192 frames, about 1.6 MiB of
/// 200-byte events, and the frames themselves are shared between clients.
pub const DEFAULT_CLIENT_QUEUE_FRAMES: usize = 8192;
/// Default bytes one client may hold queued, counting what its writer has
/// taken but not yet written: 8 MiB. Eight maximum-size messages, or 40,000
/// typical 200-byte events (far above the frame limit): large events hit
/// this bound first, small ones the frame limit.
pub const DEFAULT_CLIENT_QUEUE_BYTES: usize = 8 << 20;
/// Default time a client may keep losing frames before it is closed: 5 s.
pub const DEFAULT_SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default ping interval: 30 s, the same as the client transport's.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default extra time a client gets to answer after a ping: 10 s.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bytes of control frames the hub parses for one client per
/// second: 256 KiB, four maximal filters (4096 types of 15 bytes) a second,
/// in bursts of a second's worth. A client subscribes a few times in its
/// life; parsing and applying a maximal filter costs the hub about a
/// millisecond, so this bounds one client to well under 1% of a core.
pub const DEFAULT_CONTROL_BYTES_PER_SECOND: usize = 256 * 1024;
/// Default time a message may take to arrive whole from its first byte:
/// 60 s, a maximum-size (1 MiB) message at 17 KiB/s. Bounds how long a
/// client can pin a half-sent message's buffer.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit for the TLS handshake and WebSocket upgrade after TCP
/// accept: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a graceful shutdown may take: 5 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default read buffer: 4 KiB. tungstenite's 128 KiB default is zero-filled
/// on first read and costs ~130 KiB per idle connection; 4 KiB measured no
/// slower on this workload.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 4 * 1024;

/// Default size of the de-duplication window: the last 100,000 events
/// from ack-mode clients, about 11 MB when full.
pub const DEFAULT_DEDUP_WINDOW_EVENTS: usize = 100_000;
/// Default age of the de-duplication window: 10 minutes, longer than a
/// client typically takes to notice a lost ack, reconnect and resend.
pub const DEFAULT_DEDUP_WINDOW_AGE: Duration = Duration::from_secs(10 * 60);

/// Default share of the de-duplication window one connection may hold:
/// 10,000 ids, a tenth of the default window. A publisher's resends are
/// the events it had in flight when its connection broke, far fewer than
/// this; a client sending junk ids only pushes out its own.
pub const DEFAULT_DEDUP_CLIENT_SHARE: usize = 10_000;

/// Default longest event type in a client's filter: 256 bytes. Real event
/// types are short names (`order.created`); a longer one in a control
/// frame is an attack or a bug.
pub const DEFAULT_MAX_EVENT_TYPE_LEN: usize = watchtower_core::MAX_FILTER_TYPE_LEN;
/// Default most event types one client's filter may hold: 4096.
pub const DEFAULT_MAX_FILTER_TYPES: usize = watchtower_core::MAX_FILTER_TYPES;
/// Default byte budget of one client's filter, its event types summed:
/// 64 KiB, 4096 types of 16 bytes. The hub keeps two copies of each
/// filter (see [`HubConfig::max_filter_bytes`]), so a client can pin at
/// most about 2 × (64 KiB + 4096 × 40 bytes of set overhead) ≈ 450 KiB.
pub const DEFAULT_MAX_FILTER_BYTES: usize = watchtower_core::MAX_FILTER_BYTES;

/// Default most TCP connections served at once (handshaking, connected or
/// closing): 10,000, about 160 MB of idle connections. Past it, a new
/// connection is closed at once. Keep it under the process's open-file
/// limit (the `watchtower hub` CLI raises that limit and lowers this to
/// fit), so that the hub refuses instead of failing `accept`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default most connections whose TLS handshake or WebSocket upgrade is
/// not over: 256. A real client finishes in one or two round trips; only a
/// flood of connections that say nothing fills this.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 256;
/// Default most pending handshakes from one IP address: 64, a quarter of
/// [`DEFAULT_MAX_PENDING_HANDSHAKES`], so one flooding address leaves room
/// for everyone else (an operator's client among them).
pub const DEFAULT_MAX_PENDING_HANDSHAKES_PER_PEER: usize = 64;

/// Default shortest bearer token a hub accepts at start: 6 bytes. Short
/// enough for the tokens existing tests and examples use; operators should
/// use 16 or more random bytes (the `watchtower hub` CLI insists on 16).
pub const DEFAULT_MIN_TOKEN_LEN: usize = 6;

/// Default failed token checks one peer address may make per minute
/// before its upgrades are refused with 429 for the rest of that minute:
/// 30. A client with a stale token retries far less often than that.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 30;

/// Default connections one address may open a second, once its burst
/// ([`DEFAULT_HANDSHAKE_BURST_PER_PEER`]) is spent: 20. A client opens
/// one connection and keeps it for hours; 20 a second is 1,000 clients
/// behind one NAT each reconnecting every 50 s, while four clients
/// upgrading in a loop from one address (thousands a second unpaced, each
/// a handshake the hub's workers pay for) get 20 between them.
pub const DEFAULT_HANDSHAKES_PER_SECOND_PER_PEER: u32 = 20;
/// Default connections one address may open at once before
/// [`DEFAULT_HANDSHAKES_PER_SECOND_PER_PEER`] paces it: 2,000. After a
/// hub restart, 1,000 clients behind one NAT reconnecting together all
/// get in at once, twice over (for those turned away by
/// `max_pending_handshakes_per_peer` and retrying); past the burst, 1,000
/// more get in every (1,000 / 20 =) 50 s.
pub const DEFAULT_HANDSHAKE_BURST_PER_PEER: u32 = 2_000;

/// The most connections a second an address may be allowed.
const MAX_HANDSHAKES_PER_SECOND: u32 = 1_000_000;

/// Default events the history keeps for resuming subscribers: 100,000,
/// so that a subscriber away for 30 s while 1,667 events a second flow
/// (50,000 events) gets them all, with room to spare. The frames are
/// shared with the fan-out (no copy); what a full history costs the hub
/// in resident memory, measured with 224-byte events (`watchtower hub`,
/// jemalloc): 37 MiB (388 bytes an event) when they arrive in bursts,
/// 63 MiB (663 bytes an event) when each arrives alone. Besides its
/// frame, each event held costs 160 to 440 bytes of bookkeeping (its slot
/// in its burst, its key in the index, its burst's share of the burst's
/// own); both are charged to [`DEFAULT_HISTORY_BYTES`].
pub const DEFAULT_HISTORY_SIZE: usize = 100_000;
/// Default longest an event stays in the history: 2 minutes, enough to
/// ride out a network blip, a deploy or a restart of the consumer.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(2 * 60);
/// Default bytes the history may keep alive, its frames and its
/// bookkeeping: 64 MiB. With 224-byte events arriving one at a time (664
/// bytes charged each) `history_size` binds first; this bounds a history
/// of large events, or of tiny events in tiny bursts.
pub const DEFAULT_HISTORY_BYTES: usize = 64 << 20;
/// Default most events one catch-up step takes from the history: 1,000
/// (capped at 256 per step, see [`HubConfig::max_replay`]). A replay is
/// no longer bounded: a client far behind catches up step by step.
pub const DEFAULT_MAX_REPLAY: usize = 1_000;

/// The most events the history may hold (about 2.2 GB of typical events).
const MAX_HISTORY_SIZE: usize = 10_000_000;

/// The most ids the de-duplication window may hold (about 1.1 GB).
const MAX_DEDUP_WINDOW_EVENTS: usize = 10_000_000;

/// The upper bounds of the filter limits.
const MAX_EVENT_TYPE_LEN: usize = 64 * 1024;
const MAX_FILTER_TYPES: usize = 1_000_000;
const MAX_FILTER_BYTES: usize = 64 << 20;

/// The longest any duration setting may be.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Bytes buffered per client before tungstenite writes to the socket. Its
/// 128 KiB default keeps that much capacity per client after one burst; 16
/// KiB already makes each write syscall carry ~80 typical events.
const WRITE_BUFFER_SIZE: usize = 16 * 1024;

/// How the hub treats its clients.
///
/// Durations must be at most 24 hours, and all but `shutdown_timeout`
/// above zero; [`validate`](Self::validate) says which field is wrong.
///
/// Build one from [`Default`] and change the fields you need; every field
/// has a default, so a partial JSON or TOML file deserialises too
/// (durations use serde's `{ "secs": 5, "nanos": 0 }` form).
///
/// ```
/// use std::time::Duration;
/// use watchtower_hub::HubConfig;
///
/// let mut config = HubConfig::default();
/// config.client_queue_frames = 1024;
/// config.slow_client_timeout = Duration::from_secs(2);
/// config.validate()?;
/// # Ok::<(), watchtower_hub::HubError>(())
/// ```
///
/// The struct is `#[non_exhaustive]` so that settings can be added without
/// breaking code that builds it this way. TLS and bearer-token auth are not
/// here but on [`Hub::builder`](crate::Hub::builder): they hold secrets,
/// which a config that is `Debug` and serialisable should not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HubConfig {
    /// Largest message (and frame) a client may send, in bytes. A larger
    /// one closes that client with 1009 (Message Too Big); other clients are
    /// unaffected. Default [`DEFAULT_MAX_MESSAGE_SIZE`] (1 MiB).
    pub max_message_size: usize,
    /// Frames that may wait for one client before the oldest are dropped
    /// (and counted in [`HubStats::dropped_frames`](crate::HubStats)); a
    /// client that presented a resume position is never dropped from:
    /// past it, it lags inside the history and its writer reads what it
    /// missed from there (it is closed with 1013, to resume, only once
    /// the history forgot an event not yet written to it). A slow client never slows
    /// the sender or other clients. Default
    /// [`DEFAULT_CLIENT_QUEUE_FRAMES`] (8192).
    pub client_queue_frames: usize,
    /// Bytes one client may hold: its queue plus what its writer has taken
    /// and not yet written to the socket. Past it, the oldest queued frames
    /// are dropped and counted like those over `client_queue_frames`. A
    /// queued frame keeps its whole read burst alive (the burst is shared
    /// by every recipient), so a client is charged for the bursts it
    /// holds, not only its frames. A client never holds more than this
    /// plus one read burst (at most about 1 MiB plus one message), so a
    /// subscriber that never reads pins at most that much. At least 1 KiB.
    /// Default [`DEFAULT_CLIENT_QUEUE_BYTES`] (8 MiB).
    ///
    /// With a NATS backplane (feature `nats`) it also bounds the bytes of
    /// this client's events waiting to be published while NATS is slow or
    /// away; past it they are refused and counted in
    /// [`HubStats::backplane_failures`](crate::HubStats::backplane_failures).
    pub client_queue_bytes: usize,
    /// How long a client may keep losing frames because its queue stays
    /// full (and its writer takes nothing) before it is closed with 1013
    /// (Try Again Later). A timer decides, so a client is closed even if
    /// nothing more is published. Default [`DEFAULT_SLOW_CLIENT_TIMEOUT`]
    /// (5 s).
    pub slow_client_timeout: Duration,
    /// How often the hub pings each client. Default
    /// [`DEFAULT_PING_INTERVAL`] (30 s).
    pub ping_interval: Duration,
    /// A client that showed no sign of life for `ping_interval +
    /// pong_timeout` is dead and is dropped, so half-open TCP connections
    /// do not pile up. Signs of life are data frames, pongs that answer the
    /// hub's own pings (whose payload only a reading client knows), and
    /// bytes of a message still arriving; unsolicited pongs and pings are
    /// not, so a client that writes but never reads cannot stay. Also how
    /// long a closing client gets to take its close frame. Default
    /// [`DEFAULT_PONG_TIMEOUT`] (10 s).
    pub pong_timeout: Duration,
    /// Bytes of control frames (subscribe, unsubscribe, hello) the hub
    /// parses for one client per second, in bursts of up to a second's
    /// worth; past it the client's reader pauses until the budget is back
    /// (counted in `control_paced`), so its frames wait in its socket, not
    /// on the hub's CPU. At least 1 KiB. Default
    /// [`DEFAULT_CONTROL_BYTES_PER_SECOND`] (256 KiB).
    pub control_bytes_per_second: usize,
    /// How long a message may take to arrive whole, from its first byte;
    /// past it the client is closed with 1008. Bytes of a message arriving
    /// keep a client alive, so without this a client trickling one
    /// never-ending message would pin its buffer (up to
    /// `max_message_size`) for ever. Default [`DEFAULT_MESSAGE_TIMEOUT`]
    /// (60 s).
    pub message_timeout: Duration,
    /// Limit for a new connection's TLS handshake (for `wss://`) and
    /// WebSocket upgrade together, so a peer that opens TCP and says
    /// nothing cannot hold a task. Default [`DEFAULT_HANDSHAKE_TIMEOUT`]
    /// (10 s).
    pub handshake_timeout: Duration,
    /// How long [`Hub::shutdown`](crate::Hub::shutdown) waits for clients to
    /// take their queued frames and answer the 1001 close before it drops
    /// them; zero drops them at once. Default [`DEFAULT_SHUTDOWN_TIMEOUT`]
    /// (5 s).
    pub shutdown_timeout: Duration,
    /// Socket read buffer per client, in bytes. Default
    /// [`DEFAULT_READ_BUFFER_SIZE`] (4 KiB), which keeps an idle
    /// connection under ~16 KiB hub-side.
    pub read_buffer_size: usize,
    /// How many events the hub remembers to drop resent ones, hub-wide,
    /// counting only events from clients that said
    /// `{"type":"hello","acks":true}`. An event is remembered by its whole
    /// frame, id included, so only a byte-for-byte resend is dropped: an
    /// event of another client that reuses the id is relayed. When full,
    /// the oldest is forgotten. A resend older than the window is relayed
    /// again, so size it for the events all ack-mode clients send in the
    /// time they may take to resend. Between 1 and 10,000,000. Default
    /// [`DEFAULT_DEDUP_WINDOW_EVENTS`] (100,000; about 11 MB when full).
    pub dedup_window_events: usize,
    /// How long after its first sight an event id is remembered to drop
    /// resent events; must cover a client's ack timeout plus a reconnect.
    /// Default [`DEFAULT_DEDUP_WINDOW_AGE`] (10 min).
    pub dedup_window_age: Duration,
    /// Most ids one client may hold in the de-duplication window; past
    /// it, that client's own oldest ids are forgotten, never another
    /// client's, so one client sending junk ids cannot flush the window.
    /// A client is its identity (`Watchtower-Client-Id`, else its
    /// connection): its ids stay its own after a connection ends (a
    /// resend comes on a new one), and clients behind one address do not
    /// share a pool. When the window is full, the client holding the most
    /// ids gives up its oldest, so other clients (or connections) push out
    /// a client's ids only by each holding no more than it does. Capped at
    /// `dedup_window_events`; at least 1. Default
    /// [`DEFAULT_DEDUP_CLIENT_SHARE`] (10,000).
    pub dedup_client_share: usize,
    /// Longest event type a control frame may name, in bytes. A
    /// `subscribe` or `unsubscribe` naming a longer one is refused while it
    /// is parsed, before anything is copied, counted in
    /// [`HubStats::control_rejected`](crate::HubStats) and its sender is
    /// closed with 1008 (Policy Violation). Between 1 and 65,536. Default
    /// [`DEFAULT_MAX_EVENT_TYPE_LEN`] (256).
    pub max_event_type_len: usize,
    /// Most event types one client's filter may hold. A control frame that
    /// would take the filter past it is refused like one over
    /// `max_event_type_len`; the filter is unchanged. Between 1 and
    /// 1,000,000. Default [`DEFAULT_MAX_FILTER_TYPES`] (4096).
    pub max_filter_types: usize,
    /// Most bytes of event types (summed) one client's filter may hold;
    /// past it, control frames are refused like one over
    /// `max_event_type_len`. Filters change in place, outside the lock
    /// publishers take, so the hub keeps two copies of each: memory per
    /// client is bounded by twice this plus set overhead. Between
    /// `max_event_type_len` and 64 MiB. Default
    /// [`DEFAULT_MAX_FILTER_BYTES`] (64 KiB).
    pub max_filter_bytes: usize,
    /// Web origins whose pages may connect, as browsers send them in
    /// `Origin` (`https://app.example.com`, with a port if not the
    /// scheme's default; no path). A request without `Origin` (every
    /// native client) and one from the hub's own origin (same host and
    /// port as its `Host`, when that `Host` is an IP address or
    /// `localhost` with the hub's port) are always admitted; a DNS name
    /// the hub is served under must be listed here (else a page on a name
    /// rebound to the hub's address would pass); any other is refused with
    /// HTTP 403 and counted in
    /// [`HubStats::origin_rejected`](crate::HubStats), so a page on a
    /// foreign site cannot use a visitor's browser against the hub. `"*"`
    /// admits every origin and must be said explicitly. Default: empty.
    pub allowed_origins: Vec<String>,
    /// Whether a bearer token may come as `?token=TOKEN` in the URL as well
    /// as in `Authorization: Bearer` (or the `watchtower.token.<base64url>`
    /// subprotocol a browser can offer, which is a header too and stays
    /// accepted). URLs end up in proxy and access logs; turn this off when
    /// every client can send the token in a header. Either way a request
    /// may carry exactly one candidate token: several `Authorization`
    /// headers, token subprotocols or `token` parameters, or several kinds,
    /// are refused with HTTP 400, so one request cannot try many guesses.
    /// Default: `true`.
    pub allow_query_token: bool,
    /// Shortest bearer token accepted, in bytes, checked when the hub
    /// starts: a shorter one fails `bind` with a [`HubError::Config`]
    /// naming this field. Between 1 and 4096. Default
    /// [`DEFAULT_MIN_TOKEN_LEN`] (6).
    pub min_token_len: usize,
    /// Failed token checks (missing, wrong or several tokens) one peer
    /// address may make per minute; past it, its upgrades are answered
    /// with HTTP 429 and a `Retry-After` until the minute is over, without
    /// looking at the token, and counted in
    /// [`HubStats::auth_throttled`](crate::HubStats). Clients behind one
    /// NAT share the allowance. 0 turns throttling off. Only applies when
    /// a bearer token is required. Default
    /// [`DEFAULT_AUTH_FAILURES_PER_MINUTE`] (30).
    pub auth_failures_per_minute: u32,
    /// Most TCP connections served at once: handshaking, connected or
    /// closing. A connection past it is closed at once, before anything
    /// is read or allocated, and counted in
    /// [`HubStats::connections_refused`](crate::HubStats). Keep it under
    /// the open-file limit, so the hub refuses instead of failing to
    /// accept. At least 1. Default [`DEFAULT_MAX_CONNECTIONS`] (10,000).
    pub max_connections: usize,
    /// Most connections whose TLS handshake or upgrade is not over; past
    /// it, new connections are closed at once like those over
    /// `max_connections`, so bare TCP connections that never speak cannot
    /// take every connection slot; each also ends after
    /// `handshake_timeout`. Between 1 and `max_connections`. Default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`] (256).
    pub max_pending_handshakes: usize,
    /// Most of those from one IP address; past it, that address's new
    /// connections are closed at once, so a flood from one address cannot
    /// take the places of every other client. Behind a load balancer or
    /// proxy every client has its address: raise it to
    /// `max_pending_handshakes` there (a larger value acts as that). At
    /// least 1. Default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES_PER_PEER`] (64).
    pub max_pending_handshakes_per_peer: usize,
    /// Connections (WebSocket upgrades and HTTP requests alike) one
    /// address may open a second once its burst
    /// (`handshake_burst_per_peer`) is spent. Checked right after
    /// `accept`, before anything is read or allocated: a connection over
    /// it is held for a second and then answered with HTTP 429 and a
    /// `Retry-After`, unread (on `wss://` it is only closed, as the client
    /// waits for a TLS handshake; at most 256 held at once, hub-wide; past
    /// that, closed at once), and counted in
    /// [`HubStats::connections_paced`](crate::HubStats), so a client
    /// upgrading in a loop costs the hub an `accept` and a close, not a
    /// handshake, and makes about one attempt a second. An address is an
    /// IPv4 address or an IPv6 /64. Clients behind one NAT share it;
    /// behind a load balancer or proxy every client has its address, so
    /// turn it off there (0) and pace at the proxy. 0 turns it off; at
    /// most 1,000,000. Default [`DEFAULT_HANDSHAKES_PER_SECOND_PER_PEER`]
    /// (20).
    pub handshakes_per_second_per_peer: u32,
    /// Connections one address may open at once before
    /// `handshakes_per_second_per_peer` paces it: its bucket holds this
    /// many, refilled at that rate. At least 1 when pacing is on. Default
    /// [`DEFAULT_HANDSHAKE_BURST_PER_PEER`] (2,000: 1,000 clients behind
    /// one NAT reconnecting together after a hub restart get in at once).
    pub handshake_burst_per_peer: u32,
    /// Events the hub keeps, hub-wide, so that a subscriber that
    /// reconnects with its position gets what it missed (see the README's
    /// resume protocol). The history holds the same shared frames the
    /// fan-out queues (no copy). 0 turns history and resume off: the hub
    /// then answers no position and relays as a plain hub. Each event held
    /// costs its frame and 160 to 440 bytes of bookkeeping (less when
    /// events arrive in bursts), both counted in `history_bytes`, so the
    /// history keeps at most `history_bytes` alive, whichever binds
    /// first. At most 10,000,000. Default [`DEFAULT_HISTORY_SIZE`] (100,000: twice
    /// what a 30 s absence misses at 1,667 events a second; about 37 to
    /// 63 MiB resident with 224-byte events).
    pub history_size: usize,
    /// Longest an event stays in the history; older events are forgotten
    /// and a position before them is answered `expired`. Above zero.
    /// Default [`DEFAULT_HISTORY_TTL`] (2 min).
    pub history_ttl: Duration,
    /// Bytes the history may keep alive: its frames (whole read bursts, as
    /// in `client_queue_bytes`) and its bookkeeping, charged as 160 bytes
    /// an event and 280 a burst (its slots in the burst, its key in the
    /// index, the burst's own); past it the oldest events are forgotten.
    /// So a flood of tiny events costs what its bytes and its count say,
    /// not more than the budget. At least 1 KiB. Default [`DEFAULT_HISTORY_BYTES`] (64 MiB).
    pub history_bytes: usize,
    /// Most events a catching-up client's writer takes from the history
    /// in one step (capped at 256: a step runs under the lock relays
    /// take). It no longer bounds a replay: a client that comes back while
    /// the history still holds what it missed gets all of it, however
    /// many events, read from the history a step at a time as it writes
    /// them (a step also stops at half of `client_queue_bytes`); it is
    /// never answered `too_many`. At least 1, at most 10,000,000. Default
    /// [`DEFAULT_MAX_REPLAY`] (1,000, so 256).
    pub max_replay: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            client_queue_frames: DEFAULT_CLIENT_QUEUE_FRAMES,
            client_queue_bytes: DEFAULT_CLIENT_QUEUE_BYTES,
            slow_client_timeout: DEFAULT_SLOW_CLIENT_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            control_bytes_per_second: DEFAULT_CONTROL_BYTES_PER_SECOND,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            dedup_window_events: DEFAULT_DEDUP_WINDOW_EVENTS,
            dedup_window_age: DEFAULT_DEDUP_WINDOW_AGE,
            dedup_client_share: DEFAULT_DEDUP_CLIENT_SHARE,
            max_event_type_len: DEFAULT_MAX_EVENT_TYPE_LEN,
            max_filter_types: DEFAULT_MAX_FILTER_TYPES,
            max_filter_bytes: DEFAULT_MAX_FILTER_BYTES,
            allowed_origins: Vec::new(),
            allow_query_token: true,
            min_token_len: DEFAULT_MIN_TOKEN_LEN,
            auth_failures_per_minute: DEFAULT_AUTH_FAILURES_PER_MINUTE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_pending_handshakes_per_peer: DEFAULT_MAX_PENDING_HANDSHAKES_PER_PEER,
            handshakes_per_second_per_peer: DEFAULT_HANDSHAKES_PER_SECOND_PER_PEER,
            handshake_burst_per_peer: DEFAULT_HANDSHAKE_BURST_PER_PEER,
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl: DEFAULT_HISTORY_TTL,
            history_bytes: DEFAULT_HISTORY_BYTES,
            max_replay: DEFAULT_MAX_REPLAY,
        }
    }
}

impl HubConfig {
    /// Checks every field; the error names the field, the rule and the
    /// value.
    pub fn validate(&self) -> Result<(), HubError> {
        let fail = |message: String| Err(HubError::Config(message));
        if !(64..=(1 << 30)).contains(&self.max_message_size) {
            return fail(format!(
                "max_message_size must be between 64 bytes and 1 GiB, not {}",
                self.max_message_size
            ));
        }
        if self.client_queue_frames == 0 {
            return fail("client_queue_frames must be at least 1".to_string());
        }
        if self.max_connections == 0 {
            return fail("max_connections must be at least 1".to_string());
        }
        if !(1..=self.max_connections).contains(&self.max_pending_handshakes) {
            return fail(format!(
                "max_pending_handshakes must be between 1 and max_connections ({}), not {}",
                self.max_connections, self.max_pending_handshakes
            ));
        }
        if self.control_bytes_per_second < 1024 {
            return fail(format!(
                "control_bytes_per_second must be at least 1 KiB, not {}",
                self.control_bytes_per_second
            ));
        }
        if self.max_pending_handshakes_per_peer == 0 {
            return fail("max_pending_handshakes_per_peer must be at least 1".to_string());
        }
        if self.handshakes_per_second_per_peer > MAX_HANDSHAKES_PER_SECOND {
            return fail(format!(
                "handshakes_per_second_per_peer must be at most {MAX_HANDSHAKES_PER_SECOND}, not {}",
                self.handshakes_per_second_per_peer
            ));
        }
        if self.handshakes_per_second_per_peer > 0 && self.handshake_burst_per_peer == 0 {
            return fail(
                "handshake_burst_per_peer must be at least 1 while handshakes_per_second_per_peer \
                 is on"
                    .to_string(),
            );
        }
        if self.client_queue_bytes < 1024 {
            return fail(format!(
                "client_queue_bytes must be at least 1 KiB, not {}",
                self.client_queue_bytes
            ));
        }
        if !(256..=(64 << 20)).contains(&self.read_buffer_size) {
            return fail(format!(
                "read_buffer_size must be between 256 bytes and 64 MiB, not {}",
                self.read_buffer_size
            ));
        }
        if !(1..=MAX_DEDUP_WINDOW_EVENTS).contains(&self.dedup_window_events) {
            return fail(format!(
                "dedup_window_events must be between 1 and {MAX_DEDUP_WINDOW_EVENTS}, not {}",
                self.dedup_window_events
            ));
        }
        if self.dedup_client_share == 0 {
            return fail("dedup_client_share must be at least 1".to_string());
        }
        if !(1..=MAX_EVENT_TYPE_LEN).contains(&self.max_event_type_len) {
            return fail(format!(
                "max_event_type_len must be between 1 and {MAX_EVENT_TYPE_LEN} bytes, not {}",
                self.max_event_type_len
            ));
        }
        if !(1..=MAX_FILTER_TYPES).contains(&self.max_filter_types) {
            return fail(format!(
                "max_filter_types must be between 1 and {MAX_FILTER_TYPES}, not {}",
                self.max_filter_types
            ));
        }
        if !(self.max_event_type_len..=MAX_FILTER_BYTES).contains(&self.max_filter_bytes) {
            return fail(format!(
                "max_filter_bytes must be between max_event_type_len ({}) and 64 MiB, not {}",
                self.max_event_type_len, self.max_filter_bytes
            ));
        }
        for origin in &self.allowed_origins {
            crate::gates::origin::validate(origin).map_err(HubError::Config)?;
        }
        if !(1..=crate::gates::auth::MAX_TOKEN_LEN).contains(&self.min_token_len) {
            return fail(format!(
                "min_token_len must be between 1 and {}, not {}",
                crate::gates::auth::MAX_TOKEN_LEN,
                self.min_token_len
            ));
        }
        if self.history_size > MAX_HISTORY_SIZE {
            return fail(format!(
                "history_size must be at most {MAX_HISTORY_SIZE}, not {}",
                self.history_size
            ));
        }
        if self.history_bytes < 1024 {
            return fail(format!(
                "history_bytes must be at least 1 KiB, not {}",
                self.history_bytes
            ));
        }
        if !(1..=MAX_HISTORY_SIZE).contains(&self.max_replay) {
            return fail(format!(
                "max_replay must be between 1 and {MAX_HISTORY_SIZE}, not {}",
                self.max_replay
            ));
        }
        for (name, value, zero_ok) in [
            ("slow_client_timeout", self.slow_client_timeout, false),
            ("ping_interval", self.ping_interval, false),
            ("pong_timeout", self.pong_timeout, false),
            ("message_timeout", self.message_timeout, false),
            ("handshake_timeout", self.handshake_timeout, false),
            ("shutdown_timeout", self.shutdown_timeout, true),
            ("dedup_window_age", self.dedup_window_age, false),
            ("history_ttl", self.history_ttl, false),
        ] {
            if value.is_zero() && !zero_ok {
                return fail(format!("{name} must be above zero"));
            }
            // Longer is never useful, and keeps deadline arithmetic far
            // from overflowing.
            if value > MAX_DURATION {
                return fail(format!("{name} must be at most 24 hours, not {value:?}"));
            }
        }
        Ok(())
    }

    /// The tungstenite settings these values imply.
    pub(crate) fn wire_config(&self) -> WireConfig {
        WireConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(WRITE_BUFFER_SIZE)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_partial_json_uses_them() {
        HubConfig::default().validate().unwrap();
        let c: HubConfig = serde_json::from_str(r#"{"client_queue_frames": 16}"#).unwrap();
        assert_eq!(c.client_queue_frames, 16);
        assert_eq!(c.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn validate_names_the_field() {
        let c = HubConfig {
            client_queue_frames: 0,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("client_queue_frames"), "{e}");

        let c = HubConfig {
            ping_interval: Duration::ZERO,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("ping_interval"), "{e}");

        let c = HubConfig {
            max_message_size: 10,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_message_size") && e.contains("10"), "{e}");

        let c = HubConfig {
            pong_timeout: Duration::MAX,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("pong_timeout") && e.contains("24 hours"), "{e}");

        let c = HubConfig {
            dedup_window_events: 0,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("dedup_window_events") && e.contains(" 0"), "{e}");

        for (c, field) in [
            (
                HubConfig {
                    max_event_type_len: 0,
                    ..Default::default()
                },
                "max_event_type_len",
            ),
            (
                HubConfig {
                    max_filter_types: 0,
                    ..Default::default()
                },
                "max_filter_types",
            ),
            (
                HubConfig {
                    max_filter_bytes: 100,
                    ..Default::default()
                },
                "max_filter_bytes",
            ),
        ] {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }

        let c = HubConfig {
            dedup_window_age: Duration::ZERO,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("dedup_window_age"), "{e}");

        for (c, field) in [
            (
                HubConfig {
                    max_replay: 0,
                    ..Default::default()
                },
                "max_replay",
            ),
            (
                HubConfig {
                    history_ttl: Duration::ZERO,
                    ..Default::default()
                },
                "history_ttl",
            ),
            (
                HubConfig {
                    history_bytes: 10,
                    ..Default::default()
                },
                "history_bytes",
            ),
            (
                HubConfig {
                    history_size: usize::MAX,
                    ..Default::default()
                },
                "history_size",
            ),
            (
                HubConfig {
                    handshake_burst_per_peer: 0,
                    ..Default::default()
                },
                "handshake_burst_per_peer",
            ),
            (
                HubConfig {
                    handshakes_per_second_per_peer: u32::MAX,
                    ..Default::default()
                },
                "handshakes_per_second_per_peer",
            ),
        ] {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn wire_config_carries_the_limits() {
        let c = HubConfig {
            max_message_size: 4096,
            ..Default::default()
        };
        let wire = c.wire_config();
        assert_eq!(wire.max_message_size, Some(4096));
        assert_eq!(wire.max_frame_size, Some(4096));
        assert_eq!(wire.read_buffer_size, DEFAULT_READ_BUFFER_SIZE);
        // tungstenite asserts this; a panic there would be ours.
        assert!(wire.max_write_buffer_size > wire.write_buffer_size);
    }
}
