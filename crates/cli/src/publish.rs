//! `watchtower publish`: send one event, or one per line of stdin, and exit
//! once they are written.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use watchtower_websocket::{
    BackpressureConfig, BackpressureStrategy, Event, EventMetadata, MaxAttempts, ReconnectPolicy,
    WatchtowerError, WebSocketTransport,
};

use crate::connect::{ConnectArgs, parse_seconds};
use crate::error::CliError;

/// Events waiting to be written. `Block`: reading stdin pauses while the
/// queue is full instead of losing events.
const QUEUE: usize = 1024;

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    connection: ConnectArgs,

    /// The event type, e.g. notification.sent. With --stdin it applies to
    /// lines that are payloads, not whole events.
    #[arg(long = "type", value_name = "TYPE", required_unless_present = "stdin")]
    event_type: Option<String>,

    /// The event's payload, as JSON [default: null].
    #[arg(long, value_name = "JSON", conflicts_with = "stdin")]
    payload: Option<String>,

    /// The producer, stored as metadata.source.
    #[arg(long, value_name = "SOURCE")]
    source: Option<String>,

    /// Read events from stdin, one per non-empty line: a JSON payload, or a
    /// whole event (an object with "id" and "event_type"), sent as is.
    #[arg(long)]
    stdin: bool,

    /// How long to wait for the events to be written before failing.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    timeout: Duration,
}

pub(crate) async fn run(args: PublishArgs) -> Result<(), CliError> {
    // Check what was typed before connecting.
    if args.event_type.as_deref() == Some("") {
        return Err(CliError::Usage("--type must not be empty".into()));
    }
    let single = if args.stdin {
        None
    } else {
        Some(single_event(&args)?)
    };

    let transport = args
        .connection
        .builder(policy(), queue())?
        .connect()
        .await?;
    let published = match single {
        Some(event) => transport
            .publish(event)
            .await
            .map(|()| 1)
            .map_err(CliError::from),
        None => publish_stdin(&transport, &args).await,
    };
    let written = match published {
        Ok(n) => flush(&transport, args.timeout).await.map(|()| n),
        Err(error) => Err(error),
    };
    // Also on failure: whatever was accepted is still flushed, within the
    // transport's shutdown timeout.
    match transport.shutdown().await {
        Ok(report) if !report.closed_cleanly && written.is_ok() => {
            tracing::warn!(
                "written, but the server did not confirm the close; delivery is unconfirmed"
            );
        }
        _ => {}
    }
    // Every event this run was given and the transport gave up on (dead-
    // lettered: with --at-least-once, not acknowledged after its resends;
    // or left at shutdown) fails the run, whenever it happened. `flush`
    // alone only sees those given up while it waited, not those given up
    // while stdin was still being read.
    let given_up = transport.dlq_stats().total_pushed;
    if let Some(error) = not_delivered(given_up, args.connection.at_least_once) {
        return Err(match written {
            Err(first) => CliError::Runtime(format!("{first}; {error}")),
            Ok(_) => CliError::Runtime(error),
        });
    }
    let n = written?;
    tracing::info!(events = n, url = %transport.url(), "published");
    Ok(())
}

/// The error for `given_up` events not delivered, if any.
fn not_delivered(given_up: u64, at_least_once: bool) -> Option<String> {
    (given_up > 0).then(|| {
        let (events, were) = if given_up == 1 {
            ("event", "was")
        } else {
            ("events", "were")
        };
        let what = if at_least_once {
            "not acknowledged by the hub (dead-lettered after their resends timed out, \
             or still unacknowledged at shutdown)"
        } else {
            "not written (dead-lettered)"
        };
        format!("{given_up} {events} {were} {what}; publish them again")
    })
}

/// A missing hub should fail within seconds: an immediate attempt, then
/// three more after 0.25, 0.5 and 1 s.
fn policy() -> ReconnectPolicy {
    ReconnectPolicy::exponential(Duration::from_millis(250), 2.0, MaxAttempts::Limited(3))
        .with_max_delay(Duration::from_secs(1))
}

fn queue() -> BackpressureConfig {
    BackpressureConfig {
        max_queue_size: QUEUE,
        strategy: BackpressureStrategy::Block,
        ..BackpressureConfig::default()
    }
}

fn metadata(args: &PublishArgs) -> EventMetadata {
    match &args.source {
        Some(source) => EventMetadata::default().with_source(source),
        None => EventMetadata::default(),
    }
}

/// The event from `--type` and `--payload`.
fn single_event(args: &PublishArgs) -> Result<Event, CliError> {
    let Some(event_type) = &args.event_type else {
        return Err(CliError::Usage(
            "--type is required unless --stdin is given".into(),
        ));
    };
    let payload = match &args.payload {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| CliError::Usage(format!("--payload is not valid JSON: {e}")))?,
        None => Value::Null,
    };
    Ok(Event::new(event_type.as_str(), payload, metadata(args)))
}

/// Publishes each non-empty stdin line as it arrives, so a pipe that never
/// ends (`tail -f`) streams. Stops at the first bad line.
async fn publish_stdin(
    transport: &WebSocketTransport,
    args: &PublishArgs,
) -> Result<u64, CliError> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut number = 0;
    let mut published = 0;
    loop {
        number += 1;
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(CliError::Usage(format!(
                    "stdin line {number} is not valid UTF-8"
                )));
            }
            Err(e) => return Err(CliError::Runtime(format!("could not read stdin: {e}"))),
        };
        if line.trim().is_empty() {
            continue;
        }
        let event = event_from_line(&line, number, args)?;
        transport
            .publish(event)
            .await
            .map_err(|e| match CliError::from(e) {
                CliError::Usage(m) => CliError::Usage(format!("stdin line {number}: {m}")),
                other => other,
            })?;
        published += 1;
    }
    if published == 0 {
        tracing::warn!("stdin held no events; nothing was published");
    }
    Ok(published)
}

/// A whole event if the line is one, else a payload for `--type`.
fn event_from_line(line: &str, number: u64, args: &PublishArgs) -> Result<Event, CliError> {
    let payload: Value = serde_json::from_str(line)
        .map_err(|e| CliError::Usage(format!("stdin line {number} is not valid JSON: {e}")))?;
    if payload.is_object()
        && let Ok(event) = Event::from_json(line.as_bytes())
    {
        return Ok(event);
    }
    match &args.event_type {
        Some(event_type) => Ok(Event::new(event_type.as_str(), payload, metadata(args))),
        None => Err(CliError::Usage(format!(
            "stdin line {number} is not a whole event (an object with \"id\" and \"event_type\"); \
             give --type to publish it as a payload"
        ))),
    }
}

/// Waits until every published event is written to the socket.
async fn flush(transport: &WebSocketTransport, limit: Duration) -> Result<(), CliError> {
    match tokio::time::timeout(limit, transport.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(CliError::Runtime(format!("could not deliver: {error}"))),
        Err(_) => {
            let why = match transport.health_check().await {
                Ok(()) => "the server is not reading fast enough".to_string(),
                Err(WatchtowerError::CircuitOpen { .. }) => {
                    "the server could not be reached again after the connection was lost"
                        .to_string()
                }
                Err(error) => error.to_string(),
            };
            Err(CliError::Runtime(format!(
                "could not deliver within {} s: {why}",
                limit.as_secs_f64()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: PublishArgs,
    }

    fn args(argv: &[&str]) -> PublishArgs {
        Wrapper::try_parse_from(std::iter::once("publish").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn a_line_is_a_whole_event_or_a_payload() {
        let a = args(&["--stdin", "--type", "t", "--source", "s"]);
        let whole =
            event_from_line(r#"{"id":"evt_1","event_type":"x","payload":2}"#, 1, &a).unwrap();
        assert_eq!(
            (whole.id.as_str(), whole.event_type.as_str()),
            ("evt_1", "x")
        );

        let payload = event_from_line(r#"{"user_id":456}"#, 2, &a).unwrap();
        assert_eq!(payload.event_type, "t");
        assert_eq!(payload.payload["user_id"], 456);
        assert_eq!(payload.metadata.source.as_deref(), Some("s"));

        let scalar = event_from_line("42", 3, &a).unwrap();
        assert_eq!(scalar.payload, 42);
    }

    #[test]
    fn bad_lines_name_their_number() {
        let a = args(&["--stdin"]);
        let e = event_from_line("{nope", 7, &a).unwrap_err().to_string();
        assert!(e.starts_with("stdin line 7 is not valid JSON"), "{e}");
        let e = event_from_line(r#"{"user_id":1}"#, 8, &a)
            .unwrap_err()
            .to_string();
        assert!(e.contains("stdin line 8") && e.contains("--type"), "{e}");
    }

    #[test]
    fn events_given_up_are_counted_in_the_error() {
        assert_eq!(not_delivered(0, true), None);
        let e = not_delivered(256, true).unwrap();
        assert!(e.starts_with("256 events were not acknowledged"), "{e}");
        let e = not_delivered(1, false).unwrap();
        assert!(e.starts_with("1 event was not written"), "{e}");
    }

    #[test]
    fn bad_payload_names_the_flag() {
        let a = args(&["--type", "t", "--payload", "{user_id: 1}"]);
        let e = single_event(&a).unwrap_err();
        assert!(matches!(e, CliError::Usage(_)));
        assert!(
            e.to_string().starts_with("--payload is not valid JSON"),
            "{e}"
        );
    }
}
