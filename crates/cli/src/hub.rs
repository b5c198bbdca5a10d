//! `watchtower hub`: run a relay hub until Ctrl-C, then print its stats.

use std::time::{Duration, Instant};

use clap::Args;
use watchtower_hub::{
    DEFAULT_CLIENT_QUEUE_FRAMES, DEFAULT_MAX_MESSAGE_SIZE, Hub, HubConfig, HubStats,
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
}

pub(crate) async fn run(args: HubArgs) -> Result<(), CliError> {
    let mut config = HubConfig::default();
    config.max_message_size = args.max_message_size;
    config.client_queue_frames = args.client_queue;
    let hub = Hub::bind_with(args.listen.as_str(), config).await?;
    let started = Instant::now();
    eprintln!(
        "watchtower hub listening on {} (Ctrl-C stops it)",
        hub.url()
    );

    signal::stop_requested().await;
    eprintln!("stopping: closing every client");
    let stats = hub.shutdown().await;
    eprint!("{}", render(&stats, started.elapsed()));
    Ok(())
}

/// The final stats, one figure per line.
fn render(s: &HubStats, uptime: Duration) -> String {
    let m = &s.malformed;
    let rows: [(&str, String); 12] = [
        ("uptime", format!("{:.1} s", uptime.as_secs_f64())),
        ("connections", s.connections_total.to_string()),
        ("failed handshakes", s.handshake_failures.to_string()),
        ("events in", s.events_in.to_string()),
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
        assert_eq!(text.lines().count(), 13);
    }
}
