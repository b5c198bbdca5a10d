//! `watchtower subscribe`: print received events as JSON lines.

use std::io::ErrorKind;
use std::time::Duration;

use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use watchtower_websocket::{
    BackpressureConfig, Event, HandlerFuture, Jitter, MailboxOverflow, MaxAttempts, Position,
    ReconnectPolicy, WebSocketTransport,
};

use crate::connect::ConnectArgs;
use crate::error::CliError;
use crate::signal;

/// Events received but not printed yet. When stdout is slower than the
/// hub, this and the subscription's mailbox fill, and then the transport
/// stops reading (`MailboxOverflow::Block`): the hub holds the rest, and
/// its slow-client policy decides, instead of events being dropped here.
const PRINT_QUEUE: usize = 1024;

#[derive(Debug, Args)]
pub(crate) struct SubscribeArgs {
    #[command(flatten)]
    connection: ConnectArgs,

    /// An event type to receive; repeat for several. None: every type.
    #[arg(long = "type", value_name = "TYPE")]
    event_types: Vec<String>,

    /// Exit after printing this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Continue from this position (as printed on stderr when an earlier
    /// run exited): first the events the hub's history still holds after
    /// it, then live ones. If the hub cannot recover it (restarted, too
    /// old, too many), a warning says so and printing starts from now.
    /// The position printed on exit is past every event received; with
    /// --count, events received after the count (not printed) are before
    /// it too.
    #[arg(long, value_name = "POSITION")]
    since: Option<Position>,
}

pub(crate) async fn run(args: SubscribeArgs) -> Result<(), CliError> {
    if args.event_types.iter().any(String::is_empty) {
        return Err(CliError::Usage("--type must not be empty".into()));
    }
    // Connect in the background and keep reconnecting, however long the
    // hub is away; failed attempts are logged as warnings meanwhile.
    let mut builder = args
        .connection
        .builder(policy(), BackpressureConfig::default())?
        .mailbox_overflow(MailboxOverflow::Block)
        .connect_lazily(true);
    if let Some(position) = args.since {
        builder = builder.resume_from(position);
    }
    let transport = builder.connect().await?;
    let (tx, rx) = mpsc::channel(PRINT_QUEUE);
    transport
        .subscribe(args.event_types.clone(), move |event| forward(&tx, event))
        .await?;

    // `print` drops the receiver when it returns, so handlers still holding
    // events stop at once instead of holding up the shutdown.
    let printed = print(rx, args.count).await;
    if let Err(error) = transport.shutdown().await {
        tracing::debug!(%error, "shutdown");
    }
    // Where to continue from (`--since`): after every event received.
    match transport.position().or(args.since) {
        Some(position) => eprintln!("position: {position}"),
        None => eprintln!("position: none (the server keeps no history)"),
    }
    printed?;
    undelivered(&transport)
}

/// Whatever was received but could not be printed is said on stderr and
/// makes the exit code non-zero: never dropped in silence.
fn undelivered(transport: &WebSocketTransport) -> Result<(), CliError> {
    let stats = transport.connection_stats();
    let dead = transport.dlq_stats().total_pushed;
    let malformed = stats.malformed.total();
    if dead == 0 && malformed == 0 {
        return Ok(());
    }
    Err(CliError::Runtime(format!(
        "{dead} received events were not printed (mailbox overflow {}, handler failures {}, \
         unhandled at shutdown {}) and {malformed} frames were not events",
        stats.mailbox_overflow,
        stats.handler_errors + stats.handler_panics,
        stats.mailbox_abandoned,
    )))
}

/// Every attempt, forever, from 100 ms doubling to at most 5 s, jittered
/// so that many subscribers do not return together.
fn policy() -> ReconnectPolicy {
    ReconnectPolicy::exponential(Duration::from_millis(100), 2.0, MaxAttempts::Unlimited)
        .with_max_delay(Duration::from_secs(5))
        .with_jitter(Jitter::Equal)
}

/// The subscription handler: hands the event to the printing loop.
fn forward(tx: &mpsc::Sender<Event>, event: Event) -> HandlerFuture {
    let tx = tx.clone();
    Box::pin(async move {
        // Fails only once printing is over (--count reached, Ctrl-C, stdout
        // closed): this event was not asked for, so it is not an error.
        let _ = tx.send(event).await;
        Ok(())
    })
}

/// Prints events until `count` is reached, Ctrl-C, or stdout closes.
async fn print(mut rx: mpsc::Receiver<Event>, count: Option<u64>) -> Result<(), CliError> {
    let mut stdout = tokio::io::stdout();
    let stop = signal::stop_requested();
    tokio::pin!(stop);
    let mut printed = 0;
    while count.is_none_or(|n| printed < n) {
        let event = tokio::select! {
            event = rx.recv() => event,
            () = &mut stop => break,
        };
        let Some(event) = event else { break };
        let mut line = serde_json::to_string(&event)
            .map_err(|e| CliError::Runtime(format!("could not print event {}: {e}", event.id)))?;
        line.push('\n');
        // One flush per line, so a reader of the pipe sees each event at once.
        let written = async {
            stdout.write_all(line.as_bytes()).await?;
            stdout.flush().await
        };
        match written.await {
            Ok(()) => printed += 1,
            // The reader went away (`| head -1`): done, not an error.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break,
            Err(e) => return Err(CliError::Runtime(format!("could not write to stdout: {e}"))),
        }
    }
    Ok(())
}
