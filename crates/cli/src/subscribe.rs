//! `watchtower subscribe`: print received events as JSON lines.
//!
//! An event counts as handled once its line is on stdout: the handler
//! prints it, so the position printed at exit (and stored by
//! `--checkpoint`) covers exactly what was printed.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use watchtower_websocket::{
    BackpressureConfig, BoxError, Event, Jitter, MailboxOverflow, MaxAttempts, Position,
    ReconnectPolicy, WebSocketTransport,
};

use crate::connect::{ConnectArgs, parse_seconds};
use crate::error::CliError;
use crate::signal;

/// How long the shutdown waits, at most, for the close handshake and for
/// a handler that will never print (printing has stopped): it is then
/// interrupted, and its event is not counted.
const STOP_WAIT: Duration = Duration::from_millis(500);

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
    /// The position printed on exit is past every event printed and
    /// before every event not printed (after Ctrl-C, or after --count).
    #[arg(long, value_name = "POSITION")]
    since: Option<Position>,

    /// Keep the position in FILE (replaced atomically at most every
    /// --checkpoint-interval, and at exit) and continue from it when
    /// started again, even after a crash or `kill -9`: every event not
    /// printed yet comes, and at most those printed in the last interval
    /// before a crash come again. When FILE holds a position, it wins
    /// over --since.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,

    /// With --checkpoint: write it at most this often [default: 1].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, requires = "checkpoint")]
    checkpoint_interval: Option<Duration>,
}

pub(crate) async fn run(args: SubscribeArgs) -> Result<(), CliError> {
    if args.event_types.iter().any(String::is_empty) {
        return Err(CliError::Usage("--type must not be empty".into()));
    }
    // Connect in the background and keep reconnecting, however long the
    // hub is away; failed attempts are logged as warnings meanwhile. When
    // stdout is slower than the hub, the subscription's mailbox fills and
    // the transport stops reading (`Block`): the hub holds the rest, and
    // its slow-client policy decides, instead of events being dropped.
    let mut builder = args
        .connection
        .builder(policy(), BackpressureConfig::default())?
        .mailbox_overflow(MailboxOverflow::Block)
        .connect_lazily(true)
        .shutdown_timeout(STOP_WAIT);
    if let Some(position) = args.since {
        builder = builder.resume_from(position);
    }
    if let Some(file) = &args.checkpoint {
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            return Err(CliError::Usage(format!(
                "--checkpoint {}: the directory {} does not exist",
                file.display(),
                dir.display()
            )));
        }
        builder = builder.checkpoint_file(file);
        if let Some(interval) = args.checkpoint_interval {
            builder = builder.checkpoint_interval(interval);
        }
    }
    let transport = builder.connect().await?;
    let printer = Arc::new(Printer::new(args.count));
    let handler = Arc::clone(&printer);
    transport
        .subscribe(args.event_types.clone(), move |event| {
            Box::pin(Arc::clone(&handler).print(event))
        })
        .await?;

    tokio::select! {
        () = signal::stop_requested() => {}
        () = printer.finished() => {}
    }
    // From here no handler prints, and none that has not printed returns:
    // the shutdown interrupts them, and their events are not counted.
    printer.stop();
    if let Err(error) = transport.shutdown().await {
        tracing::debug!(%error, "shutdown");
    }
    // Where to continue from (`--since`): after every event printed.
    match transport.position().or(args.since) {
        Some(position) => eprintln!("position: {position}"),
        None => eprintln!("position: none (the server keeps no history)"),
    }
    if let Some(error) = printer.take_error() {
        return Err(error);
    }
    undelivered(&transport)
}

/// Whatever was received but could not be printed, and will not come
/// again from the position, is said on stderr and makes the exit code
/// non-zero: never dropped in silence. (Events left unprinted at exit are
/// not among them: the position is before them.)
fn undelivered(transport: &WebSocketTransport) -> Result<(), CliError> {
    let stats = transport.connection_stats();
    let failed = stats.handler_errors + stats.handler_panics;
    let malformed = stats.malformed.total();
    let mut problems = Vec::new();
    if stats.mailbox_overflow + failed + malformed > 0 {
        problems.push(format!(
            "{} received events were not printed (mailbox overflow {}, handler failures \
             {failed}) and {malformed} frames were not events",
            stats.mailbox_overflow + failed,
            stats.mailbox_overflow,
        ));
    }
    if stats.checkpoint_failures > 0 {
        problems.push(format!(
            "the checkpoint could not be written {} times (see the warnings)",
            stats.checkpoint_failures
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Runtime(problems.join("; ")))
    }
}

/// Every attempt, forever, from 100 ms doubling to at most 5 s, jittered
/// so that many subscribers do not return together.
fn policy() -> ReconnectPolicy {
    ReconnectPolicy::exponential(Duration::from_millis(100), 2.0, MaxAttempts::Unlimited)
        .with_max_delay(Duration::from_secs(5))
        .with_jitter(Jitter::Equal)
}

/// Prints events as the subscription's handler: an event is handled when
/// its line is on stdout, and not before.
struct Printer {
    stdout: tokio::sync::Mutex<tokio::io::Stdout>,
    count: Option<u64>,
    printed: AtomicU64,
    /// Printing is over (--count reached, Ctrl-C, stdout closed or
    /// failing): handlers print nothing more and never return.
    stopped: AtomicBool,
    /// Tells `run` that printing is over by itself.
    done: Notify,
    error: Mutex<Option<CliError>>,
}

impl Printer {
    fn new(count: Option<u64>) -> Printer {
        Printer {
            stdout: tokio::sync::Mutex::new(tokio::io::stdout()),
            count,
            printed: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            done: Notify::new(),
            error: Mutex::new(None),
        }
    }

    fn stop(&self) {
        if !self.stopped.swap(true, SeqCst) {
            self.done.notify_one();
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.load(SeqCst)
    }

    async fn finished(&self) {
        self.done.notified().await;
    }

    fn fail(&self, error: CliError) {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(error);
        self.stop();
    }

    fn take_error(&self) -> Option<CliError> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The handler. Returns once the event's line is written and flushed
    /// (one flush per line, so a reader of the pipe sees each event at
    /// once); once printing is over it never returns, so the event is not
    /// counted as handled.
    async fn print(self: Arc<Self>, event: Event) -> Result<(), BoxError> {
        let line = match serde_json::to_string(&event) {
            Ok(mut line) => {
                line.push('\n');
                line
            }
            Err(e) => {
                self.fail(CliError::Runtime(format!(
                    "could not print event {}: {e}",
                    event.id
                )));
                return std::future::pending().await;
            }
        };
        let mut stdout = self.stdout.lock().await;
        if self.stopped() {
            return std::future::pending().await;
        }
        // A line once begun is finished, even if Ctrl-C comes meanwhile:
        // it counts as printed.
        let written = async {
            stdout.write_all(line.as_bytes()).await?;
            stdout.flush().await
        };
        match written.await {
            Ok(()) => {}
            // The reader went away (`| head -1`): done, not an error.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.stop();
                return std::future::pending().await;
            }
            Err(e) => {
                self.fail(CliError::Runtime(format!("could not write to stdout: {e}")));
                return std::future::pending().await;
            }
        }
        let printed = self.printed.fetch_add(1, SeqCst) + 1;
        if self.count.is_some_and(|n| printed >= n) {
            self.stop();
        }
        Ok(())
    }
}
