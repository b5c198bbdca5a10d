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
