//! `watchtower hub --nats` (feature `nats`), as a user runs it: hub
//! processes sharing a stream on a real `nats-server` (see
//! `watchtower_test_support::NatsServer`). Its own test target, built only
//! with the feature; `cargo xtask test` runs it with the hub's NATS tests.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

mod process;

use watchtower_test_support::NatsServer;

use process::{interrupt, start_hub};
use support::{code, output, watchtower};

/// Two `watchtower hub --nats` processes on one stream: events published
/// to the first are stored in the stream and delivered by the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_share_a_nats_stream() {
    let Some(nats) = NatsServer::start_or_skip("two_hub_processes_share_a_nats_stream").await
    else {
        return;
    };
    let stream = format!("cli{}", std::process::id());
    let nats_url = nats.url();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--nats",
        &nats_url,
        "--nats-stream",
        &stream,
    ];
    let (a, url_a, stderr_a) = start_hub(&args).await;
    let (b, url_b, stderr_b) = start_hub(&args).await;
    let subscriber = tokio::spawn(output(watchtower(&[
        "subscribe",
        "--url",
        &url_b,
        "--count",
        "1",
    ])));
    // Publish until the subscriber on B has one: it may join after the
    // first publish. At least once: each `publish` ends once A acknowledged,
    // i.e. counted its event stored, so A's count below is exact.
    let mut published = 0;
    while !subscriber.is_finished() {
        let out = output(watchtower(&[
            "publish",
            "--at-least-once",
            "--url",
            &url_a,
            "--type",
            "t",
            "--payload",
            "1",
        ]))
        .await;
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        published += 1;
        assert!(published < 100, "B never delivered");
    }
    let got = subscriber.await.unwrap();
    assert_eq!(code(&got), 0, "{}", String::from_utf8_lossy(&got.stderr));
    assert!(String::from_utf8_lossy(&got.stdout).contains(r#""event_type":"t""#));
    let rest_a = interrupt(a, stderr_a).await;
    assert!(
        rest_a
            .lines()
            .any(|l| l.contains("backplane_events_total{result=stored}")
                && l.trim_end().ends_with(&format!(" {published}"))),
        "{rest_a}"
    );
    interrupt(b, stderr_b).await;
}

/// Issue 27 #16: `publish --at-least-once --stdin` exits non-zero, saying
/// how many, when events it was given were dead-lettered unacknowledged
/// while it was still reading stdin. At f945df2 it exited 0: its final
/// flush only counted events given up while the flush waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_at_least_once_fails_when_an_event_was_not_acknowledged() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let Some(nats) = NatsServer::start_or_skip("publish_at_least_once_fails_when").await else {
        return;
    };
    let stream = format!("cliack{}", std::process::id());
    let nats_url = nats.url();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--nats",
        &nats_url,
        "--nats-stream",
        &stream,
    ];
    let (hub, url, stderr_hub) = start_hub(&args).await;
    // NATS hangs (SIGSTOP): the hub stores nothing, so it acknowledges
    // nothing, and the publisher's resends time out until it gives up.
    let pid = nats.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut publisher = process::Reap(
        Command::new(env!("CARGO_BIN_EXE_watchtower"))
            .args([
                "publish",
                "--at-least-once",
                "--stdin",
                "--type",
                "t",
                "--url",
                &url,
            ])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = publisher.0.stdin.take().unwrap();
    for n in 0..5 {
        writeln!(stdin, "{{\"n\":{n}}}").unwrap();
    }
    stdin.flush().unwrap();
    // Stdin stays open until the transport says it gave the events up.
    let stderr = BufReader::new(publisher.0.stderr.take().unwrap());
    let (given_up, rest) = tokio::task::spawn_blocking(move || {
        let mut lines = stderr.lines();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("dead-lettered") {
                return (true, lines);
            }
        }
        panic!("the publisher ended without giving events up:\n{seen}");
    })
    .await
    .unwrap();
    assert!(given_up);
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || publisher.0.wait().unwrap())
        .await
        .unwrap();
    let rest: Vec<String> = rest.map(Result::unwrap).collect();
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(status.code(), Some(1), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("5 events were not acknowledged")),
        "{rest:?}"
    );
    drop(hub);
    drop(stderr_hub);
}
