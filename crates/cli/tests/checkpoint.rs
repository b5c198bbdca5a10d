//! `subscribe`'s position means *printed*: after Ctrl-C, `--since` the
//! position it printed gets every event it did not print; with
//! `--checkpoint`, a subscriber killed with SIGKILL and started again
//! prints every event at least once, in order, and again only those
//! printed after its last checkpoint.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use watchtower_hub::{Hub, HubConfig};
use watchtower_test_support::TempDir;
use watchtower_websocket::{
    BackpressureStrategy, Event, EventMetadata, Position, WebSocketConfig, WebSocketTransport,
};

use crate::process::Reap;
use crate::support::{LIMIT, until};

/// A hub whose history holds every event of these tests, and that never
/// closes a slow subscriber for its queue.
async fn roomy_hub() -> Hub {
    let mut config = HubConfig::default();
    config.history_size = 1_000_000;
    config.max_replay = 1_000_000;
    config.history_bytes = 512 << 20;
    config.history_ttl = Duration::from_secs(600);
    config.client_queue_frames = 1_000_000;
    config.client_queue_bytes = 256 << 20;
    Hub::bind_with("127.0.0.1:0", config).await.unwrap()
}

/// The test's events: `{"n": n}`, with fixed ids.
fn events(count: u64) -> Vec<Event> {
    (0..count)
        .map(|n| {
            let mut event =
                Event::new("t", serde_json::json!({ "n": n }), EventMetadata::default());
            event.id = format!("evt_{n}");
            event
        })
        .collect()
}

async fn publish_all(url: &str, events: &[Event]) {
    let mut config = WebSocketConfig::new(url);
    config.backpressure.strategy = BackpressureStrategy::Block;
    let publisher = WebSocketTransport::builder(config)
        .resume(false)
        .connect()
        .await
        .unwrap();
    for event in events {
        publisher.publish(event.clone()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    publisher.shutdown().await.unwrap();
}

/// A `watchtower subscribe` process whose stdout is read line by line as
/// it comes, each line with the moment it was read.
struct Subscriber {
    child: Reap,
    lines: Arc<Mutex<Vec<(Instant, u64)>>>,
    stdout: JoinHandle<()>,
    stderr: JoinHandle<String>,
}

impl Subscriber {
    fn start(args: &[&str]) -> Subscriber {
        let mut child = Reap(
            Command::new(env!("CARGO_BIN_EXE_watchtower"))
                .arg("subscribe")
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let stderr = child.0.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&lines);
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let event: serde_json::Value = serde_json::from_str(&line).unwrap();
                let n = event["payload"]["n"].as_u64().unwrap();
                into.lock().unwrap().push((Instant::now(), n));
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        Subscriber {
            child,
            lines,
            stdout,
            stderr,
        }
    }

    fn printed(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn last(&self) -> Option<u64> {
        self.lines.lock().unwrap().last().map(|l| l.1)
    }

    /// Waits until it has printed `n` lines.
    async fn printed_at_least(&self, n: usize) {
        until("lines printed", || self.printed() >= n).await;
    }

    /// SIGKILL, as `kill -9`: no shutdown, no last checkpoint. Returns the
    /// moment of the kill.
    fn kill(&mut self) -> Instant {
        let at = Instant::now();
        self.child.0.kill().unwrap();
        at
    }

    /// Ctrl-C, as a user would.
    fn interrupt(&mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns the exit code (None: killed), every
    /// line printed and stderr.
    async fn wait(self) -> (Option<i32>, Vec<(Instant, u64)>, String) {
        let Subscriber {
            mut child,
            lines,
            stdout,
            stderr,
        } = self;
        tokio::time::timeout(
            LIMIT,
            tokio::task::spawn_blocking(move || {
                let status = child.0.wait().unwrap();
                stdout.join().unwrap();
                let stderr = stderr.join().unwrap();
                let lines = std::mem::take(&mut *lines.lock().unwrap());
                (status.code(), lines, stderr)
            }),
        )
        .await
        .expect("the subscriber exited")
        .unwrap()
    }
}

/// A seeded xorshift generator: the same moments on every run.
struct Rng(u64);

impl Rng {
    fn usize(&mut self, range: std::ops::Range<usize>) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        range.start + (self.0 % (range.end - range.start) as u64) as usize
    }
}

/// The position `subscribe` printed on stderr when it exited.
fn printed_position(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("position: "))
        .unwrap_or_else(|| panic!("no position on stderr: {stderr}"))
        .to_string()
}

/// The key the hub gives an event frame in a position: FNV-1a, 64 bits,
/// over the frame as published (`watchtower_core::frame_key`).
fn frame_key(frame: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in frame {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The last event a position covers (-1: none), for events published
/// alone to a fresh hub: event `n` is seq `n + 1`, and a key names the
/// event after `seq` it stops at.
fn covered(position: &Position, keys: &HashMap<u64, u64>) -> i64 {
    match position.last() {
        Some(key) => {
            let n = *keys
                .get(&key)
                .unwrap_or_else(|| panic!("{position} names no event published"));
            assert!(
                n + 1 > position.seq(),
                "{position}: its key is before its seq"
            );
            n as i64
        }
        None => position.seq() as i64 - 1,
    }
}

/// N2: Ctrl-C during a burst, then `--since` the position printed: the
/// two runs together print every event once, in order. (At f945df2 the
/// position covered what was read, not printed: 465–467 of 3,000 printed,
/// the position said 3000, and the second run got nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_then_since_misses_nothing_and_repeats_nothing() {
    const N: u64 = 3_000;
    let hub = roomy_hub().await;
    let url = hub.url();
    let first = Subscriber::start(&["--url", &url]);
    until("the subscriber connected", || {
        let s = hub.stats();
        s.clients == 1 && s.control_frames >= 1
    })
    .await;
    let events = events(N);
    publish_all(&url, &events).await;
    first.printed_at_least(100).await;
    let mut first = first;
    first.interrupt();
    let (code, lines, stderr) = first.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    let printed: Vec<u64> = lines.iter().map(|l| l.1).collect();
    assert!(printed.len() < N as usize, "Ctrl-C came after the burst");
    assert_eq!(printed, (0..printed.len() as u64).collect::<Vec<_>>());
    let position = printed_position(&stderr);

    let rest = (N as usize - printed.len()).to_string();
    let second = Subscriber::start(&["--url", &url, "--since", &position, "--count", &rest]);
    let (code, lines, stderr) = second.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    let again: Vec<u64> = lines.iter().map(|l| l.1).collect();
    assert_eq!(again, (printed.len() as u64..N).collect::<Vec<_>>());
}

/// The test: 20,000 events; a subscriber with `--checkpoint` is
/// killed with SIGKILL at 5 seeded moments (after a seeded number of
/// lines) and started again each time. Every event is printed at least
/// once and in order; each run starts exactly after what its
/// predecessor's checkpoint file held when it was killed, and that
/// checkpoint never covers an event that was not printed: what is printed
/// again is exactly what was printed after the last checkpoint written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_from_a_checkpoint_prints_everything_in_order() {
    const N: u64 = 20_000;
    const KILLS: usize = 5;
    let hub = roomy_hub().await;
    let url = hub.url();
    let dir = TempDir::new();
    let file = dir.path().join("position");
    let file_arg = file.to_str().unwrap().to_string();
    let args = [
        "--url",
        &url,
        "--checkpoint",
        &file_arg,
        "--checkpoint-interval",
        "0.1",
    ];
    let events = events(N);
    let keys: HashMap<u64, u64> = events
        .iter()
        .enumerate()
        .map(|(n, e)| {
            (
                frame_key(serde_json::to_string(e).unwrap().as_bytes()),
                n as u64,
            )
        })
        .collect();

    let mut run = Subscriber::start(&args);
    until("the subscriber connected", || {
        let s = hub.stats();
        s.clients == 1 && s.control_frames >= 1
    })
    .await;
    let publishing = {
        let (url, events) = (url.clone(), events.clone());
        tokio::spawn(async move { publish_all(&url, &events).await })
    };

    let mut rng = Rng(0xc4ec_4b01);
    let mut printed_by_run: Vec<Vec<u64>> = Vec::new();
    // The next event a run must start with.
    let mut next: u64 = 0;
    for kill in 1..=KILLS {
        // Each run prints some of what is left, never all of it.
        let target = rng.usize(300..(N as usize / (KILLS + 1)));
        run.printed_at_least(target).await;
        run.kill();
        let (code, lines, _) = run.wait().await;
        assert_eq!(code, None, "run {kill} was killed");
        let ns: Vec<u64> = lines.iter().map(|l| l.1).collect();
        let first = *ns.first().expect("the run printed");
        let last = *ns.last().unwrap();
        assert_eq!(first, next, "run {kill} starts where its checkpoint said");
        assert_eq!(
            ns,
            (first..=last).collect::<Vec<_>>(),
            "run {kill} in order"
        );

        let text = std::fs::read_to_string(&file).expect("a checkpoint");
        let position: Position = text.trim().parse().unwrap();
        let checkpointed = covered(&position, &keys);
        assert!(
            checkpointed <= last as i64,
            "run {kill}: the checkpoint ({position}: event {checkpointed}) is past what was \
             printed ({last})"
        );
        assert!(
            checkpointed + 1 >= first as i64,
            "run {kill}: the checkpoint went back"
        );
        next = (checkpointed + 1) as u64;
        printed_by_run.push(ns);
        run = Subscriber::start(&args);
    }
    publishing.await.unwrap();
    // The last run prints the rest, then is stopped with Ctrl-C.
    until("the last event printed", || run.last() == Some(N - 1)).await;
    run.interrupt();
    let (code, lines, stderr) = run.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    let ns: Vec<u64> = lines.iter().map(|l| l.1).collect();
    assert_eq!(ns, (next..N).collect::<Vec<_>>(), "the last run");
    printed_by_run.push(ns);
    // The checkpoint at exit covers everything, and so does the position.
    let stored: Position = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(covered(&stored, &keys), N as i64 - 1);
    assert_eq!(printed_position(&stderr), stored.to_string());

    // Every event at least once, in order within each run (checked above).
    let mut seen = vec![false; N as usize];
    for n in printed_by_run.iter().flatten() {
        seen[*n as usize] = true;
    }
    assert!(seen.iter().all(|s| *s), "every event printed");
    let repeated = printed_by_run.iter().map(Vec::len).sum::<usize>() - N as usize;
    eprintln!("{KILLS} kills: {repeated} events printed twice");
}

/// A checkpoint that cannot be read, or whose directory does not exist,
/// is a usage error before anything is connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_checkpoint_is_a_usage_error() {
    let dir = TempDir::new();
    let bad = dir.write("position", "not a position\n");
    let bad = bad.to_str().unwrap();
    let missing = dir.path().join("nowhere/position");
    let missing = missing.to_str().unwrap();
    for (file, says) in [
        (bad, "does not hold a position"),
        (missing, "does not exist"),
    ] {
        let out = crate::support::output(crate::support::watchtower(&[
            "subscribe",
            "--url",
            "ws://127.0.0.1:9/events",
            "--checkpoint",
            file,
        ]))
        .await;
        assert_eq!(crate::support::code(&out), 2);
        let line = crate::support::one_line_of_stderr(&out);
        assert!(line.contains(says), "{line}");
    }
}
