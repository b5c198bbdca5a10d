//! `publish` and `subscribe` against a hub.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use watchtower_hub::Hub;
use watchtower_websocket::{Event, WebSocketConfig, WebSocketTransport};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_a_subscriber_as_json_lines() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let url = hub.url();

    let subscriber = tokio::spawn(output(watchtower(&[
        "subscribe",
        "--url",
        &url,
        "--type",
        "notification.sent",
        "--count",
        "3",
    ])));
    ready(&hub).await;
    let before = hub.stats();

    let publishes = [
        ("notification.sent", r#"{"user_id":1}"#),
        ("other.type", r#"{"user_id":99}"#), // filtered out
        ("notification.sent", r#"{"user_id":2}"#),
        ("notification.sent", r#"{"user_id":3}"#),
    ];
    for (event_type, payload) in publishes {
        let out = output(publish(&url, event_type, payload)).await;
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }

    let out = subscriber.await.unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (n, line) in lines.iter().enumerate() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["event_type"], "notification.sent");
        assert_eq!(event["payload"]["user_id"], n as u64 + 1);
        assert_eq!(event["metadata"]["source"], "cli-test");
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    }
    let after = hub.stats();
    assert_eq!(after.events_in - before.events_in, 4);
    assert_eq!(
        after.frames_queued - before.frames_queued,
        3,
        "other.type is filtered out"
    );
}

fn publish(url: &str, event_type: &str, payload: &str) -> assert_cmd::Command {
    watchtower(&[
        "publish",
        "--url",
        url,
        "--type",
        event_type,
        "--payload",
        payload,
        "--source",
        "cli-test",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stdin_delivers_one_event_per_line() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let url = hub.url();

    // The receiver is the library itself. Without server filters the hub
    // sends it everything from the moment it is connected.
    let received = Arc::new(Mutex::new(Vec::<Event>::new()));
    let receiver = WebSocketTransport::new(WebSocketConfig::new(url.clone()))
        .await
        .unwrap();
    let sink = Arc::clone(&received);
    receiver
        .subscribe(vec![], move |event| {
            sink.lock().unwrap().push(event);
            Box::pin(async { Ok(()) })
        })
        .await
        .unwrap();
    until("the receiver connected", || hub.stats().clients == 1).await;

    let mut publish = watchtower(&["publish", "--url", &url, "--stdin", "--type", "line.read"]);
    publish.write_stdin(
        "{\"n\":1}\n\n   \n[2]\n{\"id\":\"evt_whole\",\"event_type\":\"whole.event\",\"payload\":3}\n",
    );
    let out = output(publish).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    until("three events received", || {
        received.lock().unwrap().len() == 3
    })
    .await;
    let events = received.lock().unwrap().clone();
    assert_eq!(events[0].event_type, "line.read");
    assert_eq!(events[0].payload["n"], 1);
    assert_eq!(events[1].payload, serde_json::json!([2]));
    assert_eq!(
        (events[2].id.as_str(), events[2].event_type.as_str()),
        ("evt_whole", "whole.event")
    );
    assert_eq!(hub.stats().events_in, 3);
    receiver.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_keeps_going_while_the_hub_restarts() {
    let first = Hub::bind("127.0.0.1:0").await.unwrap();
    let addr = first.local_addr();
    let url = first.url();
    let subscriber = tokio::spawn(output(watchtower(&[
        "subscribe",
        "--url",
        &url,
        "--type",
        "t",
        "--count",
        "2",
    ])));
    ready(&first).await;
    let out = output(publish(&url, "t", r#"{"n":1}"#)).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    // The hub goes away and comes back on the same address.
    first.shutdown().await;
    let second = Hub::bind(addr).await.unwrap();
    ready(&second).await;
    let out = output(publish(&url, "t", r#"{"n":2}"#)).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let out = subscriber.await.unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let payloads: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["payload"].clone())
        .collect();
    assert_eq!(
        payloads,
        [serde_json::json!({"n": 1}), serde_json::json!({"n": 2})]
    );
}

/// Waits until the one subscriber is connected to `hub` and its filter is
/// applied. (A new connection receives everything until its filter
/// arrives, so nothing it subscribed to is missed meanwhile; waiting for
/// the filter only makes the hub's counts exact.)
async fn ready(hub: &Hub) {
    until("the subscriber connected and sent its filter", || {
        let s = hub.stats();
        s.clients == 1 && s.control_frames >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_at_least_once_succeeds_once_the_hub_acknowledged() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let url = hub.url();
    let out = output(watchtower(&[
        "publish",
        "--url",
        &url,
        "--at-least-once",
        "--type",
        "t",
        "--payload",
        r#"{"n":1}"#,
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stats = hub.stats();
    assert_eq!(stats.events_in, 1);
    assert!(stats.acks_sent >= 1, "{stats:?}");
}

/// A burst faster than the subscriber prints: the subscription's mailbox
/// fills, the transport stops reading (`MailboxOverflow::Block`) and the
/// hub holds the rest, so every event is printed, none dead-lettered
/// inside the CLI process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_prints_every_event_of_a_burst() {
    const N: u64 = 5_000;
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let url = hub.url();
    let count = N.to_string();
    let subscriber = tokio::spawn(output(watchtower(&[
        "subscribe",
        "--url",
        &url,
        "--type",
        "b",
        "--count",
        &count,
    ])));
    ready(&hub).await;

    let mut publish = watchtower(&["publish", "--url", &url, "--stdin", "--type", "b"]);
    let lines: String = (0..N).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    publish.write_stdin(lines);
    let out = output(publish).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let out = subscriber.await.unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ns: Vec<u64> = stdout
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            event["payload"]["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ns, (0..N).collect::<Vec<_>>());
}

/// The position `subscribe` printed on stderr when it exited.
fn printed_position(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("position: "))
        .unwrap_or_else(|| panic!("no position on stderr: {stderr}"))
        .to_string()
}

/// The `user_id`s of the events printed.
fn user_ids(out: &std::process::Output) -> Vec<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["payload"]["user_id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Done when 7: a subscriber process that stops and starts again with
/// `--since` the position it printed gets what was published meanwhile,
/// and nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_since_continues_after_a_restart() {
    let hub = Hub::bind("127.0.0.1:0").await.unwrap();
    let url = hub.url();
    let subscribe = |extra: &[&str]| {
        let mut args = vec!["subscribe", "--url", &url, "--type", "t"];
        args.extend_from_slice(extra);
        watchtower(&args)
    };
    let first = tokio::spawn(output(subscribe(&["--count", "2"])));
    ready(&hub).await;
    for n in 1..=2 {
        let out = output(publish(&url, "t", &format!(r#"{{"user_id":{n}}}"#))).await;
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = first.await.unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(user_ids(&out), [1, 2]);
    let position = printed_position(&out);

    // Published while no subscriber runs.
    for n in 3..=5 {
        let out = output(publish(&url, "t", &format!(r#"{{"user_id":{n}}}"#))).await;
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = output(subscribe(&["--since", &position, "--count", "3"])).await;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(user_ids(&out), [3, 4, 5]);
    assert_ne!(printed_position(&out), position);

    // A position that is not one is a usage error.
    let out = output(subscribe(&["--since", "yesterday"])).await;
    assert_eq!(code(&out), 2);
}
