//! Per-client filters through the control protocol.

use crate::support::*;

/// Sends a control frame and waits until the hub has applied it.
async fn control(hub: &watchtower_hub::Hub, client: &mut Client, frame: &str) {
    let before = hub.stats().control_frames;
    send(client, frame).await;
    stats_until(hub, "control frame applied", |s| {
        s.control_frames == before + 1
    })
    .await;
}

/// Publishes one event per type in `published`; `subscriber` must receive
/// exactly `expected`, in order. The last published type must be expected:
/// once it arrives, every earlier frame was either delivered before it
/// (and checked here) or filtered out.
async fn check(
    publisher: &mut Client,
    subscriber: &mut Client,
    published: &[&str],
    expected: &[&str],
) {
    assert_eq!(
        published.last(),
        expected.last(),
        "test bug: see the doc comment"
    );
    for (n, event_type) in published.iter().enumerate() {
        send(publisher, &event(event_type, n as u64)).await;
    }
    for event_type in expected {
        assert_eq!(type_of(&next_text(subscriber).await), *event_type);
    }
}

#[tokio::test]
async fn subscribe_replace_and_unsubscribe_set_what_a_client_receives() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());

    // A client that never sent a control frame receives everything.
    check(&mut publisher, &mut sub, &["a", "b"], &["a", "b"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["a"],"replace":true}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["b", "a"], &["a"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["b"]}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["c", "b", "a"], &["b", "a"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"unsubscribe","event_types":["a"]}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["a", "b"], &["b"]).await;

    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["c"],"replace":true}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["b", "c"], &["c"]).await;

    // `unsubscribe []`: nothing at all...
    control(&hub, &mut sub, r#"{"type":"unsubscribe","event_types":[]}"#).await;
    // ...until something is added back.
    control(
        &hub,
        &mut sub,
        r#"{"type":"subscribe","event_types":["d"]}"#,
    )
    .await;
    check(&mut publisher, &mut sub, &["c", "a", "d"], &["d"]).await;

    // `subscribe []`: everything again.
    control(&hub, &mut sub, r#"{"type":"subscribe","event_types":[]}"#).await;
    check(&mut publisher, &mut sub, &["x", "y"], &["x", "y"]).await;

    let stats = hub.stats();
    assert_eq!(stats.control_frames, 7);
    assert_eq!(stats.malformed.total(), 0);
}

#[tokio::test]
async fn a_client_that_reconnects_and_resends_its_filter_is_filtered_again() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut sub, mut publisher) = (c.pop().unwrap(), c.pop().unwrap());
    let subscribe = r#"{"type":"subscribe","event_types":["wanted"],"replace":true}"#;

    control(&hub, &mut sub, subscribe).await;
    check(&mut publisher, &mut sub, &["other", "wanted"], &["wanted"]).await;

    sub.close(None).await.unwrap();
    drop(sub);
    stats_until(&hub, "the subscriber left", |s| s.clients == 1).await;

    // A new connection starts with no filter: everything.
    let mut sub = clients(&hub, 1).await.pop().unwrap();
    check(
        &mut publisher,
        &mut sub,
        &["other", "wanted"],
        &["other", "wanted"],
    )
    .await;
    // Re-sending the filter, as the transport does on every reconnect.
    control(&hub, &mut sub, subscribe).await;
    check(&mut publisher, &mut sub, &["other", "wanted"], &["wanted"]).await;
}
