//! The real processes of a campaign: `watchtower hub`, `watchtower
//! subscribe` and `watchtower publish`, each started, signalled and
//! stopped by its process id, its stderr kept in a log file.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::history::{Answer, Record, Recorder, parse_payload};

/// How long a hub gets to say it listens.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a process gets to exit after SIGTERM or SIGINT.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// `exit 0`, `signal 9 (SIGKILL)`.
pub fn describe(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(9)) => "signal 9 (SIGKILL)".to_string(),
        (None, Some(15)) => "signal 15 (SIGTERM)".to_string(),
        (None, Some(2)) => "signal 2 (SIGINT)".to_string(),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_string(),
    }
}

/// Sends `signal` (`TERM`, `INT`) to process `pid` with kill(1): the
/// workspace forbids the `unsafe` a direct call would need.
pub async fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("could not run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "kill -{signal} {pid} failed ({})",
            describe(&status)
        ))
    }
}

/// Copies `from` line by line into `log`, calling `each` on every line.
fn log_lines<R, F>(from: R, log: PathBuf, mut each: F) -> JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    F: FnMut(&str) + Send + 'static,
{
    tokio::spawn(async move {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .await
            .ok();
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            each(&line);
            if let Some(file) = file.as_mut() {
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
            }
        }
    })
}

/// A `watchtower hub` process, restartable on the same address.
#[derive(Debug)]
pub struct HubProcess {
    /// `hub0`, `hub1`, …
    pub name: String,
    binary: PathBuf,
    addr: SocketAddr,
    extra: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    incarnation: u32,
    recorder: Recorder,
}

impl HubProcess {
    /// A hub to run from `binary` on `addr` with `extra` arguments, its
    /// logs in `dir`. Not started yet.
    pub fn new(
        name: String,
        binary: &Path,
        addr: SocketAddr,
        extra: Vec<String>,
        dir: &Path,
        recorder: Recorder,
    ) -> HubProcess {
        HubProcess {
            name,
            binary: binary.to_path_buf(),
            addr,
            extra,
            dir: dir.to_path_buf(),
            child: None,
            incarnation: 0,
            recorder,
        }
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/events`.
    pub fn url(&self) -> String {
        format!("ws://{}/events", self.addr)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts it and waits until it says it listens; tries again a few
    /// times (a port just freed by a kill may still be taken).
    pub async fn start(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..5 {
            match self.start_once().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(last)
    }

    async fn start_once(&mut self) -> Result<(), String> {
        self.incarnation += 1;
        let log = self
            .dir
            .join(format!("{}.{}.log", self.name, self.incarnation));
        let mut child = Command::new(&self.binary)
            .arg("hub")
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", self.binary.display()))?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        if let Some(stderr) = child.stderr.take() {
            log_lines(stderr, log.clone(), move |line| {
                if line.contains("listening on")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
            });
        }
        let pid = child.id().unwrap_or(0);
        tokio::select! {
            ready = tokio::time::timeout(START_DEADLINE, ready_rx) => match ready {
                Ok(Ok(())) => {
                    self.child = Some(child);
                    Ok(())
                }
                Ok(Err(_)) => {
                    // stderr closed without the line: it exited.
                    let status = child.wait().await.map(|s| describe(&s)).unwrap_or_default();
                    Err(format!("{} (pid {pid}) exited at start ({status}); see {}", self.name, log.display()))
                }
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    self.recorder.push(Record::Stalled {
                        t: self.recorder.now(),
                        what: format!("{} did not listen within {START_DEADLINE:?}", self.name),
                    });
                    Err(format!("{} did not listen within {START_DEADLINE:?}", self.name))
                }
            }
        }
    }

    fn exited(&self, pid: u32, status: &ExitStatus, as_expected: bool, expected: &str) {
        self.recorder.push(Record::Exit {
            t: self.recorder.now(),
            process: format!("{}.{}", self.name, self.incarnation),
            pid,
            status: describe(status),
            as_expected,
            expected: expected.to_string(),
            excusable: false,
        });
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().unwrap_or(0);
            let _ = child.start_kill();
            if let Ok(status) = child.wait().await {
                self.exited(pid, &status, status.signal() == Some(9), "signal 9");
            }
        }
    }

    /// SIGTERM, then waits for a clean exit (exit 0).
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().unwrap_or(0);
        if let Err(e) = signal(pid, "TERM").await {
            self.recorder.push(Record::Stalled {
                t: self.recorder.now(),
                what: format!("{}: {e}", self.name),
            });
        }
        match tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
            Ok(Ok(status)) => self.exited(pid, &status, status.success(), "exit 0 after SIGTERM"),
            Ok(Err(_)) => {}
            Err(_) => {
                self.recorder.push(Record::Stalled {
                    t: self.recorder.now(),
                    what: format!(
                        "{} (pid {pid}) did not exit within {STOP_DEADLINE:?} of SIGTERM",
                        self.name
                    ),
                });
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// Whether it exited on its own (recorded, and it is not running any
    /// more).
    pub fn check_exit(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                let pid = child.id().unwrap_or(0);
                self.exited(pid, &status, false, "to keep running");
                self.child = None;
                true
            }
            _ => false,
        }
    }
}

/// How often `watchtower subscribe` writes its checkpoint (`--checkpoint-interval`).
const CHECKPOINT_SECONDS: &str = "0.2";

/// One running `watchtower subscribe`.
#[derive(Debug)]
struct RunningCli {
    instance: u32,
    child: Child,
    stdout: JoinHandle<()>,
    stderr: JoinHandle<()>,
    position: Arc<std::sync::Mutex<Option<String>>>,
}

/// A `watchtower subscribe` client: one logical subscriber, restarted as
/// new processes (instances) from its checkpoint file (`--checkpoint`),
/// or `--since` the position it printed before there is one.
#[derive(Debug)]
pub struct CliSubscriber {
    /// Its name (`cli-sub0`).
    pub name: String,
    binary: PathBuf,
    urls: Vec<String>,
    filter: Vec<String>,
    dir: PathBuf,
    recorder: Recorder,
    running: Option<RunningCli>,
    /// Where the chain continues from: the last position printed.
    position: Option<String>,
}

impl CliSubscriber {
    /// A subscriber to run from `binary` on `urls` (the first is tried
    /// first) with `filter`.
    pub fn new(
        name: String,
        binary: &Path,
        urls: Vec<String>,
        filter: Vec<String>,
        dir: &Path,
        recorder: Recorder,
    ) -> CliSubscriber {
        CliSubscriber {
            name,
            binary: binary.to_path_buf(),
            urls,
            filter,
            dir: dir.to_path_buf(),
            recorder,
            running: None,
            position: None,
        }
    }

    /// Starts an instance with `--since` the chain's position (`first`
    /// for the first one, read from a hub before). The first instance is
    /// owed every event from its start.
    pub async fn start(&mut self, first: Option<String>) -> Result<(), String> {
        if first.is_some() {
            self.position = first;
        }
        let instance = self.recorder.next_instance();
        let mut command = Command::new(&self.binary);
        command.arg("subscribe").arg("--at-least-once");
        for url in &self.urls {
            command.arg("--url").arg(url);
        }
        for t in &self.filter {
            command.arg("--type").arg(t);
        }
        if let Some(p) = &self.position {
            command.arg("--since").arg(p);
        }
        // The checkpoint, once written, wins over --since: it is where a
        // process killed with -9 (which prints nothing) continues from.
        let checkpoint = self.dir.join(format!("{}.checkpoint", self.name));
        command
            .arg("--checkpoint")
            .arg(&checkpoint)
            .arg("--checkpoint-interval")
            .arg(CHECKPOINT_SECONDS);
        if let Ok(text) = std::fs::read_to_string(&checkpoint) {
            let stored = text.trim();
            if !stored.is_empty() {
                self.position = Some(stored.to_string());
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", self.binary.display()))?;
        let pid = child.id();
        let t = self.recorder.now();
        self.recorder.push(Record::InstanceStart {
            t,
            instance,
            subscriber: Arc::from(self.name.as_str()),
            own_publisher: None,
            filter: self.filter.clone(),
            since: self.position.clone(),
            pid,
        });
        self.recorder.push(Record::Ready { t, instance });
        let recorder = self.recorder.clone();
        let stdout = match child.stdout.take() {
            Some(out) => log_lines(
                out,
                self.dir.join(format!("{}.{instance}.stdout", self.name)),
                move |line| {
                    let (publisher, seq) = serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| {
                            v.get("payload")
                                .and_then(parse_payload)
                                .map(|(p, s)| (Arc::<str>::from(p), s))
                        })
                        .unwrap_or_else(|| (Arc::from("?unparseable"), 0));
                    // The hostile flood is not tracked.
                    if &*publisher == "hostile" {
                        return;
                    }
                    recorder.push(Record::Delivery {
                        t: recorder.now(),
                        instance,
                        publisher,
                        seq,
                    });
                },
            ),
            None => tokio::spawn(async {}),
        };
        let position = Arc::new(std::sync::Mutex::new(None));
        let recorder = self.recorder.clone();
        let printed = Arc::clone(&position);
        let stderr = match child.stderr.take() {
            Some(err) => log_lines(
                err,
                self.dir.join(format!("{}.{instance}.stderr", self.name)),
                move |line| {
                    if let Some(p) = line.strip_prefix("position: ") {
                        if !p.starts_with("none") {
                            *printed.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(p.trim().to_string());
                        }
                    } else if line.contains("resume not recovered") {
                        let reason = line
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("reason="))
                            .unwrap_or("unknown")
                            .to_string();
                        recorder.push(Record::Resume {
                            t: recorder.now(),
                            instance,
                            answer: Answer::NotRecovered { reason, gap: None },
                        });
                    }
                },
            ),
            None => tokio::spawn(async {}),
        };
        self.running = Some(RunningCli {
            instance,
            child,
            stdout,
            stderr,
            position,
        });
        Ok(())
    }

    async fn ended(&mut self, running: RunningCli, how: &str, status: Option<ExitStatus>) {
        // The pipes close when the process is gone; their last lines are
        // the position.
        let _ = tokio::time::timeout(Duration::from_secs(5), running.stdout).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), running.stderr).await;
        let printed = running
            .position
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if printed.is_some() {
            self.position = printed.clone();
        }
        self.recorder.push(Record::InstanceEnd {
            t: self.recorder.now(),
            instance: running.instance,
            how: how.to_string(),
            exit: status.as_ref().map(describe),
            position: printed,
        });
    }

    /// `kill -9` of the running instance.
    pub async fn kill(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.start_kill();
            let status = running.child.wait().await.ok();
            self.ended(running, "kill -9", status).await;
        }
    }

    /// SIGINT (Ctrl-C) of the running instance; `last` says whether this
    /// is the end of the run, when it must exit 0 (nothing may be left
    /// unprinted then).
    pub async fn interrupt(&mut self, last: bool) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        let pid = running.child.id().unwrap_or(0);
        let _ = signal(pid, "INT").await;
        let status = match tokio::time::timeout(STOP_DEADLINE, running.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                self.recorder.push(Record::Stalled {
                    t: self.recorder.now(),
                    what: format!(
                        "{} (pid {pid}) did not exit within {STOP_DEADLINE:?} of SIGINT",
                        self.name
                    ),
                });
                let _ = running.child.start_kill();
                running.child.wait().await.ok()
            }
        };
        if let Some(status) = &status {
            // Mid-run, exit 1 is a subscriber saying it could not print
            // everything; the chain's deliveries are checked either way.
            let fine = status.success() || (!last && status.code() == Some(1));
            if !fine {
                self.recorder.push(Record::Exit {
                    t: self.recorder.now(),
                    process: format!("{}.{}", self.name, running.instance),
                    pid,
                    status: describe(status),
                    as_expected: false,
                    expected: if last {
                        "exit 0 after SIGINT at the end of the run".to_string()
                    } else {
                        "exit 0 (or 1, saying what it could not print) after SIGINT".to_string()
                    },
                    excusable: !last,
                });
            }
        }
        self.ended(running, "SIGINT", status).await;
    }

    /// Whether an instance runs.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

/// Runs one `watchtower publish --at-least-once --stdin` process for the
/// events `(seq, type)` of publisher `name`: its exit 0 acknowledges them
/// all.
pub async fn cli_publish(
    binary: &Path,
    urls: &[String],
    name: &str,
    events: &[(u64, &str)],
    dir: &Path,
    recorder: &Recorder,
) {
    let publisher: Arc<str> = Arc::from(name);
    let mut command = Command::new(binary);
    command
        .arg("publish")
        .arg("--at-least-once")
        .arg("--stdin")
        .arg("--timeout")
        .arg("30");
    for url in urls {
        command.arg("--url").arg(url);
    }
    let child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            recorder.push(Record::Stalled {
                t: recorder.now(),
                what: format!("{name} could not start: {e}"),
            });
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    if let Some(err) = child.stderr.take() {
        log_lines(err, dir.join(format!("{name}.stderr")), |_| {});
    }
    if let Some(mut stdin) = child.stdin.take() {
        let mut text = String::new();
        for (seq, event_type) in events {
            let event = watchtower_websocket::Event::new(
                *event_type,
                serde_json::json!({"p": name, "s": seq}),
                watchtower_websocket::EventMetadata::default(),
            );
            if let Ok(line) = serde_json::to_string(&event) {
                text.push_str(&line);
                text.push('\n');
            }
            recorder.push(Record::Publish {
                t: recorder.now(),
                publisher: Arc::clone(&publisher),
                seq: *seq,
                event_type: Arc::from(*event_type),
            });
        }
        let _ = stdin.write_all(text.as_bytes()).await;
        // Dropping stdin closes it: the end of the events.
    }
    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(Ok(status)) if status.success() => recorder.push(Record::Ack {
            t: recorder.now(),
            publisher,
            seqs: events.iter().map(|(s, _)| *s).collect(),
        }),
        Ok(Ok(status)) => recorder.push(Record::Exit {
            t: recorder.now(),
            process: name.to_string(),
            pid,
            status: describe(&status),
            as_expected: false,
            expected: "exit 0 (every event acknowledged)".to_string(),
            excusable: true,
        }),
        Ok(Err(_)) => {}
        Err(_) => {
            recorder.push(Record::Stalled {
                t: recorder.now(),
                what: format!("{name} (pid {pid}) did not exit within 60 s"),
            });
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}
