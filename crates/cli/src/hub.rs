//! `watchtower hub`: run a relay hub until Ctrl-C, then print its stats.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use watchtower_hub::{
    DEFAULT_AUTH_FAILURES_PER_MINUTE, DEFAULT_CLIENT_QUEUE_FRAMES,
    DEFAULT_HANDSHAKE_BURST_PER_PEER, DEFAULT_HANDSHAKES_PER_SECOND_PER_PEER,
    DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_PENDING_HANDSHAKES,
    DEFAULT_MAX_PENDING_HANDSHAKES_PER_PEER, DEFAULT_MAX_REPLAY, DEFAULT_MESSAGE_TIMEOUT, Hub,
    HubConfig, HubStats,
};

use crate::error::CliError;
use crate::reload::{self, Sources};
use crate::signal;

#[derive(Debug, Args)]
pub(crate) struct HubArgs {
    /// Address and port to listen on; port 0 picks a free one (printed at
    /// start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,

    /// Largest message a client may send, in bytes; a larger one closes
    /// that client with 1009.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,

    /// Frames that may wait for one client before its oldest are dropped.
    #[arg(long, value_name = "FRAMES", default_value_t = DEFAULT_CLIENT_QUEUE_FRAMES)]
    client_queue: usize,

    /// Serve wss:// with this certificate chain (PEM, server certificate
    /// first). Needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Require every client to present a certificate issued by this CA
    /// (PEM): mutual TLS. Needs --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    client_ca: Option<PathBuf>,

    /// Require 'Authorization: Bearer TOKEN' (or ?token=TOKEN) and refuse
    /// other clients with 401; repeat to accept several. Other users of
    /// this machine can see command lines: prefer --token-file.
    #[arg(long, value_name = "TOKEN")]
    token: Vec<String>,

    /// Like --token, with the tokens read from this file at start, one per
    /// non-empty line (several lines: several accepted tokens, e.g. during
    /// a rotation).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// Shortest token accepted at start, in bytes: a shorter --token or
    /// --token-file line is an error. 16 random bytes cannot be guessed.
    #[arg(long, value_name = "BYTES", default_value_t = CLI_MIN_TOKEN_LEN)]
    min_token_len: usize,

    /// Accept the token only in the Authorization header, not as
    /// ?token=TOKEN in the URL (which proxies and access logs record).
    #[arg(long)]
    no_query_token: bool,

    /// Failed token checks one address may make per minute before its
    /// upgrades get 429 for the rest of the minute; 0: no limit.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_AUTH_FAILURES_PER_MINUTE)]
    auth_failures_per_minute: u32,

    /// Let browser pages from this origin connect (e.g.
    /// `https://app.example.com`, with the port if not the default); repeat
    /// for several, or say '*' for any. Without it, an upgrade carrying a
    /// foreign Origin header gets 403; clients that send no Origin (every
    /// non-browser client) are not affected.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,

    /// Most connections served at once (handshaking, connected or
    /// closing); more are closed at once. Lowered to fit the open-file
    /// limit if need be (the start-up line says so).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Most connections still in their TLS handshake or WebSocket upgrade;
    /// more are closed at once, so silent TCP connections cannot take every
    /// slot.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PENDING_HANDSHAKES)]
    max_pending_handshakes: usize,

    /// Most of those from one IP address, so one flooding address leaves
    /// room for everyone else. Behind a load balancer, where every client
    /// has its address, set it to --max-pending-handshakes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PENDING_HANDSHAKES_PER_PEER)]
    max_pending_handshakes_per_peer: usize,

    /// Connections one IP address (an IPv6 /64) may open a second once its
    /// burst is spent; more are held a second and answered 429, so a
    /// client upgrading in a loop costs the hub an accept, not a
    /// handshake. Behind a load balancer, where every client has its
    /// address, turn it off (0) and pace at the balancer.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HANDSHAKES_PER_SECOND_PER_PEER)]
    handshakes_per_second_per_peer: u32,

    /// Connections one address may open at once before
    /// --handshakes-per-second-per-peer paces it (e.g. every client behind
    /// one NAT reconnecting after a hub restart).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HANDSHAKE_BURST_PER_PEER)]
    handshake_burst_per_peer: u32,

    /// How long one message may take to arrive whole, from its first byte,
    /// before its sender is closed with 1008.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MESSAGE_TIMEOUT.as_secs())]
    message_timeout: u64,
    /// Events kept so that a subscriber that reconnects (or restarts with
    /// `subscribe --since`) gets what it missed; 0 turns history off.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY_SIZE)]
    history: usize,

    /// Longest an event stays in the history, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_HISTORY_TTL.as_secs_f64(),
          value_parser = crate::connect::parse_seconds_f64)]
    history_ttl: f64,

    /// Most bytes the history keeps alive, its frames and their
    /// bookkeeping; past it the oldest events are forgotten (and a position
    /// before them is answered `too_many` or `expired`).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_HISTORY_BYTES)]
    history_bytes: usize,

    /// Most events a catching-up subscriber's writer takes from the
    /// history at a time (capped at 256). It does not bound a replay: a
    /// subscriber gets everything the history holds after its position,
    /// however many events.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_REPLAY)]
    max_replay: usize,

    /// Join the group of hubs sharing one NATS JetStream stream on this
    /// server (e.g. nats://127.0.0.1:4222; several comma-separated): every
    /// hub delivers every event in one order, acks mean JetStream stored
    /// the event, and subscribers can resume on any hub. Needs a build with
    /// the `nats` feature.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,

    /// The stream the group shares (letters, digits, _ and -).
    #[arg(
        long,
        value_name = "NAME",
        requires = "nats",
        default_value = "watchtower"
    )]
    nats_stream: String,

    /// A NATS .creds file (user JWT and nkey seed) to connect with.
    #[arg(long, value_name = "FILE", requires = "nats")]
    nats_creds: Option<PathBuf>,
}

/// Descriptors kept for everything but client connections: stdio, the
/// listener, certificate and token files, the runtime's own.
const RESERVED_FDS: u64 = 64;

/// The CLI's --min-token-len default: stricter than the library's, whose
/// default must admit the short tokens of existing tests and examples.
const CLI_MIN_TOKEN_LEN: usize = 16;

pub(crate) async fn run(args: HubArgs) -> Result<(), CliError> {
    let mut config = HubConfig::default();
    config.max_message_size = args.max_message_size;
    config.client_queue_frames = args.client_queue;
    config.min_token_len = args.min_token_len;
    config.allow_query_token = !args.no_query_token;
    config.auth_failures_per_minute = args.auth_failures_per_minute;
    config.allowed_origins = args.allow_origin.clone();
    config.max_pending_handshakes = args.max_pending_handshakes;
    config.history_size = args.history;
    config.history_ttl = Duration::from_secs_f64(args.history_ttl);
    config.history_bytes = args.history_bytes;
    config.max_replay = args.max_replay;
    let (limit_note, max_connections) = fit_open_file_limit(args.max_connections);
    config.max_connections = max_connections;
    if config.max_pending_handshakes > max_connections {
        config.max_pending_handshakes = max_connections;
    }
    config.max_pending_handshakes_per_peer = args
        .max_pending_handshakes_per_peer
        .min(config.max_pending_handshakes);
    config.handshakes_per_second_per_peer = args.handshakes_per_second_per_peer;
    config.handshake_burst_per_peer = args.handshake_burst_per_peer;
    config.message_timeout = Duration::from_secs(args.message_timeout);
    let sources = Sources {
        tokens: args.token.clone(),
        token_file: args.token_file.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        client_ca: args.client_ca.clone(),
    };
    let mut builder = Hub::builder().config(config);
    if let Some(tls) = sources.tls()? {
        builder = builder.tls(tls);
    }
    for token in sources.tokens()? {
        builder = builder.bearer_token(token);
    }
    if let Some(url) = &args.nats {
        builder = with_nats(builder, url, &args)?;
    }
    let secured = describe(&args);
    let hub = builder.bind(args.listen.as_str()).await?;
    let started = Instant::now();
    // Polled once before the first line goes out, so the signal handlers
    // are in place by the time anyone reading it can send Ctrl-C.
    let mut stop = std::pin::pin!(signal::stop_requested());
    // SIGHUP's handler is installed here too, before the first line.
    let reloads = reload::watch(sources, hub.handle());
    let stopped_early = tokio::select! {
        biased;
        () = &mut stop => true,
        () = std::future::ready(()) => false,
    };
    eprintln!(
        "watchtower hub listening on {}{secured} (Ctrl-C stops it)",
        hub.url()
    );
    eprintln!("{limit_note}");
    let http = hub.http_url();
    let with_token = if secured.contains("token") {
        " (open it as /#token=TOKEN; the API wants Authorization: Bearer)"
    } else {
        ""
    };
    eprintln!("dashboard: {http}{with_token}");
    eprintln!("metrics: {http}metrics  health: {http}healthz");

    if !stopped_early {
        tokio::select! {
            () = &mut stop => {}
            () = reloads => {}
        }
    }
    eprintln!("stopping: closing every client");
    let stats = hub.shutdown().await;
    eprint!("{}", render(&stats, started.elapsed()));
    Ok(())
}

#[cfg(feature = "nats")]
fn with_nats(
    builder: watchtower_hub::HubBuilder,
    url: &str,
    args: &HubArgs,
) -> Result<watchtower_hub::HubBuilder, CliError> {
    let mut nats = watchtower_hub::NatsConfig::new(url).stream(&args.nats_stream);
    if let Some(creds) = &args.nats_creds {
        nats = nats.credentials_file(creds);
    }
    Ok(builder.nats(nats))
}

#[cfg(not(feature = "nats"))]
fn with_nats(
    _builder: watchtower_hub::HubBuilder,
    _url: &str,
    _args: &HubArgs,
) -> Result<watchtower_hub::HubBuilder, CliError> {
    Err(CliError::Usage(
        "this watchtower was built without NATS support; build it with `--features nats`".into(),
    ))
}

/// Raises the soft open-file limit to the hard limit and lowers
/// `max_connections` to fit what it got; returns a line saying what
/// happened, and the connection cap to use.
fn fit_open_file_limit(max_connections: usize) -> (String, usize) {
    let before = rlimit::Resource::NOFILE.get().ok();
    let now = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => now,
        Err(error) => {
            let soft = before.map_or(0, |(soft, _)| soft);
            tracing::warn!(%error, soft, "could not raise the open-file limit");
            soft
        }
    };
    let raised = match before {
        Some((soft, hard)) if soft < now => {
            format!("open-file limit raised from {soft} to {now} (hard limit {hard})")
        }
        Some((soft, hard)) => format!("open-file limit {soft} (hard limit {hard})"),
        None => format!("open-file limit {now}"),
    };
    if now == 0 {
        // Unknown: leave the cap as asked.
        return (raised, max_connections);
    }
    let fits = usize::try_from(now.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if max_connections > fits {
        (
            format!("{raised}; max connections lowered from {max_connections} to {fits} to fit"),
            fits,
        )
    } else {
        (
            format!("{raised}; max connections {max_connections}"),
            max_connections,
        )
    }
}

/// What protects the hub, for the start-up line.
fn describe(args: &HubArgs) -> String {
    let mut parts = Vec::new();
    if args.client_ca.is_some() {
        parts.push("client certificates required");
    }
    if !args.token.is_empty() || args.token_file.is_some() {
        parts.push("bearer token required");
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", {}", parts.join(", "))
    }
}

/// The final stats, one figure per line: every figure the hub has (the
/// same ones `/metrics` shows), so none is left out.
fn render(s: &HubStats, uptime: Duration) -> String {
    let mut out = String::from("hub stats:\n");
    out.push_str(&format!(
        "  {:<44} {:.1} s\n",
        "uptime",
        uptime.as_secs_f64()
    ));
    for figure in s.figures() {
        let name = match figure.label {
            Some((label, value)) => format!("{}{{{label}={value}}}", figure.name),
            None => figure.name.to_string(),
        };
        out.push_str(&format!("  {name:<44} {}\n", figure.value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_render_one_figure_per_line() {
        let text = render(&HubStats::default(), Duration::from_millis(1500));
        assert!(text.contains("  uptime "), "{text}");
        assert!(text.contains(" 1.5 s\n"), "{text}");
        let figures = HubStats::default().figures().count();
        assert_eq!(text.lines().count(), 2 + figures, "{text}");
        // The counters the CLI once left out are there.
        for name in [
            "control_frames_total{result=rejected}",
            "frames_in_total",
            "bytes_in_total",
            "frames_queued_total",
            "clients ",
        ] {
            assert!(text.contains(&format!("  {name}")), "{name}: {text}");
        }
    }
}
