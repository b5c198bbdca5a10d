//! `watchtower subscribe`: print received events as JSON lines.

use std::io::ErrorKind;
use std::time::Duration;

use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use watchtower_websocket::{
    BackpressureConfig, Event, HandlerFuture, Jitter, MaxAttempts, ReconnectPolicy,
};

use crate::connect::ConnectArgs;
use crate::error::CliError;
use crate::signal;

/// Events received but not printed yet. When stdout is slower than the
/// hub, the transport's subscription mailbox absorbs the rest.
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
}

pub(crate) async fn run(args: SubscribeArgs) -> Result<(), CliError> {
    if args.event_types.iter().any(String::is_empty) {
        return Err(CliError::Usage("--type must not be empty".into()));
    }
    // Connect in the background and keep reconnecting, however long the
    // hub is away; failed attempts are logged as warnings meanwhile.
    let transport = args
        .connection
        .builder(policy(), BackpressureConfig::default())?
        .connect_lazily(true)
        .connect()
        .await?;
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
    printed
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
