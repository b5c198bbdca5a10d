//! Child processes: servers and floods measured from outside, so their
//! memory is theirs alone. The parent runs the current binary again as
//! `<binary> bench-child <role> …`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use watchtower_hub::{Hub, HubConfig};
use watchtower_websocket::prelude::*;
use watchtower_websocket::{MaxAttempts, ReconnectPolicy};

use crate::BenchError;
use crate::raw::broadcast_server;
use crate::workload::event;

/// Runs one child role (`hub [MAX_CONNECTIONS]`, `hub-unpaced`,
/// `raw-broadcast`, `clients ours|raw ADDR K`, `idle-clients ADDR K`,
/// `flood EVENTS QUEUE`, `attack KIND ADDR`) and prints what the parent
/// reads. Servers and clients run until stdin closes.
pub async fn child(args: &[String]) -> Result<(), BenchError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["hub"] => hub(HubConfig::default()).await,
        ["hub", max] => {
            raise_open_files();
            let mut config = HubConfig::default();
            config.max_connections = number(max)?;
            config.max_pending_handshakes =
                config.max_pending_handshakes.min(config.max_connections);
            // Every idle client comes from 127.0.0.1: the per-address cap
            // (a flood defence) would refuse most of them.
            config.max_pending_handshakes_per_peer = config.max_pending_handshakes;
            // And so would the per-address handshake budget, past its
            // burst.
            config.handshakes_per_second_per_peer = 0;
            hub(config).await
        }
        ["idle-clients", addr, k] => {
            raise_open_files();
            let connections = crate::idle_hub::clients(addr, number(k)?).await?;
            wait_for_stdin_to_close().await;
            drop(connections);
            Ok(())
        }
        ["hub-unpaced"] => {
            // No control-frame budget, to measure what a frame costs.
            let mut config = HubConfig::default();
            config.control_bytes_per_second = 1 << 40;
            hub(config).await
        }
        ["attack", kind, addr] => {
            let tally = crate::hostile::attack(kind, addr).await?;
            println!("ATTACKING {kind}");
            wait_for_stdin_to_close().await;
            if let Some(tally) = tally {
                tally.print();
            }
            Ok(())
        }
        ["raw-broadcast"] => {
            let (addr, _server) = broadcast_server(1024).await?;
            println!("ADDR {addr}");
            wait_for_stdin_to_close().await;
            Ok(())
        }
        ["clients", kind, addr, k] => {
            let k: usize = k
                .parse()
                .map_err(|_| BenchError::Incomplete(format!("bad connection count {k}")))?;
            let connections = crate::memory::clients(kind, addr, k).await?;
            wait_for_stdin_to_close().await;
            drop(connections);
            Ok(())
        }
        ["flood", events, queue] => {
            let events: u64 = events
                .parse()
                .map_err(|_| BenchError::Incomplete(format!("bad event count {events}")))?;
            let queue: usize = queue
                .parse()
                .map_err(|_| BenchError::Incomplete(format!("bad queue size {queue}")))?;
            flood(events, queue).await
        }
        ["history-hub", events] => crate::resume::history_hub(events).await,
        other => Err(BenchError::Incomplete(format!(
            "unknown bench-child role {other:?}"
        ))),
    }
}

fn number(text: &str) -> Result<usize, BenchError> {
    text.parse()
        .map_err(|_| BenchError::Incomplete(format!("bad number {text:?}")))
}

async fn hub(config: HubConfig) -> Result<(), BenchError> {
    let hub = Hub::bind_with("127.0.0.1:0", config).await?;
    println!("ADDR {}", hub.local_addr());
    wait_for_stdin_to_close().await;
    hub.shutdown().await;
    Ok(())
}

/// Raises the soft open-file limit to the hard one, as `watchtower hub`
/// does: thousands of connections need more than the common 1,024.
pub(crate) fn raise_open_files() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("bench: could not raise the open-file limit: {error}");
    }
}

/// CPU seconds a process has used: the sum of its threads' run time in
/// `/proc/PID/task/*/schedstat` (nanoseconds), else user + system time
/// from `/proc/PID/stat` (ticks of 1/100 s, Linux's `USER_HZ`).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    schedstat_seconds(pid).or_else(|| stat_seconds(pid))
}

fn schedstat_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

fn stat_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields count from ')'.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Waits for the parent's next line on stdin (see [`ChildProcess::send`]).
pub(crate) async fn wait_for_parent() -> Result<(), BenchError> {
    let mut byte = [0u8; 1];
    let mut stdin = tokio::io::stdin();
    loop {
        match stdin.read(&mut byte).await? {
            0 => {
                return Err(BenchError::Incomplete(
                    "the parent closed stdin before going on".into(),
                ));
            }
            _ if byte[0] == b'\n' => return Ok(()),
            _ => {}
        }
    }
}

async fn wait_for_stdin_to_close() {
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

/// Publishes `events` with DropOldest while the server is down (nothing
/// listens on the port), then reports the peak resident memory.
async fn flood(events: u64, queue: usize) -> Result<(), BenchError> {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut config = WebSocketConfig::new(format!("ws://{dead}/events"));
    config.backpressure.max_queue_size = queue;
    config.backpressure.strategy = BackpressureStrategy::DropOldest;
    let transport = WebSocketTransport::builder(config)
        .reconnect_policy(ReconnectPolicy::fixed(
            Duration::from_secs(1),
            MaxAttempts::Unlimited,
        ))
        .connect_lazily(true)
        .connect()
        .await?;
    for n in 0..events {
        transport.publish(event(n)).await?;
    }
    let stats = transport.stats();
    println!(
        "PEAK_RSS_KB {}",
        status_kib(std::process::id(), "VmHWM:").unwrap_or(0)
    );
    println!("QUEUED {}", stats.backpressure.current_queue_size);
    println!("EVICTED {}", stats.backpressure.evicted_events);
    println!("DLQ {}", stats.dlq.len);
    println!("DLQ_DROPPED {}", stats.dlq.dropped);
    Ok(())
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`).
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A running child process.
pub(crate) struct ChildProcess {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl ChildProcess {
    pub(crate) fn spawn(args: &[&str]) -> Result<ChildProcess, BenchError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("bench-child")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Incomplete("child has no stdout".into()))?;
        Ok(ChildProcess {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The value of the next `KEY value` line with this key.
    pub(crate) async fn value(&mut self, key: &str) -> Result<String, BenchError> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(value) = line.strip_prefix(key).and_then(|r| r.strip_prefix(' ')) {
                return Ok(value.to_string());
            }
        }
        Err(BenchError::Incomplete(format!(
            "the child exited without printing {key}"
        )))
    }

    /// Writes `line` to the child's stdin (see [`wait_for_parent`]).
    pub(crate) async fn send(&mut self, line: &str) -> Result<(), BenchError> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Incomplete("child has no stdin".into()))?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes stdin, telling the child to stop, without waiting: what it
    /// prints as it stops can still be read with [`value`](Self::value).
    pub(crate) fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Closes stdin (servers exit) and waits.
    pub(crate) async fn finish(mut self) -> Result<(), BenchError> {
        drop(self.child.stdin.take());
        self.child.wait().await?;
        Ok(())
    }
}

/// This process's resident memory in KiB.
pub(crate) fn own_rss_kib() -> u64 {
    status_kib(std::process::id(), "VmRSS:").unwrap_or(0)
}
