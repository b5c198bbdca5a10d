//! `watchtower hub`: run a relay hub until Ctrl-C, then print its stats.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use watchtower_hub::{
    DEFAULT_CLIENT_QUEUE_FRAMES, DEFAULT_MAX_MESSAGE_SIZE, Hub, HubConfig, HubStats, HubTls,
};

use crate::error::CliError;
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
}

pub(crate) async fn run(args: HubArgs) -> Result<(), CliError> {
    let mut config = HubConfig::default();
    config.max_message_size = args.max_message_size;
    config.client_queue_frames = args.client_queue;
    let mut builder = Hub::builder().config(config);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let mut tls = HubTls::from_pem_files(cert, key)?;
        if let Some(client_ca) = &args.client_ca {
            tls = tls.require_client_certificates_file(client_ca)?;
        }
        builder = builder.tls(tls);
    }
    for token in tokens(&args)? {
        builder = builder.bearer_token(token);
    }
    let secured = describe(&args);
    let hub = builder.bind(args.listen.as_str()).await?;
    let started = Instant::now();
    eprintln!(
        "watchtower hub listening on {}{secured} (Ctrl-C stops it)",
        hub.url()
    );

    signal::stop_requested().await;
    eprintln!("stopping: closing every client");
    let stats = hub.shutdown().await;
    eprint!("{}", render(&stats, started.elapsed()));
    Ok(())
}

/// Every token from --token and --token-file.
fn tokens(args: &HubArgs) -> Result<Vec<String>, CliError> {
    let mut tokens = args.token.clone();
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!(
                "could not read the token file {}: {e}",
                path.display()
            ))
        })?;
        let before = tokens.len();
        tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_string),
        );
        if tokens.len() == before {
            return Err(CliError::Usage(format!(
                "the token file {} holds no token",
                path.display()
            )));
        }
    }
    Ok(tokens)
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

/// The final stats, one figure per line.
fn render(s: &HubStats, uptime: Duration) -> String {
    let m = &s.malformed;
    let rows: [(&str, String); 16] = [
        ("uptime", format!("{:.1} s", uptime.as_secs_f64())),
        ("connections", s.connections_total.to_string()),
        ("failed handshakes", s.handshake_failures.to_string()),
        ("  of which TLS", s.tls_failures.to_string()),
        ("  of which refused (401)", s.auth_rejected.to_string()),
        ("events in", s.events_in.to_string()),
        ("duplicates dropped", s.duplicates_dropped.to_string()),
        ("acks sent", s.acks_sent.to_string()),
        ("control frames", s.control_frames.to_string()),
        ("frames out", s.frames_out.to_string()),
        ("frames dropped", s.dropped_frames.to_string()),
        ("closed: slow (1013)", s.disconnected_slow.to_string()),
        ("closed: dead", s.disconnected_dead.to_string()),
        ("closed: oversize (1009)", s.oversize_closed.to_string()),
        ("closed: protocol (1002)", s.protocol_errors.to_string()),
        (
            "malformed",
            format!(
                "{} (invalid utf-8 {}, invalid json {}, not an object {}, missing field {}, \
                 empty field {}, wrong type {})",
                m.total(),
                m.invalid_utf8,
                m.invalid_json,
                m.not_an_object,
                m.missing_field,
                m.empty_field,
                m.wrong_type
            ),
        ),
    ];
    let mut out = String::from("hub stats:\n");
    for (name, value) in rows {
        out.push_str(&format!("  {name:<24} {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_render_one_figure_per_line() {
        let text = render(&HubStats::default(), Duration::from_millis(1500));
        assert!(
            text.contains("  uptime                   1.5 s\n"),
            "{text}"
        );
        assert!(text.contains("  frames dropped           0\n"), "{text}");
        assert_eq!(text.lines().count(), 17);
    }
}
