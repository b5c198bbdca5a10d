//! A `watchtower hub` process for a test: started, its URL read from its
//! first line, interrupted with Ctrl-C, and killed if the test fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};

use crate::support::LIMIT;

/// Kills the child if the test fails before it exits by itself.
pub(crate) struct Reap(pub(crate) Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `watchtower hub` with `args`; returns it, the URL its first line
/// of stderr names, and the rest of its stderr.
pub(crate) async fn start_hub(args: &[&str]) -> (Reap, String, BufReader<ChildStderr>) {
    let mut hub = Reap(
        Command::new(env!("CARGO_BIN_EXE_watchtower"))
            .arg("hub")
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(hub.0.stderr.take().unwrap());
    // The first line says where it listens; it waits for nothing else.
    let (first, stderr) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        (line, stderr)
    })
    .await
    .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("ws://") || w.starts_with("wss://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .trim_end_matches(',')
        .to_string();
    (hub, url, stderr)
}

/// Ctrl-C, as a user would; returns what the hub printed after it.
#[cfg(unix)]
pub(crate) async fn interrupt(mut hub: Reap, stderr: BufReader<ChildStderr>) -> String {
    let status = Command::new("kill")
        .args(["-INT", &hub.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        for line in stderr.lines() {
            rest.push_str(&line.unwrap());
            rest.push('\n');
        }
        rest
    });
    let rest = tokio::time::timeout(LIMIT, rest).await.unwrap().unwrap();
    let status = hub.0.wait().unwrap();
    assert!(status.success(), "{status:?}\n{rest}");
    rest
}
