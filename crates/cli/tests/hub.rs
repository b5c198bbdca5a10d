//! `watchtower hub`: serves until interrupted, then prints its stats.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::support::*;

/// Kills the child if the test fails before it exits by itself.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_serves_until_interrupted_then_prints_its_stats() {
    let mut hub = Reap(
        Command::new(env!("CARGO_BIN_EXE_watchtower"))
            .args(["hub", "--listen", "127.0.0.1:0", "--client-queue", "64"])
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
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();

    let out = output(watchtower(&[
        "publish",
        "--url",
        &url,
        "--type",
        "t",
        "--payload",
        "1",
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    // Ctrl-C, as a user would.
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
    assert!(rest.contains("hub stats:"), "{rest}");
    assert!(rest.contains("  connections              1\n"), "{rest}");
    assert!(rest.contains("  events in                1\n"), "{rest}");
}
